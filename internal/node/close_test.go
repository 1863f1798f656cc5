package node

import (
	"context"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/terms"
	"github.com/floodgate-p2p/floodgate/internal/tracker"
)

// peersAt asks the tracker, as another peer, whom it lists for the torrent.
func (s *paidSwarm) peersAt() []string {
	s.t.Helper()
	resp, err := tracker.Announce(context.Background(), http.DefaultClient, s.prov.AnnounceURL(), tracker.AnnounceRequest{
		InfoHash: [20]byte(s.mi.InfoHash), PeerID: [20]byte{'-', 'T', 'E', 'S', 'T'}, Port: 9, Left: 1, NumWant: 50,
	})
	if err != nil {
		s.t.Fatal(err)
	}
	var out []string
	for _, p := range resp.Peers {
		out = append(out, p.String())
	}
	return out
}

// Close tells the tracker the node has left (its "stopped" announce now
// goes out while the node disconnects and settles, not before), so the
// tracker hands it out no more; and it still redeems what it earned.
func TestCloseAnnouncesStopped(t *testing.T) {
	const price = 30
	s := newPaidSwarm(t, 1<<20, price)
	seedKey, leechKey := s.key(), s.key()
	seeder := s.start(Config{DataPath: s.content, Seed: true, Identity: seedKey, StatePath: filepath.Join(s.dir, "seed.state")})
	s.register(leechKey)
	s.mint(leechKey.AccountID(), 10_000)
	leech := s.start(Config{DataPath: filepath.Join(s.dir, "dl", "content.bin"), Identity: leechKey})
	waitFor(t, leech, 30*time.Second)
	for _, n := range []*Node{leech, seeder} {
		addr := n.Addr().String()
		if !slices.Contains(s.peersAt(), addr) {
			t.Fatalf("the tracker does not list %s", addr)
		}
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
		if slices.Contains(s.peersAt(), addr) {
			t.Fatalf("the tracker still lists %s after Close", addr)
		}
	}
	want, _ := terms.PriceFor(1<<20, price)
	if b := s.balance(seedKey.AccountID()); b != want {
		t.Fatalf("seeder balance %d after Close, want %d", b, want)
	}
	s.audit()
	http.DefaultClient.CloseIdleConnections()
}
