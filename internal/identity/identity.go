// Package identity holds Floodgate's Ed25519 identities: key pairs and their
// files, the account id derived from a public key, provider-signed
// certificates binding a key to an account, and the vouchers the broker signs
// for payment channels.
//
// Everything that is signed uses a fixed binary layout that starts with a
// domain-separation tag (see encoding.go), so a signature made for one kind of
// message can never be replayed as another kind.
package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
)

// PublicKeySize and SignatureSize are the Ed25519 sizes, restated so that
// callers need not import crypto/ed25519 to size buffers.
const (
	PublicKeySize = ed25519.PublicKeySize
	SignatureSize = ed25519.SignatureSize
)

// Sentinel errors. Callers react to them (refuse a peer, ask for a new
// certificate), so they are matched with errors.Is.
var (
	// ErrBadSignature means a signature does not verify under the key that
	// should have made it.
	ErrBadSignature = errors.New("identity: bad signature")
	// ErrExpired means a certificate or voucher is past its expiry.
	ErrExpired = errors.New("identity: expired")
	// ErrMalformed means encoded bytes or text do not parse.
	ErrMalformed = errors.New("identity: malformed encoding")
	// ErrKeyPermissions means a private key file is readable by group or
	// others, which we refuse to use (see ReadKeyFile).
	ErrKeyPermissions = errors.New("identity: key file is readable by group or others")
)

// PublicKey is an Ed25519 public key. As a value type it can be compared and
// used as a map key. Its text form is lowercase hex.
type PublicKey [PublicKeySize]byte

// String returns the key in hex.
func (p PublicKey) String() string { return hex.EncodeToString(p[:]) }

// MarshalText encodes the key as hex.
func (p PublicKey) MarshalText() ([]byte, error) { return hexText(p[:]), nil }

// UnmarshalText decodes a hex key of exactly PublicKeySize bytes.
func (p *PublicKey) UnmarshalText(b []byte) error { return unhexFixed(p[:], b, "public key") }

// ParsePublicKey decodes a hex public key.
func ParsePublicKey(s string) (PublicKey, error) {
	var p PublicKey
	err := p.UnmarshalText([]byte(s))
	return p, err
}

// AccountID is the account id of the key (see AccountIDOf).
func (p PublicKey) AccountID() string { return AccountIDOf(p) }

// Verify reports whether sig is p's signature over msg.
func (p PublicKey) Verify(msg []byte, sig Signature) bool {
	return ed25519.Verify(ed25519.PublicKey(p[:]), msg, sig[:])
}

// Signature is an Ed25519 signature. Its text form is lowercase hex.
type Signature [SignatureSize]byte

// String returns the signature in hex.
func (s Signature) String() string { return hex.EncodeToString(s[:]) }

// MarshalText encodes the signature as hex.
func (s Signature) MarshalText() ([]byte, error) { return hexText(s[:]), nil }

// UnmarshalText decodes a hex signature of exactly SignatureSize bytes.
func (s *Signature) UnmarshalText(b []byte) error { return unhexFixed(s[:], b, "signature") }

// Digest is a 32-byte hash value (a hash-chain root or preimage). Its text
// form is lowercase hex.
type Digest [32]byte

// String returns the digest in hex.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// MarshalText encodes the digest as hex.
func (d Digest) MarshalText() ([]byte, error) { return hexText(d[:]), nil }

// UnmarshalText decodes a hex digest of exactly 32 bytes.
func (d *Digest) UnmarshalText(b []byte) error { return unhexFixed(d[:], b, "digest") }

// PrivateKey is an Ed25519 key pair. The zero value is not usable; make one
// with GenerateKey, NewKeyFromSeed or ReadKeyFile.
type PrivateKey struct {
	priv ed25519.PrivateKey
	pub  PublicKey
}

// GenerateKey makes a new key pair from rand (crypto/rand.Reader when nil).
func GenerateKey(r io.Reader) (*PrivateKey, error) {
	if r == nil {
		r = rand.Reader
	}
	_, priv, err := ed25519.GenerateKey(r)
	if err != nil {
		return nil, fmt.Errorf("identity: generate key: %w", err)
	}
	return fromEd25519(priv), nil
}

// NewKeyFromSeed derives the key pair of a 32-byte Ed25519 seed. Tests use it
// to get reproducible identities.
func NewKeyFromSeed(seed [ed25519.SeedSize]byte) *PrivateKey {
	return fromEd25519(ed25519.NewKeyFromSeed(seed[:]))
}

func fromEd25519(priv ed25519.PrivateKey) *PrivateKey {
	k := &PrivateKey{priv: priv}
	copy(k.pub[:], priv.Public().(ed25519.PublicKey))
	return k
}

// Public returns the public half of the key pair.
func (k *PrivateKey) Public() PublicKey { return k.pub }

// AccountID is the account id of the key's public half.
func (k *PrivateKey) AccountID() string { return AccountIDOf(k.pub) }

// Sign signs msg. Ed25519 signatures are deterministic: the same key and
// message always give the same signature.
func (k *PrivateKey) Sign(msg []byte) Signature {
	var s Signature
	copy(s[:], ed25519.Sign(k.priv, msg))
	return s
}

// accountIDTag separates account-id hashing from every other use of SHA-256
// over a public key.
const accountIDTag = "floodgate/account-id/v1\x00"

// AccountIDLen is the length of an account id string.
const AccountIDLen = 40

// AccountIDOf derives the account id of a public key: the first 20 bytes of
// SHA-256(tag || key), in hex. Deriving it (rather than letting clients pick
// names) means an id can never be claimed by a second key, and anyone can
// check that a certificate's account belongs to its key.
func AccountIDOf(p PublicKey) string {
	h := sha256.New()
	h.Write([]byte(accountIDTag))
	h.Write(p[:])
	return hex.EncodeToString(h.Sum(nil)[:AccountIDLen/2])
}

func hexText(b []byte) []byte {
	out := make([]byte, hex.EncodedLen(len(b)))
	hex.Encode(out, b)
	return out
}

func unhexFixed(dst, src []byte, what string) error {
	if len(src) != hex.EncodedLen(len(dst)) {
		return fmt.Errorf("%w: %s must be %d hex digits, got %d", ErrMalformed, what, hex.EncodedLen(len(dst)), len(src))
	}
	if _, err := hex.Decode(dst, src); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
	}
	return nil
}
