package identity

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
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

// MaxCertificateFileSize bounds what ReadCertificateFile reads.
const MaxCertificateFileSize = 64 << 10

// WriteCertificateFile stores c as indented JSON at path (mode 0644: a
// certificate is public), replacing any older certificate atomically.
func WriteCertificateFile(path string, c Certificate) error {
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("identity: encode certificate: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("identity: write certificate: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("identity: write certificate: %w", err)
	}
	return nil
}

// ReadCertificateFile loads a certificate written by WriteCertificateFile.
// It does not verify it; call Verify with the provider's key.
func ReadCertificateFile(path string) (Certificate, error) {
	f, err := os.Open(path)
	if err != nil {
		return Certificate{}, fmt.Errorf("identity: open certificate: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxCertificateFileSize+1))
	if err != nil {
		return Certificate{}, fmt.Errorf("identity: read certificate: %w", err)
	}
	if len(data) > MaxCertificateFileSize {
		return Certificate{}, fmt.Errorf("%w: certificate file %s is too large", ErrMalformed, path)
	}
	var c Certificate
	if err := json.Unmarshal(data, &c); err != nil {
		return Certificate{}, fmt.Errorf("%w: certificate file %s: %v", ErrMalformed, path, err)
	}
	if err := checkID("account", c.Account); err != nil {
		return Certificate{}, fmt.Errorf("identity: certificate file %s: %w", path, err)
	}
	return c, nil
}
