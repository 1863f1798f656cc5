package tracker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"net/url"
	"sync/atomic"
	"time"
)

// ErrNoTrackers is returned by Announcer.Run when no tier holds a URL this
// package can announce to.
var ErrNoTrackers = errors.New("no usable http(s) tracker")

// State is the transfer state reported in each announce.
type State struct {
	// Uploaded and Downloaded are payload bytes since the torrent started;
	// Left is what is still missing (zero for a seeder).
	Uploaded, Downloaded, Left int64
}

// AnnouncerConfig configures an Announcer. Tiers, State and Port are
// required; the other fields have defaults.
type AnnouncerConfig struct {
	// Tiers is the BEP 12 announce-list: tiers are tried in order, and the
	// URLs inside one tier in a random order fixed at start, the URL that
	// answers being promoted to the front of its tier. A torrent with only
	// "announce" has one tier with one URL.
	Tiers [][]string
	// InfoHash, PeerID and Port identify this download to the tracker.
	InfoHash, PeerID [20]byte
	Port             uint16
	// IP, when valid, is announced as the "ip" parameter (see
	// AnnounceRequest.IP).
	IP netip.Addr
	// Key is the BEP 3 key; zero picks a random one.
	Key uint32
	// NumWant is how many peers to ask for; zero leaves it to the tracker.
	NumWant int
	// State returns the counters for each announce. It is called from the
	// Run goroutine and must be safe to call concurrently with the engine.
	State func() State
	// Extra, if set, returns extension parameters for each announce (such
	// as Floodgate's signed fields, which must be fresh each time).
	Extra func(Event) url.Values
	// OnPeers receives the peers of each successful announce, and
	// OnResponse the whole reply; OnError each failed request with the
	// tracker's URL. They run on the Run goroutine and must not block.
	OnPeers    func(peers []netip.AddrPort)
	OnResponse func(trackerURL string, resp *AnnounceResponse)
	OnError    func(trackerURL string, err error)
	// HTTPClient sends the requests; nil uses http.DefaultClient, with
	// each request bounded by RequestTimeout either way.
	HTTPClient *http.Client
	// RequestTimeout bounds one tracker request (default 30 s).
	RequestTimeout time.Duration
	// DefaultInterval applies when a tracker names no interval (default
	// 30 min). MinInterval is a floor under any interval a tracker names,
	// so a broken tracker cannot make us announce in a tight loop
	// (default 5 s).
	DefaultInterval, MinInterval time.Duration
	// RetryMin and RetryMax bound the exponential backoff after every
	// tracker failed (defaults 15 s and 30 min).
	RetryMin, RetryMax time.Duration
	// StopTimeout bounds the "stopped" announce sent when Run's context
	// ends (default 5 s).
	StopTimeout time.Duration
}

// Announcer keeps one torrent announced to its trackers: it sends
// "started", re-announces on the tracker's interval, sends "completed"
// when told and "stopped" on exit, and fails over between BEP 12 tiers
// with backoff when trackers are down.
type Announcer struct {
	cfg   AnnouncerConfig
	tiers [][]string // owned by the Run goroutine once it starts
	// trackerIDs holds the "tracker id" each tracker returned, echoed in
	// later announces to it (BEP 3). Owned by the Run goroutine.
	trackerIDs map[string]string
	running    atomic.Bool

	completed atomic.Bool   // Completed was called
	wake      chan struct{} // nudges Run after Completed or AnnounceNow
	now       atomic.Bool   // AnnounceNow was called
}

// NewAnnouncer returns an Announcer for cfg. Nothing happens until Run.
func NewAnnouncer(cfg AnnouncerConfig) *Announcer {
	if cfg.Key == 0 {
		cfg.Key = rand.Uint32() | 1
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.DefaultInterval <= 0 {
		cfg.DefaultInterval = DefaultInterval
	}
	if cfg.MinInterval <= 0 {
		cfg.MinInterval = 5 * time.Second
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = 15 * time.Second
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = max(cfg.RetryMin, 30*time.Minute)
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 5 * time.Second
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	tiers := make([][]string, 0, len(cfg.Tiers))
	for _, t := range cfg.Tiers {
		if len(t) == 0 {
			continue
		}
		t = append([]string(nil), t...)
		rand.Shuffle(len(t), func(i, j int) { t[i], t[j] = t[j], t[i] })
		tiers = append(tiers, t)
	}
	return &Announcer{cfg: cfg, tiers: tiers, trackerIDs: make(map[string]string), wake: make(chan struct{}, 1)}
}

// Completed asks for a "completed" announce as soon as possible. Call it
// once, when the download finishes; a torrent that was already complete
// when Run started should not call it (its "started" already says Left=0).
func (a *Announcer) Completed() {
	a.completed.Store(true)
	a.nudge()
}

// AnnounceNow asks for an early regular announce, for when the engine
// needs more peers. It is honoured no sooner than the tracker's min
// interval after the last successful announce.
func (a *Announcer) AnnounceNow() {
	a.now.Store(true)
	a.nudge()
}

func (a *Announcer) nudge() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// Run announces until ctx ends, then sends "stopped" (if "started" was
// ever accepted) to the tracker that answered last, bounded by
// StopTimeout. It returns nil after that, or an error straight away if
// the configuration holds no usable tracker or Run is already running.
// Tracker failures are reported through OnError, never returned.
func (a *Announcer) Run(ctx context.Context) error {
	if a.cfg.State == nil || a.cfg.Port == 0 {
		return errors.New("announcer: State and Port are required")
	}
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("announcer: Run is already running")
	}
	defer a.running.Store(false)
	if err := a.pruneUnsupported(); err != nil {
		return err
	}

	var (
		started      bool
		lastURL      string
		lastSuccess  time.Time
		minInterval  = a.cfg.MinInterval
		failures     int
		completedNow bool
	)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			if started && lastURL != "" {
				a.stop(ctx, lastURL)
			}
			return nil
		case <-timer.C:
		case <-a.wake:
			due := a.completed.Load() && started && !completedNow
			// An early announce waits out a failure backoff: the
			// trackers are down, asking again sooner would not help.
			if !due && a.now.Load() && failures == 0 {
				if wait := minInterval - time.Since(lastSuccess); wait > 0 && !lastSuccess.IsZero() {
					timer.Reset(wait)
					continue
				}
				due = true
			}
			if !due {
				continue
			}
		}
		a.now.Store(false)

		ev := EventNone
		switch {
		case !started:
			ev = EventStarted
		case a.completed.Load() && !completedNow:
			ev = EventCompleted
		}
		st := a.cfg.State()
		url, resp, err := a.announceTiers(ctx, ev, st)
		if err != nil && ctx.Err() != nil {
			// Shutting down. A "started" cut off mid-request may have
			// registered us all the same, so that tracker gets a
			// "stopped" too; for one that never heard of us it is a
			// harmless no-op.
			if ev == EventStarted && url != "" {
				started, lastURL = true, url
			}
			continue // the select above ends the loop
		}
		if err != nil {
			failures++
			timer.Reset(a.backoff(failures, err))
			continue
		}
		failures = 0
		lastURL, lastSuccess = url, time.Now()
		switch ev {
		case EventStarted:
			started = true
			// A download that was already complete at start has told
			// the tracker so with Left=0; "completed" would count it as
			// a fresh download.
			if st.Left == 0 {
				completedNow = true
			}
		case EventCompleted:
			completedNow = true
		}
		if a.cfg.OnResponse != nil {
			a.cfg.OnResponse(url, resp)
		}
		if a.cfg.OnPeers != nil && len(resp.Peers) > 0 {
			a.cfg.OnPeers(resp.Peers)
		}
		interval := resp.Interval
		if interval <= 0 {
			interval = a.cfg.DefaultInterval
		}
		interval = max(interval, a.cfg.MinInterval)
		minInterval = max(resp.MinInterval, a.cfg.MinInterval)
		if a.completed.Load() && !completedNow {
			interval = 0
		}
		timer.Reset(interval)
	}
}

// pruneUnsupported drops URLs this package cannot announce to, reporting
// each once through OnError.
func (a *Announcer) pruneUnsupported() error {
	var kept [][]string
	for _, tier := range a.tiers {
		var t []string
		for _, u := range tier {
			if _, err := parseTrackerURL(u); err != nil {
				a.reportError(u, err)
				continue
			}
			t = append(t, u)
		}
		if len(t) > 0 {
			kept = append(kept, t)
		}
	}
	a.tiers = kept
	if len(kept) == 0 {
		return ErrNoTrackers
	}
	return nil
}

func (a *Announcer) reportError(u string, err error) {
	if a.cfg.OnError != nil {
		a.cfg.OnError(u, err)
	}
}

// announceTiers tries the tiers in order and returns the first answer.
// The URL that answers moves to the front of its tier (BEP 12). When ctx
// ends mid-request it returns the URL that was being asked.
func (a *Announcer) announceTiers(ctx context.Context, ev Event, st State) (string, *AnnounceResponse, error) {
	var lastErr error
	for _, tier := range a.tiers {
		for i, u := range tier {
			resp, err := a.announceOne(ctx, u, ev, st)
			if err != nil && ctx.Err() != nil {
				return u, nil, ctx.Err()
			}
			if err != nil {
				a.reportError(u, err)
				lastErr = err
				continue
			}
			if resp.TrackerID != "" {
				a.trackerIDs[u] = resp.TrackerID
			}
			copy(tier[1:i+1], tier[:i])
			tier[0] = u
			return u, resp, nil
		}
	}
	return "", nil, lastErr
}

func (a *Announcer) announceOne(ctx context.Context, u string, ev Event, st State) (*AnnounceResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.RequestTimeout)
	defer cancel()
	req := AnnounceRequest{
		InfoHash: a.cfg.InfoHash, PeerID: a.cfg.PeerID, Port: a.cfg.Port,
		Uploaded: st.Uploaded, Downloaded: st.Downloaded, Left: st.Left,
		Event: ev, NumWant: a.cfg.NumWant, Key: a.cfg.Key,
		TrackerID: a.trackerIDs[u], IP: a.cfg.IP,
	}
	if a.cfg.Extra != nil {
		req.Extra = a.cfg.Extra(ev)
	}
	return Announce(ctx, a.cfg.HTTPClient, u, req)
}

// backoff returns the wait after the n-th consecutive round in which every
// tracker failed: exponential from RetryMin to RetryMax with ±20 % jitter,
// so that many clients behind one dead tracker do not return in step, but
// never sooner than a tracker's own "retry in".
func (a *Announcer) backoff(n int, err error) time.Duration {
	d := a.cfg.RetryMin
	for i := 1; i < n && d < a.cfg.RetryMax; i++ {
		d *= 2
	}
	d = min(d, a.cfg.RetryMax)
	d = time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
	var fe *FailureError
	if errors.As(err, &fe) && fe.RetryIn > d {
		d = fe.RetryIn
	}
	return d
}

// stop sends the "stopped" announce. The run context has ended, so it
// gets a fresh deadline of its own.
func (a *Announcer) stop(ctx context.Context, u string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.StopTimeout)
	defer cancel()
	st := a.cfg.State()
	if _, err := a.announceOne(ctx, u, EventStopped, st); err != nil {
		a.reportError(u, fmt.Errorf("stopped announce: %w", err))
	}
}
