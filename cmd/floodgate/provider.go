package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/floodgate-p2p/floodgate/internal/ledger"
	"github.com/floodgate-p2p/floodgate/internal/node"
	"github.com/floodgate-p2p/floodgate/internal/provider"
	"github.com/floodgate-p2p/floodgate/internal/units"
)

const (
	// defaultProviderListen is the provider's default address, loopback
	// only: exposing the broker is a deliberate act (--listen 0.0.0.0:7070).
	defaultProviderListen = "127.0.0.1:7070"
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
	maxStep      int64
	origins      []string
	originListen string
	originUpload string
	originFree   bool
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
With --origin TORRENT=DATAPATH it also seeds that torrent as the provider's
origin, paid into the provider's account like any uploader.
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
	f.Int64Var(&o.maxStep, "max-step", ledger.DefaultMaxStep, "most chain elements one redemption may advance (bounds the broker's hashing per request)")
	f.StringArrayVar(&o.origins, "origin", nil, "seed TORRENT=DATAPATH as the provider's origin, paid into its account (repeatable)")
	f.StringVar(&o.originListen, "origin-listen", "0.0.0.0:6881", "TCP address the origin accepts peers on")
	f.StringVar(&o.originUpload, "origin-upload", "0", "cap the origin's upload rate, e.g. 50MiB/s (0 = unlimited)")
	f.BoolVar(&o.originFree, "origin-free", false, "let the origin serve plain BitTorrent clients without payment")
	return cmd
}

func runProvider(ctx context.Context, o providerOptions, out io.Writer) error {
	if o.feeBPS < 0 || o.feeBPS > 10000 {
		return usagef("--fee-bps must be between 0 and 10000, got %d", o.feeBPS)
	}
	if o.expiryEvery <= 0 || o.expiryGrace < 0 {
		return usagef("--expire-every must be positive and --expiry-grace not negative")
	}
	if o.maxStep < 1 {
		return usagef("--max-step must be at least 1, got %d", o.maxStep)
	}
	origins, err := parseOrigins(o.origins)
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	p, err := provider.Start(ctx, provider.Config{
		Listen:          o.listen,
		DataDir:         o.dataDir,
		DB:              o.dbURL,
		FeeBasisPoints:  o.feeBPS,
		ExpiryGrace:     o.expiryGrace,
		ExpiryEvery:     o.expiryEvery,
		MaxStep:         o.maxStep,
		TrackerInterval: o.trackerEvery,
		Logger:          log,
	})
	if err != nil {
		return err
	}
	defer p.Close()
	if p.KeyCreated() {
		log.Info("created provider key", "path", filepath.Join(o.dataDir, provider.KeyFile))
	}
	fmt.Fprintf(out, "provider listening on %s\n  account:      %s\n  public key:   %s\n  announce URL: %s\n  ledger:       %s\n",
		p.URL(), p.Account(), p.Key().Public(), p.AnnounceURL(), redactDB(p.DB()))
	for _, og := range origins {
		n, err := startOrigin(ctx, p, og, o, log)
		if err != nil {
			return err
		}
		defer n.Close()
		fmt.Fprintf(out, "  origin:       seeding %s on %s\n", og.torrent, n.Addr())
	}
	select {
	case <-ctx.Done():
	case err := <-p.Err():
		return err
	}
	log.Info("provider stopping")
	return nil
}

// origin is one --origin TORRENT=DATAPATH.
type origin struct{ torrent, data string }

func parseOrigins(vals []string) ([]origin, error) {
	var out []origin
	for _, v := range vals {
		t, d, ok := strings.Cut(v, "=")
		if !ok || t == "" || d == "" {
			return nil, usagef("--origin %q: want TORRENT=DATAPATH", v)
		}
		out = append(out, origin{t, d})
	}
	return out, nil
}

// startOrigin seeds a torrent as the provider's origin: a peer with the
// provider's own key and certificate, paid into the provider's account.
func startOrigin(ctx context.Context, p *provider.Provider, og origin, o providerOptions, log *slog.Logger) (*node.Node, error) {
	mi, err := loadTorrent(og.torrent)
	if err != nil {
		return nil, err
	}
	cert, err := p.Certificate(30 * 24 * time.Hour)
	if err != nil {
		return nil, err
	}
	up, err := units.ParseRate(o.originUpload)
	if err != nil {
		return nil, usagef("--origin-upload: %v", err)
	}
	n, err := node.Start(ctx, node.Config{
		Torrent:     mi,
		DataPath:    og.data,
		Seed:        true,
		Free:        o.originFree,
		Listen:      o.originListen,
		UploadLimit: up,
		Identity:    p.Key(),
		Certificate: &cert,
		StatePath:   filepath.Join(o.dataDir, "origin-"+mi.InfoHash.String()+".state"),
		Logger:      log.With("origin", mi.Info.Name),
	})
	if err != nil {
		return nil, fmt.Errorf("origin %s: %w", og.torrent, err)
	}
	return n, nil
}

// redactDB hides a password in a store URL before printing it.
func redactDB(u string) string {
	if p, err := url.Parse(u); err == nil && p.User != nil {
		return p.Redacted()
	}
	return u
}
