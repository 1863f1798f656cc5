package credit

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"
)

// The numbers every scenario below uses: a class priced at 30 units per
// MiB, 16 KiB blocks (worth 0.46875 units each) and 256 KiB pieces of 16
// blocks (7.5 units).
const (
	price     = 30
	block     = 16 << 10
	piece     = 256 << 10
	perPiece  = piece / block
	blockFrac = block * price // value of one block in 2^-20 units
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// testConfig: a new account may run up about two pieces, a trusted one 34
// pieces; the uploader risks at most 1024 units in all, 256 of them with
// accounts that never paid.
func testConfig() Config {
	return Config{
		InitialWindow:    16,
		MaxWindow:        256,
		MaxExposure:      1024,
		MaxFreshExposure: 256,
		GraceBytes:       4 * block,
		MaxResends:       3,
	}
}

func newBook(t testing.TB, cfg Config) *Book {
	t.Helper()
	b, err := NewBook(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func serve(t testing.TB, b *Book, acct string, n int, now time.Time) {
	t.Helper()
	for range n {
		if err := b.Served(acct, block, price, now); err != nil {
			t.Fatal(err)
		}
	}
}

func pay(t testing.TB, b *Book, acct string, units int64, now time.Time) {
	t.Helper()
	if err := b.Paid(acct, units, now); err != nil {
		t.Fatal(err)
	}
}

// grab serves account every block the book allows and returns how many,
// and the decision that stopped it.
func grab(t testing.TB, b *Book, acct string, now time.Time) (int, Decision) {
	t.Helper()
	for n := 0; ; n++ {
		if d := b.MayServe(acct, block, price, now); d != Serve {
			return n, d
		}
		serve(t, b, acct, 1, now)
	}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
	}{
		{"zero initial window", func(c *Config) { c.InitialWindow = 0 }},
		{"max window below initial", func(c *Config) { c.MaxWindow = 15 }},
		{"exposure below initial window", func(c *Config) { c.MaxExposure = 15 }},
		{"fresh exposure above exposure", func(c *Config) { c.MaxFreshExposure = 1025 }},
		{"negative fresh exposure", func(c *Config) { c.MaxFreshExposure = -1 }},
		{"negative grace", func(c *Config) { c.GraceBytes = -1 }},
		{"negative timeout", func(c *Config) { c.PaymentTimeout = -time.Second }},
		{"negative resends", func(c *Config) { c.MaxResends = -1 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			tc.change(&cfg)
			if _, err := NewBook(cfg); !errors.Is(err, ErrConfig) {
				t.Fatalf("NewBook accepted %+v: %v", cfg, err)
			}
			if _, err := Restore(cfg, []byte(`{"version":1,"accounts":[]}`), t0); !errors.Is(err, ErrConfig) {
				t.Fatalf("Restore accepted %+v: %v", cfg, err)
			}
		})
	}
	cfg := testConfig()
	cfg.MaxFreshExposure = 0
	b := newBook(t, cfg)
	if b.cfg.MaxFreshExposure != 512 {
		t.Fatalf("default MaxFreshExposure %d, want MaxExposure/2 = 512", b.cfg.MaxFreshExposure)
	}
}

func TestWindowGrowsWithWhatWasPaid(t *testing.T) {
	// window = min(MaxWindow, max(InitialWindow, 2 × paid)).
	tests := []struct{ paid, window int64 }{
		{0, 16}, {1, 16}, {8, 16}, {9, 18}, {50, 100}, {127, 254}, {128, 256},
		{10_000, 256}, {math.MaxInt64/2 + 1, 256}, {math.MaxInt64, 256},
	}
	cfg := testConfig()
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.paid), func(t *testing.T) {
			b := newBook(t, cfg)
			pay(t, b, "peer", tc.paid, t0)
			if got := b.Status("peer").Window; got != tc.window {
				t.Fatalf("paid %d: window %d, want %d", tc.paid, got, tc.window)
			}
		})
	}
}

func TestMayServe(t *testing.T) {
	cfg := testConfig()
	timed := cfg
	timed.PaymentTimeout = time.Minute
	tests := []struct {
		name  string
		cfg   Config
		setup func(t *testing.T, b *Book)
		acct  string
		empty bool  // ask for a zero-byte block
		free  bool  // ask at price 0
		price int64 // the price when not free; 0 means the usual 30
		now   time.Time
		want  Decision
	}{
		{name: "a new account gets its first block", acct: "new", want: Serve},
		{name: "whatever the price", acct: "new", price: 1 << 40, want: Serve},
		{name: "an empty account name is refused", acct: "", want: Refuse},
		{name: "an oversized account name is refused", acct: string(make([]byte, MaxAccountLen+1)), want: Refuse},
		{name: "an empty block is refused", acct: "new", empty: true, want: Refuse},
		{name: "a negative price is refused", acct: "new", price: -1, want: Refuse},
		{
			name:  "risk one unit below the window is served",
			setup: func(t *testing.T, b *Book) { serve(t, b, "a", 32, t0) }, // exactly 15 units
			acct:  "a", want: Serve,
		},
		{
			name:  "risk at the window waits",
			setup: func(t *testing.T, b *Book) { serve(t, b, "a", 33, t0) }, // 15.47 units, 16 at risk
			acct:  "a", want: Wait,
		},
		{
			name: "paying reopens the window",
			setup: func(t *testing.T, b *Book) {
				serve(t, b, "a", 33, t0)
				pay(t, b, "a", 1, t0)
			},
			acct: "a", want: Serve,
		},
		{
			name:  "free service needs no credit",
			setup: func(t *testing.T, b *Book) { serve(t, b, "a", 1000, t0) },
			acct:  "a", free: true, want: Serve,
		},
		{
			name:  "a blocked account is refused, even free service",
			setup: func(t *testing.T, b *Book) { _ = b.Block("a") },
			acct:  "a", free: true, want: Refuse,
		},
		{
			name: "a full exposure cap makes everybody wait",
			setup: func(t *testing.T, b *Book) {
				for i := range 64 { // 64 trusted accounts, 16 units at risk each
					acct := fmt.Sprint("trusted", i)
					pay(t, b, acct, 100, t0)
					serve(t, b, acct, 248, t0) // 116.25 units: 17 at risk
				}
			},
			acct: "trusted0", want: Wait,
		},
		{
			name: "a full fresh cap makes fresh accounts wait",
			setup: func(t *testing.T, b *Book) {
				for i := range 16 {
					serve(t, b, fmt.Sprint("fresh", i), 34, t0) // 16 at risk each
				}
			},
			acct: "fresh-17", want: Wait,
		},
		{
			name: "but not accounts that have paid",
			setup: func(t *testing.T, b *Book) {
				for i := range 16 {
					serve(t, b, fmt.Sprint("fresh", i), 34, t0)
				}
				pay(t, b, "trusted", 1, t0)
			},
			acct: "trusted", want: Serve,
		},
		{
			name: "with a payment timeout, overdue debt is refused",
			cfg:  timed,
			setup: func(t *testing.T, b *Book) {
				serve(t, b, "a", 10, t0) // 4.7 units, above the 1.875-unit grace
			},
			acct: "a", now: t0.Add(time.Minute), want: Refuse,
		},
		{
			name:  "but not a moment before",
			cfg:   timed,
			setup: func(t *testing.T, b *Book) { serve(t, b, "a", 10, t0) },
			acct:  "a", now: t0.Add(time.Minute - 1), want: Serve,
		},
		{
			name:  "nor a debt within the grace",
			cfg:   timed,
			setup: func(t *testing.T, b *Book) { serve(t, b, "a", 4, t0) }, // 1.875 units
			acct:  "a", now: t0.Add(time.Hour), want: Serve,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cfg
			if c == (Config{}) {
				c = cfg
			}
			b := newBook(t, c)
			if tc.setup != nil {
				tc.setup(t, b)
			}
			bytes, p, now := int64(block), int64(price), tc.now
			if tc.empty {
				bytes = 0
			}
			if tc.price != 0 {
				p = tc.price
			}
			if tc.free {
				p = 0
			}
			if now.IsZero() {
				now = t0
			}
			if got := b.MayServe(tc.acct, bytes, p, now); got != tc.want {
				t.Fatalf("MayServe = %v, want %v (status %+v, exposure %d)", got, tc.want, b.Status(tc.acct), b.Exposure())
			}
			// Refuses answers for the account, whatever the block: as
			// MayServe does but for a bad block or price.
			if !tc.empty && p >= 0 {
				if got := b.Refuses(tc.acct, now); got != (tc.want == Refuse) {
					t.Fatalf("Refuses = %v where MayServe says %v", got, tc.want)
				}
			}
		})
	}
}

// TestHonestPipelinedPeerNeverWaitsOnceWarm drives a Book and a Tab the way
// the engine will: the uploader sends blocks in order; the downloader
// verifies each piece when its last block arrives and pays what its Tab
// says is due; that payment reaches the uploader only `lag` blocks later
// (the pipeline of requests in flight plus the round trip). When the book
// says Wait the uploader idles until the next payment lands.
//
// The claim: with 256 KiB pieces at 30 units/MiB and a pipeline of up to
// N = 256 blocks (4 MiB) in flight, an honest peer waits only while it pays
// for its first pieces, never afterwards, and never owes more than its
// window. In general it never waits once warm while
// (N + blocks per piece) × block value < MaxWindow.
func TestHonestPipelinedPeerNeverWaitsOnceWarm(t *testing.T) {
	tests := []struct {
		lag        int // N: blocks sent between a piece's last block and its payment
		warmPieces int // pieces after which the peer must never wait again
		// beyondMax marks a pipeline deeper than MaxWindow allows: the peer
		// keeps waiting now and then (its throughput is capped by credit),
		// but is never stalled for good.
		beyondMax bool
	}{
		{lag: 0, warmPieces: 0},
		{lag: 16, warmPieces: 3},
		{lag: 64, warmPieces: 6},
		{lag: 256, warmPieces: 24},
		{lag: 1024, beyondMax: true},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("pipeline %d blocks", tc.lag), func(t *testing.T) {
			b := newBook(t, testConfig())
			tab := NewTab()
			type payment struct {
				at    int // block count at which it lands
				units int64
			}
			var pending []payment
			sent, lastWaitPiece, waits := 0, -1, 0
			now := t0
			const pieces = 400
			for sent < pieces*perPiece {
				for len(pending) > 0 && pending[0].at <= sent {
					pay(t, b, "d", pending[0].units, now)
					pending = pending[1:]
				}
				switch d := b.MayServe("d", block, price, now); d {
				case Serve:
				case Wait:
					if len(pending) == 0 {
						t.Fatalf("honest peer stalled for good after %d blocks: %+v", sent, b.Status("d"))
					}
					waits++
					lastWaitPiece = sent / perPiece
					now = now.Add(time.Millisecond)
					pay(t, b, "d", pending[0].units, now)
					pending = pending[1:]
					continue
				default:
					t.Fatalf("honest peer refused after %d blocks", sent)
				}
				if s := b.Status("d"); s.AtRisk >= s.Window {
					t.Fatalf("served with %d at risk, window %d", s.AtRisk, s.Window)
				}
				serve(t, b, "d", 1, now)
				sent++
				if sent%perPiece == 0 {
					if err := tab.Received("d", piece, price); err != nil {
						t.Fatal(err)
					}
					due := tab.Due("d")
					if err := tab.Paid("d", due); err != nil {
						t.Fatal(err)
					}
					pending = append(pending, payment{at: sent + tc.lag, units: due})
				}
			}
			if tc.beyondMax {
				if lastWaitPiece < pieces-10 {
					t.Fatalf("a pipeline beyond MaxWindow stopped waiting at piece %d", lastWaitPiece)
				}
			} else if lastWaitPiece >= tc.warmPieces {
				t.Fatalf("waited %d times, last in piece %d; want none from piece %d on", waits, lastWaitPiece, tc.warmPieces)
			}
			t.Logf("pipeline %d: %d waits, last in piece %d", tc.lag, waits, lastWaitPiece)
			for _, p := range pending {
				pay(t, b, "d", p.units, now)
			}
			s := b.Status("d")
			if s.Owed != tab.Owed("d") || s.Paid != tab.PaidTo("d") || s.Unpaid != 0 {
				t.Fatalf("book %+v and tab (owed %d, paid %d) disagree", s, tab.Owed("d"), tab.PaidTo("d"))
			}
			if want := int64(pieces * piece * price / MiB); s.Owed != want {
				t.Fatalf("owed %d, want %d", s.Owed, want)
			}
		})
	}
}

func TestNonPayer(t *testing.T) {
	cfg := testConfig()
	b := newBook(t, cfg)

	// Served at most InitialWindow of value, plus one block.
	n, d := grab(t, b, "leech", t0)
	if d != Wait {
		t.Fatalf("stopped with %v, want Wait", d)
	}
	if value := int64(n) * blockFrac; value > cfg.InitialWindow*MiB+blockFrac {
		t.Fatalf("non-payer got %d blocks, worth %d/2^20 units, beyond the window of %d plus a block", n, value, cfg.InitialWindow)
	}
	if n != 33 { // 32 blocks are exactly 15 units; the 33rd makes 16 at risk
		t.Fatalf("non-payer got %d blocks, want 33", n)
	}

	// Overdue exactly `after` past the debt's start.
	const after = 2 * time.Minute
	if got := b.Overdue(t0.Add(after-1), after); len(got) != 0 {
		t.Fatalf("overdue too early: %v", got)
	}
	if got := b.Overdue(t0.Add(after), after); !slices.Equal(got, []string{"leech"}) {
		t.Fatalf("Overdue = %v, want [leech]", got)
	}
	if s := b.Status("leech"); !s.OverdueSince.Equal(t0) || s.Unpaid != 15 || s.AtRisk != 16 {
		t.Fatalf("status %+v", s)
	}

	// Reconnecting is asking again under the same account: still Wait.
	if d := b.MayServe("leech", block, price, t0.Add(time.Hour)); d != Wait {
		t.Fatalf("after reconnect: %v, want Wait", d)
	}

	// A restart keeps the debt; only the overdue clock restarts.
	data, err := b.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	restart := t0.Add(time.Hour)
	b2, err := Restore(cfg, data, restart)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := b2.Status("leech"), b.Status("leech"); got.Owed != want.Owed || got.AtRisk != want.AtRisk || got.ServedBytes != want.ServedBytes {
		t.Fatalf("restored %+v, was %+v", got, want)
	}
	if d := b2.MayServe("leech", block, price, restart); d != Wait {
		t.Fatalf("after restart: %v, want Wait", d)
	}
	if b2.Exposure() != b.Exposure() {
		t.Fatalf("exposure %d after restart, was %d", b2.Exposure(), b.Exposure())
	}
	if got := b2.Overdue(restart.Add(after), after); !slices.Equal(got, []string{"leech"}) {
		t.Fatalf("after restart Overdue = %v, want [leech]", got)
	}

	// Blocking refuses it and moves its debt from exposure to loss.
	if err := b2.Block("leech"); err != nil {
		t.Fatal(err)
	}
	if d := b2.MayServe("leech", block, price, restart); d != Refuse {
		t.Fatalf("blocked: %v, want Refuse", d)
	}
	if b2.Exposure() != 0 || b2.Lost() != 16 {
		t.Fatalf("exposure %d, lost %d; want 0, 16", b2.Exposure(), b2.Lost())
	}
	if got := b2.Overdue(restart.Add(after), after); len(got) != 0 {
		t.Fatalf("blocked accounts are reported once: %v", got)
	}
	// The block survives a restart too.
	data, err = b2.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	b3, err := Restore(cfg, data, restart)
	if err != nil {
		t.Fatal(err)
	}
	if d := b3.MayServe("leech", block, price, restart); d != Refuse || b3.Lost() != 16 {
		t.Fatalf("blocked account after restart: %v, lost %d", d, b3.Lost())
	}
	// Paying up and being unblocked restores service.
	pay(t, b3, "leech", 16, restart)
	b3.Unblock("leech")
	if d := b3.MayServe("leech", block, price, restart); d != Serve {
		t.Fatalf("paid up and unblocked: %v, want Serve", d)
	}
}

func TestFreshIdentityChurn(t *testing.T) {
	// 1000 fresh accounts, each taking all it can, get together at most
	// MaxFreshExposure of value plus one block (the pre-block test lets one
	// block through once per cap, not once per account), and an account
	// with a payment history is still served afterwards.
	cfg := testConfig()
	b := newBook(t, cfg)
	pay(t, b, "regular", 10, t0)
	var total int64
	for i := range 1000 {
		n, _ := grab(t, b, fmt.Sprintf("sybil-%04d", i), t0)
		total += int64(n)
	}
	value := total * blockFrac
	if value > cfg.MaxFreshExposure*MiB+blockFrac {
		t.Fatalf("churners got %d blocks worth %.2f units; cap %d + one block", total, float64(value)/MiB, cfg.MaxFreshExposure)
	}
	if value < (cfg.MaxFreshExposure-cfg.InitialWindow)*MiB {
		t.Fatalf("churners got only %.2f units; the cap should be nearly used", float64(value)/MiB)
	}
	if b.Exposure() > cfg.MaxFreshExposure+1 {
		t.Fatalf("exposure %d", b.Exposure())
	}
	if d := b.MayServe("regular", block, price, t0); d != Serve {
		t.Fatalf("an established account: %v, want Serve", d)
	}

	// Blocking the churners (after their complaints) frees the cap for
	// newcomers, at the price of a further MaxFreshExposure per cycle.
	for _, a := range b.Overdue(t0.Add(time.Hour), time.Hour) {
		if err := b.Block(a); err != nil {
			t.Fatal(err)
		}
	}
	if d := b.MayServe("newcomer", block, price, t0); d != Serve {
		t.Fatalf("newcomer after the churners were blocked: %v", d)
	}
	if b.Lost() < cfg.MaxFreshExposure-cfg.InitialWindow {
		t.Fatalf("lost %d", b.Lost())
	}
}

func TestSlowPayerIsServedAsItPays(t *testing.T) {
	// A peer that pays one unit for every four blocks (1.875 units) never
	// gets more than its window ahead of its payments.
	cfg := testConfig()
	b := newBook(t, cfg)
	now := t0
	var blocks int64
	for round := range 2000 {
		n, d := grab(t, b, "slow", now)
		if d != Wait && n == 0 {
			t.Fatalf("round %d: %v", round, d)
		}
		blocks += int64(n)
		s := b.Status("slow")
		if s.AtRisk > s.Window {
			t.Fatalf("round %d: %d at risk, window %d", round, s.AtRisk, s.Window)
		}
		if value, bound := blocks*blockFrac, (s.Paid+s.Window)*MiB+blockFrac; value > bound {
			t.Fatalf("round %d: served %d/2^20 units, paid %d, window %d", round, value, s.Paid, s.Window)
		}
		now = now.Add(time.Second)
		pay(t, b, "slow", 1, now)
		if got := b.Overdue(now, time.Second); len(got) != 0 {
			t.Fatalf("a peer that keeps paying is not overdue: %v", got)
		}
	}
	// Its window grew to the cap with its payments.
	if s := b.Status("slow"); s.Window != cfg.MaxWindow {
		t.Fatalf("window %d, want %d", s.Window, cfg.MaxWindow)
	}
}

func TestResendForgivenessIsBounded(t *testing.T) {
	cfg := testConfig()
	b := newBook(t, cfg)
	serve(t, b, "d", 2*perPiece, t0) // two pieces: 15 units
	for i := range cfg.MaxResends {
		// The piece failed its hash: write it off, send it again.
		if !b.Forgive("d", piece, price) {
			t.Fatalf("resend %d refused", i+1)
		}
		serve(t, b, "d", perPiece, t0)
	}
	if b.Forgive("d", piece, price) {
		t.Fatalf("resend %d allowed, limit %d", cfg.MaxResends+1, cfg.MaxResends)
	}
	s := b.Status("d")
	if s.Owed != 15 || s.ServedBytes != 2*piece || s.Resends != cfg.MaxResends {
		t.Fatalf("after %d forgiven resends: %+v; want two pieces owed once", cfg.MaxResends, s)
	}
	// Forgiveness never removes more than was served, nor names strangers.
	b2 := newBook(t, cfg)
	serve(t, b2, "d", 1, t0)
	if !b2.Forgive("d", 1<<40, price) || b2.Status("d").Owed != 0 || b2.Exposure() != 0 {
		t.Fatalf("forgiving more than served: %+v", b2.Status("d"))
	}
	for _, tc := range []struct {
		acct         string
		bytes, price int64
	}{{"stranger", piece, price}, {"", piece, price}, {"d", 0, price}, {"d", piece, -1}} {
		if b2.Forgive(tc.acct, tc.bytes, tc.price) {
			t.Fatalf("Forgive(%q, %d, %d) allowed", tc.acct, tc.bytes, tc.price)
		}
	}
	// Forgiveness is not payment: the overdue clock keeps running.
	b3 := newBook(t, cfg)
	serve(t, b3, "d", 3*perPiece, t0)
	b3.Forgive("d", piece, price)
	if got := b3.Overdue(t0.Add(time.Minute), time.Minute); !slices.Equal(got, []string{"d"}) {
		t.Fatalf("Overdue = %v", got)
	}
}

func TestOverdueClock(t *testing.T) {
	// The clock starts when the debt exceeds the grace and restarts on
	// every payment that shrinks it.
	cfg := testConfig()
	b := newBook(t, cfg)
	serve(t, b, "d", 4, t0) // 1.875 units: 1 due, within the 1-unit grace
	if s := b.Status("d"); !s.OverdueSince.IsZero() {
		t.Fatalf("within grace: %+v", s)
	}
	t1 := t0.Add(time.Hour)
	serve(t, b, "d", 1, t1) // 2.34 units: 2 due, above the grace
	if got := b.Status("d").OverdueSince; !got.Equal(t1) {
		t.Fatalf("clock started at %v, want %v", got, t1)
	}
	t2 := t1.Add(time.Hour)
	serve(t, b, "d", 10, t2) // growing debt does not restart it
	if got := b.Status("d").OverdueSince; !got.Equal(t1) {
		t.Fatalf("clock moved to %v by more service", got)
	}
	pay(t, b, "d", 1, t2)
	if got := b.Status("d").OverdueSince; !got.Equal(t2) {
		t.Fatalf("clock %v after a payment, want %v", got, t2)
	}
	if got := b.Overdue(t2.Add(time.Minute-1), time.Minute); len(got) != 0 {
		t.Fatal(got)
	}
	pay(t, b, "d", b.Status("d").Unpaid, t2)
	if got := b.Overdue(t2.Add(time.Hour), time.Minute); len(got) != 0 {
		t.Fatalf("paid up but overdue: %v", got)
	}
}

func TestPaymentAheadIsCredit(t *testing.T) {
	b := newBook(t, testConfig())
	pay(t, b, "d", 10, t0)
	n, d := grab(t, b, "d", t0)
	// 10 units prepaid plus a window of 20 (twice what was paid): served
	// while less than 30 units are at risk, i.e. up to 62 blocks (29.06
	// units, 30 when rounded up).
	if d != Wait || n != 62 {
		t.Fatalf("served %d blocks then %v; want 62 then Wait", n, d)
	}
}

func TestPrune(t *testing.T) {
	b := newBook(t, testConfig())
	serve(t, b, "settled", 32, t0) // exactly 15 units
	pay(t, b, "settled", 15, t0)
	serve(t, b, "fraction", 1, t0) // owes nothing yet, but half a unit is at risk
	serve(t, b, "debtor", 32, t0)
	if err := b.Block("blocked"); err != nil {
		t.Fatal(err)
	}
	if n := b.Prune(t0.Add(time.Hour-1), time.Hour); n != 0 {
		t.Fatalf("pruned %d accounts before they were idle", n)
	}
	if n := b.Prune(t0.Add(time.Hour), time.Hour); n != 1 {
		t.Fatalf("pruned %d, want 1", n)
	}
	if got := b.Accounts(); !slices.Equal(got, []string{"blocked", "debtor", "fraction"}) {
		t.Fatalf("left %v", got)
	}
}

// The book keeps the entry it found last; pruning that account must not
// leave it behind: the account comes back fresh, and its later payments
// and service land in the entry the book keeps (and snapshots).
func TestPruneForgetsTheLastAccountFound(t *testing.T) {
	b := newBook(t, testConfig())
	serve(t, b, "settled", 32, t0)
	pay(t, b, "settled", 15, t0)
	if s := b.Status("settled"); s.Paid != 15 { // now the entry found last
		t.Fatalf("status %+v", s)
	}
	if n := b.Prune(t0.Add(time.Hour), time.Hour); n != 1 {
		t.Fatalf("pruned %d, want 1", n)
	}
	if s := b.Status("settled"); s.Known || s.Paid != 0 {
		t.Fatalf("pruned account still known: %+v", s)
	}
	serve(t, b, "settled", 32, t0.Add(time.Hour))
	if s := b.Status("settled"); !s.Known || s.Owed != 15 || s.Paid != 0 {
		t.Fatalf("returning account %+v, want a fresh one owing 15", s)
	}
	if got := b.Accounts(); !slices.Equal(got, []string{"settled"}) {
		t.Fatalf("accounts %v", got)
	}
}

func TestOverflowSaturatesNeverWraps(t *testing.T) {
	cfg := testConfig()
	b := newBook(t, cfg)
	for range 3 {
		if err := b.Served("whale", math.MaxInt64, math.MaxInt64, t0); err != nil {
			t.Fatal(err)
		}
	}
	s := b.Status("whale")
	if s.Owed != math.MaxInt64 || s.ServedBytes != math.MaxInt64 || s.AtRisk != math.MaxInt64 {
		t.Fatalf("status %+v, want saturation", s)
	}
	if b.MayServe("whale", block, price, t0) != Wait {
		t.Fatal("a saturated debtor is served")
	}
	// Exposure sums beyond int64 without wrapping.
	for i := range 4 {
		if err := b.Served(fmt.Sprint("whale", i), math.MaxInt64, MiB, t0); err != nil {
			t.Fatal(err)
		}
	}
	if b.Exposure() != math.MaxInt64 || b.MayServe("new", block, price, t0) != Wait {
		t.Fatalf("exposure %d", b.Exposure())
	}
	for i := range 4 {
		pay(t, b, fmt.Sprint("whale", i), math.MaxInt64, t0)
	}
	if err := b.Paid("whale0", 1, t0); !errors.Is(err, ErrOverflow) {
		t.Fatalf("paying past int64: %v", err)
	}
	if got := b.Exposure(); got != math.MaxInt64 {
		t.Fatalf("exposure %d with one saturated account left", got)
	}
	if err := b.Block("whale"); err != nil || b.Exposure() != 0 || b.Lost() != math.MaxInt64 {
		t.Fatalf("after blocking the whale: exposure %d, lost %d, %v", b.Exposure(), b.Lost(), err)
	}
	for _, err := range []error{
		b.Served("x", -1, price, t0), b.Served("x", 1, -1, t0), b.Paid("x", -1, t0),
	} {
		if !errors.Is(err, ErrNegative) {
			t.Fatalf("negative input: %v", err)
		}
	}
	for _, err := range []error{b.Served("", 1, 1, t0), b.Paid("", 1, t0), b.Block("")} {
		if !errors.Is(err, ErrAccount) {
			t.Fatalf("empty account: %v", err)
		}
	}
}

func TestDecisionString(t *testing.T) {
	for d, want := range map[Decision]string{Refuse: "refuse", Wait: "wait", Serve: "serve", 7: "Decision(7)"} {
		if d.String() != want {
			t.Errorf("%d: %q", int(d), d.String())
		}
	}
	var zero Decision
	if zero != Refuse {
		t.Fatal("the zero Decision must refuse")
	}
}

// BenchmarkServeBlock measures the per-block cost the engine pays: one
// MayServe and one Served on a book of 1000 accounts, plus a payment every
// piece.
func BenchmarkServeBlock(b *testing.B) {
	cfg := testConfig()
	cfg.MaxExposure = 1 << 40
	cfg.MaxFreshExposure = 1 << 40
	book := newBook(b, cfg)
	accounts := make([]string, 1000)
	for i := range accounts {
		accounts[i] = fmt.Sprintf("%040d", i)
		pay(b, book, accounts[i], 1000, t0)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		acct := accounts[i%len(accounts)]
		if book.MayServe(acct, block, price, t0) == Serve {
			if err := book.Served(acct, block, price, t0); err != nil {
				b.Fatal(err)
			}
		}
		if i%perPiece == 0 {
			if err := book.Paid(acct, 8, t0); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// Payments revoked (the broker closed their channel before redeeming
// them) are owed again, and shrink the window they had grown.
func TestRevokedPaymentsAreOwedAgain(t *testing.T) {
	b := newBook(t, testConfig())
	serve(t, b, "peer", 8, t0) // more than the grace (4 blocks)
	owed := b.Status("peer").Owed
	pay(t, b, "peer", owed, t0)
	later := t0.Add(time.Hour)
	if err := b.Revoked("peer", owed, later); err != nil {
		t.Fatal(err)
	}
	// Owed again, but not overdue at once: the payer needs the time to
	// hear and pay again.
	if got := b.Overdue(later, time.Second); len(got) != 0 {
		t.Fatalf("overdue right after the revocation: %v", got)
	}
	if got := b.Overdue(later.Add(2*time.Second), time.Second); len(got) != 1 {
		t.Fatalf("not overdue once the time passed: %v", got)
	}
	if st := b.Status("peer"); st.Paid != 0 || st.Unpaid != owed || st.Window != testConfig().InitialWindow {
		t.Fatalf("after revoking every payment: %+v", st)
	}
	for _, bad := range []int64{1, -1} {
		if err := b.Revoked("peer", bad, later); !errors.Is(err, ErrNegative) {
			t.Fatalf("revoking %d of nothing paid: %v", bad, err)
		}
	}
	if err := b.Revoked("stranger", 1, later); err == nil {
		t.Fatal("revoked a payment of an unknown account")
	}
}
