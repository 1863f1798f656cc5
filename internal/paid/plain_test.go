package paid

import (
	"testing"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/wire"
)

// A plain BitTorrent client (no Floodgate extension) gets nothing from a
// paid seeder, which rejects its requests at once (BEP 6) so it can ask
// elsewhere, and everything from one run with --free.
func TestPlainPeerServedOnlyInFreeMode(t *testing.T) {
	for _, free := range []bool{false, true} {
		s := newSwarm(t, tSize)
		seeder := s.start(peerOpts{seed: true, acct: s.account(0), free: free})
		h := s.dial(seeder.addr(), nil)
		h.send(wire.NewExtended(0, []byte("d1:mdee"))) // BEP 10, no "floodgate"
		h.request(0, 8)
		h.drain(500 * time.Millisecond)
		switch {
		case !free && h.got != 0:
			t.Fatalf("paid seeder served %d bytes to a plain peer", h.got)
		case !free && h.reject != 8:
			t.Fatalf("paid seeder rejected %d of a plain peer's 8 requests", h.reject)
		case free && h.got != 8*tBlock:
			t.Fatalf("free seeder served %d bytes of %d to a plain peer", h.got, 8*tBlock)
		}
		if e := seeder.sess.Stats().Earned; e != 0 {
			t.Fatalf("earned %d from a plain peer", e)
		}
	}
}
