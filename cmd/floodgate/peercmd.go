package main

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"

	"github.com/floodgate-p2p/floodgate/internal/identity"
	"github.com/floodgate-p2p/floodgate/internal/metainfo"
	"github.com/floodgate-p2p/floodgate/internal/node"
	"github.com/floodgate-p2p/floodgate/internal/terms"
	"github.com/floodgate-p2p/floodgate/internal/units"
)

// peerFlags are the flags get and seed share.
type peerFlags struct {
	listen      string
	uploadLimit string
	downLimit   string
	noTrackers  bool
	verbose     bool
	keyPath     string
	stateDir    string
}

func (p *peerFlags) register(f *pflag.FlagSet, defaultListen string) {
	f.StringVar(&p.listen, "listen", defaultListen, "TCP address to accept peers on (HOST:PORT)")
	f.StringVar(&p.uploadLimit, "upload-limit", "0", "cap upload rate, e.g. 10MiB/s (0 = unlimited)")
	f.StringVar(&p.downLimit, "download-limit", "0", "cap download rate, e.g. 10MiB/s (0 = unlimited)")
	f.BoolVar(&p.noTrackers, "no-trackers", false, "do not contact the torrent's trackers (use --peer)")
	f.BoolVarP(&p.verbose, "verbose", "v", false, "log peer connection events to stderr")
	f.StringVar(&p.keyPath, "key", defaultKeyPath(), "identity key for paid torrents (floodgate account new)")
	f.StringVar(&p.stateDir, "state-dir", defaultStateDir(), "where payment state (unredeemed earnings, credit) survives restarts")
}

// defaultStateDir is $XDG_STATE_HOME/floodgate (or ~/.local/state/floodgate).
func defaultStateDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "floodgate")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "state", "floodgate")
	}
	return "floodgate-state"
}

// paidSetup is what a paid torrent needs on the command line.
type paidSetup struct {
	terms   *terms.Terms
	key     *identity.PrivateKey
	keyPath string
	state   string
}

// setupPaid loads the identity for a paid torrent; for a plain torrent it
// returns a zero setup and no error.
func (p *peerFlags) setupPaid(mi *metainfo.MetaInfo, role string) (paidSetup, error) {
	tm, err := terms.FromMetaInfo(mi)
	if err != nil {
		return paidSetup{}, err
	}
	if tm == nil {
		return paidSetup{}, nil
	}
	key, err := identity.ReadKeyFile(p.keyPath)
	if err != nil {
		return paidSetup{}, fmt.Errorf("%w\n(key %s: %v)", node.ErrNoIdentity, p.keyPath, err)
	}
	state := filepath.Join(p.stateDir, fmt.Sprintf("%s-%s-%s.json", mi.InfoHash, key.AccountID()[:12], role))
	return paidSetup{terms: tm, key: key, keyPath: p.keyPath, state: state}, nil
}

// savedCertificate is the certificate `account register` saved next to the
// key, if it is this key's, signed by the torrent's provider and valid for
// at least another day; otherwise (and for a plain torrent) nil, and the
// peer registers with the broker again (idempotent): the saved one only
// spares that round trip.
func (ps paidSetup) savedCertificate() *identity.Certificate {
	if ps.terms == nil {
		return nil
	}
	c, err := identity.ReadCertificateFile(certPath(ps.keyPath))
	if err != nil || c.Key != ps.key.Public() || c.Verify(ps.terms.Provider, time.Now().Add(24*time.Hour)) != nil {
		return nil
	}
	return &c
}

func (p *peerFlags) limits() (up, down int64, err error) {
	if up, err = units.ParseRate(p.uploadLimit); err != nil {
		return 0, 0, usagef("--upload-limit: %v", err)
	}
	if down, err = units.ParseRate(p.downLimit); err != nil {
		return 0, 0, usagef("--download-limit: %v", err)
	}
	return up, down, nil
}

func (p *peerFlags) logger() *slog.Logger {
	if !p.verbose {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// parsePeers resolves --peer HOST:PORT values.
func parsePeers(vals []string) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	for _, v := range vals {
		if ap, err := netip.ParseAddrPort(v); err == nil {
			out = append(out, ap)
			continue
		}
		host, port, err := net.SplitHostPort(v)
		if err != nil {
			return nil, usagef("--peer %q: want HOST:PORT", v)
		}
		addrs, err := net.LookupHost(host)
		if err != nil || len(addrs) == 0 {
			return nil, fmt.Errorf("--peer %q: cannot resolve %s: %v", v, host, err)
		}
		ap, err := netip.ParseAddrPort(net.JoinHostPort(addrs[0], port))
		if err != nil {
			return nil, usagef("--peer %q: %v", v, err)
		}
		out = append(out, ap)
	}
	return out, nil
}

func loadTorrent(path string) (*metainfo.MetaInfo, error) {
	mi, err := metainfo.Load(path)
	if err != nil {
		return nil, fmt.Errorf("torrent %s: %w", path, err)
	}
	return mi, nil
}
