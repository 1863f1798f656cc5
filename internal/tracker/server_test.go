package tracker

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func failureOf(d map[string]any) string {
	s, _ := d["failure reason"].(string)
	return s
}

func TestServerAnnounceCountsAndSelfExclusion(t *testing.T) {
	s, _ := newTestServer(t, ServerConfig{})
	h := hashN(1)
	d := announceFrom(t, s, "10.0.0.1:5000", announceParams{hash: h, peer: peerN(1), port: 6881, left: 100, event: "started"})
	r := mustPeers(t, d)
	if len(r.Peers) != 0 {
		t.Fatalf("first peer got peers %v, want none (never itself)", r.Peers)
	}
	if r.Complete != 0 || r.Incomplete != 1 {
		t.Fatalf("counts = %d/%d, want 0 complete, 1 incomplete", r.Complete, r.Incomplete)
	}
	if r.Interval != 10*time.Minute || r.MinInterval != 5*time.Minute {
		t.Fatalf("intervals = %v/%v, want 10m/5m", r.Interval, r.MinInterval)
	}

	announceFrom(t, s, "10.0.0.2:5000", announceParams{hash: h, peer: peerN(2), port: 6882, left: 0, event: "started"})
	d = announceFrom(t, s, "10.0.0.1:5000", announceParams{hash: h, peer: peerN(1), port: 6881, left: 100})
	r = mustPeers(t, d)
	want := []netip.AddrPort{netip.MustParseAddrPort("10.0.0.2:6882")}
	if !slices.Equal(r.Peers, want) {
		t.Fatalf("peers = %v, want %v", r.Peers, want)
	}
	if r.Complete != 1 || r.Incomplete != 1 {
		t.Fatalf("counts = %d/%d, want 1/1", r.Complete, r.Incomplete)
	}
	st := s.Stats()
	if st.Swarms != 1 || st.Peers != 2 || st.Seeders != 1 || st.Announces != 3 || st.Failures != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestServerSeedersGetOnlyLeechers(t *testing.T) {
	s, _ := newTestServer(t, ServerConfig{})
	h := hashN(1)
	for i := range 5 {
		left := int64(0)
		if i%2 == 1 {
			left = 10
		}
		announceFrom(t, s, fmt.Sprintf("10.0.0.%d:1", i+1), announceParams{hash: h, peer: peerN(i), port: 1000 + i, left: left})
	}
	// Peers 0, 2, 4 are seeders; 1 and 3 leechers.
	r := mustPeers(t, announceFrom(t, s, "10.0.0.1:1", announceParams{hash: h, peer: peerN(0), port: 1000, left: 0}))
	got := slices.Clone(r.Peers)
	slices.SortFunc(got, func(a, b netip.AddrPort) int { return a.Compare(b) })
	want := []netip.AddrPort{netip.MustParseAddrPort("10.0.0.2:1001"), netip.MustParseAddrPort("10.0.0.4:1003")}
	if !slices.Equal(got, want) {
		t.Fatalf("seeder got %v, want only the leechers %v", got, want)
	}
	r = mustPeers(t, announceFrom(t, s, "10.0.0.2:1", announceParams{hash: h, peer: peerN(1), port: 1001, left: 10}))
	if len(r.Peers) != 4 {
		t.Fatalf("leecher got %d peers, want all 4 others", len(r.Peers))
	}
	if r.Complete != 3 || r.Incomplete != 2 {
		t.Fatalf("counts = %d/%d, want 3/2", r.Complete, r.Incomplete)
	}
}

func TestServerStoppedRemovesPeer(t *testing.T) {
	s, _ := newTestServer(t, ServerConfig{})
	h := hashN(1)
	announceFrom(t, s, "10.0.0.1:1", announceParams{hash: h, peer: peerN(1), port: 1, left: 5})
	announceFrom(t, s, "10.0.0.2:1", announceParams{hash: h, peer: peerN(2), port: 2, left: 0})
	d := announceFrom(t, s, "10.0.0.2:1", announceParams{hash: h, peer: peerN(2), port: 2, left: 0, event: "stopped"})
	r := mustPeers(t, d)
	if len(r.Peers) != 0 || r.Complete != 0 || r.Incomplete != 1 {
		t.Fatalf("stopped reply: peers %v, counts %d/%d; want no peers, 0/1", r.Peers, r.Complete, r.Incomplete)
	}
	r = mustPeers(t, announceFrom(t, s, "10.0.0.1:1", announceParams{hash: h, peer: peerN(1), port: 1, left: 5}))
	if len(r.Peers) != 0 {
		t.Fatalf("stopped peer still handed out: %v", r.Peers)
	}
	if st := s.Stats(); st.Peers != 1 || st.Seeders != 0 {
		t.Fatalf("stats after stop = %+v", st)
	}
	// A stopped announce for an unknown torrent creates nothing.
	announceFrom(t, s, "10.0.0.3:1", announceParams{hash: hashN(9), peer: peerN(3), port: 3, left: 0, event: "stopped"})
	if st := s.Stats(); st.Swarms != 1 {
		t.Fatalf("stopped announce created a swarm: %+v", st)
	}
}

func TestServerExpiry(t *testing.T) {
	s, clk := newTestServer(t, ServerConfig{Interval: time.Minute, PeerTTL: 3 * time.Minute})
	h := hashN(1)
	announceFrom(t, s, "10.0.0.1:1", announceParams{hash: h, peer: peerN(1), port: 1, left: 0})
	clk.Advance(2 * time.Minute)
	announceFrom(t, s, "10.0.0.2:1", announceParams{hash: h, peer: peerN(2), port: 2, left: 5})
	clk.Advance(time.Minute + time.Second) // peer 1 is now 3m1s old, peer 2 1m1s
	r := mustPeers(t, announceFrom(t, s, "10.0.0.3:1", announceParams{hash: h, peer: peerN(3), port: 3, left: 5}))
	if !slices.Equal(r.Peers, []netip.AddrPort{netip.MustParseAddrPort("10.0.0.2:2")}) {
		t.Fatalf("peers = %v, want only the unexpired 10.0.0.2:2", r.Peers)
	}
	if r.Complete != 0 || r.Incomplete != 2 {
		t.Fatalf("counts = %d/%d, want 0/2 after expiry", r.Complete, r.Incomplete)
	}
	// Re-announcing keeps a peer alive.
	clk.Advance(2 * time.Minute)
	announceFrom(t, s, "10.0.0.2:1", announceParams{hash: h, peer: peerN(2), port: 2, left: 5})
	clk.Advance(2 * time.Minute)
	if st := s.Stats(); st.Peers != 2 {
		t.Fatalf("peers before sweep = %d, want 2", st.Peers)
	}
	s.sweep(clk.Now()) // peer 3 is 4m old, peer 2 2m
	if st := s.Stats(); st.Peers != 1 || st.Swarms != 1 {
		t.Fatalf("after sweep: %+v, want 1 peer in 1 swarm", st)
	}
	// The sweeper forgets a swarm once it is empty and idle.
	clk.Advance(10 * time.Minute)
	s.sweep(clk.Now())
	if st := s.Stats(); st.Peers != 0 || st.Swarms != 0 || st.Seeders != 0 {
		t.Fatalf("after expiry of all: %+v, want empty", st)
	}
	// And a new announce for it still works.
	r = mustPeers(t, announceFrom(t, s, "10.0.0.1:1", announceParams{hash: h, peer: peerN(1), port: 1, left: 5}))
	if r.Incomplete != 1 {
		t.Fatalf("announce after swarm retired: %+v", r)
	}
}

func TestServerNumWant(t *testing.T) {
	s, _ := newTestServer(t, ServerConfig{DefaultNumWant: 7, MaxNumWant: 12})
	h := hashN(1)
	for i := range 30 {
		announceFrom(t, s, fmt.Sprintf("10.0.1.%d:1", i+1), announceParams{hash: h, peer: peerN(i), port: 2000 + i, left: 1})
	}
	for _, tc := range []struct{ numwant, want int }{{0, 7}, {-1, 7}, {5, 5}, {12, 12}, {100, 12}} {
		r := mustPeers(t, announceFrom(t, s, "10.0.2.1:1", announceParams{hash: h, peer: peerN(99), port: 9, left: 1, numwant: tc.numwant}))
		if len(r.Peers) != tc.want {
			t.Errorf("numwant %d: got %d peers, want %d", tc.numwant, len(r.Peers), tc.want)
		}
		seen := map[netip.AddrPort]bool{}
		for _, p := range r.Peers {
			if seen[p] {
				t.Errorf("numwant %d: duplicate peer %v", tc.numwant, p)
			}
			if p.Port() == 9 {
				t.Errorf("numwant %d: got itself", tc.numwant)
			}
			seen[p] = true
		}
	}
}

func TestServerSampleIsSpread(t *testing.T) {
	s, _ := newTestServer(t, ServerConfig{})
	h := hashN(1)
	for i := range 40 {
		announceFrom(t, s, fmt.Sprintf("10.0.1.%d:1", i+1), announceParams{hash: h, peer: peerN(i), port: 2000 + i, left: 1})
	}
	// 200 samples of 5 out of 40: every peer should turn up. A fixed
	// window would hand the same few peers to everyone.
	seen := map[netip.AddrPort]bool{}
	for range 200 {
		r := mustPeers(t, announceFrom(t, s, "10.0.2.1:1", announceParams{hash: h, peer: peerN(99), port: 9, left: 1, numwant: 5}))
		for _, p := range r.Peers {
			seen[p] = true
		}
	}
	if len(seen) != 40 {
		t.Fatalf("200 samples covered %d of 40 peers", len(seen))
	}
}

func TestServerDictionaryModel(t *testing.T) {
	s, _ := newTestServer(t, ServerConfig{})
	h := hashN(1)
	announceFrom(t, s, "10.0.0.1:1", announceParams{hash: h, peer: peerN(1), port: 1111, left: 0})
	d := announceFrom(t, s, "10.0.0.2:1", announceParams{hash: h, peer: peerN(2), port: 2222, left: 1, compact: "0"})
	list, ok := d["peers"].([]any)
	if !ok || len(list) != 1 {
		t.Fatalf("compact=0 peers = %#v, want a list of one dictionary", d["peers"])
	}
	p := list[0].(map[string]any)
	if p["ip"] != "10.0.0.1" || p["port"] != int64(1111) || p["peer id"] != s20(peerN(1)) {
		t.Fatalf("peer dictionary = %#v", p)
	}
	d = serve(t, s, "10.0.0.2:1", "/announce?"+announceParams{hash: h, peer: peerN(2), port: 2222, left: 1, compact: "0"}.query()+"&no_peer_id=1")
	p = d["peers"].([]any)[0].(map[string]any)
	if _, has := p["peer id"]; has {
		t.Fatalf("no_peer_id=1 still sent the peer id: %#v", p)
	}
	// The client parser reads the dictionary model too.
	if r := mustPeers(t, d); !slices.Equal(r.Peers, []netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:1111")}) {
		t.Fatalf("parsed dictionary peers = %v", r.Peers)
	}
	// Compact is the default: a string of 6 bytes per peer.
	d = announceFrom(t, s, "10.0.0.2:1", announceParams{hash: h, peer: peerN(2), port: 2222, left: 1})
	if ps, ok := d["peers"].(string); !ok || ps != "\x0a\x00\x00\x01\x04\x57" {
		t.Fatalf("compact peers = %q", d["peers"])
	}
}

func TestServerIPv6Peers(t *testing.T) {
	s, _ := newTestServer(t, ServerConfig{})
	h := hashN(1)
	announceFrom(t, s, "[2001:db8::1]:5000", announceParams{hash: h, peer: peerN(1), port: 1111, left: 0})
	announceFrom(t, s, "[::ffff:10.0.0.7]:5000", announceParams{hash: h, peer: peerN(3), port: 3333, left: 0})
	d := announceFrom(t, s, "10.0.0.2:1", announceParams{hash: h, peer: peerN(2), port: 2222, left: 1})
	if d["peers6"] != "\x20\x01\x0d\xb8"+strings.Repeat("\x00", 11)+"\x01\x04\x57" {
		t.Fatalf("peers6 = %q", d["peers6"])
	}
	if d["peers"] != "\x0a\x00\x00\x07\x0d\x05" {
		t.Fatalf("IPv4-mapped peer not listed as IPv4: peers = %q", d["peers"])
	}
	r := mustPeers(t, d)
	if len(r.Peers) != 2 {
		t.Fatalf("client parsed %v, want both peers", r.Peers)
	}
}

func TestServerBadParams(t *testing.T) {
	s, _ := newTestServer(t, ServerConfig{})
	good := announceParams{hash: hashN(1), peer: peerN(1), port: 1, left: 0}.query()
	cases := []struct {
		name, query, want string
	}{
		{"no info_hash", "peer_id=" + url.QueryEscape(s20(peerN(1))) + "&port=1&left=0", "missing info_hash"},
		{"short info_hash", strings.Replace(good, "info_hash=infohash", "info_hash=info", 1), "invalid info_hash"},
		{"short peer_id", strings.Replace(good, "peer_id=-FG0001-", "peer_id=-FG", 1), "invalid peer_id"},
		{"port zero", strings.Replace(good, "port=1", "port=0", 1), "invalid port"},
		{"port too big", strings.Replace(good, "port=1", "port=65536", 1), "invalid port"},
		{"port text", strings.Replace(good, "port=1", "port=x", 1), "invalid port"},
		{"negative left", strings.Replace(good, "left=0", "left=-1", 1), "invalid left"},
		{"missing left", strings.Replace(good, "left=0", "lft=0", 1), "missing left"},
		{"bad uploaded", good + "&uploaded=1e9", "uploaded given 2 times"},
		{"bad event", good + "&event=exploded", "unknown event"},
		{"bad numwant", good + "&numwant=many", "invalid numwant"},
		{"two hashes", good + "&info_hash=" + url.QueryEscape(s20(hashN(2))), "info_hash given 2 times"},
		{"bad escape", good + "&x=%zz", "malformed query"},
		{"huge query", good + "&x=" + strings.Repeat("a", maxQueryBytes), "limit"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := serve(t, s, "10.0.0.1:1", "/announce?"+tc.query)
			if got := failureOf(d); !strings.Contains(got, tc.want) {
				t.Fatalf("failure reason = %q, want it to contain %q", got, tc.want)
			}
			if len(d) != 1 {
				t.Fatalf("failure reply has extra keys: %#v", d)
			}
		})
	}
	if st := s.Stats(); st.Peers != 0 || st.Failures != uint64(len(cases)) {
		t.Fatalf("stats after bad requests = %+v", st)
	}
}

func TestServerHTTPErrors(t *testing.T) {
	s, _ := newTestServer(t, ServerConfig{})
	for _, tc := range []struct {
		method, path string
		code         int
	}{
		{http.MethodPost, "/announce", http.StatusMethodNotAllowed},
		{http.MethodGet, "/", http.StatusNotFound},
		{http.MethodGet, "/favicon.ico", http.StatusNotFound},
	} {
		req := httptest.NewRequest(tc.method, tc.path, nil)
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != tc.code {
			t.Errorf("%s %s = %d, want %d", tc.method, tc.path, rec.Code, tc.code)
		}
	}
	// Mounted under a prefix, and with a BEP 48 style suffix.
	d := serve(t, s, "10.0.0.1:1", "/t/announce.php?"+announceParams{hash: hashN(1), peer: peerN(1), port: 1, left: 0}.query())
	if failureOf(d) != "" {
		t.Fatalf("prefixed announce failed: %v", d)
	}
}

func TestServerAllow(t *testing.T) {
	allowed := hashN(1)
	s, _ := newTestServer(t, ServerConfig{Allow: func(h [20]byte) bool { return h == allowed }})
	if f := failureOf(announceFrom(t, s, "10.0.0.1:1", announceParams{hash: hashN(2), peer: peerN(1), port: 1})); !strings.Contains(f, "not registered") {
		t.Fatalf("unlisted torrent: failure %q", f)
	}
	if f := failureOf(announceFrom(t, s, "10.0.0.1:1", announceParams{hash: allowed, peer: peerN(1), port: 1})); f != "" {
		t.Fatalf("listed torrent refused: %q", f)
	}
	d := serve(t, s, "10.0.0.1:1", "/scrape?info_hash="+url.QueryEscape(string(allowed[:]))+"&info_hash="+url.QueryEscape(s20(hashN(2))))
	files := d["files"].(map[string]any)
	if len(files) != 1 || files[string(allowed[:])] == nil {
		t.Fatalf("scrape of allowed+unlisted = %#v, want only the allowed one", files)
	}
}

func TestServerScrape(t *testing.T) {
	s, _ := newTestServer(t, ServerConfig{})
	h1, h2, h3 := hashN(1), hashN(2), hashN(3)
	announceFrom(t, s, "10.0.0.1:1", announceParams{hash: h1, peer: peerN(1), port: 1, left: 5, event: "started"})
	announceFrom(t, s, "10.0.0.1:1", announceParams{hash: h1, peer: peerN(1), port: 1, left: 0, event: "completed"})
	// A repeated "completed" is not counted twice.
	announceFrom(t, s, "10.0.0.1:1", announceParams{hash: h1, peer: peerN(1), port: 1, left: 0, event: "completed"})
	announceFrom(t, s, "10.0.0.2:1", announceParams{hash: h1, peer: peerN(2), port: 2, left: 5})
	announceFrom(t, s, "10.0.0.2:1", announceParams{hash: h2, peer: peerN(2), port: 2, left: 5})

	q := "info_hash=" + url.QueryEscape(string(h1[:])) + "&info_hash=" + url.QueryEscape(string(h2[:])) + "&info_hash=" + url.QueryEscape(string(h3[:]))
	d := serve(t, s, "10.0.0.9:1", "/scrape?"+q)
	body := mustMarshal(t, d)
	stats, err := ParseScrapeResponse(body)
	if err != nil {
		t.Fatal(err)
	}
	want := map[[20]byte]ScrapeStats{
		h1: {Complete: 1, Incomplete: 1, Downloaded: 1},
		h2: {Complete: 0, Incomplete: 1, Downloaded: 0},
		h3: {},
	}
	if len(stats) != len(want) {
		t.Fatalf("scrape = %+v, want %+v", stats, want)
	}
	for h, w := range want {
		if stats[h] != w {
			t.Errorf("scrape[%s] = %+v, want %+v", h[:], stats[h], w)
		}
	}
	for _, tc := range []struct{ query, want string }{
		{"", "full scrape is not supported"},
		{"info_hash=abc", "invalid info_hash"},
		{strings.Repeat("info_hash="+url.QueryEscape(string(h1[:]))+"&", MaxScrapeHashes+1), "too many"},
	} {
		if f := failureOf(serve(t, s, "10.0.0.9:1", "/scrape?"+tc.query)); !strings.Contains(f, tc.want) {
			t.Errorf("scrape %.30q: failure %q, want %q", tc.query, f, tc.want)
		}
	}
}

func TestServerPeerIDOwnership(t *testing.T) {
	s, _ := newTestServer(t, ServerConfig{})
	h := hashN(1)
	announceFrom(t, s, "10.0.0.1:1", announceParams{hash: h, peer: peerN(1), port: 1, left: 5, key: "K1"})
	// Another host cannot stop or move peer 1 without its key.
	for _, key := range []string{"", "K2"} {
		d := announceFrom(t, s, "10.6.6.6:1", announceParams{hash: h, peer: peerN(1), port: 666, left: 5, event: "stopped", key: key})
		if f := failureOf(d); !strings.Contains(f, "another address") {
			t.Fatalf("hijack with key %q: failure %q", key, f)
		}
	}
	// With its key, the same peer may move (a changed NAT address).
	announceFrom(t, s, "10.0.0.5:1", announceParams{hash: h, peer: peerN(1), port: 5, left: 5, key: "K1"})
	r := mustPeers(t, announceFrom(t, s, "10.0.0.2:1", announceParams{hash: h, peer: peerN(2), port: 2, left: 5}))
	if !slices.Equal(r.Peers, []netip.AddrPort{netip.MustParseAddrPort("10.0.0.5:5")}) {
		t.Fatalf("after move: peers %v", r.Peers)
	}
	// Without a key, the same IP may update.
	announceFrom(t, s, "10.0.0.2:1", announceParams{hash: h, peer: peerN(2), port: 2, left: 5, event: "stopped"})
	if st := s.Stats(); st.Peers != 1 {
		t.Fatalf("peers = %d, want 1", st.Peers)
	}
}

func TestServerIPParam(t *testing.T) {
	s, _ := newTestServer(t, ServerConfig{})
	h := hashN(1)
	extra := url.Values{"ip": {"127.0.0.9"}}
	// From a remote host the ip parameter is ignored...
	announceFrom(t, s, "10.0.0.1:1", announceParams{hash: h, peer: peerN(1), port: 1, left: 0, extra: extra})
	// ...from loopback it is honoured, so a local swarm on 127.0.0.x works.
	announceFrom(t, s, "127.0.0.1:1", announceParams{hash: h, peer: peerN(2), port: 2, left: 0, extra: extra})
	// A name is never resolved.
	announceFrom(t, s, "127.0.0.1:1", announceParams{hash: h, peer: peerN(3), port: 3, left: 0, extra: url.Values{"ip": {"example.com"}}})
	r := mustPeers(t, announceFrom(t, s, "10.0.0.4:1", announceParams{hash: h, peer: peerN(4), port: 4, left: 1}))
	got := slices.Clone(r.Peers)
	slices.SortFunc(got, func(a, b netip.AddrPort) int { return a.Compare(b) })
	want := []netip.AddrPort{
		netip.MustParseAddrPort("10.0.0.1:1"),
		netip.MustParseAddrPort("127.0.0.1:3"),
		netip.MustParseAddrPort("127.0.0.9:2"),
	}
	if !slices.Equal(got, want) {
		t.Fatalf("peers = %v, want %v", got, want)
	}
}

func TestServerLimits(t *testing.T) {
	s, _ := newTestServer(t, ServerConfig{MaxPeersPerSwarm: 2, MaxSwarms: 2})
	h := hashN(1)
	announceFrom(t, s, "10.0.0.1:1", announceParams{hash: h, peer: peerN(1), port: 1, left: 0})
	announceFrom(t, s, "10.0.0.2:1", announceParams{hash: h, peer: peerN(2), port: 2, left: 0})
	d := announceFrom(t, s, "10.0.0.3:1", announceParams{hash: h, peer: peerN(3), port: 3, left: 1})
	r := mustPeers(t, d)
	if !strings.Contains(r.Warning, "not registered") || len(r.Peers) != 2 || r.Incomplete != 0 {
		t.Fatalf("third peer in a full swarm: %+v, want 2 peers, a warning and no registration", r)
	}
	announceFrom(t, s, "10.0.0.1:1", announceParams{hash: hashN(2), peer: peerN(1), port: 1, left: 0})
	if f := failureOf(announceFrom(t, s, "10.0.0.1:1", announceParams{hash: hashN(3), peer: peerN(1), port: 1, left: 0})); !strings.Contains(f, "too many torrents") {
		t.Fatalf("third swarm: failure %q", f)
	}
	if st := s.Stats(); st.Swarms != 2 || st.Peers != 3 {
		t.Fatalf("stats = %+v", st)
	}
}

// testPolicy refuses peers that announce fg_class=closed, remembers what
// it saw, and ranks peers announcing fg_spare high first.
type testPolicy struct {
	mu       sync.Mutex
	seenPeer int
	now      time.Time
}

func (p *testPolicy) Admit(q *AnnounceQuery, sw SwarmView, now time.Time) (Decision, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.now = now
	p.seenPeer = 0
	sw.Range(func(PeerInfo) bool { p.seenPeer++; return true })
	if q.Extra.Get("fg_class") == "closed" {
		return Decision{Refuse: "class closed: swarm has no spare capacity", RetryIn: 90 * time.Second}, nil
	}
	if q.Extra.Get("fg_class") == "error" {
		return Decision{}, fmt.Errorf("policy store unavailable")
	}
	return Decision{Warning: "admitted as " + q.Extra.Get("fg_class")}, nil
}

func (p *testPolicy) RankPeers(q *AnnounceQuery, c []PeerInfo, now time.Time) {
	slices.SortStableFunc(c, func(a, b PeerInfo) int {
		return strings.Compare(b.Extra.Get("fg_spare"), a.Extra.Get("fg_spare"))
	})
}

func TestServerPolicy(t *testing.T) {
	pol := &testPolicy{}
	s, clk := newTestServer(t, ServerConfig{Policy: pol})
	h := hashN(1)
	for i := range 10 {
		spare := "0"
		if i == 7 {
			spare = "9"
		}
		announceFrom(t, s, fmt.Sprintf("10.0.0.%d:1", i+1), announceParams{hash: h, peer: peerN(i), port: 100 + i, left: 0,
			extra: url.Values{"fg_spare": {spare}, "fg_class": {"bronze"}}})
	}
	if pol.seenPeer != 9 || !pol.now.Equal(clk.Now()) {
		t.Fatalf("policy saw %d peers at %v, want 9 at the fake time", pol.seenPeer, pol.now)
	}
	d := announceFrom(t, s, "10.0.1.1:1", announceParams{hash: h, peer: peerN(50), port: 50, left: 1, numwant: 1,
		extra: url.Values{"fg_class": {"gold"}}})
	r := mustPeers(t, d)
	if r.Warning != "admitted as gold" {
		t.Fatalf("warning = %q", r.Warning)
	}
	if !slices.Equal(r.Peers, []netip.AddrPort{netip.MustParseAddrPort("10.0.0.8:107")}) {
		t.Fatalf("ranked peers = %v, want the one with spare capacity", r.Peers)
	}

	d = announceFrom(t, s, "10.0.1.2:1", announceParams{hash: h, peer: peerN(51), port: 51, left: 1,
		extra: url.Values{"fg_class": {"closed"}}})
	if failureOf(d) != "class closed: swarm has no spare capacity" || d["retry in"] != int64(2) || d["retry after"] != int64(90) {
		t.Fatalf("refusal = %#v", d)
	}
	_, err := ParseAnnounceResponse(mustMarshal(t, d))
	if fe, ok := err.(*FailureError); !ok || fe.RetryIn != 90*time.Second {
		t.Fatalf("client sees %v, want a FailureError retrying in 90s", err)
	}
	d = announceFrom(t, s, "10.0.1.3:1", announceParams{hash: h, peer: peerN(52), port: 52, left: 1,
		extra: url.Values{"fg_class": {"error"}}})
	if failureOf(d) != "internal error" {
		t.Fatalf("policy error: %#v", d)
	}
	st := s.Stats()
	if st.Peers != 11 || st.Refused != 1 || st.Failures != 2 {
		t.Fatalf("stats = %+v; refused and failed announces must not register", st)
	}
}

func TestServerConcurrent(t *testing.T) {
	s, _ := newTestServer(t, ServerConfig{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 200 {
				p := announceParams{hash: hashN(i % 5), peer: peerN(w*1000 + i%20), port: 1 + i%20, left: int64(i % 3)}
				if i%7 == 0 {
					p.event = "stopped"
				}
				announceFrom(t, s, fmt.Sprintf("10.1.%d.%d:1", w, i%20), p)
				if i%50 == 0 {
					s.sweep(time.Now())
				}
			}
		})
	}
	wg.Wait()
	// The totals kept by counters must match the swarms' contents.
	var peers, seeders int64
	s.mu.RLock()
	for _, sw := range s.swarms {
		sw.mu.Lock()
		peers += int64(sw.len())
		seeders += int64(sw.seeders)
		n := 0
		for e := sw.oldest; e != nil; e = e.next {
			n++
		}
		if n != sw.len() || len(sw.peers) != sw.len() {
			t.Errorf("swarm structures disagree: list %d, map %d, slice %d", n, len(sw.peers), sw.len())
		}
		sw.mu.Unlock()
	}
	s.mu.RUnlock()
	if st := s.Stats(); st.Peers != peers || st.Seeders != seeders {
		t.Fatalf("stats %+v disagree with swarms (%d peers, %d seeders)", st, peers, seeders)
	}
}
