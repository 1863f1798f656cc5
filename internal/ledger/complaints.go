package ledger

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Complaint is an uploader's claim that an account did not pay for what it
// was served (DESIGN §4). Complaints are evidence for the provider only:
// filing one never moves money, so it touches no balance and no journal
// row, and Audit ignores it.
type Complaint struct {
	// ID is assigned by the ledger when the complaint is filed.
	ID string
	// Complainant filed the complaint; Accused is the account it names.
	Complainant, Accused AccountID
	// InfoHash names the torrent, as 40 lowercase hex digits.
	InfoHash string
	// Owed and Paid are the complainant's figures for what the accused
	// owes it and has paid, in the smallest unit.
	Owed, Paid int64
	// Evidence is what the complainant submitted, a JSON object. It is
	// part of the idempotency fingerprint.
	Evidence []byte
	// Assessment is the broker's cross-check of the evidence, a JSON
	// object. It is recorded at filing time and not fingerprinted: a
	// retry may see channels in a later state and must still return the
	// first complaint.
	Assessment []byte
	// Created is when the ledger stored it.
	Created time.Time
}

// Complaint limits. They bound what a hostile complainant can make the
// provider store: MaxComplaintJSON per JSON column, and by default
// DefaultComplaintQuota complaints per complainant per ComplaintWindow.
const (
	// MaxComplaintJSON bounds Evidence and Assessment, each.
	MaxComplaintJSON = 16 << 10
	// DefaultComplaintQuota is Config.ComplaintQuota's default. An honest
	// uploader files at most one complaint per non-paying account and
	// torrent, so this is far above need.
	DefaultComplaintQuota = 1000
	// ComplaintWindow is the rolling window the quota counts in.
	ComplaintWindow = 24 * time.Hour
	// MaxComplaintList caps how many complaints one listing returns.
	MaxComplaintList = 1000
)

// FileComplaint stores c (ID and Created are assigned) and returns it as
// stored. Both accounts must exist and differ, InfoHash must be 40
// lowercase hex digits, Owed and Paid non-negative, and Evidence and
// Assessment JSON objects of at most MaxComplaintJSON bytes (ErrInvalid
// otherwise; a missing account is ErrNotFound). A complainant that has
// filed Config.ComplaintQuota complaints within ComplaintWindow before now
// gets ErrForbidden. Retrying with the same idemKey (scoped to the
// complainant) and the same claim returns the complaint first stored; the
// same key with another claim is ErrConflict.
func (l *Ledger) FileComplaint(ctx context.Context, idemKey string, c Complaint, now time.Time) (Complaint, error) {
	if l.cfgErr != nil {
		return Complaint{}, fmt.Errorf("%w: %w", ErrInvalid, l.cfgErr)
	}
	if err := checkComplaint(idemKey, c); err != nil {
		return Complaint{}, fmt.Errorf("file complaint: %w", err)
	}
	key := "complaint:" + string(c.Complainant) + ":" + idemKey
	fp := fingerprint("complaint", c.Complainant, c.Accused, c.InfoHash, c.Owed, c.Paid, c.Evidence)
	id, err := newChannelID()
	if err != nil {
		return Complaint{}, fmt.Errorf("file complaint: %w", err)
	}
	at := time.Unix(0, now.UnixNano()).UTC()
	var out Complaint
	err = l.store.InTx(ctx, func(tx Tx) error {
		done, err := checkIdem(ctx, tx, key, fp)
		if err != nil {
			return err
		}
		if done != nil {
			out, err = tx.Complaint(ctx, done.Result)
			return err
		}
		for _, id := range []AccountID{c.Complainant, c.Accused} {
			if _, err := tx.Account(ctx, id); err != nil {
				return err
			}
		}
		n, err := tx.CountComplaintsBy(ctx, c.Complainant, at.Add(-ComplaintWindow))
		if err != nil {
			return err
		}
		// Under PostgreSQL's READ COMMITTED, filings racing from one
		// complainant may overshoot the quota by the number in flight;
		// the quota bounds storage, not money, so a soft bound will do.
		if n >= l.cfg.ComplaintQuota {
			return fmt.Errorf("%w: %q filed %d complaints within %v, the quota", ErrForbidden, c.Complainant, n, ComplaintWindow)
		}
		row := c
		row.ID, row.Created = id, at
		if err := tx.InsertComplaint(ctx, row); err != nil {
			return err
		}
		out = row
		return tx.PutIdempotency(ctx, IdemRecord{Key: key, Fingerprint: fp, Result: id, At: at})
	})
	if err != nil {
		return Complaint{}, fmt.Errorf("file complaint by %q against %q: %w", c.Complainant, c.Accused, err)
	}
	return out, nil
}

// checkComplaint validates a complaint before it reaches the store.
func checkComplaint(idemKey string, c Complaint) error {
	if err := checkKey(idemKey); err != nil {
		return err
	}
	if err := checkID("complainant", string(c.Complainant)); err != nil {
		return err
	}
	if err := checkID("accused", string(c.Accused)); err != nil {
		return err
	}
	if c.Complainant == c.Accused {
		return fmt.Errorf("%w: an account cannot complain about itself", ErrInvalid)
	}
	if !isLowerHex(c.InfoHash, 40) {
		return fmt.Errorf("%w: info hash must be 40 lowercase hex digits", ErrInvalid)
	}
	if c.Owed < 0 || c.Paid < 0 {
		return fmt.Errorf("%w: owed %d and paid %d must not be negative", ErrInvalid, c.Owed, c.Paid)
	}
	for _, f := range []struct {
		name string
		v    []byte
	}{{"evidence", c.Evidence}, {"assessment", c.Assessment}} {
		if err := checkJSONObject(f.name, f.v); err != nil {
			return err
		}
	}
	return nil
}

// checkJSONObject accepts 2..MaxComplaintJSON bytes holding one JSON
// object, which is all the dashboard will ever have to render.
func checkJSONObject(what string, b []byte) error {
	if len(b) > MaxComplaintJSON {
		return fmt.Errorf("%w: %s exceeds %d bytes", ErrInvalid, what, MaxComplaintJSON)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil || obj == nil {
		return fmt.Errorf("%w: %s must be a JSON object", ErrInvalid, what)
	}
	return nil
}

// isLowerHex reports whether s is exactly n lowercase hex digits.
func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Complaints lists up to limit complaints, newest first: those against
// accused, or all when accused is empty. limit must be in
// [1, MaxComplaintList].
func (l *Ledger) Complaints(ctx context.Context, accused AccountID, limit int) ([]Complaint, error) {
	if accused != "" {
		if err := checkID("accused", string(accused)); err != nil {
			return nil, err
		}
	}
	if limit < 1 || limit > MaxComplaintList {
		return nil, fmt.Errorf("%w: limit %d not in [1, %d]", ErrInvalid, limit, MaxComplaintList)
	}
	var out []Complaint
	err := l.store.View(ctx, func(tx Tx) error {
		var err error
		out, err = tx.Complaints(ctx, accused, limit)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list complaints: %w", err)
	}
	return out, nil
}
