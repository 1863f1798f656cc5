package broker

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/ledger"
)

const testInfoHash = "0123456789abcdef0123456789abcdef01234567"

// moneySnapshot is every balance a complaint test involves plus the audit.
type moneySnapshot struct {
	balances map[string]int64
	audit    AuditResponse
}

func (e *env) snapshot(clients ...*Client) moneySnapshot {
	e.t.Helper()
	prov := e.client(e.provider)
	s := moneySnapshot{balances: map[string]int64{}}
	for _, c := range append(clients, prov) {
		b, err := prov.Balance(context.Background(), c.Account())
		if err != nil {
			e.t.Fatal(err)
		}
		s.balances[c.Account()] = b
	}
	a, err := prov.Audit(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	s.audit = a
	return s
}

func TestComplaints(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	up, down, third := e.registered(1, 0), e.registered(2, 1000), e.registered(3, 1000)
	prov := e.client(e.provider)
	expiry := e.clock.Now().Add(time.Hour)
	c1 := chain(1, 100)
	ch1, err := down.OpenChannel(ctx, "o1", OpenRequest{Payee: up.Account(), Root: c1.Root(), Length: 100, Unit: 3, Expiry: expiry})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.Redeem(ctx, ch1.Channel.ID, 10, pre(t, c1, 10)); err != nil {
		t.Fatal(err)
	}
	ch2, err := down.OpenChannel(ctx, "o2", OpenRequest{Payee: up.Account(), Root: chain(2, 50).Root(), Length: 50, Unit: 2, Expiry: expiry})
	if err != nil {
		t.Fatal(err)
	}
	// A channel between other parties, which the complainant must not be
	// able to learn anything about.
	foreign, err := third.OpenChannel(ctx, "o3", OpenRequest{Payee: down.Account(), Root: chain(3, 10).Root(), Length: 10, Unit: 1, Expiry: expiry})
	if err != nil {
		t.Fatal(err)
	}
	before := e.snapshot(up, down, third)

	base := ComplaintRequest{Account: down.Account(), InfoHash: testInfoHash, Owed: 100, Paid: 40, Reason: ReasonUnpaid}
	with := func(claims ...ChannelClaim) ComplaintRequest {
		r := base
		r.Channels = claims
		return r
	}
	cases := []struct {
		name    string
		req     ComplaintRequest
		verdict string
		results []string
		value   int64
	}{
		{"confirmed and unredeemed", with(ChannelClaim{ch1.Channel.ID, 10}, ChannelClaim{ch2.Channel.ID, 5}), VerdictConsistent,
			[]string{CheckConfirmed, CheckUnredeemed}, 40},
		{"no channels", with(), VerdictUnverified, []string{}, 0},
		{"claims less than redeemed", with(ChannelClaim{ch1.Channel.ID, 9}), VerdictInconsistent, []string{CheckContradicted}, 27},
		{"beyond the chain", with(ChannelClaim{ch2.Channel.ID, 51}), VerdictInconsistent, []string{CheckContradicted}, 100},
		{"unknown channel", with(ChannelClaim{"00112233445566778899aabbccddeeff", 1}), VerdictInconsistent, []string{CheckNotFound}, 0},
		{"someone else's channel", with(ChannelClaim{foreign.Channel.ID, 1}), VerdictInconsistent, []string{CheckWrongParties}, 0},
		{"channels carried more than paid", with(ChannelClaim{ch1.Channel.ID, 20}), VerdictInconsistent, []string{CheckUnredeemed}, 60},
	}
	var filed []ComplaintRecord
	for i, tc := range cases {
		e.clock.Advance(time.Millisecond) // distinct filing times, for the newest-first order
		var rec ComplaintRecord
		err := up.do(ctx, "complain", http.MethodPost, "/complaints", "c"+string(rune('a'+i)), tc.req, &rec)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if rec.Check.Verdict != tc.verdict || rec.Check.ChannelsValue != tc.value || len(rec.Check.Channels) != len(tc.results) {
			t.Fatalf("%s: check %+v, want verdict %s, value %d", tc.name, rec.Check, tc.verdict, tc.value)
		}
		for j, want := range tc.results {
			cc := rec.Check.Channels[j]
			if cc.Result != want {
				t.Fatalf("%s: channel %d result %s, want %s", tc.name, j, cc.Result, want)
			}
			if want == CheckWrongParties || want == CheckNotFound {
				if cc.Redeemed != 0 || cc.Unit != 0 || cc.State != "" {
					t.Fatalf("%s: leaked channel details %+v", tc.name, cc)
				}
			}
		}
		if (tc.verdict == VerdictInconsistent) != (len(rec.Check.Problems) > 0) {
			t.Fatalf("%s: problems %q with verdict %s", tc.name, rec.Check.Problems, tc.verdict)
		}
		if rec.Complainant != up.Account() || rec.Account != down.Account() || rec.Owed != 100 || rec.Paid != 40 || rec.Reason != ReasonUnpaid || len(rec.ID) != 32 {
			t.Fatalf("%s: record %+v", tc.name, rec)
		}
		filed = append(filed, rec)
	}

	// A retry files nothing new; the same key with another claim conflicts.
	if err := up.Complain(ctx, "ca", cases[0].req); err != nil {
		t.Fatalf("retry: %v", err)
	}
	changed := cases[0].req
	changed.Owed++
	wantCode(t, up.Complain(ctx, "ca", changed), CodeConflict)

	list, err := prov.Complaints(ctx, down.Account())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != len(cases) {
		t.Fatalf("%d complaints listed, want %d", len(list), len(cases))
	}
	for i, rec := range list { // newest first
		want := filed[len(filed)-1-i]
		if rec.ID != want.ID || rec.Check.Verdict != want.Check.Verdict || !rec.Created.Equal(want.Created) || len(rec.Channels) != len(want.Channels) {
			t.Fatalf("listed %+v, want %+v", rec, want)
		}
	}
	if list, err := prov.Complaints(ctx, up.Account()); err != nil || len(list) != 0 {
		t.Fatalf("complaints against up: %+v, %v", list, err)
	}
	if list, err := prov.ComplaintsLimit(ctx, "", 2); err != nil || len(list) != 2 || list[0].ID != filed[len(filed)-1].ID {
		t.Fatalf("all complaints, limit 2: %+v, %v", list, err)
	}

	// Filing complaints moved no money at all.
	after := e.snapshot(up, down, third)
	for acct, b := range before.balances {
		if after.balances[acct] != b {
			t.Errorf("balance of %s moved from %d to %d", acct, b, after.balances[acct])
		}
	}
	if after.audit != before.audit || !after.audit.Conserved {
		t.Errorf("audit moved from %+v to %+v", before.audit, after.audit)
	}
	e.audit(2000)
}

func TestHostileComplaints(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	up, down := e.registered(1, 0), e.registered(2, 100)
	good := ComplaintRequest{Account: down.Account(), InfoHash: testInfoHash, Owed: 10, Paid: 0, Reason: ReasonUnpaid}
	mod := func(fn func(*ComplaintRequest)) ComplaintRequest {
		r := good
		fn(&r)
		return r
	}
	for _, tc := range []struct {
		name string
		c    *Client
		key  string
		req  ComplaintRequest
		code string
	}{
		{"no idempotency key", up, "", good, CodeIdempotencyRequired},
		{"against itself", up, "k", mod(func(r *ComplaintRequest) { r.Account = up.Account() }), CodeInvalid},
		{"unknown accused", up, "k", mod(func(r *ComplaintRequest) { r.Account = strings.Repeat("ab", 20) }), CodeNotFound},
		{"unregistered complainant", e.client(key(t, 9)), "k", good, CodeNotRegistered},
		{"paid in full", up, "k", mod(func(r *ComplaintRequest) { r.Paid = 10 }), CodeInvalid},
		{"unknown reason", up, "k", mod(func(r *ComplaintRequest) { r.Reason = "rude" }), CodeInvalid},
		{"upper-case info hash", up, "k", mod(func(r *ComplaintRequest) { r.InfoHash = strings.ToUpper(testInfoHash) }), CodeInvalid},
		{"too many channels", up, "k", mod(func(r *ComplaintRequest) {
			for i := range MaxComplaintChannels + 1 {
				r.Channels = append(r.Channels, ChannelClaim{Channel: strings.Repeat(string(rune('a'+i)), 32), Index: 1})
			}
		}), CodeInvalid},
		{"channel twice", up, "k", mod(func(r *ComplaintRequest) {
			r.Channels = []ChannelClaim{{"aa", 1}, {"aa", 2}}
		}), CodeInvalid},
	} {
		wantCode(t, tc.c.Complain(ctx, tc.key, tc.req), tc.code)
	}
	// Listing is the provider's.
	_, err := up.Complaints(ctx, down.Account())
	wantCode(t, err, CodeForbidden)
	prov := e.client(e.provider)
	for _, q := range []string{"limit=0", "limit=1001", "limit=x", "account=a%20b", "who=me", "limit=1&limit=2"} {
		var resp ComplaintsResponse
		err := prov.do(ctx, "complaints", http.MethodGet, "/complaints?"+q, "", nil, &resp)
		var ae *Error
		if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
			t.Errorf("query %q: %v, want 400", q, err)
		}
	}
	if list, err := prov.Complaints(ctx, ""); err != nil || len(list) != 0 {
		t.Fatalf("refused complaints were stored: %+v, %v", list, err)
	}
	e.audit(100)
}

// TestRedeemStepTooLong checks the cap on one redemption's advance at the
// provider's default (the ledger's DefaultMaxStep, 2^16): an over-long step
// with a junk preimage is refused as step_too_long, not bad_preimage, which
// shows the broker refused it before hashing; and the client splits an
// honest long redemption into steps the broker accepts.
func TestRedeemStepTooLong(t *testing.T) {
	e := newEnvWith(t, func(*ledger.Config) {}) // MaxStep and MaxChainLength at their defaults
	ctx := context.Background()
	const length = 3*ledger.DefaultMaxStep + 123
	payer, payee := e.registered(1, length), e.registered(2, 0)
	c := chain(7, length)
	open, err := payer.OpenChannel(ctx, "long", OpenRequest{Payee: payee.Account(), Root: c.Root(), Length: length, Unit: 1, Expiry: e.clock.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	id := open.Channel.ID
	_, err = payee.redeemOnce(ctx, id, ledger.DefaultMaxStep+1, [32]byte{0xee})
	var ae *Error
	if !errors.As(err, &ae) || ae.Code != CodeStepTooLong || ae.MaxStep != ledger.DefaultMaxStep || !errors.Is(err, ledger.ErrInvalid) {
		t.Fatalf("over-long junk step: %v, want %s with max_step %d", err, CodeStepTooLong, ledger.DefaultMaxStep)
	}
	_, err = payee.redeemOnce(ctx, id, ledger.DefaultMaxStep, [32]byte{0xee})
	wantCode(t, err, CodeBadPreimage) // exactly the cap is verified

	// An honest payee redeeming everything at once gets paid in full.
	r, err := payee.Redeem(ctx, id, length-100, pre(t, c, length-100))
	if err != nil || r.Paid != length-100 || r.Redeemed != length-100 {
		t.Fatalf("long redeem: %+v, %v", r, err)
	}
	if r, err = payee.Redeem(ctx, id, length, pre(t, c, length)); err != nil || r.Paid != 100 {
		t.Fatalf("final redeem: %+v, %v", r, err)
	}
	if got := e.balance(payee); got != length {
		t.Fatalf("payee holds %d, want %d", got, length)
	}
	e.audit(length)
}

// TestRedeemInStepsSmallCap exercises the splitting with a small MaxStep,
// from a channel that is already partly redeemed, and a wrong preimage.
func TestRedeemInStepsSmallCap(t *testing.T) {
	e := newEnvWith(t, func(cfg *ledger.Config) { cfg.MaxStep = 100 })
	ctx := context.Background()
	payer, payee := e.registered(1, 10_000), e.registered(2, 0)
	c := chain(8, 1000)
	open, err := payer.OpenChannel(ctx, "o", OpenRequest{Payee: payee.Account(), Root: c.Root(), Length: 1000, Unit: 3, Expiry: e.clock.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	id := open.Channel.ID
	if _, err := payee.Redeem(ctx, id, 37, pre(t, c, 37)); err != nil {
		t.Fatal(err)
	}
	// A preimage from another chain fails at the first step and pays
	// nothing.
	r, err := payee.Redeem(ctx, id, 900, pre(t, chain(9, 1000), 900))
	wantCode(t, err, CodeBadPreimage)
	if r.Paid != 0 {
		t.Fatalf("bad preimage paid %d", r.Paid)
	}
	r, err = payee.Redeem(ctx, id, 900, pre(t, c, 900))
	if err != nil || r.Paid != 3*(900-37) || r.Redeemed != 900 {
		t.Fatalf("split redeem: %+v, %v", r, err)
	}
	st, err := payee.Channel(ctx, id)
	if err != nil || st.Channel.Redeemed != 900 {
		t.Fatalf("channel after split redeem: %+v, %v", st.Channel, err)
	}
	e.audit(10_000)
}

// TestExpirerAfterGrace runs the expirer the provider runs and checks that
// a partly redeemed channel stays open through its grace period and then
// returns exactly its unredeemed rest to the payer.
func TestExpirerAfterGrace(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	counting := &countingLedger{Ledger: e.srv.cfg.Ledger, sweeps: make(chan struct{})}
	e.srv.cfg.Ledger = counting
	payer, payee := e.registered(1, 1000), e.registered(2, 0)
	c := chain(1, 100)
	open, err := payer.OpenChannel(ctx, "o", OpenRequest{Payee: payee.Account(), Root: c.Root(), Length: 100, Unit: 5, Expiry: e.clock.Now().Add(2 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := payee.Redeem(ctx, open.Channel.ID, 30, pre(t, c, 30)); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.srv.RunExpirer(runCtx, time.Millisecond) }()
	defer func() {
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("RunExpirer returned %v", err)
		}
	}()
	// waitSweeps waits until the expirer has swept twice more, so at least
	// one whole sweep ran at the current clock.
	waitSweeps := func() {
		for range 2 {
			select {
			case <-counting.sweeps:
			case <-time.After(10 * time.Second):
				t.Fatal("the expirer stopped sweeping")
			}
		}
	}
	state := func() string {
		st, err := e.srv.cfg.Ledger.Channel(ctx, open.Channel.ID)
		if err != nil {
			t.Fatal(err)
		}
		return st.State
	}
	// Expired, but within the grace period: the payee may still redeem,
	// so the money stays locked.
	e.clock.Advance(2*time.Minute + testGrace - time.Second)
	waitSweeps()
	if s := state(); s != ledger.StateOpen {
		t.Fatalf("channel %s within grace", s)
	}
	if got := e.balance(payer); got != 500 {
		t.Fatalf("payer holds %d within grace, want 500", got)
	}
	e.clock.Advance(2 * time.Second)
	waitSweeps()
	if s := state(); s != ledger.StateClosed {
		t.Fatalf("channel %s after grace", s)
	}
	if got := e.balance(payer); got != 1000-30*5 {
		t.Fatalf("payer holds %d after expiry, want %d", got, 1000-30*5)
	}
	if got := e.balance(payee); got != 30*5 {
		t.Fatalf("payee holds %d, want %d", got, 30*5)
	}
	e.audit(1000)
}

// countingLedger signals every completed expiry sweep.
type countingLedger struct {
	Ledger
	sweeps chan struct{}
}

func (l *countingLedger) ExpireChannels(ctx context.Context, now time.Time) (int, error) {
	n, err := l.Ledger.ExpireChannels(ctx, now)
	select {
	case l.sweeps <- struct{}{}:
	case <-ctx.Done():
	}
	return n, err
}
