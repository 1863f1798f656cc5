// Package ledger is the broker's double-entry ledger and its payment
// channels (DESIGN §4).
//
// Every movement of money is one transfer between two accounts, recorded in
// a journal and applied to cached balances in the same database
// transaction. Only the issuance account may go negative; it is the source
// of all minted money, so the balances of all accounts always sum to zero
// and everything else sums to what was minted.
//
// The business rules (minting, opening, redeeming, closing and expiring
// channels, fees, idempotency) live once, in Ledger, over the small Store
// interface; SQLite and PostgreSQL implement Store.
//
// The ledger also keeps complaints (complaints.go): uploaders' evidence
// that an account stopped paying. They live in their own table, never touch
// a balance or the journal, and so cannot affect conservation.
package ledger

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// AccountID names an account. Customer and provider accounts are named by
// the broker; the ledger names the issuance account IssuanceAccount and
// each channel's escrow account "escrow:<channel id>".
type AccountID string

// Kind classifies an account and decides what may happen to it.
type Kind string

// The account kinds.
const (
	// KindIssuance is the single account that may go negative; minting
	// moves money out of it, so its balance is minus everything minted.
	KindIssuance Kind = "issuance"
	// KindProvider is the provider's own account (the origin is paid here).
	KindProvider Kind = "provider"
	// KindCustomer is a peer's account.
	KindCustomer Kind = "customer"
	// KindEscrow holds the funds locked in one payment channel.
	KindEscrow Kind = "escrow"
	// KindFees collects the provider's per-redemption fees.
	KindFees Kind = "fees"
)

// IssuanceAccount is the ID of the issuance account, created by the first
// schema migration.
const IssuanceAccount AccountID = "issuance"

// Channel states.
const (
	// StateOpen is a channel whose escrow may still be redeemed.
	StateOpen = "open"
	// StateClosed is a channel whose rest has been returned to the payer.
	StateClosed = "closed"
)

// Channel is a PayWord payment channel: Length*Unit locked from Payer for
// Payee, released one Unit per chain element the payee redeems.
type Channel struct {
	// ID is assigned by the ledger when the channel is opened.
	ID string
	// Payer funds the channel; Payee is the only account it pays.
	Payer, Payee AccountID
	// Root is w_0 of the payer's hash chain.
	Root [32]byte
	// Length is the number of payable chain elements; Unit the value of
	// each, so the channel locks Length*Unit.
	Length, Unit int64
	// Expiry is when the payer may have the rest back, after the ledger's
	// grace period for late redemptions.
	Expiry time.Time
	// Redeemed is the highest index paid out so far.
	Redeemed int64
	// Last is the preimage at Redeemed (Root when Redeemed is 0); the next
	// redemption is verified against it.
	Last [32]byte
	// State is StateOpen or StateClosed.
	State string
}

// Sentinel errors. The HTTP layer maps each to a machine-readable code;
// every error the ledger returns wraps at most one of them.
var (
	// ErrInsufficientFunds: the payer's balance cannot cover the amount.
	ErrInsufficientFunds = errors.New("ledger: insufficient funds")
	// ErrNotFound: no such account, channel or record.
	ErrNotFound = errors.New("ledger: not found")
	// ErrConflict: the ID, key or idempotency key is taken with different
	// contents.
	ErrConflict = errors.New("ledger: conflict")
	// ErrBadPreimage: the preimage does not hash to the channel's last
	// redeemed element.
	ErrBadPreimage = errors.New("ledger: bad preimage")
	// ErrExpired: the channel's expiry (plus grace, for redemptions) has
	// passed, or the requested expiry is already in the past.
	ErrExpired = errors.New("ledger: channel expired")
	// ErrClosed: the channel is closed.
	ErrClosed = errors.New("ledger: channel closed")
	// ErrOverflow: an amount does not fit in int64.
	ErrOverflow = errors.New("ledger: amount overflow")
	// ErrInvalid: a malformed argument (negative amount, index beyond the
	// chain, step beyond MaxStep, unknown kind, bad configuration...).
	ErrInvalid = errors.New("ledger: invalid argument")
	// ErrForbidden: the caller may not do this (e.g. a payer closing its
	// channel before expiry plus grace).
	ErrForbidden = errors.New("ledger: forbidden")
	// ErrCorrupt: Audit found the stored ledger inconsistent. It should
	// never happen; it means a bug or tampering, and needs a human.
	ErrCorrupt = errors.New("ledger: inconsistent ledger")
)

// StepError is the ErrInvalid a redemption gets for advancing a channel
// more than MaxStep elements at once. It is refused before any hashing.
// It carries the limit so a payee can split the redemption: holding w_i,
// it can compute every earlier element itself by hashing.
type StepError struct {
	// Steps is how far the redemption tried to advance; Max the limit.
	Steps, Max int64
}

// Error implements error.
func (e *StepError) Error() string {
	return fmt.Sprintf("%v: advancing %d steps exceeds the limit %d", ErrInvalid, e.Steps, e.Max)
}

// Unwrap makes errors.Is(err, ErrInvalid) hold.
func (e *StepError) Unwrap() error { return ErrInvalid }

// Config holds the ledger's policy. Zero values select the defaults noted.
type Config struct {
	// ProviderAccount is the provider's own account. The ledger does not
	// create it; the broker registers it like any other account.
	ProviderAccount AccountID
	// FeeAccount receives fees; it is created (kind fees) on first use.
	// Defaults to "fees".
	FeeAccount AccountID
	// FeeBasisPoints is the provider's cut of every redemption:
	// fee = floor(amount*FeeBasisPoints/10000). Must be in [0, 10000].
	FeeBasisPoints int64
	// ExpiryGrace is how long after a channel's expiry the payee may still
	// redeem before the rest returns to the payer. Defaults to 10 minutes.
	ExpiryGrace time.Duration
	// MaxChainLength caps a channel's Length. Defaults to
	// DefaultMaxChainLength.
	MaxChainLength int64
	// MaxStep caps how far one redemption may advance a channel, which
	// bounds the hashing a single request can cause: verifying a step of
	// n chain elements costs n SHA-256 hashes (about 0.25 µs each), paid
	// by the broker for any registered stranger who names a channel.
	// Defaults to the smaller of MaxChainLength and DefaultMaxStep. A
	// payee that must advance further redeems in several steps (the
	// broker's Client does so by itself).
	MaxStep int64
	// ComplaintQuota caps how many complaints one complainant may file
	// within ComplaintWindow. Defaults to DefaultComplaintQuota.
	ComplaintQuota int64
	// Now is the clock used to timestamp journal rows of calls that take
	// no explicit time (Mint, CreateAccount). Defaults to time.Now.
	Now func() time.Time
}

// DefaultMaxChainLength is Config.MaxChainLength's default, 2^20 chain
// elements: a payer derives every element of its chain (about a quarter
// second of hashing at that length), and peers size channels within it.
const DefaultMaxChainLength = 1 << 20

// DefaultMaxStep is Config.MaxStep's default, 2^16: the same cap peers put
// on how far one payment may advance a chain, so an honest payment never
// needs more, while a bad redemption costs the broker at most about 16 ms
// of hashing instead of the quarter second 2^20 steps would.
const DefaultMaxStep = 1 << 16

// Ledger applies the money rules over a Store. It is safe for concurrent
// use; all coordination happens in the store's transactions.
type Ledger struct {
	store  Store
	cfg    Config
	cfgErr error
	// feeAccountExists is set once a committed redemption has credited
	// the fee account; see ensureFeeAccount.
	feeAccountExists atomic.Bool
}

// New returns a ledger over store. An invalid cfg does not panic: every
// mutating call then fails with ErrInvalid.
func New(store Store, cfg Config) *Ledger {
	l := &Ledger{store: store}
	l.cfg, l.cfgErr = normalise(cfg)
	return l
}

// normalise fills defaults and validates cfg.
func normalise(cfg Config) (Config, error) {
	if cfg.FeeAccount == "" {
		cfg.FeeAccount = "fees"
	}
	if cfg.ExpiryGrace == 0 {
		cfg.ExpiryGrace = 10 * time.Minute
	}
	if cfg.MaxChainLength == 0 {
		cfg.MaxChainLength = DefaultMaxChainLength
	}
	if cfg.MaxStep == 0 {
		cfg.MaxStep = min(cfg.MaxChainLength, DefaultMaxStep)
	}
	if cfg.ComplaintQuota == 0 {
		cfg.ComplaintQuota = DefaultComplaintQuota
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	switch {
	case cfg.FeeBasisPoints < 0 || cfg.FeeBasisPoints > 10000:
		return cfg, errors.New("ledger: FeeBasisPoints must be in [0, 10000]")
	case cfg.ExpiryGrace < 0:
		return cfg, errors.New("ledger: negative ExpiryGrace")
	case cfg.MaxChainLength < 1, cfg.MaxStep < 1:
		return cfg, errors.New("ledger: MaxChainLength and MaxStep must be positive")
	case cfg.ComplaintQuota < 0:
		return cfg, errors.New("ledger: negative ComplaintQuota")
	}
	return cfg, nil
}
