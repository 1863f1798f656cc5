package ledger

import (
	"context"
	"fmt"
	neturl "net/url"
	"strings"
	"time"
)

// Store is the persistence the ledger runs on. Implementations provide
// transactions and row-level primitives; every business rule lives in
// Ledger, so SQLite and PostgreSQL behave identically.
type Store interface {
	// InTx runs fn in a read-write transaction and commits it if fn
	// returns nil. When the database reports a serialisation failure,
	// deadlock, busy database or a unique-key race, InTx rolls back and
	// runs fn again, a bounded number of times, so fn must have no
	// effects outside tx.
	InTx(ctx context.Context, fn func(Tx) error) error
	// View runs fn in a read-only transaction that sees one consistent
	// snapshot.
	View(ctx context.Context, fn func(Tx) error) error
	// Close releases the store's connections.
	Close() error
}

// Account is one row of the accounts table.
type Account struct {
	// ID names the account.
	ID AccountID
	// Kind decides what may happen to it.
	Kind Kind
	// PubKey is the Ed25519 key registered for it, or nil.
	PubKey []byte
	// Balance is the cached sum of its journal entries.
	Balance int64
}

// Transfer is one journal row: Amount moves from From to To.
type Transfer struct {
	// From and To are the debited and credited accounts.
	From, To AccountID
	// Amount is positive.
	Amount int64
	// Ref says why the money moved; it is unique across the journal, which
	// makes paying the same thing twice a constraint violation.
	Ref string
	// At timestamps the row.
	At time.Time
}

// IdemRecord remembers a completed idempotent call.
type IdemRecord struct {
	// Key is the namespaced idempotency key.
	Key string
	// Fingerprint hashes the call's arguments; a retry with a different
	// fingerprint is a conflict.
	Fingerprint []byte
	// Result is what the call produced (e.g. the channel ID).
	Result string
	// At timestamps the row.
	At time.Time
}

// AuditSums are the figures Audit cross-checks, all read in one snapshot.
type AuditSums struct {
	// Issuance is the issuance account's balance (minus all minted money).
	Issuance int64
	// Others is the sum of every other account's balance.
	Others int64
	// JournalMinted is the net amount the journal moved out of issuance.
	JournalMinted int64
	// JournalMismatches counts accounts whose balance differs from the net
	// of their journal entries.
	JournalMismatches int64
	// EscrowMismatches counts channels whose escrow balance differs from
	// (Length-Redeemed)*Unit while open, or from zero once closed.
	EscrowMismatches int64
	// Negative counts non-issuance accounts with a negative balance.
	Negative int64
}

// Tx is one database transaction's view of the ledger tables. Its methods
// return ErrNotFound for missing rows; anything else is a store failure.
type Tx interface {
	// Account reads an account.
	Account(ctx context.Context, id AccountID) (Account, error)
	// AccountByKey reads the account registered for pubKey.
	AccountByKey(ctx context.Context, pubKey []byte) (Account, error)
	// InsertAccount creates an account with a zero balance.
	InsertAccount(ctx context.Context, a Account, at time.Time) error
	// Transfer appends t to the journal and applies it to both cached
	// balances. It fails with ErrInsufficientFunds rather than take any
	// account but the issuance account below zero, with ErrOverflow rather
	// than overflow a balance, and with ErrNotFound for a missing account.
	Transfer(ctx context.Context, t Transfer) error
	// Channel reads a channel; with forUpdate it also locks the row until
	// the transaction ends.
	Channel(ctx context.Context, id string, forUpdate bool) (Channel, error)
	// InsertChannel stores a new channel.
	InsertChannel(ctx context.Context, c Channel, at time.Time) error
	// UpdateChannel stores c's Redeemed, Last and State.
	UpdateChannel(ctx context.Context, c Channel) error
	// ExpiredChannels lists up to limit open channels whose expiry is
	// before the given time.
	ExpiredChannels(ctx context.Context, before time.Time, limit int) ([]string, error)
	// Idempotency reads the record for key.
	Idempotency(ctx context.Context, key string) (IdemRecord, error)
	// PutIdempotency stores a new record.
	PutIdempotency(ctx context.Context, r IdemRecord) error
	// Audit computes the conservation figures.
	Audit(ctx context.Context) (AuditSums, error)
	// InsertComplaint stores a new complaint.
	InsertComplaint(ctx context.Context, c Complaint) error
	// Complaint reads a complaint.
	Complaint(ctx context.Context, id string) (Complaint, error)
	// Complaints lists up to limit complaints against accused (all when
	// accused is empty), newest first.
	Complaints(ctx context.Context, accused AccountID, limit int) ([]Complaint, error)
	// CountComplaintsBy counts the complaints complainant filed at or
	// after since.
	CountComplaintsBy(ctx context.Context, complainant AccountID, since time.Time) (int64, error)
}

// OpenStore opens the store named by url and applies pending migrations:
//
//   - "sqlite:PATH" opens the SQLite file at PATH (created if missing);
//     "sqlite:PATH?synchronous=FULL" trades speed for durability against
//     power loss (see SQLiteOptions).
//   - "postgres://..." or "postgresql://..." connects to PostgreSQL; an
//     optional "schema=NAME" query parameter keeps the ledger's tables in
//     that schema (created if missing).
func OpenStore(ctx context.Context, url string) (Store, error) {
	switch {
	case strings.HasPrefix(url, "sqlite:"):
		path, query, _ := strings.Cut(strings.TrimPrefix(url, "sqlite:"), "?")
		var opts SQLiteOptions
		if query != "" {
			q, err := neturl.ParseQuery(query)
			if err != nil {
				return nil, fmt.Errorf("%w: sqlite url: %w", ErrInvalid, err)
			}
			for k := range q {
				if k != "synchronous" {
					return nil, fmt.Errorf("%w: sqlite url: unknown parameter %q", ErrInvalid, k)
				}
			}
			opts.Synchronous = q.Get("synchronous")
		}
		return OpenSQLite(ctx, path, opts)
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		dsn, schema, err := postgresURL(url)
		if err != nil {
			return nil, err
		}
		return OpenPostgres(ctx, dsn, schema)
	}
	return nil, fmt.Errorf("%w: store url must start with sqlite: or postgres://", ErrInvalid)
}
