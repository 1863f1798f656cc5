package tracker

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/bencode"
)

// Defaults for the zero fields of ServerConfig.
const (
	DefaultInterval         = 30 * time.Minute
	DefaultNumWant          = 50
	DefaultMaxNumWant       = 200
	DefaultMaxPeersPerSwarm = 50_000
	DefaultMaxSwarms        = 100_000
	DefaultMaxPeers         = 1_000_000
	// MaxScrapeHashes bounds the info hashes one scrape may ask for, so a
	// single request cannot make the tracker lock every swarm it holds.
	MaxScrapeHashes = 100
)

// ServerConfig configures a Server. The zero value is usable: every zero
// field takes the documented default.
type ServerConfig struct {
	// Interval is the re-announce interval told to clients (default 30 min).
	Interval time.Duration
	// MinInterval is the "min interval" told to clients (default Interval/2).
	MinInterval time.Duration
	// PeerTTL is how long a peer stays listed without announcing again
	// (default 2×Interval, so one lost announce does not drop a peer).
	PeerTTL time.Duration
	// MaxNumWant caps the peers returned per announce (default 200), and
	// DefaultNumWant is what a client gets when it does not say (default 50).
	MaxNumWant, DefaultNumWant int
	// MaxPeersPerSwarm, MaxSwarms and MaxPeers bound memory. A new peer in a
	// full swarm (or tracker) still gets peers but is not registered, and
	// is told so in a warning; a new torrent beyond MaxSwarms is refused.
	MaxPeersPerSwarm, MaxSwarms, MaxPeers int
	// Allow restricts the tracker to some torrents; nil allows any.
	Allow func(infoHash [20]byte) bool
	// Policy is consulted before each admitted announce; nil admits all.
	Policy Policy
	// Now is the clock; nil means time.Now. Tests inject a fake clock.
	Now func() time.Time
	// Logger receives debug logs about refused requests; nil discards.
	Logger *slog.Logger
}

// Stats is a snapshot of the server's counters, for metrics.
type Stats struct {
	// Swarms, Peers and Seeders are current totals.
	Swarms, Peers, Seeders int64
	// Announces and Scrapes count the requests answered since start,
	// failures included; Failures counts those answered with a "failure
	// reason" and Refused those refused by the Policy (a subset of Failures).
	Announces, Scrapes, Failures, Refused uint64
}

// Server is an HTTP tracker. It is an http.Handler that answers announce
// and scrape requests; it may be mounted under any prefix, because it looks
// only at the last element of the request path: "announce…" is an
// announce, "scrape…" a scrape (the BEP 48 convention).
type Server struct {
	cfg    ServerConfig
	policy Policy
	ranker PeerRanker
	log    *slog.Logger

	mu     sync.RWMutex // guards swarms (the map, not the swarms' contents)
	swarms map[[20]byte]*swarm

	peers, seeders                         atomic.Int64
	announces, scrapes, failures, refusals atomic.Uint64

	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

// NewServer returns a Server and starts its expiry sweeper, which removes
// expired peers from idle swarms and forgets empty swarms. Call Close to
// stop it.
func NewServer(cfg ServerConfig) *Server {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.MinInterval <= 0 {
		cfg.MinInterval = cfg.Interval / 2
	}
	if cfg.PeerTTL <= 0 {
		cfg.PeerTTL = 2 * cfg.Interval
	}
	if cfg.MaxNumWant <= 0 {
		cfg.MaxNumWant = DefaultMaxNumWant
	}
	if cfg.DefaultNumWant <= 0 {
		cfg.DefaultNumWant = min(DefaultNumWant, cfg.MaxNumWant)
	}
	if cfg.MaxPeersPerSwarm <= 0 {
		cfg.MaxPeersPerSwarm = DefaultMaxPeersPerSwarm
	}
	if cfg.MaxSwarms <= 0 {
		cfg.MaxSwarms = DefaultMaxSwarms
	}
	if cfg.MaxPeers <= 0 {
		cfg.MaxPeers = DefaultMaxPeers
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{
		cfg:    cfg,
		policy: cfg.Policy,
		log:    cfg.Logger,
		swarms: make(map[[20]byte]*swarm),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	if s.policy == nil {
		s.policy = AllowAll{}
	}
	s.ranker, _ = s.policy.(PeerRanker)
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	go s.sweepLoop()
	return s
}

// Close stops the expiry sweeper. The server keeps answering requests
// afterwards (expiry then happens only when a swarm is announced to); Close
// only ends the goroutine NewServer started. It is safe to call twice.
func (s *Server) Close() {
	s.stopOnce.Do(func() { close(s.stop) })
	<-s.done
}

// Stats returns the current counters.
func (s *Server) Stats() Stats {
	s.mu.RLock()
	n := len(s.swarms)
	s.mu.RUnlock()
	return Stats{
		Swarms:    int64(n),
		Peers:     s.peers.Load(),
		Seeders:   s.seeders.Load(),
		Announces: s.announces.Load(),
		Scrapes:   s.scrapes.Load(),
		Failures:  s.failures.Load(),
		Refused:   s.refusals.Load(),
	}
}

// SwarmStats returns the current counts of one torrent, as a scrape
// would report them, and whether the tracker knows the torrent.
func (s *Server) SwarmStats(infoHash [20]byte) (ScrapeStats, bool) {
	sw, _ := s.getSwarm(infoHash, false, time.Time{})
	if sw == nil {
		return ScrapeStats{}, false
	}
	now := s.cfg.Now()
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if sw.dead {
		return ScrapeStats{}, false
	}
	s.expireLocked(sw, now)
	return ScrapeStats{
		Complete:   sw.seeders,
		Incomplete: sw.len() - sw.seeders,
		Downloaded: int(sw.downloaded),
	}, true
}

// sweepEvery is how often the sweeper runs: often enough that an idle
// swarm's peers disappear soon after their TTL, rarely enough to cost
// nothing on a big tracker.
func (s *Server) sweepEvery() time.Duration {
	return min(max(s.cfg.PeerTTL/4, time.Second), 5*time.Minute)
}

func (s *Server) sweepLoop() {
	defer close(s.done)
	t := time.NewTicker(s.sweepEvery())
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.sweep(s.cfg.Now())
		}
	}
}

// sweep expires peers in every swarm and forgets the swarms left empty.
// Swarms are locked one at a time, and the map is write-locked only to
// delete the few swarms found empty, so announces barely notice a sweep.
func (s *Server) sweep(now time.Time) {
	s.mu.RLock()
	all := make(map[[20]byte]*swarm, len(s.swarms))
	for h, sw := range s.swarms {
		all[h] = sw
	}
	s.mu.RUnlock()
	var empty [][20]byte
	for h, sw := range all {
		sw.mu.Lock()
		s.expireLocked(sw, now)
		if sw.len() == 0 && now.Sub(sw.lastActive) >= s.cfg.PeerTTL/4 {
			empty = append(empty, h)
		}
		sw.mu.Unlock()
	}
	if len(empty) == 0 {
		return
	}
	// Lock order is server map, then swarm; announces never hold a swarm
	// lock while taking the map lock. The swarm is checked again because
	// an announce may have joined it since the pass above.
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range empty {
		sw := s.swarms[h]
		if sw == nil {
			continue
		}
		sw.mu.Lock()
		if sw.len() == 0 && now.Sub(sw.lastActive) >= s.cfg.PeerTTL/4 {
			sw.dead = true
			delete(s.swarms, h)
		}
		sw.mu.Unlock()
	}
}

func (s *Server) expireLocked(sw *swarm, now time.Time) {
	p, sd := sw.expire(now, s.cfg.PeerTTL)
	if p > 0 {
		s.peers.Add(-int64(p))
		s.seeders.Add(-int64(sd))
	}
}

// ServeHTTP answers announce and scrape requests. Tracker-level errors
// (bad parameters, refusals) are answered with HTTP 200 and a bencoded
// "failure reason", because that is what BitTorrent clients show to the
// user; only wrong methods and unknown paths get HTTP errors.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	last := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
	switch {
	case strings.HasPrefix(last, "announce"):
		s.announces.Add(1)
		s.write(w, s.announce(r))
	case strings.HasPrefix(last, "scrape"):
		s.scrapes.Add(1)
		s.write(w, s.scrape(r))
	default:
		http.NotFound(w, r)
	}
}

// reply is a response dictionary before encoding.
type reply map[string]any

func (s *Server) fail(r *http.Request, reason string, err error) reply {
	s.failures.Add(1)
	s.log.Debug("tracker request refused", "remote", r.RemoteAddr, "reason", reason, "err", err)
	return reply{"failure reason": reason}
}

func (s *Server) write(w http.ResponseWriter, rep reply) {
	body, err := bencode.Marshal(map[string]any(rep))
	if err != nil {
		// Our own replies are always encodable; reaching this is a bug.
		s.log.Error("tracker reply encoding failed", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain")
	h.Set("Cache-Control", "no-store")
	_, _ = w.Write(body)
}

func remoteAddr(r *http.Request) (netip.Addr, error) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("unusable remote address %q: %w", r.RemoteAddr, err)
	}
	return ap.Addr(), nil
}

// errRetry is returned by lookupSwarm when it found a swarm the sweeper
// had just retired; the caller looks again.
var errRetry = errors.New("swarm retired")

func (s *Server) announce(r *http.Request) reply {
	remote, err := remoteAddr(r)
	if err != nil {
		return s.fail(r, "cannot determine your address", err)
	}
	q, err := ParseAnnounceQuery(r.URL.RawQuery, remote)
	if err != nil {
		return s.fail(r, err.Error(), err)
	}
	if s.cfg.Allow != nil && !s.cfg.Allow(q.InfoHash) {
		return s.fail(r, "torrent not registered with this tracker", nil)
	}
	for {
		rep, err := s.announceSwarm(r, q)
		if err == errRetry {
			continue
		}
		return rep
	}
}

// getSwarm returns the swarm for h, creating it unless create is false.
func (s *Server) getSwarm(h [20]byte, create bool, now time.Time) (*swarm, error) {
	s.mu.RLock()
	sw := s.swarms[h]
	s.mu.RUnlock()
	if sw != nil || !create {
		return sw, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if sw = s.swarms[h]; sw != nil {
		return sw, nil
	}
	if len(s.swarms) >= s.cfg.MaxSwarms {
		return nil, errors.New("tracker is full: too many torrents")
	}
	sw = newSwarm(now)
	s.swarms[h] = sw
	return sw, nil
}

func (s *Server) announceSwarm(r *http.Request, q *AnnounceQuery) (reply, error) {
	now := s.cfg.Now()
	sw, err := s.getSwarm(q.InfoHash, q.Event != EventStopped, now)
	if err != nil {
		return s.fail(r, err.Error(), err), nil
	}
	if sw == nil { // a stopped announce for a torrent we do not know
		return s.answer(0, 0, "", nil, q), nil
	}
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if sw.dead {
		return nil, errRetry
	}
	sw.lastActive = now
	s.expireLocked(sw, now)

	existing := sw.peers[q.PeerID]
	if existing != nil && !sameOwner(existing, q) {
		// Without this check anyone could unregister or move another
		// peer by announcing its (public) peer id.
		return s.fail(r, "peer_id is registered from another address; send the same key", nil), nil
	}
	if q.Event == EventStopped {
		if existing != nil {
			s.removeLocked(sw, existing)
		}
		return s.answer(sw.seeders, sw.len()-sw.seeders, "", nil, q), nil
	}

	dec, err := s.policy.Admit(q, swarmView{sw}, now)
	if err != nil {
		s.log.Error("tracker policy failed", "err", err)
		return s.fail(r, "internal error", err), nil
	}
	if dec.Refuse != "" {
		s.refusals.Add(1)
		rep := s.fail(r, dec.Refuse, nil)
		if dec.RetryIn > 0 {
			rep["retry in"] = int64(math.Ceil(dec.RetryIn.Minutes()))
			rep["retry after"] = int64(math.Ceil(dec.RetryIn.Seconds()))
		}
		return rep, nil
	}
	warning := dec.Warning

	info := PeerInfo{
		ID: q.PeerID, Addr: q.Addr, Left: q.Left,
		Uploaded: q.Uploaded, Downloaded: q.Downloaded,
		LastSeen: now, Extra: q.Extra,
	}
	if q.Event == EventCompleted && (existing == nil || !existing.info.Seeder()) {
		sw.downloaded++
	}
	switch {
	case existing != nil:
		wasSeeder := existing.info.Seeder()
		sw.touch(existing, info)
		if q.Key != "" {
			existing.key = q.Key
		}
		if wasSeeder != info.Seeder() {
			if info.Seeder() {
				s.seeders.Add(1)
			} else {
				s.seeders.Add(-1)
			}
		}
	case sw.len() >= s.cfg.MaxPeersPerSwarm || s.peers.Load() >= int64(s.cfg.MaxPeers):
		warning = joinWarning(warning, "tracker is full: you were not registered, but here are peers")
	default:
		sw.add(&peerEntry{info: info, key: q.Key})
		s.peers.Add(1)
		if info.Seeder() {
			s.seeders.Add(1)
		}
	}

	want := q.NumWant
	if want <= 0 {
		want = s.cfg.DefaultNumWant
	}
	want = min(want, s.cfg.MaxNumWant)
	var peers []PeerInfo
	if s.ranker != nil {
		peers = sw.sample(q.PeerID, q.Left == 0, sw.len())
		s.ranker.RankPeers(q, peers, now)
		peers = peers[:min(want, len(peers))]
	} else {
		peers = sw.sample(q.PeerID, q.Left == 0, want)
	}
	return s.answer(sw.seeders, sw.len()-sw.seeders, warning, peers, q), nil
}

func (s *Server) removeLocked(sw *swarm, e *peerEntry) {
	if e.info.Seeder() {
		s.seeders.Add(-1)
	}
	sw.remove(e)
	s.peers.Add(-1)
}

// sameOwner reports whether q may update the registration e: it must come
// with the key e registered with or, when either side sent no key, from the
// same IP address.
func sameOwner(e *peerEntry, q *AnnounceQuery) bool {
	if e.key != "" && q.Key != "" {
		return e.key == q.Key
	}
	return e.info.Addr.Addr() == q.Addr.Addr()
}

func joinWarning(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// answer builds a successful announce reply.
func (s *Server) answer(complete, incomplete int, warning string, peers []PeerInfo, q *AnnounceQuery) reply {
	rep := reply{
		"interval":     int64(s.cfg.Interval / time.Second),
		"min interval": int64(s.cfg.MinInterval / time.Second),
		"complete":     int64(complete),
		"incomplete":   int64(incomplete),
	}
	if warning != "" {
		rep["warning message"] = warning
	}
	// BEP 24: tell the client the address it announced from, so a peer
	// behind NAT learns its public IP from a party it trusts.
	if ip := q.Addr.Addr(); ip.IsValid() {
		rep["external ip"] = string(ip.Unmap().AsSlice())
	}
	if q.Compact {
		var v4, v6 []byte
		for _, p := range peers {
			if p.Addr.Addr().Is4() {
				v4 = appendCompact(v4, p.Addr)
			} else {
				v6 = appendCompact(v6, p.Addr)
			}
		}
		rep["peers"] = string(v4)
		if len(v6) > 0 {
			rep["peers6"] = string(v6)
		}
		return rep
	}
	list := make([]any, 0, len(peers))
	for _, p := range peers {
		d := map[string]any{
			"ip":   p.Addr.Addr().String(),
			"port": int64(p.Addr.Port()),
		}
		if !q.NoPeerID {
			d["peer id"] = string(p.ID[:])
		}
		list = append(list, d)
	}
	rep["peers"] = list
	return rep
}

// appendCompact appends the BEP 23 / BEP 7 compact form of a: the address
// bytes (4 or 16) followed by the port in network byte order.
func appendCompact(b []byte, a netip.AddrPort) []byte {
	b = append(b, a.Addr().AsSlice()...)
	return append(b, byte(a.Port()>>8), byte(a.Port()))
}

func (s *Server) scrape(r *http.Request) reply {
	vals, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return s.fail(r, "malformed query", err)
	}
	hashes := vals["info_hash"]
	if len(hashes) == 0 {
		return s.fail(r, "full scrape is not supported: name at least one info_hash", nil)
	}
	if len(hashes) > MaxScrapeHashes {
		return s.fail(r, fmt.Sprintf("too many info_hash parameters: at most %d", MaxScrapeHashes), nil)
	}
	files := make(map[string]any, len(hashes))
	for _, hs := range hashes {
		if len(hs) != 20 {
			return s.fail(r, fmt.Sprintf("invalid info_hash: %d bytes, want 20", len(hs)), nil)
		}
		var h [20]byte
		copy(h[:], hs)
		if s.cfg.Allow != nil && !s.cfg.Allow(h) {
			continue
		}
		st, _ := s.SwarmStats(h)
		files[hs] = map[string]any{
			"complete":   int64(st.Complete),
			"incomplete": int64(st.Incomplete),
			"downloaded": int64(st.Downloaded),
		}
	}
	return reply{"files": files}
}
