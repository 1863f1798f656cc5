package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/floodgate-p2p/floodgate/internal/broker"
	"github.com/floodgate-p2p/floodgate/internal/identity"
	"github.com/floodgate-p2p/floodgate/internal/ledger"
	"github.com/floodgate-p2p/floodgate/internal/tracker"
)

const (
	// defaultProviderListen is the provider's default address, loopback
	// only: exposing the broker is a deliberate act (--listen 0.0.0.0:7070).
	defaultProviderListen = "127.0.0.1:7070"
	// providerKeyFile is the provider's key inside its data directory.
	providerKeyFile = "provider.key"
	// ledgerDBFile is the default SQLite ledger inside the data directory.
	ledgerDBFile = "ledger.db"
)

// defaultProviderDataDir is $XDG_DATA_HOME/floodgate/provider, falling back
// to ~/.local/share/floodgate/provider, or ./floodgate-provider without a
// home directory.
func defaultProviderDataDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "floodgate", "provider")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "share", "floodgate", "provider")
	}
	return "floodgate-provider"
}

// providerOptions are the flags of `floodgate provider`.
type providerOptions struct {
	listen       string
	dataDir      string
	dbURL        string
	feeBPS       int64
	expiryGrace  time.Duration
	expiryEvery  time.Duration
	trackerEvery time.Duration
	verbose      bool
}

// newProviderCmd is `floodgate provider`: the broker, the tracker, health
// and metrics on one HTTP listener.
func newProviderCmd() *cobra.Command {
	var o providerOptions
	cmd := &cobra.Command{
		Use:   "provider [--listen HOST:PORT] [--data-dir DIR] [--db URL]",
		Short: "Run the provider: broker (ledger) API, tracker, health and metrics",
		Long: `Run the provider's services on one HTTP listener until interrupted:
  /broker/v1/...      the broker API (docs/broker.md)
  /announce, /scrape  the tracker
  GET /healthz        200 once the ledger is open and the services are ready
  GET /metrics        Prometheus metrics
On first start it creates DIR (mode 0700) and the provider key DIR/provider.key.
--db is sqlite:PATH (default sqlite:DIR/ledger.db) or a postgres:// URL.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runProvider(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", defaultProviderListen, "address to serve HTTP on (HOST:PORT)")
	f.StringVar(&o.dataDir, "data-dir", defaultProviderDataDir(), "directory for the provider key and the SQLite ledger")
	f.StringVar(&o.dbURL, "db", "", "ledger store: sqlite:PATH or postgres://... (default sqlite:DATA_DIR/ledger.db)")
	f.Int64Var(&o.feeBPS, "fee-bps", 0, "provider fee on every redemption, in basis points (0-10000)")
	f.DurationVar(&o.expiryGrace, "expiry-grace", 10*time.Minute, "how long after a channel's expiry its payee may still redeem")
	f.DurationVar(&o.expiryEvery, "expire-every", 30*time.Second, "how often expired channels are closed")
	f.DurationVar(&o.trackerEvery, "announce-interval", 30*time.Second, "re-announce interval the tracker tells clients")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "log debug detail to stderr")
	return cmd
}

func runProvider(ctx context.Context, o providerOptions, out io.Writer) error {
	if o.feeBPS < 0 || o.feeBPS > 10000 {
		return usagef("--fee-bps must be between 0 and 10000, got %d", o.feeBPS)
	}
	if o.expiryEvery <= 0 || o.expiryGrace < 0 {
		return usagef("--expire-every must be positive and --expiry-grace not negative")
	}
	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	key, created, err := identity.LoadOrCreateKeyFile(filepath.Join(o.dataDir, providerKeyFile))
	if err != nil {
		return fmt.Errorf("provider key: %w", err)
	}
	if created {
		log.Info("created provider key", "path", filepath.Join(o.dataDir, providerKeyFile))
	}
	dbURL := o.dbURL
	if dbURL == "" {
		dbURL = "sqlite:" + filepath.Join(o.dataDir, ledgerDBFile)
	}
	store, err := ledger.OpenStore(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("opening ledger: %w", err)
	}
	defer store.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	led := ledger.New(store, ledger.Config{
		ProviderAccount: ledger.AccountID(key.AccountID()),
		FeeBasisPoints:  o.feeBPS,
		ExpiryGrace:     o.expiryGrace,
	})
	bs, err := broker.NewServer(broker.Config{Ledger: led, ProviderKey: key, Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	if err := bs.Init(ctx); err != nil {
		return err
	}
	ts := tracker.NewServer(tracker.ServerConfig{Interval: o.trackerEvery, Logger: log})
	defer ts.Close()

	var ready atomic.Bool
	mux := http.NewServeMux()
	mux.Handle("/broker/", bs)
	mux.Handle("/announce", ts)
	mux.Handle("/scrape", ts)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if !ready.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.listen, err)
	}
	hs := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	fmt.Fprintf(out, "provider listening on http://%s\n  account:      %s\n  public key:   %s\n  announce URL: http://%s/announce\n  ledger:       %s\n",
		ln.Addr(), key.AccountID(), key.Public(), ln.Addr(), redactDB(dbURL))

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serving HTTP: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := bs.RunExpirer(gctx, o.expiryEvery); !errors.Is(err, context.Canceled) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		ready.Store(false)
		// Let requests in flight finish so their ledger transactions
		// commit and their clients hear the answer.
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := hs.Shutdown(sctx); err != nil {
			return fmt.Errorf("shutting down HTTP: %w", err)
		}
		return nil
	})
	ready.Store(true)
	err = g.Wait()
	if err == nil {
		log.Info("provider stopped")
	}
	return err
}

// redactDB hides a password in a store URL before printing it.
func redactDB(u string) string {
	if p, err := url.Parse(u); err == nil && p.User != nil {
		return p.Redacted()
	}
	return u
}
