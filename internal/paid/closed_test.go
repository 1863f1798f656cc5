package paid

import (
	"context"
	"crypto/sha256"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/broker"
	"github.com/floodgate-p2p/floodgate/internal/identity"
)

// A seeder closes the channels of a buyer that finished (it owes nothing
// and wants nothing more) while both keep running: what the buyer locked
// and did not spend is back in its balance within a few redemption
// rounds, and the buyer, told "closed", no longer counts it as locked.
func TestSeederClosesAFinishedBuyersChannels(t *testing.T) {
	s := newSwarm(t, 4*tSize)
	seeder := s.start(peerOpts{seed: true, acct: s.account(0)})
	const funds = 1 << 20
	buyer := s.account(funds)
	leech := s.start(peerOpts{acct: buyer, peers: []netip.AddrPort{seeder.addr()}})
	leech.waitDone(30 * time.Second)
	price := valueOf(4 * tSize)
	eventually(t, 10*time.Second, "the buyer's channels closed and its rest refunded", func() bool {
		return s.balance(buyer.id) == funds-price
	})
	eventually(t, 5*time.Second, "the buyer counting nothing locked beyond what it spent", func() bool {
		st := leech.sess.Stats()
		return st.Spent == price && st.Locked == st.Spent
	})
	leech.close()
	seeder.close()
	if st := seeder.sess.Stats(); st.Earned != price {
		t.Fatalf("seeder earned %d, want %d", st.Earned, price)
	}
}

// A buyer whose uploader closes a channel in the middle of the download
// (as one that restarted would have) moves to a new channel: what it paid
// on the closed one past the redeemed index is paid again, so the
// uploader is paid exactly the price, and the buyer pays no more.
func TestChannelClosedMidDownloadIsReplaced(t *testing.T) {
	s := newSwarm(t, eagerSize)
	seeder := s.startSeeder(nil)
	buyer := s.account(1 << 20)
	leech := s.start(peerOpts{acct: buyer, peers: []netip.AddrPort{seeder.addr()}})
	eventually(t, 10*time.Second, "the first payments", func() bool { return leech.sess.Stats().Spent > 0 })
	seeder.sess.settleChannels(context.Background(), func(*inChannel) bool { return true })
	leech.waitDone(30 * time.Second)
	price := valueOf(eagerSize)
	eventually(t, 5*time.Second, "the last payment", func() bool { return leech.sess.Stats().Spent == price })
	eventually(t, 5*time.Second, "the last payment received", func() bool {
		st := seeder.sess.Stats()
		return st.Earned+st.Pending >= price
	})
	leech.close()
	seeder.close()
	if st := seeder.sess.Stats(); st.Earned != price {
		t.Fatalf("seeder earned %d, want the price %d", st.Earned, price)
	}
	if b := s.balance(buyer.id); b != 1<<20-price {
		t.Fatalf("buyer balance %d, want %d", b, 1<<20-price)
	}
}

// An uploader claiming it closed a channel the broker has open changes
// nothing: the buyer checks with the broker, so it cannot be made to pay
// twice.
func TestFalseClosedIsIgnored(t *testing.T) {
	s := newSwarm(t, eagerSize)
	ln := listen(t)
	leech := s.start(peerOpts{acct: s.account(1 << 20), peers: []netip.AddrPort{addrOf(ln)}})
	liar := onePieceUploader(t, s, ln, s.account(0))
	defer liar.close()
	cm, _ := liar.lastFG(typeChannel)
	var v identity.Voucher
	if err := v.UnmarshalBinary(cm.Voucher); err != nil {
		t.Fatal(err)
	}
	before := leech.sess.Stats()
	liar.sendFG(message{Type: typeClosed, Channel: v.Channel, Index: 0})
	// The buyer asks the broker, finds the channel open and drops the
	// liar (each false claim would cost it a broker round trip).
	if !liar.waitClosed(5 * time.Second) {
		t.Fatal("the buyer kept a payee that lied about closing a channel")
	}
	if after := leech.sess.Stats(); after.Spent != before.Spent || after.Locked != before.Locked {
		t.Fatalf("a false closed changed the buyer's account: %+v, then %+v", before, after)
	}
	for _, m := range liar.fg {
		if m.Type == typePay && m.Channel != v.Channel {
			t.Fatalf("the buyer moved to another channel after a false closed: %+v", m)
		}
	}
	leech.close()
}

// hookBroker runs before (if set) at the start of each redemption call,
// while the payee waits for the broker.
type hookBroker struct {
	Broker
	before func()
}

func (b *hookBroker) Redeem(ctx context.Context, rs []Redemption) ([]RedemptionResult, error) {
	if b.before != nil {
		b.before()
	}
	return b.Broker.Redeem(ctx, rs)
}

// Payments that reach a payee while its close of their channel is on the
// way to the broker count for nothing (the broker returns them to the
// payer); the payee takes them off its book and tells the payer "closed",
// again when it reconnects, so it pays them once more elsewhere.
func TestLatePaymentsOnAClosingChannelAreTakenBack(t *testing.T) {
	s := newSwarm(t, tSize)
	hb := &hookBroker{}
	seeder := s.startSeeder(func(b Broker) Broker { hb.Broker = b; return hb })
	defer seeder.close()
	buyer, h, c, owed := buyAndStay(t, s, seeder, 10_000, 0)
	defer h.close()
	hb.before = func() {
		hb.before = nil
		h.payUnits(c, 5) // crosses the close
		eventually(t, 2*time.Second, "the late payment received", func() bool { return seeder.sess.Stats().Pending == owed+5 })
	}
	seeder.sess.settleChannels(context.Background(), func(*inChannel) bool { return true })
	if st := seeder.status(buyer.id); st.Paid != owed {
		t.Fatalf("the payee's book says %d paid, want %d (the late 5 taken back)", st.Paid, owed)
	}
	if st := seeder.sess.Stats(); st.Earned != owed || st.Pending != 0 {
		t.Fatalf("payee stats %+v, want %d earned and nothing pending", st, owed)
	}
	h.close()
	again := s.dial(seeder.addr(), buyer)
	defer again.close()
	again.authenticate()
	if !again.pump(2*time.Second, func() bool { m, ok := again.lastFG(typeClosed); return ok && m.Channel == c.v.Channel }) {
		t.Fatal("the reconnected payer was not told again of the close its late payments crossed")
	}
	if m, _ := again.lastFG(typeClosed); m.Index != owed {
		t.Fatalf("closed at %d, want %d", m.Index, owed)
	}
	s.audit()
}

// A close whose answer was lost leaves the payee believing the channel
// open; the next redemption on it is refused, and the payee then takes
// the broker's word: the channel is closed, its earnings count, and what
// was paid on it since is taken back and the payer told.
func TestCloseWithALostAnswerIsFoundOut(t *testing.T) {
	s := newSwarm(t, tSize)
	lab := &lostAnswerBroker{}
	seeder := s.startSeeder(func(b Broker) Broker { lab.Broker = b; return lab })
	defer seeder.close()
	buyer, h, c, owed := buyAndStay(t, s, seeder, 10_000, 0)
	defer h.close()
	seeder.sess.settleChannels(context.Background(), func(*inChannel) bool { return true })
	if !lab.lost.Load() {
		t.Fatal("the close's answer was not lost")
	}
	h.payUnits(c, 3)
	eventually(t, 2*time.Second, "the payment after the close received", func() bool { return seeder.sess.Stats().Pending == owed+3 })
	seeder.sess.settleChannels(context.Background(), func(*inChannel) bool { return false })
	if st := seeder.sess.Stats(); st.Earned != owed || st.Pending != 0 {
		t.Fatalf("payee stats %+v, want %d earned and nothing pending", st, owed)
	}
	if st := seeder.status(buyer.id); st.Paid != owed {
		t.Fatalf("the payee's book says %d paid, want %d", st.Paid, owed)
	}
	if !h.pump(2*time.Second, func() bool { m, ok := h.lastFG(typeClosed); return ok && m.Index == owed }) {
		t.Fatal("the payer was not told the channel is closed")
	}
	s.audit()
}

// The early-close rule: a seeder closes a payer's channels after two
// rounds in which it wanted nothing from us, not one; a new channel starts
// the count again; a payer that left keeps its channels for goneGrace (it
// may come back); an interested payer keeps them.
func TestQuietPayersRounds(t *testing.T) {
	w := newFuzzWorld(t)
	defer w.sess.Close()
	s := w.sess
	payer := fuzzKey(3).AccountID()
	show := func(id string) { showQuietTestChannel(t, w, id) }
	round := func(at time.Duration) bool { return quietAt(s, payer, at) }
	show("ch-1")
	s.mu.Lock()
	s.complete = true
	s.mu.Unlock()
	if round(0) || round(time.Second) {
		t.Fatal("an interested payer's channels would be closed")
	}
	w.peer.uninterested = true
	if round(2 * time.Second) {
		t.Fatal("closed after one quiet round")
	}
	show("ch-2")
	if round(3 * time.Second) {
		t.Fatal("a channel just shown would be closed")
	}
	if !round(4 * time.Second) {
		t.Fatal("not closed after two quiet rounds")
	}
	s.Closed(w.peer)
	s.mu.Lock()
	s.quietSince = nil
	s.mu.Unlock()
	if round(5*time.Second) || round(6*time.Second) || round(5*time.Second+goneGrace-time.Millisecond) {
		t.Fatal("a payer that just left would lose its channels")
	}
	if !round(5*time.Second + goneGrace) {
		t.Fatal("a payer gone for goneGrace keeps its channels")
	}
}

// While we still download, a connected payer's channels stay open while
// it is interested, or has not been uninterested at every round for
// leechQuietAfter (our new pieces make it interested again), and close
// after that, or once it has been gone for goneGrace: what it locked
// goes back to it then, not when our download ends.
func TestLeecherClosesTheChannelsOfAPayerThatLeft(t *testing.T) {
	w := newFuzzWorld(t)
	defer w.sess.Close()
	s := w.sess
	s.SetLeft(1 << 20)
	payer := fuzzKey(3).AccountID()
	showQuietTestChannel(t, w, "ch-1")
	round := func(at time.Duration) bool { return quietAt(s, payer, at) }
	if round(0) || round(2*time.Second) {
		t.Fatal("a leecher would close an interested payer's channels")
	}
	w.peer.uninterested = true
	if round(4*time.Second) || round(6*time.Second) {
		t.Fatal("a leecher would close the channels of a payer that just lost interest")
	}
	w.peer.uninterested = false
	round(8 * time.Second)
	w.peer.uninterested = true
	if round(10*time.Second) || round(10*time.Second+leechQuietAfter-time.Millisecond) {
		t.Fatal("a round with interest did not start the count again")
	}
	if !round(10*time.Second + leechQuietAfter) {
		t.Fatal("a leecher keeps the channels of a connected payer that wants nothing from it")
	}
	s.Closed(w.peer)
	s.mu.Lock()
	s.quietSince = nil
	s.mu.Unlock()
	if round(2*time.Hour) || round(2*time.Hour+goneGrace-time.Millisecond) {
		t.Fatal("a payer that just left would lose its channels")
	}
	if !round(2*time.Hour + goneGrace) {
		t.Fatal("a payer gone for goneGrace keeps its channels until the leecher stops")
	}
}

// A payer that leaves a leecher it bought from gets its locked funds back
// after goneGrace (the leecher closes its channels with its next
// redemption), not when the leecher's download ends; when it comes back,
// it hears "closed", moves to a new channel and finishes, having paid the
// price exactly once.
func TestPayerThatLeftALeecherGetsItsLockBackAndReturns(t *testing.T) {
	s := newSwarm(t, tSize)
	seeder := s.start(peerOpts{seed: true, acct: s.account(0)})
	var skew atomic.Int64 // how far the leecher's clock runs ahead
	clock := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	up := s.start(peerOpts{acct: s.account(1 << 20), now: clock, overdue: time.Hour, prefix: tSize / 2})
	const funds = 1 << 20
	buyer := s.account(funds)
	leech := s.start(peerOpts{acct: buyer, peers: []netip.AddrPort{up.addr()}, overdue: time.Hour})
	half := valueOf(tSize / 2)
	eventually(t, 20*time.Second, "the buyer has the leecher's half and paid for it", func() bool {
		return leech.tor.Stats().HavePieces == tSize/tPiece/2 && leech.sess.Stats().Spent == half
	})
	eventually(t, 5*time.Second, "the leecher received the payments", func() bool {
		st := up.sess.Stats()
		return st.Earned+st.Pending == half
	})
	up.sess.mu.Lock()
	for _, ps := range up.sess.peers {
		if ps.p != nil && ps.authed {
			ps.p.Close()
		}
	}
	up.sess.mu.Unlock()
	time.Sleep(300 * time.Millisecond) // a redemption round sees the buyer gone
	if b := s.balance(buyer.id); b == funds-half {
		t.Fatal("the buyer's lock came back before goneGrace")
	}
	skew.Store(int64(goneGrace + time.Second))
	eventually(t, 5*time.Second, "the buyer's channels closed and the rest refunded", func() bool {
		return s.balance(buyer.id) == funds-half
	})
	// The leecher gets the rest from the seeder and dials the buyer again,
	// which buys it through a new channel. (The IPv4-mapped spelling of
	// the buyer's address dodges the engine's redial delay.)
	la := leech.addr()
	up.tor.AddPeers(seeder.addr(), netip.AddrPortFrom(netip.AddrFrom16(la.Addr().As16()), la.Port()))
	leech.waitDone(30 * time.Second)
	price := valueOf(tSize)
	eventually(t, 5*time.Second, "the buyer paid the whole price", func() bool { return leech.sess.Stats().Spent == price })
	eventually(t, 5*time.Second, "the leecher received it", func() bool {
		st := up.sess.Stats()
		return st.Earned+st.Pending == price
	})
	if up.refused(buyer.id) {
		t.Fatal("the leecher refused the returning buyer")
	}
	leech.close()
	up.close()
	seeder.close()
	if st := up.sess.Stats(); st.Earned != price {
		t.Fatalf("the leecher earned %d, want %d", st.Earned, price)
	}
	if b := s.balance(buyer.id); b != funds-price {
		t.Fatalf("the buyer's balance is %d, want %d", b, funds-price)
	}
	s.audit()
}

// showQuietTestChannel has w's peer (fuzzKey(3)) show w's session a
// channel called id.
func showQuietTestChannel(t *testing.T, w *fuzzWorld, id string) {
	t.Helper()
	v, err := identity.SignVoucher(fuzzKey(1), identity.Voucher{Channel: id, Payer: fuzzKey(3).AccountID(), Payee: fuzzKey(2).AccountID(),
		Root: identity.Digest(w.chain.Root()), Length: 1000, Unit: 1, Expiry: fuzzNow.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	vb, _ := v.MarshalBinary()
	if err := w.sess.Message(w.peer, message{Type: typeChannel, Voucher: vb}.encode()); err != nil {
		t.Fatal(err)
	}
}

// quietAt runs s's early-close round at fuzzNow+at and reports whether it
// would close payer's channels.
func quietAt(s *Session, payer string, at time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.quietPayers(fuzzNow.Add(at))[payer]
}

// A payer told "closed" for a channel the broker closed below what it paid
// on it (payments that crossed the close) pays the difference again, once,
// on a new channel.
func TestPayerPaysAgainWhatACloseSentBack(t *testing.T) {
	s := newSwarm(t, eagerSize)
	ln := listen(t)
	leech := s.start(peerOpts{acct: s.account(1 << 20), peers: []netip.AddrPort{addrOf(ln)}})
	upAcct := s.account(0)
	up := onePieceUploader(t, s, ln, upAcct)
	defer up.close()
	up.drain(200 * time.Millisecond)
	pay, _ := up.lastFG(typePay)
	const back = 5
	if pay.Index <= back {
		t.Fatalf("paid only %d units", pay.Index)
	}
	// Close at the broker 5 steps below the last payment: the preimage
	// there is the last one hashed 5 times.
	pre := [32]byte(pay.Preimage)
	for range back {
		pre = sha256.Sum256(pre[:])
	}
	res, err := upAcct.bc.Redemptions(context.Background(), []broker.Redemption{{Channel: pay.Channel, Index: pay.Index - back, Preimage: pre, Close: true}})
	if err != nil || res[0].Error != nil || !res[0].Closed {
		t.Fatalf("close at the broker: %+v %v", res, err)
	}
	spent := leech.sess.Stats().Spent
	up.sendFG(message{Type: typeClosed, Channel: pay.Channel, Index: pay.Index - back})
	var again int64
	up.pump(3*time.Second, func() bool {
		again = 0
		for _, m := range up.fg {
			if m.Type == typePay && m.Channel != pay.Channel {
				again = max(again, m.Index)
			}
		}
		return again >= back
	})
	if again != back {
		t.Fatalf("paid %d again on a new channel, want %d", again, back)
	}
	if st := leech.sess.Stats(); st.Spent != spent {
		t.Fatalf("the payer counts %d spent, want %d (the refund paid again)", st.Spent, spent)
	}
	leech.close()
}
