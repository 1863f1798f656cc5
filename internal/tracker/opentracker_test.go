package tracker

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/testport"
)

// startOpentracker runs a real opentracker on loopback with a whitelist of
// the given info hashes and returns its announce URL. It skips the test
// when opentracker is not installed, except under CI=true.
func startOpentracker(t *testing.T, hashes ...[20]byte) string {
	t.Helper()
	bin, err := exec.LookPath("opentracker")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("opentracker is not on PATH (install Debian's opentracker package)")
		}
		t.Skip("opentracker is not on PATH; skipping the interoperability test")
	}
	// Run as root, opentracker drops privileges to "nobody" before it
	// reads the whitelist, so the file and every directory above it must
	// be readable by anyone: t.TempDir's parent is private, hence MkdirTemp.
	dir, err := os.MkdirTemp("", "floodgate-opentracker-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var wl strings.Builder
	for _, h := range hashes {
		wl.WriteString(hex.EncodeToString(h[:]) + "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "whitelist"), []byte(wl.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	tcpPort, udpPort := testport.Free(t, "tcp"), testport.Free(t, "udp")
	cmd := exec.Command(bin, "-i", "127.0.0.1", "-p", fmt.Sprint(tcpPort), "-P", fmt.Sprint(udpPort), "-w", filepath.Join(dir, "whitelist"))
	cmd.Dir = dir
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	addr := fmt.Sprintf("127.0.0.1:%d", tcpPort)
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("opentracker exited at start: %v\n%s", err, out.String())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("opentracker did not listen on %s: %v\n%s", addr, err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	announce := "http://" + addr + "/announce"
	if len(hashes) > 0 {
		waitWhitelist(t, announce, hashes[0])
	}
	return announce
}

// waitWhitelist waits until opentracker, which loads its whitelist in the
// background after it starts listening, accepts announces for h. The probe
// peer unregisters itself so that it does not show in the counts.
func waitWhitelist(t *testing.T, announce string, h [20]byte) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	probe := AnnounceRequest{InfoHash: h, PeerID: peerN(999), Port: 9, Left: 1}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := Announce(ctx, client, announce, probe)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("opentracker never accepted the whitelisted hash: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	probe.Event = EventStopped
	if _, err := Announce(context.Background(), client, announce, probe); err != nil {
		t.Fatalf("probe stop: %v", err)
	}
}

func TestOpentrackerInterop(t *testing.T) {
	listed := awkwardHash
	announce := startOpentracker(t, listed)
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	seed := AnnounceRequest{InfoHash: listed, PeerID: peerN(1), Port: 7001, Left: 0, Event: EventStarted, Key: 1}
	if _, err := Announce(ctx, client, announce, seed); err != nil {
		t.Fatalf("seeder announce: %v", err)
	}
	leech := AnnounceRequest{InfoHash: listed, PeerID: peerN(2), Port: 7002, Left: 10, Event: EventStarted, NumWant: 50, Key: 2}
	resp, err := Announce(ctx, client, announce, leech)
	if err != nil {
		t.Fatalf("leecher announce: %v", err)
	}
	if !slices.Contains(resp.Peers, netip.MustParseAddrPort("127.0.0.1:7001")) {
		t.Fatalf("leecher got %v, want the seeder 127.0.0.1:7001 among them", resp.Peers)
	}
	if resp.Complete != 1 || resp.Incomplete != 1 || resp.Interval <= 0 {
		t.Fatalf("opentracker reply = %+v, want 1 seeder, 1 leecher and an interval", resp)
	}

	stats, err := Scrape(ctx, client, announce, listed)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	if st := stats[listed]; st.Complete != 1 || st.Incomplete != 1 {
		t.Fatalf("scrape = %+v", stats)
	}

	// A torrent outside the whitelist gets opentracker's failure reason.
	_, err = Announce(ctx, client, announce, AnnounceRequest{InfoHash: hashN(1), PeerID: peerN(3), Port: 7003, Left: 1})
	var fe *FailureError
	if !errors.As(err, &fe) || fe.Reason == "" {
		t.Fatalf("unlisted torrent: err = %v, want a FailureError", err)
	}

	// The Announcer's "stopped" on exit removes the leecher again.
	answered := make(chan struct{}, 1)
	a := NewAnnouncer(AnnouncerConfig{
		Tiers:    [][]string{{announce}},
		InfoHash: listed, PeerID: peerN(4), Port: 7004,
		State:      func() State { return State{Left: 5} },
		HTTPClient: client,
		OnResponse: func(string, *AnnounceResponse) { answered <- struct{}{} },
		OnError:    func(u string, err error) { t.Errorf("announcer: %s: %v", u, err) },
	})
	actx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(actx) }()
	select {
	case <-answered:
	case <-ctx.Done():
		t.Fatal("announcer got no answer from opentracker")
	}
	if stats, err := Scrape(ctx, client, announce, listed); err != nil || stats[listed].Incomplete != 2 {
		t.Fatalf("scrape with announcer running = %+v, %v; want 2 leechers", stats, err)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if stats, err := Scrape(ctx, client, announce, listed); err != nil || stats[listed].Incomplete != 1 {
		t.Fatalf("scrape after stopped = %+v, %v; want 1 leecher", stats, err)
	}
}
