package ledgertest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/hashchain"

	"github.com/floodgate-p2p/floodgate/internal/ledger"
)

// testSettle settles a batch mixing good and refused channels in one
// call: each good one is paid and closed exactly as Redeem and Close
// would, each refused one is left as it was, and repeating the batch moves
// no money.
func testSettle(t *testing.T, open Opener) {
	cfg := testConfig()
	f := newFixture(t, open, cfg)
	f.customer("payer", 1_000_000)
	f.customer("payee", 0)
	f.customer("stranger", 0)
	expiry := t0.Add(time.Hour)
	closeBoth, c1 := f.open("s1", "payer", "payee", 100, 10, expiry)
	redeemOnly, c2 := f.open("s2", "payer", "payee", 100, 10, expiry)
	badPreimage, c3 := f.open("s3", "payer", "payee", 100, 10, expiry)
	closeOnly, _ := f.open("s4", "payer", "payee", 100, 10, expiry)
	payerRedeems, c5 := f.open("s5", "payer", "payee", 100, 10, expiry)
	payerCloses, _ := f.open("s6", "payer", "payee", 100, 10, expiry)
	long, c7 := f.open("s7", "payer", "payee", 10_000, 1, expiry)
	strangerCloses, _ := f.open("s8", "payer", "payee", 100, 10, expiry)
	const minted = 1_000_000
	lockedBefore := f.balance("payer")
	now := t0.Add(time.Minute)
	batch := []ledger.Settlement{
		{Channel: closeBoth.ID, Index: 40, Preimage: pre(t, c1, 40), Close: true},
		{Channel: redeemOnly.ID, Index: 30, Preimage: pre(t, c2, 30)},
		{Channel: badPreimage.ID, Index: 30, Preimage: pre(t, c3, 29), Close: true},
		{Channel: closeOnly.ID, Close: true},
		{Channel: payerRedeems.ID, Index: 10, Preimage: pre(t, c5, 10)},
		{Channel: "00ff", Index: 1, Close: true},
		{Channel: "a b", Close: true},
		{Channel: redeemOnly.ID, Index: -1},
		{Channel: long.ID, Index: 4_500, Preimage: pre(t, c7, 4_500), Close: true},
		{Channel: closeBoth.ID, Index: 40, Preimage: pre(t, c1, 40), Close: true}, // a repeat within the batch
	}
	got, err := f.l.Settle(f.ctx, "payee", batch, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(batch) {
		t.Fatalf("%d results for %d settlements", len(got), len(batch))
	}
	paid := func(units int64) int64 { return units - feeOf(units, cfg.FeeBasisPoints) }
	want := []struct {
		paid, redeemed, refund int64
		closed                 bool
		err                    error
	}{
		{paid(400), 40, 600, true, nil},
		{paid(300), 30, 0, false, nil},
		{0, 0, 0, false, ledger.ErrBadPreimage},
		{0, 0, 1_000, true, nil},
		{paid(100), 10, 0, false, nil}, // the payee may; the payer may not (below)
		{0, 0, 0, false, ledger.ErrNotFound},
		{0, 0, 0, false, ledger.ErrInvalid},
		{0, 0, 0, false, ledger.ErrInvalid},
		{paid(4_500), 4_500, 5_500, true, nil},
		{0, 40, 600, true, nil},
	}
	for i, w := range want {
		g := got[i]
		if w.err != nil {
			wantErr(t, g.Err, w.err, "settlement "+batch[i].Channel)
			if g.Paid != 0 || g.Closed {
				t.Fatalf("refused settlement %d: %+v", i, g)
			}
			continue
		}
		if g.Err != nil || g.Paid != w.paid || g.Redeemed != w.redeemed || g.Refund != w.refund || g.Closed != w.closed {
			t.Fatalf("settlement %d: got %+v, want %+v", i, g, w)
		}
	}
	earned := paid(400) + paid(300) + paid(10*10) + paid(4_500)
	f.wantBalance("payee", earned)
	f.wantBalance("payer", lockedBefore+600+1_000+5_500)
	f.conserved(minted)

	// Only the payee redeems; before expiry only the payee closes.
	got, err = f.l.Settle(f.ctx, "payer", []ledger.Settlement{
		{Channel: payerRedeems.ID, Index: 20, Preimage: pre(t, c5, 20)},
		{Channel: payerCloses.ID, Close: true},
	}, now)
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, got[0].Err, ledger.ErrForbidden, "the payer redeems")
	wantErr(t, got[1].Err, ledger.ErrForbidden, "the payer closes before expiry")
	got, err = f.l.Settle(f.ctx, "stranger", []ledger.Settlement{{Channel: strangerCloses.ID, Close: true}}, now)
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, got[0].Err, ledger.ErrForbidden, "a stranger closes before expiry")
	// After expiry and grace anyone may close, as with Close.
	late := expiry.Add(cfg.ExpiryGrace)
	got, err = f.l.Settle(f.ctx, "stranger", []ledger.Settlement{{Channel: strangerCloses.ID, Close: true}}, late)
	if err != nil || got[0].Err != nil || !got[0].Closed || got[0].Refund != 1_000 {
		t.Fatalf("close after expiry: %+v, %v", got, err)
	}
	f.wantBalance("payee", earned)
	f.conserved(minted)

	// The whole batch again: nothing more moves, and the results agree.
	before := f.balance("payer")
	again, err := f.l.Settle(f.ctx, "payee", batch, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 3, 8} {
		if g := again[i]; g.Err != nil || g.Paid != 0 || !g.Closed || g.Refund != want[i].refund {
			t.Fatalf("repeat of settlement %d: %+v", i, g)
		}
	}
	if g := again[1]; g.Err != nil || g.Paid != 0 || g.Redeemed != 30 {
		t.Fatalf("repeat of the redemption: %+v", g)
	}
	f.wantBalance("payee", earned)
	f.wantBalance("payer", before)
	f.conserved(minted)

	// A long redemption (settled after the transaction) and a close of
	// the same channel in one batch: the close waits for the redemption.
	longToo, c9 := f.open("s9", "payer", "payee", 10_000, 1, expiry)
	got, err = f.l.Settle(f.ctx, "payee", []ledger.Settlement{
		{Channel: longToo.ID, Index: 4_500, Preimage: pre(t, c9, 4_500)},
		{Channel: longToo.ID, Close: true},
	}, now)
	if err != nil || got[0].Err != nil || got[0].Paid != paid(4_500) || got[1].Err != nil || !got[1].Closed || got[1].Refund != 5_500 {
		t.Fatalf("long redemption then close: %+v, %v", got, err)
	}
	earned += paid(4_500)
	f.wantBalance("payee", earned)
	f.conserved(minted)

	// A close after a refused redemption of the same channel in one
	// batch is refused too, in the transaction and outside it.
	for _, index := range []int64{30, 4_600} {
		ch, c := f.open(fmt.Sprintf("refused%d", index), "payer", "payee", 10_000, 1, expiry)
		got, err = f.l.Settle(f.ctx, "payee", []ledger.Settlement{
			{Channel: ch.ID, Index: index, Preimage: pre(t, c, index-1)},
			{Channel: ch.ID, Close: true},
		}, now)
		if err != nil {
			t.Fatal(err)
		}
		wantErr(t, got[0].Err, ledger.ErrBadPreimage, "a bad preimage")
		wantErr(t, got[1].Err, ledger.ErrInvalid, "a close after a refused redemption")
		if ch, err := f.l.Channel(f.ctx, ch.ID); err != nil || ch.State != ledger.StateOpen {
			t.Fatalf("channel after a refused redemption and a close: %+v, %v", ch, err)
		}
	}
	f.wantBalance("payee", earned)
	f.conserved(minted)

	// A redemption refused for expiry leaves the channel open: closing it
	// would hand the payments it carried back to the payer.
	got, err = f.l.Settle(f.ctx, "payee", []ledger.Settlement{{Channel: badPreimage.ID, Index: 30, Preimage: pre(t, c3, 30), Close: true}}, late)
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, got[0].Err, ledger.ErrExpired, "a redemption after expiry")
	if ch, err := f.l.Channel(f.ctx, badPreimage.ID); err != nil || ch.State != ledger.StateOpen || ch.Redeemed != 0 {
		t.Fatalf("refused channel afterwards: %+v, %v", ch, err)
	}
	f.conserved(minted)
}

// testConcurrentSettle runs batches over the same channels, each listing
// them in its own order, at once: none may fail (on PostgreSQL, locking
// the rows in the listed order would deadlock), each channel pays once
// for its highest index, and every batch that closes sees the same refund.
func testConcurrentSettle(t *testing.T, open Opener) {
	cfg := testConfig()
	f := newFixture(t, open, cfg)
	f.customer("payer", 1_000_000)
	f.customer("payee", 0)
	const channels, batches, unit = 8, 12, 7
	type chn struct {
		id    string
		chain *hashchain.Chain
	}
	var chs []chn
	for i := range channels {
		ch, c := f.open(fmt.Sprintf("cs%d", i), "payer", "payee", 100, unit, t0.Add(time.Hour))
		chs = append(chs, chn{ch.ID, c})
	}
	rng := rand.New(rand.NewPCG(3, 4))
	var wg sync.WaitGroup
	results := make([][]ledger.Settled, batches)
	errs := make([]error, batches)
	for b := range batches {
		batch := make([]ledger.Settlement, channels)
		for i, p := range rng.Perm(channels) {
			idx := 1 + rng.Int64N(100)
			batch[i] = ledger.Settlement{Channel: chs[p].id, Index: idx, Preimage: pre(t, chs[p].chain, idx), Close: b == batches-1}
		}
		wg.Go(func() { results[b], errs[b] = f.l.Settle(f.ctx, "payee", batch, t0) })
	}
	wg.Wait()
	for b, err := range errs {
		if err != nil {
			t.Fatalf("batch %d: %v", b, err)
		}
		for _, r := range results[b] {
			if r.Err != nil && !errors.Is(r.Err, ledger.ErrClosed) {
				t.Fatalf("batch %d: %v", b, r.Err)
			}
		}
	}
	// Every unit went to the payee and the fee account or back to the
	// payer once the last batch closed: nothing stays in escrow twice.
	if got := f.balance("payee") + f.balance("fees") + f.balance("payer"); got != 1_000_000 {
		t.Fatalf("payer+payee+fees hold %d of 1000000", got)
	}
	f.conserved(1_000_000)
}

// testCrossingSettle settles at once, on many goroutines, batches of two
// accounts that pay each other (each batch pays one and refunds the
// other), single redemptions and closes, and opens: every call succeeds
// and the money adds up. On PostgreSQL, batches taking their locks in the
// order of their channels deadlocked here against each other and against
// single redemptions (resolved, slowly, by retrying).
func testCrossingSettle(t *testing.T, open Opener) {
	cfg := testConfig()
	store := &retryCounter{Store: open(t)}
	f := &fixture{tb: t, ctx: context.Background(), l: ledger.New(store, cfg), cfg: cfg}
	accts := []ledger.AccountID{"a", "b", "c"}
	for _, a := range accts {
		f.customer(a, 1_000_000)
	}
	// The fee account exists before the race (creating it is a unique-key
	// race the store retries, as designed).
	warm, wc := f.open("warm", "a", "b", 100, 100, t0.Add(time.Hour))
	if _, err := f.l.Redeem(f.ctx, warm.ID, 1, pre(t, wc, 1), t0); err != nil {
		t.Fatal(err)
	}
	store.retries.Store(0)
	type chn struct {
		ch    ledger.Channel
		chain *hashchain.Chain
	}
	const perPair = 4
	var chs []chn
	for i, payer := range accts {
		for j, payee := range accts {
			if i == j {
				continue
			}
			for k := range perPair {
				ch, c := f.open(fmt.Sprintf("x%d%d%d", i, j, k), payer, payee, 100, 3, t0.Add(time.Hour))
				chs = append(chs, chn{ch, c})
			}
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		errs = append(errs, err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for _, payee := range accts {
		var batch []ledger.Settlement
		var singles []chn
		for _, c := range chs {
			if c.ch.Payee != payee {
				continue
			}
			if rng.IntN(3) == 0 {
				singles = append(singles, c)
				continue
			}
			idx := 1 + rng.Int64N(100)
			batch = append(batch, ledger.Settlement{Channel: c.ch.ID, Index: idx, Preimage: pre(t, c.chain, idx), Close: rng.IntN(2) == 0})
		}
		rng.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
		wg.Go(func() {
			res, err := f.l.Settle(f.ctx, payee, batch, t0)
			if err != nil {
				fail(err)
				return
			}
			for _, r := range res {
				if r.Err != nil {
					fail(r.Err)
				}
			}
		})
		for _, c := range singles {
			idx := 1 + rng.Int64N(100)
			wg.Go(func() {
				if _, err := f.l.Redeem(f.ctx, c.ch.ID, idx, pre(t, c.chain, idx), t0); err != nil {
					fail(err)
				}
				if _, err := f.l.Close(f.ctx, c.ch.ID, payee, t0); err != nil {
					fail(err)
				}
			})
		}
	}
	for i, payer := range accts {
		wg.Go(func() {
			if _, err := f.l.OpenChannel(f.ctx, fmt.Sprintf("late%d", i), ledger.Channel{
				Payer: payer, Payee: accts[(i+1)%len(accts)], Root: [32]byte{1}, Length: 10, Unit: 1, Expiry: t0.Add(time.Hour),
			}, t0); err != nil {
				fail(err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	// Retries hide deadlocks (PostgreSQL breaks them after a second, and
	// the store runs the loser again): there must have been none.
	if n := store.retries.Load(); n > 0 {
		t.Fatalf("%d transactions ran again (deadlocks or lock conflicts)", n)
	}
	f.conserved(3_000_000)
}

// retryCounter is a Store that counts the transactions it had to run more
// than once (a deadlock, a serialisation failure or a unique-key race).
type retryCounter struct {
	ledger.Store
	retries atomic.Int64
}

// InTx runs fn through the store, counting the runs after the first.
func (r *retryCounter) InTx(ctx context.Context, fn func(ledger.Tx) error) error {
	runs := 0
	return r.Store.InTx(ctx, func(tx ledger.Tx) error {
		if runs++; runs > 1 {
			r.retries.Add(1)
		}
		return fn(tx)
	})
}
