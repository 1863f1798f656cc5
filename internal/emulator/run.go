package emulator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/metainfo"
	"github.com/floodgate-p2p/floodgate/internal/node"
	"github.com/floodgate-p2p/floodgate/internal/tracker"
)

// PeerView is one peer's state in a live snapshot.
type PeerView struct {
	ID, Group string
	State     string // waiting, downloading, seeding, left, stalled
	Done      int64  // verified bytes
	Rate      int64  // bytes received in the last second
	Up        int64  // bytes sent in the last second
	Peers     int
}

// View is a once-a-second snapshot for live displays.
type View struct {
	Elapsed     time.Duration
	Size        int64
	Peers       []PeerView
	OriginUp    int64 // origin bytes sent in the last second
	OriginTotal int64
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

	// Tracker on 127.0.0.1.
	trk := tracker.NewServer(tracker.ServerConfig{Interval: 5 * time.Second})
	defer trk.Close()
	tln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("emulator: tracker listen: %w", err)
	}
	hs := &http.Server{Handler: trk, ReadHeaderTimeout: 5 * time.Second}
	var srvWG sync.WaitGroup
	srvWG.Add(1)
	go func() { defer srvWG.Done(); _ = hs.Serve(tln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
		srvWG.Wait()
	}()

	// Content and torrent.
	content := filepath.Join(dir, "content.bin")
	if err := writeRandomFile(content, sc.Size, rng); err != nil {
		return nil, err
	}
	mi, err := metainfo.Build(ctx, content, metainfo.BuildOptions{
		PieceLength: sc.PieceLength,
		Announce:    fmt.Sprintf("http://%s/announce", tln.Addr()),
		CreatedBy:   "Floodgate emulator",
	})
	if err != nil {
		return nil, err
	}

	originIP := netip.AddrFrom4([4]byte{127, 0, 0, 2})
	origin, err := node.Start(ctx, node.Config{
		Torrent:     mi,
		DataPath:    content,
		Seed:        true,
		Free:        true,
		Listen:      netip.AddrPortFrom(originIP, 0).String(),
		UploadLimit: sc.OriginUpload,
		Logger:      logger.With("peer", "origin"),
	})
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
			if err := p.step(ctx, now, start, mi, logger); err != nil {
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
			view.Peers = append(view.Peers, PeerView{ID: p.id, Group: p.group, State: p.state, Done: p.have, Rate: p.rate, Up: p.upRate, Peers: p.peers})
		}
		os := origin.Torrent().Stats()
		view.OriginUp, originLast = os.Uploaded-originLast, os.Uploaded
		view.OriginTotal = os.Uploaded
		if opts.Observe != nil {
			opts.Observe(view)
		}
	}
	return buildReport(sc, peers, originIP, timedOut), nil
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
func (p *emuPeer) step(ctx context.Context, now, start time.Time, mi *metainfo.MetaInfo, logger *slog.Logger) error {
	switch p.state {
	case "waiting":
		if now.Sub(start) < p.arrive {
			return nil
		}
		n, err := node.Start(ctx, node.Config{
			Torrent:       mi,
			DataPath:      filepath.Join(p.dataDir, mi.Info.Name),
			Free:          true,
			Listen:        netip.AddrPortFrom(p.ip, 0).String(),
			UploadLimit:   p.g.Upload,
			DownloadLimit: p.g.Download,
			Logger:        logger.With("peer", p.id),
		})
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

// leave stops the peer, keeping what the report needs.
func (p *emuPeer) leave() {
	if p.node == nil {
		return
	}
	p.recv = p.node.Torrent().ReceivedFrom()
	p.node.Close()
	p.node = nil
}

func buildReport(sc Scenario, peers []*emuPeer, originIP netip.Addr, timedOut bool) *Report {
	r := &Report{
		KumarRossS: sc.KumarRoss(),
		TimedOut:   timedOut,
		Ledger:     LedgerReport{Conserved: true},
		Classes:    map[string]*ClassReport{},
	}
	var first, last time.Time
	cls := &ClassReport{}
	var allSamples []int64
	for _, p := range peers {
		if p.node != nil {
			p.recv = p.node.Torrent().ReceivedFrom()
		}
		pr := PeerReport{ID: p.id, Group: p.group, Class: "free", Completed: !p.doneAt.IsZero(), Stalled: p.stalled}
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
			if p.doneAt.After(last) {
				last = p.doneAt
			}
			if len(p.samples) > 5 {
				allSamples = append(allSamples, p.samples[5:]...)
			}
		}
		if p.stalled {
			r.Stalled++
		}
		r.Peers = append(r.Peers, pr)
	}
	cls.MetTarget = cls.Completed
	cls.P5RateBps = percentile(allSamples, 5)
	cls.MedianRateBps = percentile(allSamples, 50)
	r.Classes["free"] = cls
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
