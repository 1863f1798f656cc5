package paid

import (
	"testing"
	"time"
)

// The attacks of issue 4 item 7, each scripted by hand against honest
// peers over real TCP. Every test shows, in units, that the attacker got
// no more than it paid plus the credit window the uploader granted it, that
// the honest side is unharmed beyond that window, and (through the swarm's
// cleanup) that the ledger still balances.

const tSize = 2 << 20 // 128 blocks, 32 pieces

// chanLen is what an attacker locks in a channel: enough to back the whole
// torrent, so backing never limits what the credit window allows.
const chanLen = 4096

// writerBacklog mirrors the engine's per-connection cap on blocks handed to
// its writer and not yet sent. The engine asks Serve before handing a
// block over but reports Uploaded only once it is written, so today an
// account can be approved up to this many blocks past its window on each
// connection (see TestAttackWindowOverrunInTheWriterGap).
const writerBacklog = 16

// slack is the most a single connection can take past its window today.
const slack = writerBacklog * blockUnits

func TestAttackNonPayer(t *testing.T) {
	s := newSwarm(t, tSize)
	seeder := s.start(peerOpts{seed: true, acct: s.account(0)})
	atk := s.account(10_000)
	h := s.dial(seeder.addr(), atk)
	h.authenticate()

	// Without a channel there is no backing: not one block.
	h.request(0, 32)
	h.drain(300 * time.Millisecond)
	if h.got != 0 {
		t.Fatalf("served %d bytes to a peer with no channel", h.got)
	}

	// With a channel, the non-payer gets its initial window (plus what
	// the engine approved before the first block was recorded) and then
	// waits forever.
	c := openChannel(t, atk, seeder.acct.id, chanLen, time.Now().Add(time.Hour))
	h.sendFG(message{Type: typeChannel, Voucher: c.vb})
	h.drain(500 * time.Millisecond)
	win := testCredit().InitialWindow
	if h.got == 0 || valueOf(h.got) > win+slack {
		t.Fatalf("non-payer got %d bytes (%d units); window %d units", h.got, valueOf(h.got), win)
	}
	if _, ok := h.lastFG(typeInvoice); !ok {
		t.Fatal("a held peer was never invoiced")
	}

	// Overdue: cut off with a refuse message and a signed complaint.
	if !h.pump(5*time.Second, func() bool { _, ok := h.lastFG(typeRefuse); return ok }) {
		t.Fatal("non-payer was never refused")
	}
	if !seeder.refused(atk.id) {
		t.Fatal("seeder does not list the non-payer as refused")
	}
	st := seeder.status(atk.id)
	if st.Paid != 0 || st.Owed != valueOf(h.got) {
		t.Fatalf("book %+v, served %d bytes", st, h.got)
	}
	got := h.got
	h.request(32, 32)
	h.drain(300 * time.Millisecond)
	if h.got != got {
		t.Fatalf("refused peer got %d more bytes", h.got-got)
	}
	seeder.close()
	if e := seeder.sess.Stats().Earned; e != 0 {
		t.Fatalf("seeder earned %d from a non-payer", e)
	}
	// The seeder closed the unpaid channel at exit: the attacker has its
	// money back, and the seeder lost exactly the window it granted.
	if b := s.balance(atk.id); b != 10_000 {
		t.Fatalf("attacker balance %d, want its 10000 back", b)
	}
}
