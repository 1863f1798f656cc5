package credit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"time"
)

// snapshotVersion tags the snapshot format; Restore refuses others so a
// newer format is never half-understood.
const snapshotVersion = 1

// bookJSON is the persisted form of a Book. It is JSON so an operator can
// read what a peer owes; accounts are sorted so equal books give equal
// bytes. Windows are not stored: they follow from paid and the config.
type bookJSON struct {
	Version  int           `json:"version"`
	Accounts []accountJSON `json:"accounts"`
}

type accountJSON struct {
	Account string `json:"account"`
	Owed    int64  `json:"owed"`
	// Frac is the value served beyond Owed, in 2^-20 units.
	Frac      uint64 `json:"frac,omitempty"`
	Bytes     int64  `json:"bytes"`
	Paid      int64  `json:"paid"`
	LastPrice int64  `json:"last_price,omitempty"`
	// LastPayment and Seen are Unix nanoseconds; 0 is the zero time.
	LastPayment int64 `json:"last_payment,omitempty"`
	Seen        int64 `json:"seen,omitempty"`
	Resends     int   `json:"resends,omitempty"`
	Blocked     bool  `json:"blocked,omitempty"`
}

// Snapshot encodes the book for Restore. The engine persists it (at least
// after payments and periodically) so a restart never forgets a debt.
func (b *Book) Snapshot() ([]byte, error) {
	s := bookJSON{Version: snapshotVersion, Accounts: make([]accountJSON, 0, len(b.accounts))}
	for _, name := range b.Accounts() {
		a := b.accounts[name]
		s.Accounts = append(s.Accounts, accountJSON{
			Account: name, Owed: a.served.units, Frac: a.served.frac, Bytes: a.bytes,
			Paid: a.paid, LastPrice: a.lastPrice, LastPayment: unixNano(a.lastPayment),
			Seen: unixNano(a.seen), Resends: a.resends, Blocked: a.blocked,
		})
	}
	data, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("credit: encoding book: %w", err)
	}
	return data, nil
}

// Restore decodes a Snapshot into a book with the given limits (which may
// differ from those it was taken with; windows follow the new ones). Every
// account with unpaid value starts its overdue clock at now: the time the
// uploader was down was no chance for the peer to pay. Debts, payments and
// blocks are kept as they were.
func Restore(cfg Config, data []byte, now time.Time) (*Book, error) {
	b, err := NewBook(cfg)
	if err != nil {
		return nil, err
	}
	var s bookJSON
	if err := decodeStrict(data, &s); err != nil {
		return nil, err
	}
	for i, r := range s.Accounts {
		if err := r.check(); err != nil {
			return nil, fmt.Errorf("%w: account %d: %w", ErrSnapshot, i, err)
		}
		if _, dup := b.accounts[r.Account]; dup {
			return nil, fmt.Errorf("%w: account %q appears twice", ErrSnapshot, r.Account)
		}
		a := &entry{
			served: meter{units: r.Owed, frac: r.Frac}, bytes: r.Bytes, paid: r.Paid,
			lastPrice: r.LastPrice, lastPayment: fromUnixNano(r.LastPayment),
			seen: fromUnixNano(r.Seen), resends: r.Resends, blocked: r.Blocked,
		}
		if a.due() > 0 {
			a.since = now
		}
		b.accounts[r.Account] = a
		b.attach(a)
	}
	return b, nil
}

func (r *accountJSON) check() error {
	if err := checkAccount(r.Account); err != nil {
		return err
	}
	switch {
	case r.Owed < 0 || r.Bytes < 0 || r.Paid < 0 || r.LastPrice < 0 || r.Resends < 0:
		return fmt.Errorf("%q: negative field", r.Account)
	case r.Frac >= MiB || (r.Owed == math.MaxInt64 && r.Frac != 0):
		return fmt.Errorf("%q: fraction %d out of range", r.Account, r.Frac)
	case r.LastPayment < 0 || r.Seen < 0:
		return fmt.Errorf("%q: time before 1970", r.Account)
	}
	return nil
}

// tabJSON is the persisted form of a Tab.
type tabJSON struct {
	Version  int        `json:"version"`
	Accounts []debtJSON `json:"accounts"`
}

type debtJSON struct {
	Account string `json:"account"`
	Owed    int64  `json:"owed"`
	Frac    uint64 `json:"frac,omitempty"`
	Bytes   int64  `json:"bytes"`
	Paid    int64  `json:"paid"`
}

// Snapshot encodes the tab for RestoreTab, so a downloader that restarts
// mid-download still pays what it owed before.
func (t *Tab) Snapshot() ([]byte, error) {
	s := tabJSON{Version: snapshotVersion, Accounts: make([]debtJSON, 0, len(t.accounts))}
	for _, name := range t.Accounts() {
		d := t.accounts[name]
		s.Accounts = append(s.Accounts, debtJSON{
			Account: name, Owed: d.received.units, Frac: d.received.frac, Bytes: d.bytes, Paid: d.paid,
		})
	}
	data, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("credit: encoding tab: %w", err)
	}
	return data, nil
}

// RestoreTab decodes a Tab's Snapshot.
func RestoreTab(data []byte) (*Tab, error) {
	var s tabJSON
	if err := decodeStrict(data, &s); err != nil {
		return nil, err
	}
	t := NewTab()
	for i, r := range s.Accounts {
		if err := checkAccount(r.Account); err != nil {
			return nil, fmt.Errorf("%w: account %d: %w", ErrSnapshot, i, err)
		}
		if r.Owed < 0 || r.Bytes < 0 || r.Paid < 0 || r.Frac >= MiB || (r.Owed == math.MaxInt64 && r.Frac != 0) {
			return nil, fmt.Errorf("%w: account %q: field out of range", ErrSnapshot, r.Account)
		}
		if _, dup := t.accounts[r.Account]; dup {
			return nil, fmt.Errorf("%w: account %q appears twice", ErrSnapshot, r.Account)
		}
		if t.spent > math.MaxInt64-r.Paid {
			return nil, fmt.Errorf("%w: total paid overflows", ErrSnapshot)
		}
		t.spent += r.Paid
		t.accounts[r.Account] = &debt{received: meter{units: r.Owed, frac: r.Frac}, bytes: r.Bytes, paid: r.Paid}
	}
	return t, nil
}

// versioned is implemented by both snapshot forms so decodeStrict can check
// the version.
type versioned interface{ version() int }

func (s *bookJSON) version() int { return s.Version }
func (s *tabJSON) version() int  { return s.Version }

// decodeStrict decodes one JSON document into v, refusing unknown fields
// (a sign of corruption or of a newer writer) and unsupported versions.
func decodeStrict(data []byte, v versioned) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", ErrSnapshot, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: trailing data after the snapshot", ErrSnapshot)
	}
	if got := v.version(); got != snapshotVersion {
		return fmt.Errorf("%w: version %d, want %d", ErrSnapshot, got, snapshotVersion)
	}
	return nil
}

// unixNano encodes t, mapping the zero time to 0.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
