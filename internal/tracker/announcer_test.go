package tracker

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"sync"
	"testing"
	"time"
)

// eventLog wraps a tracker handler and records each announce's event and
// left counter.
type eventLog struct {
	h      http.Handler
	mu     sync.Mutex
	events []string
	extra  []string
	seen   chan string
}

func newEventLog(h http.Handler) *eventLog {
	return &eventLog{h: h, seen: make(chan string, 100)}
}

func (l *eventLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ev := r.URL.Query().Get("event")
	l.mu.Lock()
	l.events = append(l.events, ev)
	l.extra = append(l.extra, r.URL.Query().Get("fg_event"))
	l.mu.Unlock()
	l.h.ServeHTTP(w, r)
	l.seen <- ev
}

func (l *eventLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.events...)
}

// waitEvent waits for the next announce the tracker answered.
func (l *eventLog) waitEvent(t *testing.T) string {
	t.Helper()
	select {
	case ev := <-l.seen:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatalf("no announce arrived; events so far %q", l.get())
		return ""
	}
}

// deadURL returns the URL of a server that has already shut down, so
// connecting to it fails at once.
func deadURL(t *testing.T) string {
	ts := httptest.NewServer(http.NotFoundHandler())
	u := ts.URL + "/announce"
	ts.Close()
	return u
}

func runAnnouncer(t *testing.T, a *Announcer) (cancel func() error) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	var err error
	cancel = func() error {
		once.Do(func() {
			stop()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return after cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { cancel() })
	return cancel
}

func TestAnnouncerTierFailoverAndStop(t *testing.T) {
	s := NewServer(ServerConfig{Interval: time.Minute})
	defer s.Close()
	log := newEventLog(s)
	live := httptest.NewServer(log)
	defer live.Close()

	// Another peer is already in the swarm, so the announcer gets a peer.
	if _, err := Announce(context.Background(), live.Client(), live.URL+"/announce",
		AnnounceRequest{InfoHash: hashN(1), PeerID: peerN(9), Port: 9999, Left: 0}); err != nil {
		t.Fatal(err)
	}
	log.waitEvent(t)

	dead := deadURL(t)
	var mu sync.Mutex
	var errURLs []string
	peersCh := make(chan []netip.AddrPort, 10)
	a := NewAnnouncer(AnnouncerConfig{
		Tiers:      [][]string{{dead}, {"udp://tracker.example:6969/announce", live.URL + "/announce"}},
		InfoHash:   hashN(1),
		PeerID:     peerN(1),
		Port:       6881,
		State:      func() State { return State{Left: 100} },
		HTTPClient: live.Client(),
		OnPeers:    func(p []netip.AddrPort) { peersCh <- p },
		OnError: func(u string, err error) {
			mu.Lock()
			errURLs = append(errURLs, u)
			mu.Unlock()
		},
	})
	cancel := runAnnouncer(t, a)
	if ev := log.waitEvent(t); ev != "started" {
		t.Fatalf("first event = %q, want started", ev)
	}
	select {
	case p := <-peersCh:
		if len(p) != 1 || p[0] != netip.MustParseAddrPort("127.0.0.1:9999") {
			t.Fatalf("OnPeers got %v", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OnPeers not called")
	}
	if st := s.Stats(); st.Peers != 2 {
		t.Fatalf("tracker has %d peers, want 2", st.Peers)
	}
	if err := cancel(); err != nil {
		t.Fatalf("Run returned %v", err)
	}
	if ev := log.waitEvent(t); ev != "stopped" {
		t.Fatalf("event on exit = %q, want stopped", ev)
	}
	if st := s.Stats(); st.Peers != 1 {
		t.Fatalf("after stop the tracker has %d peers, want 1", st.Peers)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(errURLs) != 2 || errURLs[0] != "udp://tracker.example:6969/announce" || errURLs[1] != dead {
		t.Fatalf("errors reported for %q, want the udp URL once then the dead one", errURLs)
	}
}

func TestAnnouncerPromotesWorkingURLInTier(t *testing.T) {
	s := NewServer(ServerConfig{Interval: time.Minute})
	defer s.Close()
	log := newEventLog(s)
	live := httptest.NewServer(log)
	defer live.Close()
	dead := deadURL(t)
	liveURL := live.URL + "/announce"
	answered := make(chan string, 1)
	a := NewAnnouncer(AnnouncerConfig{
		Tiers:    [][]string{{dead, liveURL}},
		InfoHash: hashN(1), PeerID: peerN(1), Port: 6881,
		State:      func() State { return State{Left: 1} },
		HTTPClient: live.Client(),
		OnResponse: func(u string, _ *AnnounceResponse) { answered <- u },
	})
	cancel := runAnnouncer(t, a)
	if u := <-answered; u != liveURL {
		t.Fatalf("answer from %q", u)
	}
	log.waitEvent(t)
	cancel()
	log.waitEvent(t)
	if a.tiers[0][0] != liveURL {
		t.Fatalf("tier after success = %q, want the live URL first", a.tiers[0])
	}
}

func TestAnnouncerEventsAndReannounce(t *testing.T) {
	// A tracker that names no interval, so DefaultInterval applies.
	var idMu sync.Mutex
	var trackerIDs []string
	log := newEventLog(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		idMu.Lock()
		trackerIDs = append(trackerIDs, r.URL.Query().Get("trackerid"))
		idMu.Unlock()
		_, _ = w.Write([]byte("d5:peers0:10:tracker id4:T-42e"))
	}))
	ts := httptest.NewServer(log)
	defer ts.Close()
	var mu sync.Mutex
	left := int64(10)
	a := NewAnnouncer(AnnouncerConfig{
		Tiers:    [][]string{{ts.URL + "/announce"}},
		InfoHash: hashN(1), PeerID: peerN(1), Port: 6881,
		State: func() State {
			mu.Lock()
			defer mu.Unlock()
			return State{Left: left}
		},
		Extra:           func(ev Event) url.Values { return url.Values{"fg_event": {ev.String()}} },
		HTTPClient:      ts.Client(),
		DefaultInterval: 20 * time.Millisecond,
		MinInterval:     10 * time.Millisecond,
	})
	cancel := runAnnouncer(t, a)
	if ev := log.waitEvent(t); ev != "started" {
		t.Fatalf("first = %q", ev)
	}
	for range 2 {
		if ev := log.waitEvent(t); ev != "" {
			t.Fatalf("re-announce event = %q, want none", ev)
		}
	}
	mu.Lock()
	left = 0
	mu.Unlock()
	a.Completed()
	for ev := log.waitEvent(t); ev != "completed"; ev = log.waitEvent(t) {
		if ev != "" {
			t.Fatalf("unexpected event %q while waiting for completed", ev)
		}
	}
	cancel()
	events := log.get()
	if events[len(events)-1] != "stopped" {
		t.Fatalf("events = %q, want stopped last", events)
	}
	n := 0
	for _, ev := range events {
		if ev == "completed" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("events = %q, want exactly one completed", events)
	}
	idMu.Lock()
	if trackerIDs[0] != "" || trackerIDs[1] != "T-42" || trackerIDs[len(trackerIDs)-1] != "T-42" {
		t.Fatalf("tracker ids sent = %q, want none first and then the tracker's", trackerIDs)
	}
	idMu.Unlock()
	log.mu.Lock()
	defer log.mu.Unlock()
	if log.extra[0] != "started" || log.extra[len(log.extra)-1] != "stopped" {
		t.Fatalf("Extra was not asked per event: %q", log.extra)
	}
}

func TestAnnouncerSeederSendsNoCompleted(t *testing.T) {
	log := newEventLog(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("d8:intervali3600e5:peers0:e"))
	}))
	ts := httptest.NewServer(log)
	defer ts.Close()
	a := NewAnnouncer(AnnouncerConfig{
		Tiers:    [][]string{{ts.URL + "/announce"}},
		InfoHash: hashN(1), PeerID: peerN(1), Port: 6881,
		State:      func() State { return State{Left: 0} },
		HTTPClient: ts.Client(),
	})
	cancel := runAnnouncer(t, a)
	log.waitEvent(t)
	a.Completed() // already complete at start: must not count as a download
	a.AnnounceNow()
	cancel()
	if ev := log.waitEvent(t); ev != "stopped" {
		t.Fatalf("events = %q, want started then stopped", log.get())
	}
}

func TestAnnouncerBackoffAndNoStopWithoutStart(t *testing.T) {
	var mu sync.Mutex
	var errs []error
	got := make(chan struct{}, 100)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer ts.Close()
	a := NewAnnouncer(AnnouncerConfig{
		Tiers:    [][]string{{ts.URL + "/announce"}},
		InfoHash: hashN(1), PeerID: peerN(1), Port: 6881,
		State:      func() State { return State{Left: 1} },
		HTTPClient: ts.Client(),
		RetryMin:   5 * time.Millisecond,
		RetryMax:   20 * time.Millisecond,
		OnError: func(_ string, err error) {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
			got <- struct{}{}
		},
	})
	cancel := runAnnouncer(t, a)
	for range 4 {
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("announcer did not retry")
		}
	}
	cancel()
	mu.Lock()
	defer mu.Unlock()
	for _, err := range errs {
		var se *StatusError
		if !errors.As(err, &se) || se.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("error %v, want the 503", err)
		}
	}
	// Every attempt was a "started" retry; no "stopped" was sent for a
	// registration that never happened (that would show as an extra
	// error here after cancel).
	if n := len(errs); n < 4 {
		t.Fatalf("%d errors", n)
	}
}

func TestAnnouncerBadConfig(t *testing.T) {
	a := NewAnnouncer(AnnouncerConfig{
		Tiers: [][]string{{"udp://t.example:1/announce"}, {}},
		Port:  1, State: func() State { return State{} },
	})
	if err := a.Run(context.Background()); !errors.Is(err, ErrNoTrackers) {
		t.Fatalf("udp-only: %v, want ErrNoTrackers", err)
	}
	a = NewAnnouncer(AnnouncerConfig{Tiers: [][]string{{"http://t.example/announce"}}})
	if err := a.Run(context.Background()); err == nil {
		t.Fatal("missing State and Port accepted")
	}
}

func TestAnnouncerAnnounceNow(t *testing.T) {
	log := newEventLog(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("d8:intervali3600e12:min intervali0e5:peers0:e"))
	}))
	ts := httptest.NewServer(log)
	defer ts.Close()
	a := NewAnnouncer(AnnouncerConfig{
		Tiers:    [][]string{{ts.URL + "/announce"}},
		InfoHash: hashN(1), PeerID: peerN(1), Port: 6881,
		State:       func() State { return State{Left: 3} },
		HTTPClient:  ts.Client(),
		MinInterval: 10 * time.Millisecond,
	})
	cancel := runAnnouncer(t, a)
	if ev := log.waitEvent(t); ev != "started" {
		t.Fatalf("first = %q", ev)
	}
	// The hour-long interval would keep it quiet; AnnounceNow does not wait
	// for it, only for the min interval.
	a.AnnounceNow()
	if ev := log.waitEvent(t); ev != "" {
		t.Fatalf("early announce event = %q, want a regular announce", ev)
	}
	cancel()
	if ev := log.waitEvent(t); ev != "stopped" {
		t.Fatalf("last = %q", ev)
	}
}
