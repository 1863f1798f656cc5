package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// maxIDLen bounds account and channel IDs, and maxKeyLen idempotency keys
// (which callers build from an account ID and a client's key), so hostile
// input cannot bloat the tables or the indexes.
const (
	maxIDLen  = 200
	maxKeyLen = 512
)

// pubKeySize is the size of an Ed25519 public key, the only kind DESIGN §4
// registers.
const pubKeySize = 32

// escrowPrefix marks the per-channel escrow accounts, which only the ledger
// creates.
const escrowPrefix = "escrow:"

// CreateAccount creates a customer, provider or fees account with a zero
// balance, optionally registered to an Ed25519 public key (32 bytes). The
// call is idempotent: repeating it with the same (id, kind, key) succeeds,
// while any clash with an existing account's id or key is ErrConflict. The
// issuance and escrow kinds are reserved to the ledger.
func (l *Ledger) CreateAccount(ctx context.Context, id AccountID, kind Kind, pubKey []byte) error {
	if l.cfgErr != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, l.cfgErr)
	}
	if err := checkID("account id", string(id)); err != nil {
		return err
	}
	if id == IssuanceAccount || strings.HasPrefix(string(id), escrowPrefix) {
		return fmt.Errorf("%w: account id %q is reserved", ErrInvalid, id)
	}
	switch kind {
	case KindCustomer, KindProvider, KindFees:
	default:
		return fmt.Errorf("%w: cannot create an account of kind %q", ErrInvalid, kind)
	}
	if len(pubKey) != 0 && len(pubKey) != pubKeySize {
		return fmt.Errorf("%w: public key must be %d bytes, got %d", ErrInvalid, pubKeySize, len(pubKey))
	}
	if len(pubKey) == 0 {
		pubKey = nil
	}
	at := l.cfg.Now()
	err := l.store.InTx(ctx, func(tx Tx) error {
		a, err := tx.Account(ctx, id)
		switch {
		case err == nil:
			if a.Kind == kind && bytes.Equal(a.PubKey, pubKey) {
				return nil
			}
			return fmt.Errorf("%w: account %q exists with another kind or key", ErrConflict, id)
		case !errors.Is(err, ErrNotFound):
			return err
		}
		if pubKey != nil {
			other, err := tx.AccountByKey(ctx, pubKey)
			switch {
			case err == nil:
				return fmt.Errorf("%w: key already registered to account %q", ErrConflict, other.ID)
			case !errors.Is(err, ErrNotFound):
				return err
			}
		}
		return tx.InsertAccount(ctx, Account{ID: id, Kind: kind, PubKey: pubKey}, at)
	})
	if err != nil {
		return fmt.Errorf("create account %q: %w", id, err)
	}
	return nil
}

// AccountByKey returns the account registered for pubKey, or ErrNotFound.
func (l *Ledger) AccountByKey(ctx context.Context, pubKey []byte) (AccountID, error) {
	if len(pubKey) != pubKeySize {
		return "", fmt.Errorf("%w: public key must be %d bytes, got %d", ErrInvalid, pubKeySize, len(pubKey))
	}
	var id AccountID
	err := l.store.View(ctx, func(tx Tx) error {
		a, err := tx.AccountByKey(ctx, pubKey)
		id = a.ID
		return err
	})
	if err != nil {
		return "", fmt.Errorf("account by key: %w", err)
	}
	return id, nil
}

// Balance returns the account's balance, or ErrNotFound. The issuance
// account's balance is minus everything minted.
func (l *Ledger) Balance(ctx context.Context, id AccountID) (int64, error) {
	var bal int64
	err := l.store.View(ctx, func(tx Tx) error {
		a, err := tx.Account(ctx, id)
		bal = a.Balance
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("balance of %q: %w", id, err)
	}
	return bal, nil
}

// checkID rejects empty, oversized or unprintable identifiers and keys,
// which would otherwise end up in logs and journal references.
func checkID(what, s string) error { return checkText(what, s, maxIDLen) }

// checkKey is checkID for idempotency keys, which may be longer.
func checkKey(s string) error { return checkText("idempotency key", s, maxKeyLen) }

// checkText rejects s unless it is 1 to limit bytes of printable,
// space-free UTF-8.
func checkText(what, s string, limit int) error {
	if s == "" || len(s) > limit {
		return fmt.Errorf("%w: %s must be 1 to %d bytes", ErrInvalid, what, limit)
	}
	for _, r := range s {
		if r == unicode.ReplacementChar || !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return fmt.Errorf("%w: %s %q contains a space or unprintable character", ErrInvalid, what, s)
		}
	}
	return nil
}
