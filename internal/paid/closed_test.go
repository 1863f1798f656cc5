package paid

import (
	"context"
	"net/netip"
	"testing"
	"time"

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
	seeder := s.start(peerOpts{seed: true, acct: s.account(0), redeemEvery: time.Hour})
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
	seeder := s.start(peerOpts{seed: true, acct: s.account(0), redeemEvery: time.Hour,
		broker: func(b Broker) Broker { hb.Broker = b; return hb }})
	defer seeder.close()
	buyer, h, c := payingBuyer(t, s, seeder, 10_000)
	defer h.close()
	h.request(0, 8)
	h.drain(300 * time.Millisecond)
	owed := valueOf(h.got)
	h.payUnits(c, owed)
	h.drain(100 * time.Millisecond)
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
