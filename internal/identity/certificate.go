package identity

import (
	"fmt"
	"time"
)

const certTag = "floodgate/certificate/v1\x00"

// Certificate is the provider's statement that Key belongs to Account until
// Expiry. Peers show it to each other (and the provider's tracker checks it)
// so an account cannot be claimed with someone else's key.
type Certificate struct {
	Key       PublicKey `json:"key"`
	Account   string    `json:"account"`
	Issued    time.Time `json:"issued"`
	Expiry    time.Time `json:"expiry"`
	Signature Signature `json:"signature"`
}

// IssueCertificate makes a certificate signed by provider. Times are kept to
// whole seconds because that is what the signed encoding carries.
func IssueCertificate(provider *PrivateKey, key PublicKey, account string, issued, expiry time.Time) (Certificate, error) {
	c := Certificate{Key: key, Account: account, Issued: unixTime(issued), Expiry: unixTime(expiry)}
	if err := checkID("account", account); err != nil {
		return Certificate{}, err
	}
	if err := c.checkTimes(); err != nil {
		return Certificate{}, err
	}
	if !c.Expiry.After(c.Issued) {
		return Certificate{}, fmt.Errorf("identity: certificate expiry %v not after issue time %v", c.Expiry, c.Issued)
	}
	c.Signature = provider.Sign(c.signedBytes())
	return c, nil
}

// signedBytes is the exact message the provider signs.
func (c Certificate) signedBytes() []byte {
	e := encoder{b: make([]byte, 0, len(certTag)+PublicKeySize+1+len(c.Account)+16+SignatureSize)}
	e.raw([]byte(certTag))
	e.raw(c.Key[:])
	e.str(c.Account)
	e.i64(c.Issued.Unix())
	e.i64(c.Expiry.Unix())
	return e.b
}

// Verify checks that provider signed c and that c has not expired at now.
// It returns an error matching ErrBadSignature or ErrExpired.
func (c Certificate) Verify(provider PublicKey, now time.Time) error {
	if checkID("account", c.Account) != nil || !provider.Verify(c.signedBytes(), c.Signature) {
		return fmt.Errorf("%w: certificate for account %q", ErrBadSignature, c.Account)
	}
	if !now.Before(c.Expiry) {
		return fmt.Errorf("%w: certificate for account %q expired at %v", ErrExpired, c.Account, c.Expiry)
	}
	return nil
}

// MarshalBinary encodes c as its signed bytes followed by the signature.
func (c Certificate) MarshalBinary() ([]byte, error) {
	if err := checkID("account", c.Account); err != nil {
		return nil, err
	}
	if err := c.checkTimes(); err != nil {
		return nil, err
	}
	return append(c.signedBytes(), c.Signature[:]...), nil
}

// UnmarshalBinary decodes what MarshalBinary produced. It does not verify
// the signature; call Verify.
func (c *Certificate) UnmarshalBinary(b []byte) error {
	d := decoder{b: b}
	var out Certificate
	d.tag(certTag)
	d.raw(out.Key[:])
	out.Account = d.str()
	out.Issued = time.Unix(d.i64(), 0).UTC()
	out.Expiry = time.Unix(d.i64(), 0).UTC()
	d.raw(out.Signature[:])
	d.end()
	if d.err != nil {
		return fmt.Errorf("identity: certificate: %w", d.err)
	}
	if err := checkID("account", out.Account); err != nil {
		return fmt.Errorf("identity: certificate: %w", err)
	}
	if err := out.checkTimes(); err != nil {
		return fmt.Errorf("identity: certificate: %w", err)
	}
	*c = out
	return nil
}

// unixTime truncates t to whole seconds in UTC, the precision of every
// signed encoding.
func unixTime(t time.Time) time.Time { return time.Unix(t.Unix(), 0).UTC() }

func (c Certificate) checkTimes() error {
	if err := checkTime("issue time", c.Issued); err != nil {
		return err
	}
	return checkTime("expiry", c.Expiry)
}
