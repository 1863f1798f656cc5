package identity

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Key files hold one Ed25519 private key as PKCS#8 in a PEM "PRIVATE KEY"
// block, so that standard tools (openssl pkey) can read them.
//
// Policy, as for ssh keys: a key file is created with mode 0600 and O_EXCL
// (never overwriting an existing key, and never following a planted file),
// and ReadKeyFile refuses a file that group or others may read, because a
// key that others could have copied no longer identifies its owner. Fix such
// a file with chmod 600.

const pemType = "PRIVATE KEY"

// MaxKeyFileSize bounds how much ReadKeyFile will read; a real key file is
// about 120 bytes.
const MaxKeyFileSize = 16 << 10

// EncodeKeyPEM returns k as a PKCS#8 PEM block.
func EncodeKeyPEM(k *PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.priv)
	if err != nil {
		return nil, fmt.Errorf("identity: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemType, Bytes: der}), nil
}

// DecodeKeyPEM parses a PKCS#8 PEM block holding an Ed25519 private key.
func DecodeKeyPEM(data []byte) (*PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != pemType {
		return nil, fmt.Errorf("%w: no PEM %q block", ErrMalformed, pemType)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	priv, ok := parsed.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: key is %T, not Ed25519", ErrMalformed, parsed)
	}
	return fromEd25519(priv), nil
}

// WriteKeyFile writes k to a new file at path with mode 0600, creating the
// parent directory (mode 0700) if needed. It fails with an error matching
// fs.ErrExist if the file exists: keys are never overwritten.
func WriteKeyFile(path string, k *PrivateKey) error {
	data, err := EncodeKeyPEM(k)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("identity: key directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("identity: create key file: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("identity: write key file: %w", err)
	}
	// Sync before reporting success: a key that vanishes in a crash after the
	// account was registered would strand the account's money.
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("identity: sync key file: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("identity: close key file: %w", err)
	}
	return nil
}

// ReadKeyFile reads the key at path. It returns ErrKeyPermissions if the file
// is readable (or writable) by group or others.
func ReadKeyFile(path string) (*PrivateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("identity: open key file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("identity: stat key file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("identity: key file %s is not a regular file", path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %#o (want 0600)", ErrKeyPermissions, path, st.Mode().Perm())
	}
	if st.Size() > MaxKeyFileSize {
		return nil, fmt.Errorf("%w: key file %s is %d bytes", ErrMalformed, path, st.Size())
	}
	data := make([]byte, st.Size())
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, fmt.Errorf("identity: read key file: %w", err)
	}
	k, err := DecodeKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("identity: key file %s: %w", path, err)
	}
	return k, nil
}

// LoadOrCreateKeyFile reads the key at path, or generates and writes a new
// one if no file exists there. created reports which happened.
func LoadOrCreateKeyFile(path string) (k *PrivateKey, created bool, err error) {
	k, err = ReadKeyFile(path)
	if err == nil {
		return k, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	k, err = GenerateKey(nil)
	if err != nil {
		return nil, false, err
	}
	if err := WriteKeyFile(path, k); err != nil {
		if errors.Is(err, fs.ErrExist) {
			// Another process created it between our read and write; use
			// theirs so both agree on one identity.
			k, err = ReadKeyFile(path)
			return k, false, err
		}
		return nil, false, err
	}
	return k, true, nil
}
