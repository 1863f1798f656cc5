package identity

import (
	"fmt"
	"math/bits"
	"time"
)

const voucherTag = "floodgate/voucher/v1\x00"

// Voucher is the broker's signed promise that Length×Unit units are locked
// for Payee in channel Channel: each preimage of the hash chain with root
// Root, up to index Length, is worth Unit, redeemable until Expiry (plus the
// broker's grace period). A payee checks it with CheckFor before serving the
// payer on credit.
type Voucher struct {
	Channel   string    `json:"channel"`
	Payer     string    `json:"payer"`
	Payee     string    `json:"payee"`
	Root      Digest    `json:"root"`
	Length    int64     `json:"length"`
	Unit      int64     `json:"unit"`
	Expiry    time.Time `json:"expiry"`
	Signature Signature `json:"signature"`
}

// SignVoucher validates v, truncates its expiry to whole seconds, and signs
// it with the provider's key.
func SignVoucher(provider *PrivateKey, v Voucher) (Voucher, error) {
	v.Expiry = unixTime(v.Expiry)
	if err := v.validate(); err != nil {
		return Voucher{}, err
	}
	v.Signature = provider.Sign(v.signedBytes())
	return v, nil
}

func (v Voucher) validate() error {
	for _, f := range [...]struct{ what, s string }{{"channel", v.Channel}, {"payer", v.Payer}, {"payee", v.Payee}} {
		if err := checkID(f.what, f.s); err != nil {
			return fmt.Errorf("identity: voucher: %w", err)
		}
	}
	if v.Length <= 0 || v.Unit <= 0 {
		return fmt.Errorf("%w: voucher length %d and unit %d must be positive", ErrMalformed, v.Length, v.Unit)
	}
	if _, err := v.Value(); err != nil {
		return err
	}
	return checkTime("voucher expiry", v.Expiry)
}

// Value is the total locked amount, Length×Unit. It fails if the product
// does not fit in an int64.
func (v Voucher) Value() (int64, error) {
	hi, lo := bits.Mul64(uint64(v.Length), uint64(v.Unit))
	if v.Length < 0 || v.Unit < 0 || hi != 0 || lo > 1<<63-1 {
		return 0, fmt.Errorf("%w: voucher value %d×%d overflows", ErrMalformed, v.Length, v.Unit)
	}
	return int64(lo), nil
}

func (v Voucher) signedBytes() []byte {
	e := encoder{b: make([]byte, 0, len(voucherTag)+3+len(v.Channel)+len(v.Payer)+len(v.Payee)+32+24+SignatureSize)}
	e.raw([]byte(voucherTag))
	e.str(v.Channel)
	e.str(v.Payer)
	e.str(v.Payee)
	e.raw(v.Root[:])
	e.i64(v.Length)
	e.i64(v.Unit)
	e.i64(v.Expiry.Unix())
	return e.b
}

// Verify checks that provider signed v. It does not look at the time; see
// CheckFor.
func (v Voucher) Verify(provider PublicKey) error {
	if v.validate() != nil || !provider.Verify(v.signedBytes(), v.Signature) {
		return fmt.Errorf("%w: voucher for channel %q", ErrBadSignature, v.Channel)
	}
	return nil
}

// CheckFor is what a payee does before accepting a voucher: the provider
// signed it, it names payee, and at least minRemaining is left before it
// expires (so the payee has time to redeem what it earns).
func (v Voucher) CheckFor(provider PublicKey, payee string, now time.Time, minRemaining time.Duration) error {
	if err := v.Verify(provider); err != nil {
		return err
	}
	if v.Payee != payee {
		return fmt.Errorf("%w: voucher for channel %q pays %q, not %q", ErrBadSignature, v.Channel, v.Payee, payee)
	}
	if v.Expiry.Sub(now) < minRemaining {
		return fmt.Errorf("%w: voucher for channel %q expires at %v, less than %v after %v", ErrExpired, v.Channel, v.Expiry, minRemaining, now)
	}
	return nil
}

// MarshalBinary encodes v as its signed bytes followed by the signature.
func (v Voucher) MarshalBinary() ([]byte, error) {
	v.Expiry = unixTime(v.Expiry)
	if err := v.validate(); err != nil {
		return nil, err
	}
	return append(v.signedBytes(), v.Signature[:]...), nil
}

// UnmarshalBinary decodes what MarshalBinary produced. It does not verify
// the signature; call Verify or CheckFor.
func (v *Voucher) UnmarshalBinary(b []byte) error {
	d := decoder{b: b}
	var out Voucher
	d.tag(voucherTag)
	out.Channel = d.str()
	out.Payer = d.str()
	out.Payee = d.str()
	d.raw(out.Root[:])
	out.Length = d.i64()
	out.Unit = d.i64()
	out.Expiry = time.Unix(d.i64(), 0).UTC()
	d.raw(out.Signature[:])
	d.end()
	if d.err != nil {
		return fmt.Errorf("identity: voucher: %w", d.err)
	}
	if err := out.validate(); err != nil {
		return err
	}
	*v = out
	return nil
}
