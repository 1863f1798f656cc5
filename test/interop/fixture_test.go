package interop

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

const (
	kib = 1 << 10
	mib = 1 << 20
)

// writeRandomFile fills path with size pseudo-random bytes from seed;
// the content is reproducible so a failure can be replayed.
func writeRandomFile(t testing.TB, path string, size int64, seed uint64) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	buf := make([]byte, 64*kib)
	for left := size; left > 0; {
		n := min(left, int64(len(buf)))
		for i := range buf[:n] {
			buf[i] = byte(r.Uint32())
		}
		if _, err := f.Write(buf[:n]); err != nil {
			t.Fatal(err)
		}
		left -= n
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// multiFileLayout is the content of the multi-file torrents: sizes are
// chosen so that files straddle piece boundaries and the last piece is
// short.
var multiFileLayout = []struct {
	path string
	size int64
}{
	{"a.bin", 100*kib + 7},
	{"docs/readme.txt", 3 * kib},
	{"docs/sub/c.bin", 700*kib + 123},
	{"z.bin", 1*mib + 1},
}

// writeMultiFileTree creates the multi-file content under dir/name and
// returns that directory.
func writeMultiFileTree(t testing.TB, dir, name string) string {
	t.Helper()
	root := filepath.Join(dir, name)
	for i, f := range multiFileLayout {
		writeRandomFile(t, filepath.Join(root, filepath.FromSlash(f.path)), f.size, uint64(100+i))
	}
	return root
}

// assertSameContent compares two files, or two directory trees file by
// file, byte for byte.
func assertSameContent(t testing.TB, want, got string) {
	t.Helper()
	wi, err := os.Stat(want)
	if err != nil {
		t.Fatal(err)
	}
	if !wi.IsDir() {
		compareFiles(t, want, got)
		return
	}
	err = filepath.WalkDir(want, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		compareFiles(t, p, filepath.Join(got, rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func compareFiles(t testing.TB, want, got string) {
	t.Helper()
	a, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(got)
	if err != nil {
		t.Fatalf("downloaded file missing: %v", err)
	}
	if len(a) != len(b) {
		t.Fatalf("%s: %d bytes downloaded, want %d", got, len(b), len(a))
	}
	if !bytes.Equal(a, b) {
		i := 0
		for a[i] == b[i] {
			i++
		}
		t.Fatalf("%s differs from %s from byte %d on", got, want, i)
	}
}

// transmissionHashRe matches the info hash line of transmission-show
// ("Hash:" in 3.x, "Hash v1:" in 4.x).
var transmissionHashRe = regexp.MustCompile(`(?m)^\s*Hash(?: v1)?:\s*([0-9a-fA-F]{40})\s*$`)

// transmissionShow runs transmission-show on a torrent and returns its
// output and the info hash it printed.
func transmissionShow(t testing.TB, torrent string) (string, string) {
	t.Helper()
	bin := needTool(t, "transmission-show")
	out := string(mustRun(t, 30*time.Second, "", bin, torrent))
	m := transmissionHashRe.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("transmission-show printed no info hash:\n%s", out)
	}
	return out, strings.ToLower(m[1])
}

// mustOracleHash is oracleInfoHash for tests.
func mustOracleHash(t testing.TB, torrent string) string {
	t.Helper()
	h, err := oracleInfoHash(torrent)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// scrapeURL derives a tracker's scrape URL from its announce URL by the
// convention every HTTP tracker follows (BEP 48).
func scrapeURL(announce string) (string, error) {
	i := strings.LastIndex(announce, "/")
	if i < 0 || !strings.HasPrefix(announce[i:], "/announce") {
		return "", fmt.Errorf("announce URL %q does not end in /announce", announce)
	}
	return announce[:i] + "/scrape" + announce[i+len("/announce"):], nil
}

// scrapeSeeders asks a tracker how many seeders it knows for a torrent.
func scrapeSeeders(announce, infoHashHex string) (int64, error) {
	u, err := scrapeURL(announce)
	if err != nil {
		return 0, err
	}
	raw, err := hexBytes(infoHashHex)
	if err != nil {
		return 0, err
	}
	// No keep-alive: an idle connection's goroutines would outlive the
	// test and trip the leak check.
	client := &http.Client{
		Timeout:   3 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true},
	}
	resp, err := client.Get(u + "?info_hash=" + url.QueryEscape(string(raw)))
	if err != nil {
		return 0, fmt.Errorf("scrape: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, fmt.Errorf("scrape: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("scrape: HTTP %s: %q", resp.Status, body)
	}
	v, err := bdecode(body)
	if err != nil {
		return 0, fmt.Errorf("scrape reply %q: %w", body, err)
	}
	files, _ := v.(map[string]any)["files"].(map[string]any)
	stats, _ := files[string(raw)].(map[string]any)
	n, _ := stats["complete"].(int64)
	return n, nil
}

// waitSeeder waits until the tracker lists at least one seeder for the
// torrent: a leecher started earlier would get an empty peer list and then
// wait a whole announce interval before asking again.
func waitSeeder(t testing.TB, announce, infoHashHex string, seeder *proc, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		n, err := scrapeSeeders(announce, infoHashHex)
		if err == nil && n > 0 {
			return
		}
		lastErr = err
		if done, perr := seeder.exited(); done {
			t.Fatalf("%s exited (%v) before registering with the tracker; output:\n%s",
				seeder.name, perr, tailFile(seeder.logPath, 40))
		}
		if time.Now().After(deadline) {
			t.Fatalf("tracker %s lists no seeder for %s after %v (last scrape error: %v); seeder output:\n%s",
				announce, infoHashHex, timeout, lastErr, tailFile(seeder.logPath, 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// hexBytes decodes a 40-digit hex info hash.
func hexBytes(h string) ([]byte, error) {
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != 20 {
		return nil, fmt.Errorf("info hash %q is not 40 hex digits", h)
	}
	return b, nil
}
