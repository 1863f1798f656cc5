package emulator

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/identity"
	"github.com/floodgate-p2p/floodgate/internal/ledger"
	"github.com/floodgate-p2p/floodgate/internal/metainfo"
	"github.com/floodgate-p2p/floodgate/internal/node"
	"github.com/floodgate-p2p/floodgate/internal/provider"
	"github.com/floodgate-p2p/floodgate/internal/terms"
)

// PeerView is one peer's state in a live snapshot.
type PeerView struct {
	ID, Group string
	State     string // waiting, downloading, seeding, left, stalled
	Done      int64  // verified bytes
	Rate      int64  // bytes received in the last second
	Up        int64  // bytes sent in the last second
	Peers     int
	Paid      int64 // units paid to uploaders so far
	Earned    int64 // units earned (redeemed) so far
}

// View is a once-a-second snapshot for live displays.
type View struct {
	Elapsed     time.Duration
	Size        int64
	Peers       []PeerView
	OriginUp    int64 // origin bytes sent in the last second
	OriginTotal int64
	// OriginEarned is what the origin has redeemed into the provider's
	// account so far (paid runs).
	OriginEarned int64
}

// Options control a run.
type Options struct {
	// Observe, if set, receives a snapshot every second.
	Observe func(View)
	// Logger receives engine logs; nil discards them.
	Logger *slog.Logger
	// TempDir holds peer data (removed afterwards); "" = os.TempDir.
	TempDir string
}

type emuPeer struct {
	id, group string
	g         Group
	ip        netip.Addr
	arrive    time.Duration
	node      *node.Node
	dataDir   string
	state     string
	started   time.Time
	doneAt    time.Time
	leaveAt   time.Time
	samples   []int64
	lastTotal int64
	lastUp    int64
	lastMoved time.Time
	stalled   bool
	recv      map[netip.Addr]int64
	upRate    int64
	rate      int64
	peers     int
	have      int64
	key       *identity.PrivateKey
	cert      *identity.Certificate
	account   string
	balance   int64 // minted before it started: what `get` learns from the broker
	paid      int64
	earned    int64
}

// openAccount gives a paying peer a key, an account and its balance: the
// group's, or enough for twice the download at its class price.
func (p *emuPeer) openAccount(ctx context.Context, mi *metainfo.MetaInfo, tm *terms.Terms, prov *provider.Provider) error {
	key, err := identity.GenerateKey(crand.Reader)
	if err != nil {
		return err
	}
	bc, err := node.Broker(tm, key)
	if err != nil {
		return err
	}
	reg, err := bc.Register(ctx)
	if err != nil {
		return fmt.Errorf("emulator: register %s: %w", p.id, err)
	}
	balance := p.g.Balance
	if balance == 0 {
		cls, err := tm.Class(p.g.Class)
		if err != nil {
			return err
		}
		price, err := cls.Price(mi.Info.TotalLength())
		if err != nil {
			return err
		}
		balance = max(2*price, 1)
	}
	if err := prov.Ledger().Mint(ctx, "emulator-"+p.id, ledger.AccountID(reg.Account), balance); err != nil {
		return fmt.Errorf("emulator: mint for %s: %w", p.id, err)
	}
	p.key, p.cert, p.account, p.balance = key, &reg.Certificate, reg.Account, balance
	return nil
}

// Run executes the scenario and returns its report. It always cleans up
// its temporary data, and returns an error only for an internal failure.
func Run(ctx context.Context, sc Scenario, opts Options) (*Report, error) {
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	dir, err := os.MkdirTemp(opts.TempDir, "floodgate-emulate-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	rng := rand.New(rand.NewPCG(sc.RandomSeed, sc.RandomSeed+1))

	// The provider: tracker, and with payments the broker and ledger.
	prov, err := provider.Start(ctx, provider.Config{
		Listen:          "127.0.0.1:0",
		DataDir:         filepath.Join(dir, "provider"),
		TrackerInterval: 5 * time.Second,
		Logger:          logger.With("service", "provider"),
	})
	if err != nil {
		return nil, fmt.Errorf("emulator: provider: %w", err)
	}
	defer prov.Close()

	// Content and torrent.
	content := filepath.Join(dir, "content.bin")
	if err := writeRandomFile(content, sc.Size, rng); err != nil {
		return nil, err
	}
	mi, err := metainfo.Build(ctx, content, metainfo.BuildOptions{
		PieceLength: sc.PieceLength,
		Announce:    prov.AnnounceURL(),
		CreatedBy:   "Floodgate emulator",
	})
	if err != nil {
		return nil, err
	}
	var tm *terms.Terms
	if sc.Payments {
		signed, err := terms.Sign(terms.Terms{Broker: prov.URL(), Classes: sc.Classes}, mi.InfoHash, prov.Key())
		if err != nil {
			return nil, fmt.Errorf("emulator: terms: %w", err)
		}
		if err := terms.Attach(mi, &signed); err != nil {
			return nil, err
		}
		tm = &signed
	}

	originIP := netip.AddrFrom4([4]byte{127, 0, 0, 2})
	originCfg := node.Config{
		Torrent:     mi,
		DataPath:    content,
		Seed:        true,
		Free:        true,
		Listen:      netip.AddrPortFrom(originIP, 0).String(),
		UploadLimit: sc.OriginUpload,
		Logger:      logger.With("peer", "origin"),
	}
	if tm != nil {
		// The origin is paid like any uploader, into the provider's account.
		cert, err := prov.Certificate(24 * time.Hour)
		if err != nil {
			return nil, err
		}
		originCfg.Identity, originCfg.Certificate = prov.Key(), &cert
		originCfg.StatePath = filepath.Join(dir, "origin.state")
	}
	origin, err := node.Start(ctx, originCfg)
	if err != nil {
		return nil, fmt.Errorf("emulator: origin: %w", err)
	}
	defer origin.Close()

	var peers []*emuPeer
	idx := 0
	for _, g := range sc.Groups {
		for i := 0; i < g.Count; i++ {
			arrive := g.ArriveFrom
			if g.ArriveTo > g.ArriveFrom {
				arrive += time.Duration(rng.Int64N(int64(g.ArriveTo - g.ArriveFrom)))
			}
			ip := peerIP(idx)
			peers = append(peers, &emuPeer{
				id:      fmt.Sprintf("%s-%d", g.Name, i+1),
				group:   g.Name,
				g:       g,
				ip:      ip,
				arrive:  arrive,
				dataDir: filepath.Join(dir, fmt.Sprintf("peer-%d", idx)),
				state:   "waiting",
			})
			idx++
		}
	}

	start := time.Now()
	deadline := start.Add(sc.MaxDuration)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	defer func() {
		for _, p := range peers {
			if p.node != nil {
				p.node.Close()
			}
		}
	}()
	timedOut := false
	var originLast int64
	poll := time.NewTicker(100 * time.Millisecond)
	defer poll.Stop()
	for {
		now := time.Now()
		// Arrivals, completions and departures, checked often so that
		// timing is accurate to a tenth of a second.
		for _, p := range peers {
			if err := p.step(ctx, now, start, mi, tm, prov, logger); err != nil {
				return nil, err
			}
		}
		if allSettled(peers) {
			break
		}
		if now.After(deadline) {
			timedOut = true
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-poll.C:
			continue
		case <-tick.C:
		}
		// Once a second: rate samples, stall detection, live view.
		view := View{Elapsed: time.Since(start), Size: sc.Size}
		for _, p := range peers {
			p.sample(now, sc.StallTimeout)
			view.Peers = append(view.Peers, PeerView{ID: p.id, Group: p.group, State: p.state, Done: p.have, Rate: p.rate, Up: p.upRate, Peers: p.peers, Paid: p.paid, Earned: p.earned})
		}
		os := origin.Torrent().Stats()
		view.OriginUp, originLast = os.Uploaded-originLast, os.Uploaded
		view.OriginTotal = os.Uploaded
		if pay := origin.Payments(); pay != nil {
			view.OriginEarned = pay.Stats().Earned
		}
		if opts.Observe != nil {
			opts.Observe(view)
		}
	}
	// Everyone leaves: uploaders redeem what they were paid and close the
	// channels, so the refunds are back with the payers before the audit.
	for _, p := range peers {
		p.leave()
	}
	var originEarned int64
	if err := origin.Close(); err != nil {
		logger.Warn("closing origin", "err", err)
	}
	if pay := origin.Payments(); pay != nil {
		originEarned = pay.Stats().Earned
	}
	r := buildReport(sc, peers, originIP, timedOut)
	r.OriginEarned = originEarned
	minted, sum, err := prov.Ledger().Audit(context.Background())
	r.Ledger = LedgerReport{Minted: minted, SumOfBalances: sum, Conserved: err == nil && minted == sum}
	if err != nil {
		logger.Error("ledger audit", "err", err)
	}
	return r, nil
}

// peerIP gives peer i its own loopback address, starting at 127.0.0.3
// (127.0.0.1 is the tracker, .2 the origin).
func peerIP(i int) netip.Addr {
	n := i + 3
	return netip.AddrFrom4([4]byte{127, 0, byte(n / 250), byte(n%250 + 1)})
}

func allSettled(peers []*emuPeer) bool {
	for _, p := range peers {
		switch p.state {
		case "waiting", "downloading":
			return false
		}
	}
	return true
}

// step advances one peer's life cycle.
func (p *emuPeer) step(ctx context.Context, now, start time.Time, mi *metainfo.MetaInfo, tm *terms.Terms, prov *provider.Provider, logger *slog.Logger) error {
	switch p.state {
	case "waiting":
		if now.Sub(start) < p.arrive {
			return nil
		}
		cfg := node.Config{
			Torrent:       mi,
			DataPath:      filepath.Join(p.dataDir, mi.Info.Name),
			Free:          true,
			Listen:        netip.AddrPortFrom(p.ip, 0).String(),
			UploadLimit:   p.g.Upload,
			DownloadLimit: p.g.Download,
			Logger:        logger.With("peer", p.id),
		}
		if tm != nil {
			if err := p.openAccount(ctx, mi, tm, prov); err != nil {
				return err
			}
			cfg.Identity, cfg.Certificate, cfg.Class = p.key, p.cert, p.g.Class
			// What `get` learns from the broker before it starts: a
			// group minted four times its price or more buys as a rich
			// buyer does (see paid.Config.Balance).
			balance := p.balance
			cfg.Balance = func() (int64, bool) { return balance, true }
			cfg.StatePath = filepath.Join(p.dataDir, "payments.state")
		}
		n, err := node.Start(ctx, cfg)
		if err != nil {
			return fmt.Errorf("emulator: start %s: %w", p.id, err)
		}
		p.node, p.state, p.started, p.lastMoved = n, "downloading", now, now
	case "downloading":
		select {
		case <-p.node.Torrent().Done():
			p.doneAt = now
			p.state = "seeding"
			if p.g.Linger >= 0 {
				p.leaveAt = now.Add(p.g.Linger)
			}
		default:
		}
	case "seeding":
		if !p.leaveAt.IsZero() && now.After(p.leaveAt) {
			p.leave()
			p.state = "left"
		}
	}
	return nil
}

func (p *emuPeer) sample(now time.Time, stallTimeout time.Duration) {
	if p.node == nil {
		return
	}
	s := p.node.Torrent().Stats()
	p.rate = s.Downloaded - p.lastTotal
	p.upRate = s.Uploaded - p.lastUp
	p.lastUp = s.Uploaded
	p.peers = s.Peers
	p.have = s.Length - s.Left
	if pay := p.node.Payments(); pay != nil {
		ps := pay.Stats()
		p.paid, p.earned = ps.Spent, ps.Earned
	}
	if p.state == "downloading" {
		p.samples = append(p.samples, p.rate)
		if p.rate > 0 {
			p.lastMoved = now
		} else if stallTimeout > 0 && now.Sub(p.lastMoved) > stallTimeout {
			p.stalled = true
			p.state = "stalled"
			p.leave()
		}
	}
	p.lastTotal = s.Downloaded
}

// money records what the peer paid and earned (after Close, earnings are
// redeemed).
func (p *emuPeer) money() {
	if pay := p.node.Payments(); pay != nil {
		st := pay.Stats()
		p.paid, p.earned = st.Spent, st.Earned
	}
}

// leave stops the peer, keeping what the report needs.
func (p *emuPeer) leave() {
	if p.node == nil {
		return
	}
	p.recv = p.node.Torrent().ReceivedFrom()
	p.node.Close()
	p.money()
	p.node = nil
	p.rate, p.upRate, p.peers = 0, 0, 0
}

func buildReport(sc Scenario, peers []*emuPeer, originIP netip.Addr, timedOut bool) *Report {
	r := &Report{
		KumarRossS: sc.KumarRoss(),
		TimedOut:   timedOut,
		Classes:    map[string]*ClassReport{},
	}
	var first, last time.Time
	samples := map[string][]int64{}
	for _, p := range peers {
		class := "free"
		if sc.Payments {
			class = p.g.Class
		}
		cls := r.Classes[class]
		if cls == nil {
			cls = &ClassReport{TargetBps: sc.minRate(class)}
			r.Classes[class] = cls
		}
		pr := PeerReport{ID: p.id, Group: p.group, Class: class, Completed: !p.doneAt.IsZero(), Stalled: p.stalled, Paid: p.paid, Earned: p.earned}
		for ip, n := range p.recv {
			if ip == originIP {
				pr.FromOriginBytes += n
			} else {
				pr.FromPeersBytes += n
			}
		}
		r.OriginBytes += pr.FromOriginBytes
		r.TotalBytes += pr.FromOriginBytes + pr.FromPeersBytes
		cls.Peers++
		if !p.started.IsZero() {
			cls.Admitted++
			if first.IsZero() || p.started.Before(first) {
				first = p.started
			}
		}
		if pr.Completed {
			cls.Completed++
			el := p.doneAt.Sub(p.started).Seconds()
			pr.CompletedAfterS = el
			pr.AvgRateBps = int64(float64(sc.Size) / max(el, 1e-3))
			pr.MinWindowRateBps = minWindowRate(p.samples)
			if pr.MinWindowRateBps >= cls.TargetBps {
				cls.MetTarget++
			}
			if p.doneAt.After(last) {
				last = p.doneAt
			}
			if len(p.samples) > 5 {
				samples[class] = append(samples[class], p.samples[5:]...)
			}
		}
		if p.stalled {
			r.Stalled++
		}
		r.Peers = append(r.Peers, pr)
	}
	for name, cls := range r.Classes {
		cls.P5RateBps = percentile(samples[name], 5)
		cls.MedianRateBps = percentile(samples[name], 50)
	}
	if !last.IsZero() {
		r.MakespanS = last.Sub(first).Seconds()
	}
	if r.TotalBytes > 0 {
		r.OffloadRatio = 1 - float64(r.OriginBytes)/float64(r.TotalBytes)
	}
	return r
}

func writeRandomFile(path string, size int64, rng *rand.Rand) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		n := min(int64(len(buf)), left)
		for i := 0; i < int(n); i += 8 {
			v := rng.Uint64()
			for j := 0; j < 8 && i+j < int(n); j++ {
				buf[i+j] = byte(v >> (8 * j))
			}
		}
		if _, err := f.Write(buf[:n]); err != nil {
			f.Close()
			return err
		}
		left -= n
	}
	return errors.Join(f.Sync(), f.Close())
}
