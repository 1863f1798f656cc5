// Package ledgertest is the test suite every ledger.Store must pass. The
// SQLite and PostgreSQL stores run the same tests, so the money rules are
// proven on both, through the real ledger.Ledger.
package ledgertest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/hashchain"
	"github.com/floodgate-p2p/floodgate/internal/ledger"
)

// Opener returns a fresh, empty, migrated store. It must arrange (with
// tb.Cleanup) for the store to be closed and its data removed.
type Opener func(tb testing.TB) ledger.Store

// t0 is the suite's fixed clock origin; no test reads the wall clock for
// ledger decisions.
var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// testConfig is the ledger configuration the suite uses unless a test
// needs another one.
func testConfig() ledger.Config {
	return ledger.Config{
		ProviderAccount: "provider",
		FeeAccount:      "fees",
		FeeBasisPoints:  250,
		ExpiryGrace:     time.Minute,
		MaxChainLength:  10_000,
		MaxStep:         5_000,
		Now:             func() time.Time { return t0 },
	}
}

// Run runs the whole suite, each test on its own store from open.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(*testing.T, Opener)
	}{
		{"Accounts", testAccounts},
		{"Mint", testMint},
		{"ChannelLifecycle", testChannelLifecycle},
		{"LongRedemption", testLongRedemption},
		{"HostileRedeem", testHostileRedeem},
		{"HostileOpen", testHostileOpen},
		{"Overflow", testOverflow},
		{"Close", testClose},
		{"Settle", testSettle},
		{"Expire", testExpire},
		{"Idempotency", testIdempotency},
		{"ConcurrentRedeem", testConcurrentRedeem},
		{"ConcurrentOpen", testConcurrentOpen},
		{"ConcurrentIdempotentOpen", testConcurrentIdempotentOpen},
		{"ConcurrentLongRedeem", testConcurrentLongRedeem},
		{"ConcurrentSettle", testConcurrentSettle},
		{"CrossingSettle", testCrossingSettle},
		{"Property", testProperty},
		{"Complaints", testComplaints},
		{"HostileComplaints", testHostileComplaints},
		{"ComplaintQuota", testComplaintQuota},
		{"ComplaintsMoveNoMoney", testComplaintsMoveNoMoney},
		{"DefaultMaxStep", testDefaultMaxStep},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
}

// fixture is a ledger over a fresh store with helpers that fail the test
// on unexpected errors.
type fixture struct {
	tb  testing.TB
	ctx context.Context
	l   *ledger.Ledger
	cfg ledger.Config
}

func newFixture(tb testing.TB, open Opener, cfg ledger.Config) *fixture {
	tb.Helper()
	return &fixture{tb: tb, ctx: context.Background(), l: ledger.New(open(tb), cfg), cfg: cfg}
}

// customer creates a customer account, minting amount into it if positive.
func (f *fixture) customer(id ledger.AccountID, amount int64) {
	f.tb.Helper()
	if err := f.l.CreateAccount(f.ctx, id, ledger.KindCustomer, key(string(id))); err != nil {
		f.tb.Fatalf("create %s: %v", id, err)
	}
	if amount > 0 {
		if err := f.l.Mint(f.ctx, "seed-"+string(id), id, amount); err != nil {
			f.tb.Fatalf("mint to %s: %v", id, err)
		}
	}
}

// balance returns an account's balance, treating a missing account as 0
// (the fee account appears on first use).
func (f *fixture) balance(id ledger.AccountID) int64 {
	f.tb.Helper()
	b, err := f.l.Balance(f.ctx, id)
	if errors.Is(err, ledger.ErrNotFound) {
		return 0
	}
	if err != nil {
		f.tb.Fatalf("balance of %s: %v", id, err)
	}
	return b
}

// wantBalance fails the test unless id holds want.
func (f *fixture) wantBalance(id ledger.AccountID, want int64) {
	f.tb.Helper()
	if got := f.balance(id); got != want {
		f.tb.Fatalf("balance of %s = %d, want %d", id, got, want)
	}
}

// conserved audits the ledger and checks that minted equals want.
func (f *fixture) conserved(wantMinted int64) {
	f.tb.Helper()
	minted, sum, err := f.l.Audit(f.ctx)
	if err != nil {
		f.tb.Fatalf("audit: %v", err)
	}
	if minted != wantMinted || sum != wantMinted {
		f.tb.Fatalf("audit: minted %d, balances %d, want both %d", minted, sum, wantMinted)
	}
}

// open opens a channel with a chain derived from name and returns it with
// the chain.
func (f *fixture) open(name string, payer, payee ledger.AccountID, length, unit int64, expiry time.Time) (ledger.Channel, *hashchain.Chain) {
	f.tb.Helper()
	c := hashchain.New(seed(name), length)
	ch, err := f.l.OpenChannel(f.ctx, "open-"+name, ledger.Channel{
		Payer: payer, Payee: payee, Root: c.Root(), Length: length, Unit: unit, Expiry: expiry,
	}, t0)
	if err != nil {
		f.tb.Fatalf("open %s: %v", name, err)
	}
	return ch, c
}

// pre returns element i of c, failing the test on error.
func pre(tb testing.TB, c *hashchain.Chain, i int64) [32]byte {
	tb.Helper()
	w, err := c.Preimage(i)
	if err != nil {
		tb.Fatalf("preimage %d: %v", i, err)
	}
	return w
}

// wantErr fails the test unless err wraps target.
func wantErr(tb testing.TB, err, target error, what string) {
	tb.Helper()
	if !errors.Is(err, target) {
		tb.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

// seed derives a chain seed from a name, so tests are reproducible.
func seed(name string) [hashchain.Size]byte { return sha256.Sum256([]byte("seed:" + name)) }

// key derives a 32-byte stand-in public key from a name.
func key(name string) []byte {
	k := sha256.Sum256([]byte("key:" + name))
	return k[:]
}

// feeOf mirrors the ledger's fee rule for the tests' expectations.
func feeOf(amount, bps int64) int64 {
	if amount > math.MaxInt64/10000 {
		panic(fmt.Sprintf("test amount %d too large for the simple fee model", amount))
	}
	return amount * bps / 10000
}
