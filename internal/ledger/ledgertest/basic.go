package ledgertest

import (
	"bytes"
	"math"
	"testing"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/hashchain"
	"github.com/floodgate-p2p/floodgate/internal/ledger"
)

func testAccounts(t *testing.T, open Opener) {
	f := newFixture(t, open, testConfig())
	ctx := f.ctx
	if err := f.l.CreateAccount(ctx, "alice", ledger.KindCustomer, key("alice")); err != nil {
		t.Fatal(err)
	}
	// The same call again is a no-op.
	if err := f.l.CreateAccount(ctx, "alice", ledger.KindCustomer, key("alice")); err != nil {
		t.Fatalf("repeat create: %v", err)
	}
	wantErr(t, f.l.CreateAccount(ctx, "alice", ledger.KindProvider, key("alice")), ledger.ErrConflict, "same id, other kind")
	wantErr(t, f.l.CreateAccount(ctx, "alice", ledger.KindCustomer, key("other")), ledger.ErrConflict, "same id, other key")
	wantErr(t, f.l.CreateAccount(ctx, "bob", ledger.KindCustomer, key("alice")), ledger.ErrConflict, "key of another account")
	wantErr(t, f.l.CreateAccount(ctx, "issuance", ledger.KindCustomer, nil), ledger.ErrInvalid, "reserved issuance id")
	wantErr(t, f.l.CreateAccount(ctx, "escrow:x", ledger.KindCustomer, nil), ledger.ErrInvalid, "reserved escrow id")
	wantErr(t, f.l.CreateAccount(ctx, "carol", ledger.KindEscrow, nil), ledger.ErrInvalid, "escrow kind")
	wantErr(t, f.l.CreateAccount(ctx, "carol", ledger.KindIssuance, nil), ledger.ErrInvalid, "issuance kind")
	wantErr(t, f.l.CreateAccount(ctx, "carol", "gold", nil), ledger.ErrInvalid, "unknown kind")
	wantErr(t, f.l.CreateAccount(ctx, "carol", ledger.KindCustomer, []byte{1, 2, 3}), ledger.ErrInvalid, "short key")
	wantErr(t, f.l.CreateAccount(ctx, "", ledger.KindCustomer, nil), ledger.ErrInvalid, "empty id")
	wantErr(t, f.l.CreateAccount(ctx, "a b", ledger.KindCustomer, nil), ledger.ErrInvalid, "id with space")
	wantErr(t, f.l.CreateAccount(ctx, "a\xffb", ledger.KindCustomer, nil), ledger.ErrInvalid, "id not UTF-8")
	wantErr(t, f.l.CreateAccount(ctx, ledger.AccountID(bytes.Repeat([]byte("x"), 201)), ledger.KindCustomer, nil), ledger.ErrInvalid, "long id")
	// Accounts without keys do not clash with each other.
	for _, id := range []ledger.AccountID{"provider", "ops"} {
		if err := f.l.CreateAccount(ctx, id, ledger.KindProvider, nil); err != nil {
			t.Fatalf("create keyless %s: %v", id, err)
		}
	}
	id, err := f.l.AccountByKey(ctx, key("alice"))
	if err != nil || id != "alice" {
		t.Fatalf("AccountByKey = %q, %v; want alice", id, err)
	}
	_, err = f.l.AccountByKey(ctx, key("nobody"))
	wantErr(t, err, ledger.ErrNotFound, "unknown key")
	_, err = f.l.AccountByKey(ctx, []byte("short"))
	wantErr(t, err, ledger.ErrInvalid, "malformed key")
	_, err = f.l.Balance(ctx, "nobody")
	wantErr(t, err, ledger.ErrNotFound, "balance of unknown account")
	f.wantBalance("alice", 0)
	f.conserved(0)
}

func testMint(t *testing.T, open Opener) {
	f := newFixture(t, open, testConfig())
	ctx := f.ctx
	f.customer("alice", 0)
	if err := f.l.Mint(ctx, "pay-1", "alice", 500); err != nil {
		t.Fatal(err)
	}
	f.conserved(500)
	// A retry moves nothing more.
	if err := f.l.Mint(ctx, "pay-1", "alice", 500); err != nil {
		t.Fatalf("retry: %v", err)
	}
	f.wantBalance("alice", 500)
	f.wantBalance(ledger.IssuanceAccount, -500)
	wantErr(t, f.l.Mint(ctx, "pay-1", "alice", 501), ledger.ErrConflict, "same key, other amount")
	wantErr(t, f.l.Mint(ctx, "pay-2", "alice", 0), ledger.ErrInvalid, "zero")
	wantErr(t, f.l.Mint(ctx, "pay-2", "alice", -5), ledger.ErrInvalid, "negative")
	wantErr(t, f.l.Mint(ctx, "pay-2", "nobody", 5), ledger.ErrNotFound, "unknown account")
	wantErr(t, f.l.Mint(ctx, "pay-2", ledger.IssuanceAccount, 5), ledger.ErrInvalid, "into issuance")
	wantErr(t, f.l.Mint(ctx, "", "alice", 5), ledger.ErrInvalid, "empty key")
	f.wantBalance("alice", 500)
	f.conserved(500)
}

func testChannelLifecycle(t *testing.T, open Opener) {
	cfg := testConfig()
	f := newFixture(t, open, cfg)
	ctx := f.ctx
	f.customer("payer", 10_000)
	f.customer("payee", 0)
	ch, chain := f.open("c1", "payer", "payee", 100, 40, t0.Add(time.Hour))
	if ch.ID == "" || ch.Redeemed != 0 || ch.Last != ch.Root || ch.State != ledger.StateOpen {
		t.Fatalf("opened channel %+v", ch)
	}
	f.wantBalance("payer", 10_000-4_000)
	f.conserved(10_000)

	// Redeem index 10: 400 units, 2.5 % fee.
	paid, err := f.l.Redeem(ctx, ch.ID, 10, pre(t, chain, 10), t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(400 - feeOf(400, cfg.FeeBasisPoints)); paid != want {
		t.Fatalf("paid %d, want %d", paid, want)
	}
	f.wantBalance("payee", paid)
	f.wantBalance("fees", 400-paid)
	f.conserved(10_000)

	// A replay and a lower index are no-ops, even with junk preimages.
	for _, i := range []int64{10, 3} {
		p, err := f.l.Redeem(ctx, ch.ID, i, [32]byte{}, t0.Add(time.Minute))
		if err != nil || p != 0 {
			t.Fatalf("redeem %d again: paid %d, %v; want 0, nil", i, p, err)
		}
	}
	// Only the increase is paid.
	paid2, err := f.l.Redeem(ctx, ch.ID, 25, pre(t, chain, 25), t0.Add(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(600 - feeOf(600, cfg.FeeBasisPoints)); paid2 != want {
		t.Fatalf("second redemption paid %d, want %d", paid2, want)
	}
	got, err := f.l.Channel(ctx, ch.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Redeemed != 25 || got.Last != pre(t, chain, 25) || !got.Expiry.Equal(ch.Expiry) || got.Root != ch.Root {
		t.Fatalf("channel after redemptions %+v", got)
	}
	f.conserved(10_000)

	// The payee closes: the rest (75 units of 40) returns to the payer.
	refund, err := f.l.Close(ctx, ch.ID, "payee", t0.Add(3*time.Minute))
	if err != nil || refund != 3_000 {
		t.Fatalf("close: refund %d, %v; want 3000", refund, err)
	}
	f.wantBalance("payer", 10_000-4_000+3_000)
	f.wantBalance("payee", paid+paid2)
	f.wantBalance("fees", 1_000-paid-paid2)
	f.wantBalance("escrow:"+ledger.AccountID(ch.ID), 0)
	f.conserved(10_000)
}

// testLongRedemption redeems a long stretch in one go, which the ledger
// verifies outside the transaction.
func testLongRedemption(t *testing.T, open Opener) {
	f := newFixture(t, open, testConfig())
	f.customer("payer", 1_000_000)
	f.customer("payee", 0)
	ch, chain := f.open("long", "payer", "payee", 10_000, 1, t0.Add(time.Hour))
	paid, err := f.l.Redeem(f.ctx, ch.ID, 5_000, pre(t, chain, 5_000), t0)
	if err != nil || paid != 5_000-feeOf(5_000, 250) {
		t.Fatalf("long redemption: paid %d, %v", paid, err)
	}
	_, err = f.l.Redeem(f.ctx, ch.ID, 10_000, pre(t, chain, 9_999), t0)
	wantErr(t, err, ledger.ErrBadPreimage, "long redemption with the wrong preimage")
	paid, err = f.l.Redeem(f.ctx, ch.ID, 10_000, pre(t, chain, 10_000), t0)
	if err != nil || paid != 5_000-feeOf(5_000, 250) {
		t.Fatalf("second long redemption: paid %d, %v", paid, err)
	}
	f.conserved(1_000_000)
}

func testHostileRedeem(t *testing.T, open Opener) {
	f := newFixture(t, open, testConfig())
	ctx := f.ctx
	f.customer("payer", 1_000_000)
	f.customer("payee", 0)
	expiry := t0.Add(time.Hour)
	ch, chain := f.open("h1", "payer", "payee", 8_000, 3, expiry)
	other, otherChain := f.open("h2", "payer", "payee", 10, 3, expiry)
	now := t0.Add(time.Minute)
	cases := []struct {
		name  string
		id    string
		index int64
		pre   [32]byte
		want  error
	}{
		{"preimage of another index", ch.ID, 5, pre(t, chain, 4), ledger.ErrBadPreimage},
		{"preimage of another chain", ch.ID, 5, pre(t, otherChain, 5), ledger.ErrBadPreimage},
		{"zero preimage", ch.ID, 1, [32]byte{}, ledger.ErrBadPreimage},
		{"the root itself", ch.ID, 1, ch.Root, ledger.ErrBadPreimage},
		{"index beyond length", other.ID, 11, pre(t, otherChain, 10), ledger.ErrInvalid},
		{"absurd index", other.ID, math.MaxInt64, [32]byte{}, ledger.ErrInvalid},
		{"step beyond MaxStep", ch.ID, 5_001, pre(t, chain, 5_001), ledger.ErrInvalid},
		{"zero index", ch.ID, 0, [32]byte{}, ledger.ErrInvalid},
		{"negative index", ch.ID, -1, [32]byte{}, ledger.ErrInvalid},
		{"unknown channel", "00ff", 1, [32]byte{}, ledger.ErrNotFound},
		{"malformed channel id", "a b", 1, [32]byte{}, ledger.ErrInvalid},
	}
	for _, c := range cases {
		paid, err := f.l.Redeem(ctx, c.id, c.index, c.pre, now)
		wantErr(t, err, c.want, c.name)
		if paid != 0 {
			t.Fatalf("%s: paid %d", c.name, paid)
		}
	}
	f.wantBalance("payee", 0)
	f.conserved(1_000_000)

	// Within the grace period a late redemption still pays.
	if _, err := f.l.Redeem(ctx, ch.ID, 1, pre(t, chain, 1), expiry.Add(30*time.Second)); err != nil {
		t.Fatalf("redeem in grace: %v", err)
	}
	// After expiry plus grace it does not, even if nobody has closed it.
	_, err := f.l.Redeem(ctx, ch.ID, 2, pre(t, chain, 2), expiry.Add(time.Minute))
	wantErr(t, err, ledger.ErrExpired, "redeem after grace")
	// A closed channel pays nothing more; a replay stays a no-op.
	if _, err := f.l.Close(ctx, other.ID, "payee", now); err != nil {
		t.Fatal(err)
	}
	_, err = f.l.Redeem(ctx, other.ID, 1, pre(t, otherChain, 1), now)
	wantErr(t, err, ledger.ErrClosed, "redeem closed channel")
	paid, err := f.l.Redeem(ctx, ch.ID, 1, pre(t, chain, 1), expiry.Add(time.Hour))
	if err != nil || paid != 0 {
		t.Fatalf("replay after expiry: paid %d, %v; want 0, nil", paid, err)
	}
	f.wantBalance("payee", 3-feeOf(3, 250))
	f.conserved(1_000_000)
}

func testHostileOpen(t *testing.T, open Opener) {
	f := newFixture(t, open, testConfig())
	ctx := f.ctx
	f.customer("payer", 1_000)
	f.customer("payee", 0)
	if err := f.l.CreateAccount(ctx, "fees", ledger.KindFees, nil); err != nil {
		t.Fatal(err)
	}
	root := seed("root")
	ok := ledger.Channel{Payer: "payer", Payee: "payee", Root: root, Length: 10, Unit: 10, Expiry: t0.Add(time.Hour)}
	mod := func(m func(*ledger.Channel)) ledger.Channel { c := ok; m(&c); return c }
	cases := []struct {
		name string
		spec ledger.Channel
		want error
	}{
		{"zero length", mod(func(c *ledger.Channel) { c.Length = 0 }), ledger.ErrInvalid},
		{"negative length", mod(func(c *ledger.Channel) { c.Length = -1 }), ledger.ErrInvalid},
		{"length beyond max", mod(func(c *ledger.Channel) { c.Length = 10_001 }), ledger.ErrInvalid},
		{"zero unit", mod(func(c *ledger.Channel) { c.Unit = 0 }), ledger.ErrInvalid},
		{"negative unit", mod(func(c *ledger.Channel) { c.Unit = -10 }), ledger.ErrInvalid},
		{"overflowing amount", mod(func(c *ledger.Channel) { c.Unit = math.MaxInt64 / 5 }), ledger.ErrOverflow},
		{"expired", mod(func(c *ledger.Channel) { c.Expiry = t0 }), ledger.ErrExpired},
		{"expiry beyond 2262", mod(func(c *ledger.Channel) { c.Expiry = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC) }), ledger.ErrInvalid},
		{"self payment", mod(func(c *ledger.Channel) { c.Payee = "payer" }), ledger.ErrInvalid},
		{"unknown payee", mod(func(c *ledger.Channel) { c.Payee = "nobody" }), ledger.ErrNotFound},
		{"unknown payer", mod(func(c *ledger.Channel) { c.Payer = "nobody" }), ledger.ErrNotFound},
		{"payee is the fee account", mod(func(c *ledger.Channel) { c.Payee = "fees" }), ledger.ErrInvalid},
		{"payer is issuance", mod(func(c *ledger.Channel) { c.Payer = ledger.IssuanceAccount }), ledger.ErrInvalid},
		{"beyond balance", mod(func(c *ledger.Channel) { c.Unit = 101 }), ledger.ErrInsufficientFunds},
	}
	for i, c := range cases {
		_, err := f.l.OpenChannel(ctx, "k"+string(rune('a'+i)), c.spec, t0)
		wantErr(t, err, c.want, c.name)
	}
	_, err := f.l.OpenChannel(ctx, "", ok, t0)
	wantErr(t, err, ledger.ErrInvalid, "empty idempotency key")
	f.wantBalance("payer", 1_000)
	f.conserved(1_000)
	// Exactly the whole balance is fine.
	if _, err := f.l.OpenChannel(ctx, "all", mod(func(c *ledger.Channel) { c.Unit = 100 }), t0); err != nil {
		t.Fatalf("open with the whole balance: %v", err)
	}
	f.wantBalance("payer", 0)
	f.conserved(1_000)
}

func testOverflow(t *testing.T, open Opener) {
	f := newFixture(t, open, testConfig())
	ctx := f.ctx
	f.customer("a", 0)
	f.customer("b", 0)
	if err := f.l.Mint(ctx, "big", "a", math.MaxInt64); err != nil {
		t.Fatalf("mint MaxInt64: %v", err)
	}
	f.conserved(math.MaxInt64)
	// Nothing more can be issued: the total would not fit in an int64.
	wantErr(t, f.l.Mint(ctx, "one-more", "b", 1), ledger.ErrOverflow, "mint beyond MaxInt64 in total")
	f.conserved(math.MaxInt64)
	// A channel of the whole sum works, and paying it all out and refunding
	// keeps every balance in range.
	ch, chain := f.open("huge", "a", "b", 7, math.MaxInt64/7, t0.Add(time.Hour))
	paid, err := f.l.Redeem(ctx, ch.ID, 7, pre(t, chain, 7), t0)
	if err != nil {
		t.Fatal(err)
	}
	// The fee of a near-MaxInt64 amount must be computed without overflow.
	amount := int64(math.MaxInt64/7) * 7
	wantFee := int64(uint64(amount) / 10000 * 250)
	wantFee += int64((uint64(amount) % 10000) * 250 / 10000)
	if paid != amount-wantFee {
		t.Fatalf("paid %d, want %d", paid, amount-wantFee)
	}
	f.conserved(math.MaxInt64)
}

func testClose(t *testing.T, open Opener) {
	f := newFixture(t, open, testConfig())
	ctx := f.ctx
	f.customer("payer", 1_000)
	f.customer("payee", 0)
	f.customer("stranger", 0)
	expiry := t0.Add(time.Hour)
	ch, chain := f.open("c", "payer", "payee", 10, 10, expiry)
	if _, err := f.l.Redeem(ctx, ch.ID, 4, pre(t, chain, 4), t0); err != nil {
		t.Fatal(err)
	}
	_, err := f.l.Close(ctx, ch.ID, "payer", expiry)
	wantErr(t, err, ledger.ErrForbidden, "payer closing before grace ends")
	_, err = f.l.Close(ctx, ch.ID, "stranger", t0)
	wantErr(t, err, ledger.ErrForbidden, "stranger closing")
	_, err = f.l.Close(ctx, "nope", "payee", t0)
	wantErr(t, err, ledger.ErrNotFound, "close unknown channel")
	// After expiry plus grace anyone may close, and a retry reports the
	// same refund without moving money again.
	after := expiry.Add(time.Minute)
	for range 3 {
		refund, err := f.l.Close(ctx, ch.ID, "stranger", after)
		if err != nil || refund != 60 {
			t.Fatalf("close: refund %d, %v; want 60", refund, err)
		}
	}
	f.wantBalance("payer", 1_000-100+60)
	got, err := f.l.Channel(ctx, ch.ID)
	if err != nil || got.State != ledger.StateClosed {
		t.Fatalf("channel after close: %+v, %v", got, err)
	}
	_, err = f.l.Channel(ctx, "nope")
	wantErr(t, err, ledger.ErrNotFound, "unknown channel")
	f.conserved(1_000)
}

func testExpire(t *testing.T, open Opener) {
	f := newFixture(t, open, testConfig())
	ctx := f.ctx
	f.customer("payer", 100_000)
	f.customer("payee", 0)
	var ids []string
	// More than one sweep batch, with staggered expiries.
	for i := range 130 {
		expiry := t0.Add(time.Hour)
		if i >= 110 {
			expiry = t0.Add(2 * time.Hour)
		}
		ch, chain := f.open("e"+string(rune('A'+i%26))+string(rune('a'+i/26)), "payer", "payee", 5, 10, expiry)
		if i%3 == 0 {
			if _, err := f.l.Redeem(ctx, ch.ID, 2, pre(t, chain, 2), t0); err != nil {
				t.Fatal(err)
			}
		}
		ids = append(ids, ch.ID)
	}
	n, err := f.l.ExpireChannels(ctx, t0.Add(time.Hour))
	if err != nil || n != 0 {
		t.Fatalf("sweep within grace: closed %d, %v; want 0", n, err)
	}
	n, err = f.l.ExpireChannels(ctx, t0.Add(time.Hour+time.Minute))
	if err != nil || n != 110 {
		t.Fatalf("first sweep: closed %d, %v; want 110", n, err)
	}
	f.conserved(100_000)
	n, err = f.l.ExpireChannels(ctx, t0.Add(3*time.Hour))
	if err != nil || n != 20 {
		t.Fatalf("second sweep: closed %d, %v; want 20", n, err)
	}
	n, err = f.l.ExpireChannels(ctx, t0.Add(4*time.Hour))
	if err != nil || n != 0 {
		t.Fatalf("third sweep: closed %d, %v; want 0", n, err)
	}
	for _, id := range ids {
		ch, err := f.l.Channel(ctx, id)
		if err != nil || ch.State != ledger.StateClosed {
			t.Fatalf("channel %s after sweeps: %+v, %v", id, ch, err)
		}
	}
	// 44 channels had 2 of 5 units redeemed: 20 each, fee 0 (floor).
	f.wantBalance("payee", 44*20)
	f.wantBalance("payer", 100_000-44*20)
	f.conserved(100_000)
}

func testIdempotency(t *testing.T, open Opener) {
	f := newFixture(t, open, testConfig())
	ctx := f.ctx
	f.customer("p1", 1_000)
	f.customer("p2", 1_000)
	f.customer("payee", 0)
	chain := hashchain.New(seed("x"), 10)
	spec := ledger.Channel{Payer: "p1", Payee: "payee", Root: chain.Root(), Length: 10, Unit: 10, Expiry: t0.Add(time.Hour)}
	a, err := f.l.OpenChannel(ctx, "k", spec, t0)
	if err != nil {
		t.Fatal(err)
	}
	// A retry, even later, returns the same channel and locks nothing more.
	b, err := f.l.OpenChannel(ctx, "k", spec, t0.Add(time.Minute))
	if err != nil || b != a {
		t.Fatalf("retry: %+v, %v; want %+v", b, err, a)
	}
	f.wantBalance("p1", 900)
	// The same key with another body is a conflict.
	other := spec
	other.Unit = 11
	_, err = f.l.OpenChannel(ctx, "k", other, t0)
	wantErr(t, err, ledger.ErrConflict, "same key, other unit")
	other = spec
	other.Expiry = spec.Expiry.Add(time.Nanosecond)
	_, err = f.l.OpenChannel(ctx, "k", other, t0)
	wantErr(t, err, ledger.ErrConflict, "same key, other expiry")
	// Keys are scoped to the payer: p2 may use "k" too.
	other = spec
	other.Payer = "p2"
	c, err := f.l.OpenChannel(ctx, "k", other, t0)
	if err != nil || c.ID == a.ID {
		t.Fatalf("other payer, same key: %+v, %v", c, err)
	}
	f.wantBalance("p2", 900)
	// A retry after redemption returns the channel's current state.
	if _, err := f.l.Redeem(ctx, a.ID, 3, pre(t, chain, 3), t0); err != nil {
		t.Fatal(err)
	}
	d, err := f.l.OpenChannel(ctx, "k", spec, t0.Add(time.Hour))
	if err != nil || d.ID != a.ID || d.Redeemed != 3 {
		t.Fatalf("retry after redemption: %+v, %v", d, err)
	}
	f.wantBalance("p1", 900)
	f.conserved(2_000)
}
