package ledgertest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/ledger"
)

// testConcurrentRedeem has 50 goroutines redeem one channel at assorted
// indexes at once. Whatever order they commit in, the escrow must release
// exactly max(index)*Unit, split between payee and fees, and the payee's
// receipts must equal what the calls report as paid.
func testConcurrentRedeem(t *testing.T, open Opener) {
	cfg := testConfig()
	f := newFixture(t, open, cfg)
	f.customer("payer", 1_000_000)
	f.customer("payee", 0)
	const unit = 97
	ch, chain := f.open("conc", "payer", "payee", 200, unit, t0.Add(time.Hour))
	rng := rand.New(rand.NewPCG(1, 2))
	indexes := make([]int64, 50)
	pres := make([][32]byte, 50)
	var highest int64
	for i := range indexes {
		indexes[i] = 1 + rng.Int64N(200)
		highest = max(highest, indexes[i])
	}
	for i, idx := range indexes {
		pres[i] = pre(t, chain, idx)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int64
		errs  []error
	)
	for i := range indexes {
		wg.Go(func() {
			paid, err := f.l.Redeem(f.ctx, ch.ID, indexes[i], pres[i], t0)
			mu.Lock()
			defer mu.Unlock()
			total += paid
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent redemptions: %v", err)
	}
	f.wantBalance("payee", total)
	if got := f.balance("payee") + f.balance("fees"); got != highest*unit {
		t.Fatalf("payee+fees received %d, want %d", got, highest*unit)
	}
	f.wantBalance("escrow:"+ledger.AccountID(ch.ID), (200-highest)*unit)
	got, err := f.l.Channel(f.ctx, ch.ID)
	if err != nil || got.Redeemed != highest {
		t.Fatalf("channel after concurrent redemptions: %+v, %v; want Redeemed %d", got, err, highest)
	}
	f.conserved(1_000_000)
}

// testConcurrentOpen has many goroutines open channels from one payer for
// more than it holds: exactly the affordable number may succeed.
func testConcurrentOpen(t *testing.T, open Opener) {
	f := newFixture(t, open, testConfig())
	const cost, affordable, tries = 300, 7, 30
	f.customer("payer", cost*affordable+cost-1)
	f.customer("payee", 0)
	var (
		wg         sync.WaitGroup
		mu         sync.Mutex
		ok, broke  int
		unexpected []error
	)
	for i := range tries {
		wg.Go(func() {
			_, err := f.l.OpenChannel(f.ctx, fmt.Sprintf("o%d", i), ledger.Channel{
				Payer: "payer", Payee: "payee", Root: seed(fmt.Sprint(i)), Length: 3, Unit: cost / 3, Expiry: t0.Add(time.Hour),
			}, t0)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ledger.ErrInsufficientFunds):
				broke++
			default:
				unexpected = append(unexpected, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(unexpected...); err != nil {
		t.Fatalf("concurrent opens: %v", err)
	}
	if ok != affordable || broke != tries-affordable {
		t.Fatalf("%d opens succeeded and %d lacked funds; want %d and %d", ok, broke, affordable, tries-affordable)
	}
	f.wantBalance("payer", cost-1)
	f.conserved(cost*affordable + cost - 1)
}

// testConcurrentIdempotentOpen sends one open with one idempotency key
// from many goroutines at once, as a client retrying over several
// connections might: one channel, one debit, the same answer for all.
func testConcurrentIdempotentOpen(t *testing.T, open Opener) {
	f := newFixture(t, open, testConfig())
	f.customer("payer", 1_000)
	f.customer("payee", 0)
	spec := ledger.Channel{Payer: "payer", Payee: "payee", Root: seed("same"), Length: 10, Unit: 10, Expiry: t0.Add(time.Hour)}
	const n = 20
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ch, err := f.l.OpenChannel(f.ctx, "once", spec, t0)
			ids[i], errs[i] = ch.ID, err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent idempotent opens: %v", err)
	}
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("got channels %s and %s for one idempotency key", ids[0], id)
		}
	}
	f.wantBalance("payer", 900)
	f.conserved(1_000)
}

// testConcurrentLongRedeem races redemptions whose chain walks are long
// enough to be verified outside the transaction, so the anchor often moves
// between the walk and the commit.
func testConcurrentLongRedeem(t *testing.T, open Opener) {
	cfg := testConfig()
	cfg.MaxStep = cfg.MaxChainLength
	f := newFixture(t, open, cfg)
	f.customer("payer", 1_000_000)
	f.customer("payee", 0)
	const length = 10_000
	ch, chain := f.open("long-race", "payer", "payee", length, 3, t0.Add(time.Hour))
	indexes := []int64{4_500, 9_000, 5_000, 10_000, 6_000, 4_200, 9_999, 7_777}
	pres := make([][32]byte, len(indexes))
	for i, idx := range indexes {
		pres[i] = pre(t, chain, idx)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for i := range indexes {
		wg.Go(func() {
			_, err := f.l.Redeem(f.ctx, ch.ID, indexes[i], pres[i], t0)
			// A long redemption may give up under contention with a
			// plain (non-sentinel) error; it must never be a wrong answer.
			if err != nil && (errors.Is(err, ledger.ErrBadPreimage) || errors.Is(err, ledger.ErrInvalid)) {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent long redemptions: %v", err)
	}
	got, err := f.l.Channel(f.ctx, ch.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Redeemed != length {
		// Only possible if the 10 000 redemption gave up; retry it.
		if _, err := f.l.Redeem(f.ctx, ch.ID, length, pre(t, chain, length), t0); err != nil {
			t.Fatal(err)
		}
	}
	if b := f.balance("payee") + f.balance("fees"); b != length*3 {
		t.Fatalf("payee+fees got %d, want %d", b, length*3)
	}
	f.conserved(1_000_000)
}
