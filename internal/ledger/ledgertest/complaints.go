package ledgertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/ledger"
)

// ih is a well-formed info hash for the complaint tests.
const ih = "0123456789abcdef0123456789abcdef01234567"

// complaint returns a valid complaint from complainant against accused.
func complaint(complainant, accused ledger.AccountID, owed, paid int64) ledger.Complaint {
	return ledger.Complaint{
		Complainant: complainant, Accused: accused, InfoHash: ih, Owed: owed, Paid: paid,
		Evidence:   []byte(`{"reason":"unpaid","channels":[]}`),
		Assessment: []byte(`{"verdict":"unverified"}`),
	}
}

func testComplaints(t *testing.T, open Opener) {
	f := newFixture(t, open, testConfig())
	ctx := f.ctx
	f.customer("up", 0)
	f.customer("down", 0)
	f.customer("other", 0)
	now := t0.Add(time.Minute)

	c, err := f.l.FileComplaint(ctx, "k1", complaint("up", "down", 100, 40), now)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.ID) != 32 || !c.Created.Equal(now) || c.Complainant != "up" || c.Accused != "down" || c.Owed != 100 || c.Paid != 40 {
		t.Fatalf("filed %+v", c)
	}

	// A retry returns the first complaint, even when the broker's
	// assessment has changed meanwhile.
	retry := complaint("up", "down", 100, 40)
	retry.Assessment = []byte(`{"verdict":"consistent"}`)
	again, err := f.l.FileComplaint(ctx, "k1", retry, now.Add(time.Second))
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if again.ID != c.ID || !again.Created.Equal(now) || string(again.Assessment) != `{"verdict":"unverified"}` {
		t.Fatalf("retry returned %+v, want the first complaint %+v", again, c)
	}
	// The same key with another claim is a conflict; the same key from
	// another complainant is that complainant's own, new complaint.
	_, err = f.l.FileComplaint(ctx, "k1", complaint("up", "down", 100, 41), now)
	wantErr(t, err, ledger.ErrConflict, "same key, other claim")
	changed := complaint("up", "down", 100, 40)
	changed.Evidence = []byte(`{"reason":"unpaid","channels":[{"channel":"x","index":3}]}`)
	_, err = f.l.FileComplaint(ctx, "k1", changed, now)
	wantErr(t, err, ledger.ErrConflict, "same key, other evidence")
	theirs, err := f.l.FileComplaint(ctx, "k1", complaint("other", "down", 7, 0), now.Add(2*time.Second))
	if err != nil || theirs.ID == c.ID {
		t.Fatalf("other complainant's key: %+v, %v", theirs, err)
	}

	got, err := f.l.Complaints(ctx, "down", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != theirs.ID || got[1].ID != c.ID {
		t.Fatalf("complaints against down = %+v, want newest first [%s %s]", got, theirs.ID, c.ID)
	}
	if !equalComplaint(got[1], c) {
		t.Fatalf("stored %+v, filed %+v", got[1], c)
	}
	if got, err := f.l.Complaints(ctx, "down", 1); err != nil || len(got) != 1 || got[0].ID != theirs.ID {
		t.Fatalf("limit 1: %+v, %v", got, err)
	}
	if got, err := f.l.Complaints(ctx, "up", 10); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("complaints against up = %#v, %v; want an empty list", got, err)
	}
	if got, err := f.l.Complaints(ctx, "", 10); err != nil || len(got) != 2 {
		t.Fatalf("all complaints: %+v, %v", got, err)
	}
	_, err = f.l.Complaints(ctx, "down", 0)
	wantErr(t, err, ledger.ErrInvalid, "limit 0")
	_, err = f.l.Complaints(ctx, "down", ledger.MaxComplaintList+1)
	wantErr(t, err, ledger.ErrInvalid, "limit too large")
	_, err = f.l.Complaints(ctx, "a b", 10)
	wantErr(t, err, ledger.ErrInvalid, "malformed account")
	f.conserved(0)
}

func testHostileComplaints(t *testing.T, open Opener) {
	f := newFixture(t, open, testConfig())
	ctx := f.ctx
	f.customer("up", 0)
	f.customer("down", 0)
	now := t0
	mod := func(fn func(*ledger.Complaint)) ledger.Complaint {
		c := complaint("up", "down", 10, 0)
		fn(&c)
		return c
	}
	big := `{"pad":"` + strings.Repeat("x", ledger.MaxComplaintJSON) + `"}`
	cases := []struct {
		name string
		key  string
		c    ledger.Complaint
		want error
	}{
		{"against itself", "k", mod(func(c *ledger.Complaint) { c.Accused = "up" }), ledger.ErrInvalid},
		{"unknown accused", "k", mod(func(c *ledger.Complaint) { c.Accused = "nobody" }), ledger.ErrNotFound},
		{"unknown complainant", "k", mod(func(c *ledger.Complaint) { c.Complainant = "nobody" }), ledger.ErrNotFound},
		{"malformed accused", "k", mod(func(c *ledger.Complaint) { c.Accused = "a b" }), ledger.ErrInvalid},
		{"empty accused", "k", mod(func(c *ledger.Complaint) { c.Accused = "" }), ledger.ErrInvalid},
		{"short info hash", "k", mod(func(c *ledger.Complaint) { c.InfoHash = ih[:39] }), ledger.ErrInvalid},
		{"upper-case info hash", "k", mod(func(c *ledger.Complaint) { c.InfoHash = strings.ToUpper(ih) }), ledger.ErrInvalid},
		{"non-hex info hash", "k", mod(func(c *ledger.Complaint) { c.InfoHash = "g" + ih[1:] }), ledger.ErrInvalid},
		{"negative owed", "k", mod(func(c *ledger.Complaint) { c.Owed = -1 }), ledger.ErrInvalid},
		{"negative paid", "k", mod(func(c *ledger.Complaint) { c.Paid = -1 }), ledger.ErrInvalid},
		{"evidence an array", "k", mod(func(c *ledger.Complaint) { c.Evidence = []byte(`[]`) }), ledger.ErrInvalid},
		{"evidence null", "k", mod(func(c *ledger.Complaint) { c.Evidence = []byte(`null`) }), ledger.ErrInvalid},
		{"evidence not JSON", "k", mod(func(c *ledger.Complaint) { c.Evidence = []byte(`{`) }), ledger.ErrInvalid},
		{"evidence missing", "k", mod(func(c *ledger.Complaint) { c.Evidence = nil }), ledger.ErrInvalid},
		{"evidence too large", "k", mod(func(c *ledger.Complaint) { c.Evidence = []byte(big) }), ledger.ErrInvalid},
		{"assessment not an object", "k", mod(func(c *ledger.Complaint) { c.Assessment = []byte(`1`) }), ledger.ErrInvalid},
		{"empty key", "", complaint("up", "down", 10, 0), ledger.ErrInvalid},
		{"key with a space", "a b", complaint("up", "down", 10, 0), ledger.ErrInvalid},
	}
	for _, tc := range cases {
		_, err := f.l.FileComplaint(ctx, tc.key, tc.c, now)
		wantErr(t, err, tc.want, tc.name)
	}
	if got, err := f.l.Complaints(ctx, "", 10); err != nil || len(got) != 0 {
		t.Fatalf("refused complaints were stored: %+v, %v", got, err)
	}
}

func testComplaintQuota(t *testing.T, open Opener) {
	cfg := testConfig()
	cfg.ComplaintQuota = 3
	f := newFixture(t, open, cfg)
	ctx := f.ctx
	f.customer("up", 0)
	f.customer("down", 0)
	f.customer("other", 0)
	for i := range 3 {
		if _, err := f.l.FileComplaint(ctx, fmt.Sprint("q", i), complaint("up", "down", 10, 0), t0.Add(time.Duration(i)*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	_, err := f.l.FileComplaint(ctx, "q3", complaint("up", "down", 10, 0), t0.Add(3*time.Hour))
	wantErr(t, err, ledger.ErrForbidden, "over quota")
	// A retry of an accepted complaint is not a new one.
	if _, err := f.l.FileComplaint(ctx, "q0", complaint("up", "down", 10, 0), t0.Add(3*time.Hour)); err != nil {
		t.Fatalf("retry over quota: %v", err)
	}
	// The quota is per complainant, and it is a rolling window.
	if _, err := f.l.FileComplaint(ctx, "q0", complaint("other", "down", 10, 0), t0.Add(3*time.Hour)); err != nil {
		t.Fatalf("another complainant: %v", err)
	}
	if _, err := f.l.FileComplaint(ctx, "q4", complaint("up", "down", 10, 0), t0.Add(ledger.ComplaintWindow+time.Minute)); err != nil {
		t.Fatalf("after the oldest left the window: %v", err)
	}
}

// testComplaintsMoveNoMoney files complaints of every kind (accepted,
// retried, refused) into a ledger with live channels and checks that no
// balance and no audit figure changes: complaints are evidence only.
func testComplaintsMoveNoMoney(t *testing.T, open Opener) {
	store := open(t)
	cfg := testConfig()
	f := &fixture{tb: t, ctx: context.Background(), l: ledger.New(store, cfg), cfg: cfg}
	ctx := f.ctx
	f.customer("up", 0)
	f.customer("down", 10_000)
	expiry := t0.Add(time.Hour)
	ch, chain := f.open("c1", "down", "up", 100, 7, expiry)
	if _, err := f.l.Redeem(ctx, ch.ID, 30, pre(t, chain, 30), t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	accounts := []ledger.AccountID{"up", "down", "fees", ledger.IssuanceAccount, ledger.AccountID("escrow:" + ch.ID)}
	snapshot := func() (map[ledger.AccountID]int64, ledger.AuditSums) {
		bal := map[ledger.AccountID]int64{}
		for _, a := range accounts {
			bal[a] = f.balance(a)
		}
		var sums ledger.AuditSums
		if err := store.View(ctx, func(tx ledger.Tx) error {
			var err error
			sums, err = tx.Audit(ctx)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return bal, sums
	}
	beforeBal, beforeSums := snapshot()

	evidence := fmt.Sprintf(`{"reason":"unpaid","channels":[{"channel":%q,"index":50}]}`, ch.ID)
	for i := range 20 {
		c := complaint("up", "down", 500, 210)
		c.Evidence = []byte(evidence)
		if _, err := f.l.FileComplaint(ctx, fmt.Sprint("m", i%10), c, t0.Add(2*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	_, err := f.l.FileComplaint(ctx, "m0", complaint("up", "down", 1, 0), t0.Add(2*time.Minute))
	wantErr(t, err, ledger.ErrConflict, "conflicting retry")
	_, err = f.l.FileComplaint(ctx, "self", complaint("up", "up", 1, 0), t0.Add(2*time.Minute))
	wantErr(t, err, ledger.ErrInvalid, "self-complaint")

	afterBal, afterSums := snapshot()
	for _, a := range accounts {
		if beforeBal[a] != afterBal[a] {
			t.Errorf("balance of %s moved from %d to %d", a, beforeBal[a], afterBal[a])
		}
	}
	if beforeSums != afterSums {
		t.Errorf("audit figures moved from %+v to %+v", beforeSums, afterSums)
	}
	if got, err := f.l.Complaints(ctx, "down", 100); err != nil || len(got) != 10 {
		t.Fatalf("%d complaints stored (%v), want 10", len(got), err)
	}
	f.conserved(10_000)
	// The channel is untouched: the payee still redeems from where it was.
	if paid, err := f.l.Redeem(ctx, ch.ID, 50, pre(t, chain, 50), t0.Add(3*time.Minute)); err != nil || paid != 20*7-feeOf(20*7, cfg.FeeBasisPoints) {
		t.Fatalf("redeem after complaints: paid %d, %v", paid, err)
	}
	f.conserved(10_000)
}

// testDefaultMaxStep checks the default cap on one redemption's advance,
// DefaultMaxStep, and that a longer advance is refused before any hashing:
// the junk preimage would be ErrBadPreimage had it been hashed.
func testDefaultMaxStep(t *testing.T, open Opener) {
	cfg := testConfig()
	cfg.MaxStep, cfg.MaxChainLength = 0, 0 // the defaults, 2^16 and 2^20
	f := newFixture(t, open, cfg)
	ctx := f.ctx
	f.customer("payer", 1<<20)
	f.customer("payee", 0)
	ch, err := f.l.OpenChannel(ctx, "long", ledger.Channel{
		Payer: "payer", Payee: "payee", Root: [32]byte{1}, Length: 1 << 18, Unit: 1, Expiry: t0.Add(time.Hour),
	}, t0)
	if err != nil {
		t.Fatal(err)
	}
	junk := [32]byte{0xee}
	_, err = f.l.Redeem(ctx, ch.ID, ledger.DefaultMaxStep+1, junk, t0)
	var se *ledger.StepError
	if !errors.As(err, &se) || !errors.Is(err, ledger.ErrInvalid) || se.Max != ledger.DefaultMaxStep || se.Steps != ledger.DefaultMaxStep+1 {
		t.Fatalf("over-long step: %v, want a StepError{%d, %d} that is ErrInvalid", err, ledger.DefaultMaxStep+1, ledger.DefaultMaxStep)
	}
	// Exactly the cap is allowed, so the junk is hashed and found wrong.
	_, err = f.l.Redeem(ctx, ch.ID, ledger.DefaultMaxStep, junk, t0)
	wantErr(t, err, ledger.ErrBadPreimage, "step of exactly DefaultMaxStep")
	f.wantBalance("payee", 0)
	f.conserved(1 << 20)
}

// equalComplaint compares two complaints field by field.
func equalComplaint(a, b ledger.Complaint) bool {
	return a.ID == b.ID && a.Complainant == b.Complainant && a.Accused == b.Accused && a.InfoHash == b.InfoHash &&
		a.Owed == b.Owed && a.Paid == b.Paid && bytes.Equal(a.Evidence, b.Evidence) &&
		bytes.Equal(a.Assessment, b.Assessment) && a.Created.Equal(b.Created)
}
