// Package node assembles one BitTorrent peer from its parts: the torrent's
// storage (with its resume check), an engine client and session, and the
// tracker announcer. The command line (get, seed) and the demo and emulator
// all start peers through it, so they run the same code.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/broker"
	"github.com/floodgate-p2p/floodgate/internal/credit"
	"github.com/floodgate-p2p/floodgate/internal/engine"
	"github.com/floodgate-p2p/floodgate/internal/identity"
	"github.com/floodgate-p2p/floodgate/internal/metainfo"
	"github.com/floodgate-p2p/floodgate/internal/paid"
	"github.com/floodgate-p2p/floodgate/internal/storage"
	"github.com/floodgate-p2p/floodgate/internal/terms"
	"github.com/floodgate-p2p/floodgate/internal/tracker"
)

// Config describes one peer.
type Config struct {
	// Torrent is the parsed metainfo.
	Torrent *metainfo.MetaInfo
	// DataPath is the content itself: the file of a single-file torrent
	// or the NAME directory of a multi-file one.
	DataPath string
	// Seed opens the data read-only and requires it to be complete.
	Seed bool
	// Free serves plain peers without payment.
	Free bool
	// Identity is our key; a paid torrent (one with Floodgate terms)
	// needs it. Plain torrents are downloaded and served for free.
	Identity *identity.PrivateKey
	// Certificate, if set, is shown to peers instead of one obtained by
	// registering with the broker (the provider's origin certifies
	// itself).
	Certificate *identity.Certificate
	// TrustedProvider, if set, refuses torrents signed by another provider.
	TrustedProvider *identity.PublicKey
	// Class is the service class to buy with ("" = the terms' default).
	Class string
	// MaxSpend caps what a paid download may lock and spend (0 = no cap).
	MaxSpend int64
	// OpenGate, if set, holds back channel opens until it is closed (see
	// paid.Config.OpenGate).
	OpenGate <-chan struct{}
	// Balance, if set, reports the buyer's balance once known (see
	// paid.Config.Balance).
	Balance func() (units int64, ok bool)
	// StatePath persists payment state (unredeemed earnings, credit).
	StatePath string
	// Credit tunes the credit windows granted to paying peers.
	Credit credit.Config
	// Listen is the TCP address to accept peers on.
	Listen string
	// Peers are dialed directly, in addition to what trackers return.
	Peers []netip.AddrPort
	// NoTrackers skips the torrent's trackers (tests, --peer only runs).
	NoTrackers bool
	// UploadLimit and DownloadLimit are in bytes per second; 0 = none.
	UploadLimit, DownloadLimit int64
	// OnCheck reports resume-check progress.
	OnCheck func(done, total int)
	// OnTrackerError reports a failing tracker (shown to the user).
	OnTrackerError func(url string, err error)
	// Logger receives engine events; nil discards them.
	Logger *slog.Logger

	// externalIP is our public address as the tracker last reported it
	// (BEP 24); the payment session accepts peers' proofs made for it.
	externalIP *atomic.Value
}

// Node is a running peer.
type Node struct {
	cfg     Config
	store   *storage.Storage
	client  *engine.Client
	torrent *engine.Torrent
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	ann     *tracker.Announcer
	pay     *paid.Session
	broker  *broker.Client
	terms   *terms.Terms

	closeOnce sync.Once
	closeErr  error
}

// settleTimeout bounds how long Close waits for our own payments in flight.
const settleTimeout = 3 * time.Second

// ErrIncomplete is returned when a seeder's data does not match its torrent.
var ErrIncomplete = errors.New("data does not match the torrent")

// Start opens the data, checks what is already there, and starts serving
// and (unless complete) downloading.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	cfg.externalIP = new(atomic.Value)
	info := &cfg.Torrent.Info
	mode := storage.ReadWrite
	if cfg.Seed {
		mode = storage.ReadOnly
	}
	st, err := storage.Open(info, cfg.DataPath, mode)
	if err != nil {
		return nil, err
	}
	if cfg.Seed {
		// Name the file that is wrong rather than only counting pieces.
		if err := st.CheckFiles(); err != nil {
			st.Close()
			return nil, fmt.Errorf("%w: %w", ErrIncomplete, err)
		}
	}
	have, err := st.Check(ctx, cfg.OnCheck)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("check %s: %w", cfg.DataPath, err)
	}
	if cfg.Seed && !have.Full() {
		st.Close()
		return nil, fmt.Errorf("%w: %s has %d of %d pieces correct (missing, truncated or changed data)",
			ErrIncomplete, cfg.DataPath, have.Count(), have.Len())
	}
	var (
		sess *paid.Session
		bc   *broker.Client
	)
	tm, err := terms.FromMetaInfo(cfg.Torrent)
	if err != nil {
		st.Close()
		return nil, err
	}
	if tm != nil {
		if sess, bc, err = startPayments(ctx, cfg, tm); err != nil {
			st.Close()
			return nil, err
		}
	}
	var pay engine.Payments
	if sess != nil {
		pay = sess
		var left int64
		for i := 0; i < have.Len(); i++ {
			if !have.Has(i) {
				left += cfg.Torrent.Info.PieceSize(i)
			}
		}
		sess.SetLeft(left)
		if have.Full() {
			sess.SetComplete()
		}
	}
	client, err := engine.NewClient(engine.Config{
		ListenAddr:    cfg.Listen,
		UploadLimit:   cfg.UploadLimit,
		DownloadLimit: cfg.DownloadLimit,
		Logger:        cfg.Logger,
	})
	if err != nil {
		closeSession(sess)
		st.Close()
		return nil, err
	}
	t, err := client.AddTorrent(cfg.Torrent, st, engine.TorrentOptions{Have: &have, Payments: pay})
	if err != nil {
		client.Close()
		closeSession(sess)
		st.Close()
		return nil, err
	}
	n := &Node{cfg: cfg, store: st, client: client, torrent: t, pay: sess, broker: bc, terms: tm}
	if sess != nil {
		t.OnComplete(sess.SetComplete)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	if tiers := cfg.Torrent.Trackers(); len(tiers) > 0 && !cfg.NoTrackers {
		n.startAnnouncer(runCtx, tiers)
	}
	if len(cfg.Peers) > 0 {
		t.AddPeers(cfg.Peers...)
	}
	return n, nil
}

func (n *Node) startAnnouncer(ctx context.Context, tiers [][]string) {
	t := n.torrent
	n.ann = tracker.NewAnnouncer(tracker.AnnouncerConfig{
		Tiers:      tiers,
		InfoHash:   [20]byte(t.InfoHash()),
		PeerID:     n.client.PeerID(),
		Port:       n.client.Addr().Port(),
		HTTPClient: n.client.HTTPClient(),
		State: func() tracker.State {
			s := t.Stats()
			return tracker.State{Uploaded: s.Uploaded, Downloaded: s.Downloaded, Left: s.Left}
		},
		OnPeers: func(peers []netip.AddrPort) { t.AddPeers(peers...) },
		OnResponse: func(_ string, resp *tracker.AnnounceResponse) {
			if resp.ExternalIP.IsValid() {
				n.cfg.externalIP.Store(resp.ExternalIP)
			}
		},
		OnError: n.cfg.OnTrackerError,
	})
	t.OnComplete(n.ann.Completed)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		_ = n.ann.Run(ctx)
	}()
}

// Payments is the payment session of a paid torrent, nil for a plain one.
func (n *Node) Payments() *paid.Session { return n.pay }

// BrokerClient is the broker client of a paid torrent, nil for a plain one.
func (n *Node) BrokerClient() *broker.Client { return n.broker }

// Terms are the torrent's Floodgate terms, nil for a plain torrent.
func (n *Node) Terms() *terms.Terms { return n.terms }

func closeSession(s *paid.Session) {
	if s != nil {
		s.Close()
	}
}

// Torrent is the running session.
func (n *Node) Torrent() *engine.Torrent { return n.torrent }

// Addr is where peers reach this node.
func (n *Node) Addr() netip.AddrPort { return n.client.Addr() }

// StorageError is the first storage failure, if any (e.g. a full disk).
func (n *Node) StorageError() error { return n.client.StorageError() }

// Close announces "stopped", disconnects every peer and flushes the data.
// It is safe to call more than once.
func (n *Node) Close() error {
	n.closeOnce.Do(func() { n.closeErr = n.close() })
	return n.closeErr
}

func (n *Node) close() error {
	if n.pay != nil {
		// Pay for the last verified pieces before the peers go away.
		ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
		n.pay.Settle(ctx)
		cancel()
	}
	// The announcer sends "stopped" while we disconnect, redeem and
	// flush: each of those waits on its own, and a tracker that is also
	// the (busy) broker made the exit of a paid download wait twice.
	n.cancel()
	err := n.client.Close()
	payClosed := make(chan error, 1)
	if n.pay != nil {
		// After the peers are gone: redeem what we earned, close the
		// channels paid to us, persist. Broker round trips and the
		// disk flush below need not wait for each other.
		go func() { payClosed <- n.pay.Close() }()
	} else {
		payClosed <- nil
	}
	if n.store.Mode() == storage.ReadWrite {
		// Durability point: "done" must mean on disk, not in the cache.
		if serr := n.store.Sync(); err == nil {
			err = serr
		}
	}
	if perr := <-payClosed; err == nil {
		err = perr
	}
	n.wg.Wait()
	// The "stopped" announce may have opened a connection after the
	// client closed its idle ones.
	n.client.HTTPClient().CloseIdleConnections()
	if n.broker != nil {
		n.broker.CloseIdleConnections()
	}
	if serr := n.store.Close(); err == nil {
		err = serr
	}
	return err
}
