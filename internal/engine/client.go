// Package engine runs BitTorrent sessions: it accepts and dials peer
// connections, speaks the peer wire protocol, assembles and verifies pieces,
// and serves uploads. Decisions (which block to request, whom to unchoke,
// which request to serve next) are delegated to the pure policy packages
// picker, choker and scheduler; the engine only drives them.
package engine

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/floodgate-p2p/floodgate/internal/metainfo"
	"github.com/floodgate-p2p/floodgate/internal/wire"
)

// PeerIDPrefix starts every peer ID we generate (Azureus style), so other
// clients can tell Floodgate peers apart in their peer lists.
const PeerIDPrefix = "-FG0001-"

// Config configures a Client. The zero value is usable: it listens on an
// ephemeral port on all interfaces, with no rate limits.
type Config struct {
	// ListenAddr is the TCP address to accept peers on ("host:port").
	// Outgoing connections and tracker requests are made from its host, so
	// several clients on 127.0.0.x addresses look like distinct hosts.
	ListenAddr string
	// PeerID is sent in handshakes; zero means a random one.
	PeerID [20]byte
	// UploadLimit and DownloadLimit cap payload rates in bytes per second
	// across all torrents; zero means unlimited.
	UploadLimit, DownloadLimit int64
	// MaxPeers caps connections per torrent (default 80).
	MaxPeers int
	// Logger receives connection-level events; nil discards them.
	Logger *slog.Logger
}

// Client owns a listener and the torrents it serves.
type Client struct {
	cfg        Config
	ln         net.Listener
	localIP    net.IP // bound for outgoing dials; nil for "any"
	upLimit    *rate.Limiter
	dnLimit    *rate.Limiter
	http       *http.Client
	log        *slog.Logger
	ctx        context.Context
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	mu         sync.Mutex
	torrents   map[metainfo.Hash]*Torrent
	storageErr error
}

// NewClient starts listening. Close stops everything it started.
func NewClient(cfg Config) (*Client, error) {
	if cfg.MaxPeers <= 0 {
		cfg.MaxPeers = 80
	}
	if cfg.PeerID == ([20]byte{}) {
		copy(cfg.PeerID[:], PeerIDPrefix)
		if _, err := rand.Read(cfg.PeerID[len(PeerIDPrefix):]); err != nil {
			return nil, fmt.Errorf("engine: peer id: %w", err)
		}
	}
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = ":0"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("engine: listen on %s: %w", cfg.ListenAddr, err)
	}
	c := &Client{
		cfg:      cfg,
		ln:       ln,
		log:      cfg.Logger,
		torrents: make(map[metainfo.Hash]*Torrent),
		upLimit:  limiter(cfg.UploadLimit),
		dnLimit:  limiter(cfg.DownloadLimit),
	}
	if ip := ln.Addr().(*net.TCPAddr).IP; !ip.IsUnspecified() {
		c.localIP = ip
	}
	c.http = &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{DialContext: c.dialer(10 * time.Second).DialContext, MaxIdleConnsPerHost: 2},
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.wg.Add(1)
	go c.acceptLoop()
	return c, nil
}

// limiter returns a token bucket for bytesPerSec, or nil for unlimited. The
// burst allows a few blocks at once, so pipelining survives shaping.
func limiter(bytesPerSec int64) *rate.Limiter {
	if bytesPerSec <= 0 {
		return nil
	}
	burst := max(int(bytesPerSec/10), 4*wire.BlockSize)
	return rate.NewLimiter(rate.Limit(bytesPerSec), burst)
}

func (c *Client) dialer(timeout time.Duration) *net.Dialer {
	d := &net.Dialer{Timeout: timeout}
	if c.localIP != nil {
		d.LocalAddr = &net.TCPAddr{IP: c.localIP}
	}
	return d
}

// HTTPClient is the client used for tracker requests; it dials from the
// listen address's host.
func (c *Client) HTTPClient() *http.Client { return c.http }

// PeerID is the ID this client sends in handshakes.
func (c *Client) PeerID() [20]byte { return c.cfg.PeerID }

// Addr is the address peers can reach this client on.
func (c *Client) Addr() netip.AddrPort {
	return c.ln.Addr().(*net.TCPAddr).AddrPort()
}

// Close stops the listener and every torrent, and waits for their
// goroutines to end.
func (c *Client) Close() error {
	err := c.ln.Close()
	c.mu.Lock()
	ts := make([]*Torrent, 0, len(c.torrents))
	for _, t := range c.torrents {
		ts = append(ts, t)
	}
	c.mu.Unlock()
	// The torrents close before the client's context ends: theirs derive
	// from it, and a writer that saw it end would stop without sending
	// what is queued (see Torrent.Close).
	for _, t := range ts {
		t.Close()
	}
	c.cancel()
	c.wg.Wait()
	c.http.CloseIdleConnections()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (c *Client) acceptLoop() {
	defer c.wg.Done()
	for {
		nc, err := c.ln.Accept()
		if err != nil {
			if c.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			c.log.Warn("accept", "err", err)
			select {
			case <-time.After(100 * time.Millisecond):
			case <-c.ctx.Done():
				return
			}
			continue
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.handleIncoming(nc)
		}()
	}
}

// handshakeTimeout bounds how long a connection may take to identify
// itself; a silent socket must not hold a slot.
const handshakeTimeout = 10 * time.Second

func (c *Client) handleIncoming(nc net.Conn) {
	_ = nc.SetDeadline(time.Now().Add(handshakeTimeout))
	hs, err := wire.ReadHandshake(nc)
	if err != nil {
		c.log.Debug("incoming handshake", "from", nc.RemoteAddr(), "err", err)
		nc.Close()
		return
	}
	c.mu.Lock()
	t := c.torrents[metainfo.Hash(hs.InfoHash)]
	c.mu.Unlock()
	if t == nil || hs.PeerID == c.cfg.PeerID {
		nc.Close()
		return
	}
	if err := wire.WriteHandshake(nc, wire.NewHandshake(hs.InfoHash, c.cfg.PeerID)); err != nil {
		nc.Close()
		return
	}
	_ = nc.SetDeadline(time.Time{})
	t.addConn(nc, hs, false)
}

// dial connects to a peer for torrent t and completes the handshake.
func (c *Client) dial(ctx context.Context, t *Torrent, addr netip.AddrPort) (net.Conn, wire.Handshake, error) {
	nc, err := c.dialer(handshakeTimeout).DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return nil, wire.Handshake{}, err
	}
	_ = nc.SetDeadline(time.Now().Add(handshakeTimeout))
	ih := [20]byte(t.infoHash)
	if err := wire.WriteHandshake(nc, wire.NewHandshake(ih, c.cfg.PeerID)); err != nil {
		nc.Close()
		return nil, wire.Handshake{}, err
	}
	hs, err := wire.ReadHandshake(nc)
	if err != nil {
		nc.Close()
		return nil, wire.Handshake{}, err
	}
	if hs.InfoHash != ih {
		nc.Close()
		return nil, wire.Handshake{}, errors.New("peer answered for another torrent")
	}
	if hs.PeerID == c.cfg.PeerID {
		nc.Close()
		return nil, wire.Handshake{}, errSelf
	}
	_ = nc.SetDeadline(time.Time{})
	return nc, hs, nil
}

var errSelf = errors.New("connected to ourselves")
