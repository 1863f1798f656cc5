package ledgertest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/hashchain"
	"github.com/floodgate-p2p/floodgate/internal/ledger"
)

// model is the simplest possible statement of the money rules: a map of
// balances and a list of channels, updated by plain arithmetic. The
// property test drives the real ledger and the model with the same random
// operations and demands identical outcomes after every step.
type model struct {
	cfg    ledger.Config
	bal    map[ledger.AccountID]int64
	minted int64
	chans  []*modelChannel
	opens  map[string]openCall // idempotency key -> first call
	mints  map[string]mintCall
}

type modelChannel struct {
	ch    ledger.Channel
	chain *hashchain.Chain
}

type openCall struct {
	spec ledger.Channel
	id   string
}

type mintCall struct {
	to     ledger.AccountID
	amount int64
}

// outcome is what the model expects of one call.
type outcome struct {
	err   error // sentinel, or nil
	value int64 // paid, refund or count
}

func testProperty(t *testing.T, open Opener) {
	for _, seedNum := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint("seed", seedNum), func(t *testing.T) { runProperty(t, open, seedNum, 250) })
	}
}

func runProperty(t *testing.T, open Opener, seedNum uint64, steps int) {
	cfg := testConfig()
	cfg.FeeBasisPoints = 333
	f := newFixture(t, open, cfg)
	rng := rand.New(rand.NewPCG(seedNum, 0x5eed))
	m := &model{cfg: cfg, bal: map[ledger.AccountID]int64{}, opens: map[string]openCall{}, mints: map[string]mintCall{}}
	var accounts []ledger.AccountID
	for i := range 8 {
		id := ledger.AccountID(fmt.Sprintf("acct%d", i))
		f.customer(id, 0)
		accounts = append(accounts, id)
		m.bal[id] = 0
	}
	pick := func() ledger.AccountID { return accounts[rng.IntN(len(accounts))] }
	now := t0
	tally := map[string]int{} // which rules the random walk exercised
	defer func() { t.Logf("outcomes: %v", tally) }()
	for step := range steps {
		now = now.Add(time.Duration(rng.Int64N(int64(90 * time.Second))))
		var desc string
		var want, got outcome
		switch op := rng.IntN(100); {
		case op < 15: // mint, sometimes replaying an old key
			key := fmt.Sprintf("m%d", step)
			to, amount := pick(), 1+rng.Int64N(5_000)
			if len(m.mints) > 0 && rng.IntN(4) == 0 {
				key = fmt.Sprintf("m%d", rng.IntN(step+1))
				if old, ok := m.mints[key]; ok && rng.IntN(2) == 0 {
					to, amount = old.to, old.amount
				}
			}
			desc = fmt.Sprintf("mint %s %d to %s", key, amount, to)
			want = m.mint(key, to, amount)
			got = result(0, f.l.Mint(f.ctx, key, to, amount))
		case op < 40: // open, sometimes replaying an old key
			key := fmt.Sprintf("o%d", step)
			payer, payee := pick(), pick()
			length, unit := 1+rng.Int64N(30), 1+rng.Int64N(200)
			chain := hashchain.New(seed(fmt.Sprintf("%d/%d", seedNum, step)), length)
			spec := ledger.Channel{Payer: payer, Payee: payee, Root: chain.Root(), Length: length, Unit: unit,
				Expiry: now.Add(time.Duration(rng.Int64N(int64(40*time.Minute))) - 2*time.Minute)}
			if len(m.opens) > 0 && rng.IntN(5) == 0 {
				for k, old := range m.opens { // map order is random enough for a replay
					key, spec, chain = k, old.spec, nil
					break
				}
			}
			desc = fmt.Sprintf("open %s %+v", key, spec)
			want = m.open(key, spec, now)
			ch, err := f.l.OpenChannel(f.ctx, key, spec, now)
			got = result(0, err)
			if err == nil && chain != nil {
				m.opened(key, ch, chain)
			}
			if err == nil && chain == nil && ch.ID != m.opens[key].id {
				t.Fatalf("step %d: %s: replay returned channel %s, first call %s", step, desc, ch.ID, m.opens[key].id)
			}
		case op < 80: // redeem, with replays, overshoots and forgeries
			c := m.pickChannel(rng, rng.IntN(5) > 0)
			if c == nil {
				continue
			}
			index := max(1, c.ch.Redeemed+rng.Int64N(12)-3)
			p, forged := [32]byte{}, rng.IntN(8) == 0
			if index <= c.chain.Length() {
				p = pre(t, c.chain, index)
			}
			if forged {
				p[0] ^= 1
			}
			desc = fmt.Sprintf("redeem %s at %d (redeemed %d/%d, forged %v)", c.ch.ID, index, c.ch.Redeemed, c.ch.Length, forged)
			want = m.redeem(c, index, forged, now)
			got = result(f.l.Redeem(f.ctx, c.ch.ID, index, p, now))
		case op < 92: // close by someone
			c := m.pickChannel(rng, rng.IntN(2) > 0)
			if c == nil {
				continue
			}
			by := []ledger.AccountID{c.ch.Payee, c.ch.Payer, pick()}[rng.IntN(3)]
			desc = fmt.Sprintf("close %s by %s", c.ch.ID, by)
			want = m.close(c, by, now)
			got = result(f.l.Close(f.ctx, c.ch.ID, by, now))
		default:
			desc = "expire"
			want = m.expire(now)
			n, err := f.l.ExpireChannels(f.ctx, now)
			got = result(int64(n), err)
		}
		tally[fmt.Sprintf("%s → %v", strings.Fields(desc)[0], want.err)]++
		if !errors.Is(got.err, want.err) || (want.err == nil && got.err != nil) || got.value != want.value {
			t.Fatalf("step %d at %s: %s: got (%d, %v), model says (%d, %v)", step, now.Sub(t0), desc, got.value, got.err, want.value, want.err)
		}
		m.check(t, f, step, desc)
	}
}

// pickChannel returns a random channel, preferring open ones if asked,
// or nil if there is none.
func (m *model) pickChannel(rng *rand.Rand, preferOpen bool) *modelChannel {
	var open []*modelChannel
	for _, c := range m.chans {
		if c.ch.State == ledger.StateOpen {
			open = append(open, c)
		}
	}
	switch {
	case preferOpen && len(open) > 0:
		return open[rng.IntN(len(open))]
	case len(m.chans) > 0:
		return m.chans[rng.IntN(len(m.chans))]
	}
	return nil
}

// result packs a call's return values.
func result(v int64, err error) outcome { return outcome{err: err, value: v} }

func (m *model) mint(key string, to ledger.AccountID, amount int64) outcome {
	if old, ok := m.mints[key]; ok {
		if old != (mintCall{to, amount}) {
			return outcome{err: ledger.ErrConflict}
		}
		return outcome{}
	}
	m.mints[key] = mintCall{to, amount}
	m.bal[to] += amount
	m.minted += amount
	return outcome{}
}

func (m *model) open(key string, spec ledger.Channel, now time.Time) outcome {
	if old, ok := m.opens[key]; ok && old.spec.Payer == spec.Payer {
		if old.spec != spec {
			return outcome{err: ledger.ErrConflict}
		}
		return outcome{}
	}
	cost := spec.Length * spec.Unit
	switch {
	case spec.Payer == spec.Payee:
		return outcome{err: ledger.ErrInvalid}
	case !spec.Expiry.After(now):
		return outcome{err: ledger.ErrExpired}
	case cost > m.bal[spec.Payer]:
		return outcome{err: ledger.ErrInsufficientFunds}
	}
	m.bal[spec.Payer] -= cost
	m.opens[key] = openCall{spec: spec}
	return outcome{}
}

// opened records the channel the ledger created for a successful open.
func (m *model) opened(key string, ch ledger.Channel, chain *hashchain.Chain) {
	oc := m.opens[key]
	oc.id = ch.ID
	m.opens[key] = oc
	m.chans = append(m.chans, &modelChannel{ch: ch, chain: chain})
	m.bal["escrow:"+ledger.AccountID(ch.ID)] = ch.Length * ch.Unit
}

func (m *model) redeem(c *modelChannel, index int64, forged bool, now time.Time) outcome {
	ch := &c.ch
	switch {
	case index <= ch.Redeemed:
		return outcome{}
	case ch.State != ledger.StateOpen:
		return outcome{err: ledger.ErrClosed}
	case !now.Before(ch.Expiry.Add(m.cfg.ExpiryGrace)):
		return outcome{err: ledger.ErrExpired}
	case index > ch.Length:
		return outcome{err: ledger.ErrInvalid}
	case forged:
		return outcome{err: ledger.ErrBadPreimage}
	}
	amount := (index - ch.Redeemed) * ch.Unit
	fee := feeOf(amount, m.cfg.FeeBasisPoints)
	m.bal["escrow:"+ledger.AccountID(ch.ID)] -= amount
	m.bal[ch.Payee] += amount - fee
	m.bal[m.cfg.FeeAccount] += fee
	ch.Redeemed = index
	return outcome{value: amount - fee}
}

func (m *model) close(c *modelChannel, by ledger.AccountID, now time.Time) outcome {
	ch := &c.ch
	refund := (ch.Length - ch.Redeemed) * ch.Unit
	switch {
	case ch.State == ledger.StateClosed:
		return outcome{value: refund}
	case by != ch.Payee && now.Before(ch.Expiry.Add(m.cfg.ExpiryGrace)):
		return outcome{err: ledger.ErrForbidden}
	}
	m.refund(c)
	return outcome{value: refund}
}

func (m *model) expire(now time.Time) outcome {
	var n int64
	for _, c := range m.chans {
		if c.ch.State == ledger.StateOpen && !now.Before(c.ch.Expiry.Add(m.cfg.ExpiryGrace)) {
			m.refund(c)
			n++
		}
	}
	return outcome{value: n}
}

func (m *model) refund(c *modelChannel) {
	ch := &c.ch
	refund := (ch.Length - ch.Redeemed) * ch.Unit
	m.bal["escrow:"+ledger.AccountID(ch.ID)] -= refund
	m.bal[ch.Payer] += refund
	ch.State = ledger.StateClosed
}

// check compares every balance and channel with the model and audits.
func (m *model) check(t *testing.T, f *fixture, step int, desc string) {
	t.Helper()
	for id, want := range m.bal {
		if got := f.balance(id); got != want {
			t.Fatalf("step %d after %s: balance of %s = %d, model says %d", step, desc, id, got, want)
		}
	}
	for _, c := range m.chans {
		got, err := f.l.Channel(f.ctx, c.ch.ID)
		if err != nil {
			t.Fatalf("step %d: channel %s: %v", step, c.ch.ID, err)
		}
		if got.Redeemed != c.ch.Redeemed || got.State != c.ch.State {
			t.Fatalf("step %d after %s: channel %s is %s at %d, model says %s at %d",
				step, desc, c.ch.ID, got.State, got.Redeemed, c.ch.State, c.ch.Redeemed)
		}
	}
	f.conserved(m.minted)
}
