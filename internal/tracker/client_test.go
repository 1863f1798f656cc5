package tracker

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// awkwardHash holds the bytes most likely to be mis-escaped: NUL, space,
// '+', '%', '&', '=', '?', '#', '/' and high bytes.
var awkwardHash = [20]byte{0, ' ', '+', '%', '&', '=', '?', '#', '/', 0xff, 0x80, 'a', 'Z', '~', '.', '-', '_', '\n', ';', 0x7f}

func startTracker(t *testing.T, cfg ServerConfig) (*Server, *httptest.Server) {
	t.Helper()
	if cfg.Interval == 0 {
		cfg.Interval = time.Minute
	}
	s := NewServer(cfg)
	ts := httptest.NewServer(s)
	t.Cleanup(func() {
		ts.Close()
		s.Close()
	})
	return s, ts
}

func TestEscapeBytesRoundTrip(t *testing.T) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	esc := escapeBytes(all)
	if strings.ContainsAny(esc, "+ &=?#") {
		t.Fatalf("escaped form %q contains a character with query meaning", esc)
	}
	v, err := url.ParseQuery("x=" + esc)
	if err != nil || v.Get("x") != string(all) {
		t.Fatalf("round trip through url.ParseQuery failed: %v", err)
	}
}

func TestAnnounceAgainstServer(t *testing.T) {
	s, ts := startTracker(t, ServerConfig{})
	ctx := context.Background()
	seed := AnnounceRequest{InfoHash: awkwardHash, PeerID: peerN(1), Port: 7001, Left: 0, Event: EventStarted, Key: 0xdeadbeef}
	// An announce URL that already has a query (a passkey) keeps it.
	resp, err := Announce(ctx, ts.Client(), ts.URL+"/announce?passkey=s3cr%2Bt", seed)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Interval != time.Minute || resp.Complete != 1 || resp.Incomplete != 0 || len(resp.Peers) != 0 {
		t.Fatalf("seed's response = %+v", resp)
	}
	leech := AnnounceRequest{InfoHash: awkwardHash, PeerID: peerN(2), Port: 7002, Left: 99, Downloaded: 1, Uploaded: 2, Event: EventStarted,
		NumWant: 10, Extra: url.Values{"fg_class": {"gold"}}}
	resp, err = Announce(ctx, ts.Client(), ts.URL+"/announce", leech)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(resp.Peers, []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:7001")}) {
		t.Fatalf("leecher got %v", resp.Peers)
	}
	// BEP 24: the tracker tells the client the address it came from.
	if resp.ExternalIP != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("external ip %v", resp.ExternalIP)
	}
	// The server decoded the binary hash and the passkey exactly.
	var got PeerInfo
	var ok bool
	s.mu.RLock()
	sw := s.swarms[awkwardHash]
	s.mu.RUnlock()
	if sw == nil {
		t.Fatal("no swarm under the exact info hash")
	}
	sw.mu.Lock()
	got, ok = swarmView{sw}.Peer(peerN(1))
	leechInfo, _ := swarmView{sw}.Peer(peerN(2))
	sw.mu.Unlock()
	if !ok || got.Extra.Get("passkey") != "s3cr+t" {
		t.Fatalf("seed's record = %+v, want the passkey among its extras", got)
	}
	if leechInfo.Extra.Get("fg_class") != "gold" || leechInfo.Downloaded != 1 || leechInfo.Uploaded != 2 || leechInfo.Left != 99 {
		t.Fatalf("leecher's record = %+v", leechInfo)
	}

	stats, err := Scrape(ctx, ts.Client(), ts.URL+"/announce", awkwardHash, hashN(5))
	if err != nil {
		t.Fatal(err)
	}
	if stats[awkwardHash] != (ScrapeStats{Complete: 1, Incomplete: 1}) || stats[hashN(5)] != (ScrapeStats{}) {
		t.Fatalf("scrape = %+v", stats)
	}

	// From loopback the "ip" parameter sets the advertised address.
	_, err = Announce(ctx, ts.Client(), ts.URL+"/announce", AnnounceRequest{InfoHash: hashN(7), PeerID: peerN(1), Port: 1, IP: netip.MustParseAddr("127.0.0.42")})
	if err != nil {
		t.Fatal(err)
	}
	resp, err = Announce(ctx, ts.Client(), ts.URL+"/announce", AnnounceRequest{InfoHash: hashN(7), PeerID: peerN(2), Port: 2, Left: 1})
	if err != nil || !slices.Equal(resp.Peers, []netip.AddrPort{netip.MustParseAddrPort("127.0.0.42:1")}) {
		t.Fatalf("peers = %v, %v; want the announced ip", resp, err)
	}

	// A refusal is a *FailureError.
	_, err = Announce(ctx, ts.Client(), ts.URL+"/announce", AnnounceRequest{InfoHash: hashN(1), PeerID: peerN(1), Port: 1, Extra: url.Values{"numwant2": {"x"}}, Left: 0, NumWant: 1})
	if err != nil {
		t.Fatalf("plain announce failed: %v", err)
	}
	bad := AnnounceRequest{InfoHash: hashN(1), PeerID: peerN(1), Port: 1, Event: Event(9)}
	_, err = Announce(ctx, ts.Client(), ts.URL+"/announce", bad)
	var fe *FailureError
	if !errors.As(err, &fe) || !strings.Contains(fe.Reason, "unknown event") {
		t.Fatalf("bad event: err = %v, want a FailureError about the event", err)
	}
}

func TestAnnounceRequestValidation(t *testing.T) {
	for name, req := range map[string]AnnounceRequest{
		"port zero":       {},
		"negative left":   {Port: 1, Left: -1},
		"overrides param": {Port: 1, Extra: url.Values{"info_hash": {"x"}}},
	} {
		if _, err := Announce(context.Background(), nil, "http://127.0.0.1:1/announce", req); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestClientErrors(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/html/announce", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("\n<!DOCTYPE html><html>login</html>"))
	})
	mux.HandleFunc("/500/announce", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "database on fire", http.StatusInternalServerError)
	})
	mux.HandleFunc("/400fail/announce", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte("d14:failure reason11:bad passkeye"))
	})
	mux.HandleFunc("/big/announce", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("d5:peers2000000:"))
		_, _ = w.Write(make([]byte, 2_000_000))
		_, _ = w.Write([]byte("e"))
	})
	mux.HandleFunc("/garbage/announce", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("d8:intervali-5ee"))
	})
	mux.HandleFunc("/slow/announce", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	ts := httptest.NewServer(mux)
	defer ts.Close()
	req := AnnounceRequest{InfoHash: hashN(1), PeerID: peerN(1), Port: 1}
	ctx := context.Background()

	_, err := Announce(ctx, ts.Client(), ts.URL+"/html/announce", req)
	if !errors.Is(err, ErrMalformedResponse) || !strings.Contains(err.Error(), "HTML") {
		t.Errorf("HTML: %v", err)
	}
	_, err = Announce(ctx, ts.Client(), ts.URL+"/500/announce", req)
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != 500 || !strings.Contains(err.Error(), "database on fire") {
		t.Errorf("500: %v", err)
	}
	_, err = Announce(ctx, ts.Client(), ts.URL+"/400fail/announce", req)
	var fe *FailureError
	if !errors.As(err, &fe) || fe.Reason != "bad passkey" {
		t.Errorf("400 with failure reason: %v", err)
	}
	_, err = Announce(ctx, ts.Client(), ts.URL+"/big/announce", req)
	if !errors.Is(err, ErrMalformedResponse) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized: %v", err)
	}
	_, err = Announce(ctx, ts.Client(), ts.URL+"/garbage/announce", req)
	if !errors.Is(err, ErrMalformedResponse) {
		t.Errorf("negative interval: %v", err)
	}
	tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err = Announce(tctx, ts.Client(), ts.URL+"/slow/announce", req)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("slow tracker: %v, want a deadline error", err)
	}
	_, err = Announce(ctx, nil, "udp://tracker.example:80/announce", req)
	if !errors.Is(err, ErrUnsupportedScheme) || !strings.Contains(err.Error(), "BEP 15") {
		t.Errorf("udp: %v", err)
	}
	_, err = Announce(ctx, ts.Client(), ts.URL+"/nothing/announce", req)
	if !errors.As(err, &se) || se.StatusCode != 404 {
		t.Errorf("404: %v", err)
	}
	// Error messages never leak the query (passkeys) of the URL.
	_, err = Announce(ctx, ts.Client(), ts.URL+"/500/announce?passkey=topsecret", req)
	if err == nil || strings.Contains(err.Error(), "topsecret") {
		t.Errorf("passkey leaked into %v", err)
	}
}

func TestScrapeURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://t.example/announce":             "http://t.example/scrape",
		"http://t.example/x/announce":           "http://t.example/x/scrape",
		"http://t.example/announce.php":         "http://t.example/scrape.php",
		"http://t.example/announce?passkey=abc": "http://t.example/scrape?passkey=abc",
		"https://t.example:8443/a/announce%20x": "https://t.example:8443/a/scrape%20x",
		"http://t.example/a":                    "",
		"http://t.example/announce/x":           "",
		"http://t.example/x%064announce":        "",
		"udp://t.example/announce":              "",
	} {
		got, err := ScrapeURL(in)
		if want == "" {
			if err == nil {
				t.Errorf("ScrapeURL(%q) = %q, want an error", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("ScrapeURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestParseAnnounceResponse(t *testing.T) {
	type peers = []netip.AddrPort
	ap := netip.MustParseAddrPort
	cases := []struct {
		name, body string
		peers      peers
		err        string
	}{
		{"compact", "d8:intervali60e5:peers12:\x01\x02\x03\x04\x00\x50\x05\x06\x07\x08\x1f\x90e", peers{ap("1.2.3.4:80"), ap("5.6.7.8:8080")}, ""},
		{"compact port zero skipped", "d5:peers12:\x01\x02\x03\x04\x00\x00\x05\x06\x07\x08\x1f\x90e", peers{ap("5.6.7.8:8080")}, ""},
		{"peers6", "d5:peers0:6:peers618:\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x50e", peers{ap("[2001:db8::1]:80")}, ""},
		{"dict", "d5:peersld2:ip7:1.2.3.47:peer id20:aaaaaaaaaaaaaaaaaaaa4:porti80eed2:ip11:example.com4:porti1eed2:ip3:::14:porti2eeee", peers{ap("1.2.3.4:80"), ap("[::1]:2")}, ""},
		{"no peers", "d8:intervali60ee", nil, ""},
		{"compact bad length", "d5:peers5:abcdee", nil, "multiple of 6"},
		{"peers6 bad length", "d6:peers65:abcdee", nil, "multiple of 18"},
		{"peers wrong type", "d5:peersi3ee", nil, "neither"},
		{"dict peer no port", "d5:peersld2:ip7:1.2.3.4eee", nil, "no valid port"},
		{"dict peer big port", "d5:peersld2:ip7:1.2.3.44:porti70000eeee", nil, "no valid port"},
		{"dict peer not dict", "d5:peersli1eee", nil, "not a dictionary"},
		{"not a dict", "li1ee", nil, "not a dictionary"},
		{"not bencode", "hello", nil, "malformed"},
		{"trailing", "d8:intervali60eeXX", nil, "malformed"},
		{"failure", "d14:failure reason4:nopee", nil, "tracker failure: nope"},
		{"failure not string", "d14:failure reasoni1ee", nil, "not a string"},
		{"negative complete", "d8:completei-1ee", nil, "complete"},
		{"warning type", "d15:warning messagei1ee", nil, "warning"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseAnnounceResponse([]byte(tc.body))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(r.Peers, tc.peers) {
				t.Fatalf("peers = %v, want %v", r.Peers, tc.peers)
			}
		})
	}
	r, err := ParseAnnounceResponse([]byte("d8:completei3e10:incompletei4e8:intervali1800e12:min intervali60e10:tracker id3:abc15:warning message6:hi\x1b[2Je"))
	if err != nil {
		t.Fatal(err)
	}
	want := AnnounceResponse{Interval: 30 * time.Minute, MinInterval: time.Minute, Complete: 3, Incomplete: 4, TrackerID: "abc", Warning: "hi?[2J"}
	if r.Interval != want.Interval || r.MinInterval != want.MinInterval || r.Complete != 3 || r.Incomplete != 4 || r.TrackerID != "abc" || r.Warning != want.Warning {
		t.Fatalf("full response = %+v, want %+v (control characters replaced)", r, want)
	}
	_, err = ParseAnnounceResponse([]byte("d14:failure reason3:bad8:retry in5:nevere"))
	var fe *FailureError
	if !errors.As(err, &fe) || fe.RetryIn >= 0 {
		t.Fatalf("retry in never: %v", err)
	}
}
