package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/floodgate-p2p/floodgate/internal/identity"
	"github.com/floodgate-p2p/floodgate/internal/ledger"
	"github.com/floodgate-p2p/floodgate/internal/metainfo"
	"github.com/floodgate-p2p/floodgate/internal/provider"
	"github.com/floodgate-p2p/floodgate/internal/terms"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// paidSwarm is a provider and a paid torrent whose content is on disk.
type paidSwarm struct {
	t       *testing.T
	dir     string
	prov    *provider.Provider
	mi      *metainfo.MetaInfo
	content string
	data    []byte
}

func newPaidSwarm(t *testing.T, size int, price int64) *paidSwarm {
	t.Helper()
	dir := t.TempDir()
	prov, err := provider.Start(context.Background(), provider.Config{Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "provider"), TrackerInterval: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prov.Close() })
	data := make([]byte, size)
	rand.Read(data)
	content := filepath.Join(dir, "content.bin")
	if err := os.WriteFile(content, data, 0o644); err != nil {
		t.Fatal(err)
	}
	mi, err := metainfo.Build(context.Background(), content, metainfo.BuildOptions{PieceLength: 64 << 10, Announce: prov.AnnounceURL()})
	if err != nil {
		t.Fatal(err)
	}
	tm, err := terms.Sign(terms.Terms{Broker: prov.URL(), Classes: []terms.Class{{Name: "gold", PricePerMiB: price}}}, mi.InfoHash, prov.Key())
	if err != nil {
		t.Fatal(err)
	}
	if err := terms.Attach(mi, &tm); err != nil {
		t.Fatal(err)
	}
	return &paidSwarm{t: t, dir: dir, prov: prov, mi: mi, content: content, data: data}
}

func (s *paidSwarm) key() *identity.PrivateKey {
	k, err := identity.GenerateKey(rand.Reader)
	if err != nil {
		s.t.Fatal(err)
	}
	return k
}

// register creates the key's account with the broker, as `floodgate
// account register` does.
func (s *paidSwarm) register(k *identity.PrivateKey) {
	tm, err := terms.FromMetaInfo(s.mi)
	if err != nil {
		s.t.Fatal(err)
	}
	bc, err := Broker(tm, k)
	if err != nil {
		s.t.Fatal(err)
	}
	if _, err := bc.Register(context.Background()); err != nil {
		s.t.Fatal(err)
	}
}

func (s *paidSwarm) mint(account string, amount int64) {
	if err := s.prov.Ledger().Mint(context.Background(), "test-"+account, ledger.AccountID(account), amount); err != nil {
		s.t.Fatal(err)
	}
}

func (s *paidSwarm) balance(account string) int64 {
	b, err := s.prov.Ledger().Balance(context.Background(), ledger.AccountID(account))
	if err != nil {
		s.t.Fatal(err)
	}
	return b
}

func (s *paidSwarm) audit() {
	minted, sum, err := s.prov.Ledger().Audit(context.Background())
	if err != nil || minted != sum {
		s.t.Fatalf("ledger not conserved: minted %d, balances %d, %v", minted, sum, err)
	}
}

func (s *paidSwarm) start(cfg Config) *Node {
	s.t.Helper()
	cfg.Torrent = s.mi
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	n, err := Start(context.Background(), cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { n.Close() })
	return n
}

func waitFor(t *testing.T, n *Node, d time.Duration) {
	t.Helper()
	select {
	case <-n.Torrent().Done():
	case <-time.After(d):
		st := n.Torrent().Stats()
		t.Fatalf("not done: %d/%d pieces, %d peers, payments %+v", st.HavePieces, st.Pieces, st.Peers, n.Payments().Stats())
	}
}

func TestPaidDownloadPaysEveryVerifiedByte(t *testing.T) {
	const price = 30
	s := newPaidSwarm(t, 3<<20+777, price)
	seedKey, leechKey := s.key(), s.key()
	seeder := s.start(Config{DataPath: s.content, Seed: true, Identity: seedKey, StatePath: filepath.Join(s.dir, "seed.state")})
	s.register(leechKey)
	s.mint(leechKey.AccountID(), 10_000)
	out := filepath.Join(s.dir, "dl", "content.bin")
	leech := s.start(Config{DataPath: out, Identity: leechKey, Peers: []netip.AddrPort{seeder.Addr()}})
	waitFor(t, leech, 30*time.Second)
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got, s.data) {
		t.Fatal("downloaded data differs")
	}
	want, _ := terms.PriceFor(int64(len(s.data)), price)
	if spent := leech.Payments().Stats().Spent; spent != want {
		t.Fatalf("leecher paid %d, want exactly %d", spent, want)
	}
	if err := leech.Close(); err != nil {
		t.Fatal(err)
	}
	if err := seeder.Close(); err != nil { // redeems and closes channels
		t.Fatal(err)
	}
	if e := seeder.Payments().Stats().Earned; e != want {
		t.Fatalf("seeder redeemed %d, want %d", e, want)
	}
	if b := s.balance(seedKey.AccountID()); b != want {
		t.Fatalf("seeder balance %d, want %d", b, want)
	}
	if b := s.balance(leechKey.AccountID()); b != 10_000-want {
		t.Fatalf("leecher balance %d, want %d (channels closed, rest refunded)", b, 10_000-want)
	}
	s.audit()
}
