package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/floodgate-p2p/floodgate/internal/hashchain"
	"github.com/floodgate-p2p/floodgate/internal/identity"
	"github.com/floodgate-p2p/floodgate/internal/ledger"
)

// openN opens a channel of length n (unit 1) from payer to payee on a
// chain seeded with b.
func (e *env) openN(payer, payee *Client, b byte, n int64) (string, *hashchain.Chain) {
	e.t.Helper()
	ch := chain(b, n)
	resp, err := payer.OpenChannel(context.Background(), NewIdempotencyKey(), OpenRequest{
		Payee: payee.Account(), Root: ch.Root(), Length: n, Unit: 1, Expiry: e.clock.Now().Add(time.Hour)})
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.Channel.ID, ch
}

// TestRedemptions: one request redeems and closes several channels, each
// on its own: a refused channel (someone else's, a forged preimage) keeps
// its money where it was and does not hold back the others, and repeating
// the request moves nothing more.
func TestRedemptions(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	payer, payee, other := e.registered(1, 1000), e.registered(2, 0), e.registered(3, 0)
	a, chA := e.openN(payer, payee, 1, 100) // redeemed to 10 and closed: refund 90
	b, chB := e.openN(payer, payee, 2, 100) // redeemed to 5, left open
	c, _ := e.openN(payer, payee, 3, 100)   // closed without a redemption: refund 100
	d, chD := e.openN(payer, other, 4, 100) // someone else's
	f, _ := e.openN(payer, payee, 5, 100)   // a forged preimage: neither paid nor closed
	if got := e.balance(payer); got != 500 {
		t.Fatalf("payer balance %d after five opens, want 500", got)
	}
	rs := []Redemption{
		{Channel: a, Index: 10, Preimage: pre(t, chA, 10), Close: true},
		{Channel: b, Index: 5, Preimage: pre(t, chB, 5)},
		{Channel: c, Close: true},
		{Channel: d, Index: 7, Preimage: pre(t, chD, 7)},
		{Channel: f, Index: 3, Preimage: identity.Digest{9}, Close: true},
	}
	want := []RedemptionResult{
		{Channel: a, Paid: 10, Redeemed: 10, Closed: true, Refund: 90},
		{Channel: b, Paid: 5, Redeemed: 5},
		{Channel: c, Closed: true, Refund: 100},
		{Channel: d, Error: &Error{Status: http.StatusNotFound, Code: CodeNotFound}},
		{Channel: f, Error: &Error{Status: http.StatusUnprocessableEntity, Code: CodeBadPreimage}},
	}
	check := func(round string, got []RedemptionResult, paid bool) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d results, want %d", round, len(got), len(want))
		}
		for i, w := range want {
			g := got[i]
			if !paid {
				w.Paid = 0 // a repeat pays nothing
			}
			if (g.Error == nil) != (w.Error == nil) || g.Error != nil && (g.Error.Code != w.Error.Code || g.Error.Status != w.Error.Status) {
				t.Fatalf("%s: result %d error %v, want %v", round, i, g.Error, w.Error)
			}
			g.Error, w.Error = nil, nil
			if g != w {
				t.Fatalf("%s: result %d %+v, want %+v", round, i, g, w)
			}
		}
	}
	got, err := payee.Redemptions(ctx, rs)
	if err != nil {
		t.Fatal(err)
	}
	check("first", got, true)
	if p, q := e.balance(payee), e.balance(payer); p != 15 || q != 690 {
		t.Fatalf("balances payee %d payer %d, want 15 and 690", p, q)
	}
	for id, state := range map[string]string{a: ledger.StateClosed, b: ledger.StateOpen, c: ledger.StateClosed, f: ledger.StateOpen} {
		if st, err := payee.Channel(ctx, id); err != nil || st.Channel.State != state {
			t.Fatalf("channel %s: %+v %v, want state %s", id, st.Channel, err, state)
		}
	}
	got, err = payee.Redemptions(ctx, rs)
	if err != nil {
		t.Fatal(err)
	}
	check("repeat", got, false)
	if p, q := e.balance(payee), e.balance(payer); p != 15 || q != 690 {
		t.Fatalf("after the repeat: balances payee %d payer %d, want 15 and 690", p, q)
	}
	// The payer may not redeem its own channels through the batch either.
	got, err = payer.Redemptions(ctx, []Redemption{{Channel: b, Index: 50, Preimage: pre(t, chB, 50)}})
	if err != nil || got[0].Error == nil || got[0].Error.Code != CodeForbidden {
		t.Fatalf("payer redeeming: %+v %v, want forbidden", got, err)
	}
	e.audit(1000)
}

// TestRedemptionsSplitLongSteps: a channel whose redemption is longer than
// the broker's max_step is settled through the single-channel calls, and
// the others of the batch as usual.
func TestRedemptionsSplitLongSteps(t *testing.T) {
	e := newEnvWith(t, func(cfg *ledger.Config) { cfg.MaxChainLength = 1 << 16; cfg.MaxStep = 16 })
	ctx := context.Background()
	payer, payee := e.registered(1, 1000), e.registered(2, 0)
	a, chA := e.openN(payer, payee, 1, 100)
	b, chB := e.openN(payer, payee, 2, 100)
	got, err := payee.Redemptions(ctx, []Redemption{
		{Channel: a, Index: 70, Preimage: pre(t, chA, 70), Close: true},
		{Channel: b, Index: 9, Preimage: pre(t, chB, 9)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if g := got[0]; g.Error != nil || g.Paid != 70 || g.Redeemed != 70 || !g.Closed || g.Refund != 30 {
		t.Fatalf("long redemption: %+v (error %v)", g, g.Error)
	}
	if g := got[1]; g.Error != nil || g.Paid != 9 {
		t.Fatalf("short redemption: %+v (error %v)", g, g.Error)
	}
	if p := e.balance(payee); p != 79 {
		t.Fatalf("payee balance %d, want 79", p)
	}
	e.audit(1000)
}

// TestRedemptionsMoreThanABatch: the client splits a long list into
// requests of MaxRedemptions channels.
func TestRedemptionsMoreThanABatch(t *testing.T) {
	e := newEnv(t)
	payer, payee := e.registered(1, 10000), e.registered(2, 0)
	var rs []Redemption
	for i := range MaxRedemptions + 3 {
		id, ch := e.openN(payer, payee, byte(10+i), 10)
		rs = append(rs, Redemption{Channel: id, Index: 4, Preimage: pre(t, ch, 4), Close: true})
	}
	got, err := payee.Redemptions(context.Background(), rs)
	if err != nil {
		t.Fatal(err)
	}
	for i, g := range got {
		if g.Error != nil || g.Channel != rs[i].Channel || g.Paid != 4 || !g.Closed || g.Refund != 6 {
			t.Fatalf("result %d: %+v (error %v)", i, g, g.Error)
		}
	}
	if len(got) != len(rs) {
		t.Fatalf("%d results for %d channels", len(got), len(rs))
	}
	if p := e.balance(payee); p != int64(4*len(rs)) {
		t.Fatalf("payee balance %d, want %d", p, 4*len(rs))
	}
	e.audit(10000)
}

// TestRedemptionsRefused: malformed batches are refused whole, before any
// channel is touched, and every channel of a batch counts against the
// caller's rate limit.
func TestRedemptionsRefused(t *testing.T) {
	e := newEnv(t)
	payer, payee := e.registered(1, 1000), e.registered(2, 0)
	id, ch := e.openN(payer, payee, 1, 100)
	good := fmt.Sprintf(`{"channel":%q,"index":3,"preimage":"%x"}`, id, pre(t, ch, 3))
	k := key(t, 2)
	for name, body := range map[string]string{
		"empty":          `{"redemptions":[]}`,
		"missing":        `{}`,
		"too many":       `{"redemptions":[` + strings.Repeat(good+",", MaxRedemptions) + good + `]}`,
		"twice":          `{"redemptions":[` + good + "," + good + `]}`,
		"negative":       fmt.Sprintf(`{"redemptions":[{"channel":%q,"index":-1,"close":true}]}`, id),
		"nothing to do":  fmt.Sprintf(`{"redemptions":[{"channel":%q}]}`, id),
		"preimage alone": fmt.Sprintf(`{"redemptions":[{"channel":%q,"preimage":"%x","close":true}]}`, id, pre(t, ch, 3)),
		"bad id":         `{"redemptions":[{"channel":"a/b","close":true}]}`,
		"unknown field":  `{"redemptions":[` + good + `],"more":1}`,
	} {
		t.Run(name, func(t *testing.T) {
			body := []byte(body)
			err := e.send(e.rawRequest(k, http.MethodPost, "/redemptions", "", body, e.clock.Now()), body)
			if err == nil || err.Status != http.StatusBadRequest && err.Status != http.StatusRequestEntityTooLarge {
				t.Fatalf("got %v, want a 400", err)
			}
		})
	}
	if p := e.balance(payee); p != 0 {
		t.Fatalf("refused batches paid %d", p)
	}

	e.srv.limiter = newKeyLimiter(rate.Limit(0.001), 4, 16)
	var rs []Redemption
	for i := range 5 {
		rs = append(rs, Redemption{Channel: fmt.Sprintf("%s%d", id[:len(id)-1], i), Close: true})
	}
	_, err := payee.Redemptions(context.Background(), rs)
	wantCode(t, err, CodeRateLimited)
	e.audit(1000)
}

// TestRedemptionResultJSON: a result's error keeps its code and message on
// the wire, and the client restores the HTTP status it stands for.
func TestRedemptionResultJSON(t *testing.T) {
	in := RedemptionsResponse{Results: []RedemptionResult{{Channel: "c1", Error: &Error{Code: CodeClosed, Message: "closed"}}}}
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"results":[{"channel":"c1","paid":0,"redeemed":0,"error":{"code":"closed","message":"closed"}}]}`; string(data) != want {
		t.Fatalf("%s\nwant %s", data, want)
	}
	if httpStatusOf(CodeClosed) != http.StatusConflict || httpStatusOf("made-up") != http.StatusInternalServerError {
		t.Fatal("httpStatusOf")
	}
}

// TestRedemptionsProviderClosesExpired: the provider may close a
// channel it is no party to once it expired, through the batch as
// through the single call, and may redeem none.
func TestRedemptionsProviderClosesExpired(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	payer, payee := e.registered(1, 1000), e.registered(2, 0)
	a, chA := e.openN(payer, payee, 1, 100)
	prov := e.client(e.provider)
	got, err := prov.Redemptions(ctx, []Redemption{{Channel: a, Index: 5, Preimage: pre(t, chA, 5)}})
	if err != nil || got[0].Error == nil || got[0].Error.Code != CodeForbidden {
		t.Fatalf("provider redeeming: %+v %v, want forbidden", got, err)
	}
	got, err = prov.Redemptions(ctx, []Redemption{{Channel: a, Close: true}})
	if err != nil || got[0].Error == nil || got[0].Error.Code != CodeForbidden {
		t.Fatalf("provider closing before expiry: %+v %v, want forbidden", got, err)
	}
	e.clock.Advance(2*time.Hour + testGrace)
	got, err = prov.Redemptions(ctx, []Redemption{{Channel: a, Close: true}})
	if err != nil || got[0].Error != nil || !got[0].Closed || got[0].Refund != 100 {
		t.Fatalf("provider closing after expiry: %+v %v", got, err)
	}
	if p := e.balance(payer); p != 1000 {
		t.Fatalf("payer balance %d after the close, want 1000", p)
	}
	e.audit(1000)
}
