package tracker

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/bencode"
)

// fakeClock is a settable clock for the server.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newTestServer returns a server with a fake clock; it is closed when the
// test ends.
func newTestServer(t *testing.T, cfg ServerConfig) (*Server, *fakeClock) {
	t.Helper()
	clk := newFakeClock()
	if cfg.Now == nil {
		cfg.Now = clk.Now
	}
	if cfg.Interval == 0 {
		cfg.Interval = 10 * time.Minute
	}
	s := NewServer(cfg)
	t.Cleanup(s.Close)
	return s, clk
}

func hashN(n int) [20]byte {
	var h [20]byte
	copy(h[:], fmt.Sprintf("infohash-%011d", n))
	return h
}

func peerN(n int) [20]byte {
	var h [20]byte
	copy(h[:], fmt.Sprintf("-FG0001-%012d", n))
	return h
}

// announceParams builds a raw announce query for tests that drive the
// server directly.
type announceParams struct {
	hash, peer [20]byte
	port       int
	left       int64
	event      string
	numwant    int
	compact    string
	key        string
	extra      url.Values
}

func (p announceParams) query() string {
	v := url.Values{}
	v.Set("info_hash", string(p.hash[:]))
	v.Set("peer_id", string(p.peer[:]))
	v.Set("port", fmt.Sprint(p.port))
	v.Set("uploaded", "0")
	v.Set("downloaded", "0")
	v.Set("left", fmt.Sprint(p.left))
	if p.event != "" {
		v.Set("event", p.event)
	}
	if p.numwant != 0 {
		v.Set("numwant", fmt.Sprint(p.numwant))
	}
	if p.compact != "" {
		v.Set("compact", p.compact)
	}
	if p.key != "" {
		v.Set("key", p.key)
	}
	for k, vs := range p.extra {
		v[k] = vs
	}
	return v.Encode()
}

// serve sends one request to the handler from remote ("ip:port") and
// decodes the bencoded reply generically.
func serve(t *testing.T, s http.Handler, remote, target string) map[string]any {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	req.RemoteAddr = remote
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s: HTTP %d: %s", target, rec.Code, rec.Body)
	}
	v, err := bencode.Decode(rec.Body.Bytes())
	if err != nil {
		t.Fatalf("GET %s: reply is not bencode: %v (%q)", target, err, rec.Body)
	}
	d, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("GET %s: reply is %T, not a dictionary", target, v)
	}
	return d
}

func announceFrom(t *testing.T, s http.Handler, remote string, p announceParams) map[string]any {
	t.Helper()
	return serve(t, s, remote, "/announce?"+p.query())
}

// mustPeers parses the reply like the client would and fails on a
// failure reason.
func mustPeers(t *testing.T, d map[string]any) *AnnounceResponse {
	t.Helper()
	body, err := bencode.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ParseAnnounceResponse(body)
	if err != nil {
		t.Fatalf("announce reply: %v", err)
	}
	return resp
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := bencode.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func s20(h [20]byte) string { return string(h[:]) }
