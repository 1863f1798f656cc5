package paid

import (
	"testing"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/wire"
)

// A downloader opens a first channel as soon as it wants blocks from an
// uploader, so the channel is there when the first piece verifies; but to
// at most maxUndelivered uploaders that have delivered nothing yet:
// identities that claim every piece and never send one lock little of its
// money.
func TestUndeliveredUploadersGetAtMostTwoChannels(t *testing.T) {
	s := newSwarm(t, tSize)
	leech := s.start(peerOpts{acct: s.account(1_000_000)})
	const liars = 4
	var hs []*hostile
	for range liars {
		h := s.dial(leech.addr(), s.account(0))
		defer h.close()
		h.authenticate()
		h.send(wire.NewBitfield([]byte{0xff, 0xff, 0xff, 0xff})) // all 32 pieces
		h.send(wire.Message{ID: wire.Unchoke})
		asked := false
		h.onRequest = func(wire.Message) { asked = true }
		if !h.pump(5*time.Second, func() bool { return asked }) {
			t.Fatal("the downloader asks a peer that has everything for nothing")
		}
		hs = append(hs, h)
	}
	shown := func() int {
		n := 0
		for _, h := range hs {
			h.drain(50 * time.Millisecond)
			if _, ok := h.lastFG(typeChannel); ok {
				n++
			}
		}
		return n
	}
	eventually(t, 5*time.Second, "channels shown to the first two", func() bool { return shown() >= maxUndelivered })
	time.Sleep(200 * time.Millisecond)
	if n := shown(); n != maxUndelivered {
		t.Fatalf("%d of %d uploaders that never delivered got a channel, want %d", n, liars, maxUndelivered)
	}
	st := leech.sess.Stats()
	if first := valueOf(firstChannelBytes); st.Locked > maxUndelivered*first {
		t.Fatalf("%d units locked for uploaders that delivered nothing, want at most %d", st.Locked, maxUndelivered*first)
	}
	leech.close()
	s.audit()
}
