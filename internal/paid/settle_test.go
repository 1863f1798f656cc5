package paid

import (
	"testing"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/wire"
)

// A finished download keeps serving while peers still downloading owe it
// (they pay as their pieces verify), but not for the residue a finished
// peer leaves: it paid for all it verified before it said "not
// interested".
func TestAwaitedCountsOnlyPeersStillDownloading(t *testing.T) {
	s := newSwarm(t, tSize)
	seeder := s.start(peerOpts{seed: true, acct: s.account(0)})
	defer seeder.close()
	buyer := s.account(10_000)
	h := s.dial(seeder.addr(), buyer)
	defer h.close()
	h.authenticate()
	c := openChannel(t, buyer, seeder.acct.id, chanLen, time.Now().Add(time.Hour))
	h.sendFG(message{Type: typeChannel, Voucher: c.vb})
	h.request(0, 8) // says "interested" first
	h.drain(300 * time.Millisecond)
	if h.got == 0 {
		t.Fatal("nothing served")
	}
	owed := valueOf(h.got)
	if got := seeder.sess.Awaited(); got != owed {
		t.Fatalf("Awaited = %d while a downloading peer owes %d units", got, owed)
	}
	// It wants nothing more: whatever it still owes will not come.
	h.send(wire.Message{ID: wire.NotInterested})
	eventually(t, 2*time.Second, "a finished peer's debt no longer awaited", func() bool {
		return seeder.sess.Awaited() == 0
	})
	s.audit()
}
