// Package provider assembles the provider's services on one HTTP listener:
// the broker (with its ledger), the tracker, health and metrics, and
// optionally the origin — the provider's own seeding peers, paid into the
// provider's account like any uploader. `floodgate provider` and the
// emulator both run it.
package provider

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/floodgate-p2p/floodgate/internal/broker"
	"github.com/floodgate-p2p/floodgate/internal/identity"
	"github.com/floodgate-p2p/floodgate/internal/ledger"
	"github.com/floodgate-p2p/floodgate/internal/tracker"
)

// Files inside the data directory.
const (
	KeyFile      = "provider.key"
	LedgerDBFile = "ledger.db"
)

// Config configures a provider.
type Config struct {
	// Listen is the HTTP address ("127.0.0.1:7070").
	Listen string
	// DataDir holds the key and the default SQLite ledger; created 0700.
	DataDir string
	// DB is "sqlite:PATH" or a postgres:// URL; "" = sqlite in DataDir.
	DB string
	// FeeBasisPoints is the provider's cut of each redemption.
	FeeBasisPoints int64
	// ExpiryGrace lets payees redeem after a channel expires (ledger
	// default when zero); ExpiryEvery is how often expired channels are
	// closed (default 30 s).
	ExpiryGrace, ExpiryEvery time.Duration
	// MaxStep caps how far one redemption may advance a chain (ledger
	// default when zero).
	MaxStep int64
	// TrackerInterval is the announce interval told to peers (default
	// 30 s).
	TrackerInterval time.Duration
	// Logger receives service logs; nil discards them.
	Logger *slog.Logger
	// Registry receives metrics; nil makes a private one.
	Registry *prometheus.Registry
}

// Provider is a running provider.
type Provider struct {
	key     *identity.PrivateKey
	store   ledger.Store
	ledger  *ledger.Ledger
	broker  *broker.Server
	tracker *tracker.Server
	ln      net.Listener
	http    *http.Server
	dbURL   string
	created bool
	ready   atomic.Bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	errc    chan error
}

// Start opens (creating on first start) the key and ledger and begins
// serving. Close stops it.
func Start(ctx context.Context, cfg Config) (*Provider, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ExpiryEvery <= 0 {
		cfg.ExpiryEvery = 30 * time.Second
	}
	if cfg.TrackerInterval <= 0 {
		cfg.TrackerInterval = 30 * time.Second
	}
	if cfg.FeeBasisPoints < 0 || cfg.FeeBasisPoints > 10000 {
		return nil, fmt.Errorf("provider: fee %d basis points is outside 0..10000", cfg.FeeBasisPoints)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("provider: data directory: %w", err)
	}
	p := &Provider{errc: make(chan error, 2)}
	var err error
	if p.key, p.created, err = identity.LoadOrCreateKeyFile(filepath.Join(cfg.DataDir, KeyFile)); err != nil {
		return nil, fmt.Errorf("provider key: %w", err)
	}
	p.dbURL = cfg.DB
	if p.dbURL == "" {
		p.dbURL = "sqlite:" + filepath.Join(cfg.DataDir, LedgerDBFile)
	}
	if p.store, err = ledger.OpenStore(ctx, p.dbURL); err != nil {
		return nil, fmt.Errorf("opening ledger: %w", err)
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	p.ledger = ledger.New(p.store, ledger.Config{
		ProviderAccount: ledger.AccountID(p.key.AccountID()),
		FeeBasisPoints:  cfg.FeeBasisPoints,
		ExpiryGrace:     cfg.ExpiryGrace,
		MaxStep:         cfg.MaxStep,
	})
	p.broker, err = broker.NewServer(broker.Config{Ledger: p.ledger, ProviderKey: p.key, Logger: cfg.Logger, Registerer: reg})
	if err == nil {
		err = p.broker.Init(ctx)
	}
	if err != nil {
		p.store.Close()
		return nil, err
	}
	p.tracker = tracker.NewServer(tracker.ServerConfig{Interval: cfg.TrackerInterval, Logger: cfg.Logger})
	if err := registerTrackerMetrics(reg, p.tracker); err != nil {
		p.tracker.Close()
		p.store.Close()
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/broker/", p.broker)
	mux.Handle("/announce", p.tracker)
	mux.Handle("/scrape", p.tracker)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if !p.ready.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	if p.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
		p.tracker.Close()
		p.store.Close()
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	p.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	runCtx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		if err := p.http.Serve(p.ln); !errors.Is(err, http.ErrServerClosed) {
			p.errc <- fmt.Errorf("serving HTTP: %w", err)
		}
	}()
	go func() {
		defer p.wg.Done()
		if err := p.broker.RunExpirer(runCtx, cfg.ExpiryEvery); err != nil && !errors.Is(err, context.Canceled) {
			p.errc <- err
		}
	}()
	p.ready.Store(true)
	return p, nil
}

// Err delivers a fatal serving error, if one happens.
func (p *Provider) Err() <-chan error { return p.errc }

// URL is the provider's base URL, e.g. "http://127.0.0.1:7070".
func (p *Provider) URL() string { return "http://" + p.ln.Addr().String() }

// AnnounceURL is the tracker's announce URL.
func (p *Provider) AnnounceURL() string { return p.URL() + "/announce" }

// Key is the provider's key.
func (p *Provider) Key() *identity.PrivateKey { return p.key }

// KeyCreated reports whether Start created the key (first start).
func (p *Provider) KeyCreated() bool { return p.created }

// Account is the provider's account id.
func (p *Provider) Account() string { return p.key.AccountID() }

// DB is the ledger URL in use.
func (p *Provider) DB() string { return p.dbURL }

// Ledger gives direct access to the ledger (emulator audits and minting).
func (p *Provider) Ledger() *ledger.Ledger { return p.ledger }

// Tracker is the tracker server.
func (p *Provider) Tracker() *tracker.Server { return p.tracker }

// Certificate issues the provider's own certificate, which its origin
// peers show (they are paid into the provider's account).
func (p *Provider) Certificate(validity time.Duration) (identity.Certificate, error) {
	now := time.Now()
	return identity.IssueCertificate(p.key, p.key.Public(), p.key.AccountID(), now, now.Add(validity))
}

// Close stops serving, letting requests in flight finish so their ledger
// transactions commit, and closes the ledger.
func (p *Provider) Close() error {
	p.ready.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := p.http.Shutdown(ctx)
	p.cancel()
	p.wg.Wait()
	p.tracker.Close()
	if cerr := p.store.Close(); err == nil {
		err = cerr
	}
	return err
}

// registerTrackerMetrics exports the tracker's counters, read at scrape
// time from its Stats.
func registerTrackerMetrics(reg prometheus.Registerer, ts *tracker.Server) error {
	gauge := func(name, help string, f func(tracker.Stats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "floodgate", Subsystem: "tracker", Name: name, Help: help},
			func() float64 { return f(ts.Stats()) })
	}
	counter := func(name, help string, f func(tracker.Stats) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "floodgate", Subsystem: "tracker", Name: name, Help: help},
			func() float64 { return f(ts.Stats()) })
	}
	for _, c := range []prometheus.Collector{
		gauge("swarms", "Torrents with at least one peer.", func(s tracker.Stats) float64 { return float64(s.Swarms) }),
		gauge("peers", "Peers listed across all swarms.", func(s tracker.Stats) float64 { return float64(s.Peers) }),
		gauge("seeders", "Seeders listed across all swarms.", func(s tracker.Stats) float64 { return float64(s.Seeders) }),
		counter("announces_total", "Announces answered.", func(s tracker.Stats) float64 { return float64(s.Announces) }),
		counter("scrapes_total", "Scrapes answered.", func(s tracker.Stats) float64 { return float64(s.Scrapes) }),
		counter("failures_total", "Requests answered with a failure reason.", func(s tracker.Stats) float64 { return float64(s.Failures) }),
	} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("provider: tracker metrics: %w", err)
		}
	}
	return nil
}
