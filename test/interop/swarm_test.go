package interop

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/testport"
)

// Time limits. Transfers in these tests are a few MiB over loopback and
// take well under a second when things work; the limits only exist so that
// a broken peer turns into a failure instead of a hung suite.
const (
	startTimeout    = 30 * time.Second
	transferTimeout = 2 * time.Minute
)

// tracker is a running tracker of either kind.
type tracker struct {
	announce string
	proc     *proc
}

// startOpentracker runs Debian's opentracker on port, allowing only the
// given info hashes (the Debian build is whitelist-only: any other torrent
// is refused with "not authorized").
func startOpentracker(t testing.TB, port int, infoHashes ...string) tracker {
	t.Helper()
	bin := needTool(t, "opentracker")
	dir := t.TempDir()
	// Started as root, opentracker chroots into -d and drops to the user
	// nobody before it reads the whitelist, so both must be world-readable
	// and the whitelist path is relative to the chroot.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	list := strings.Join(infoHashes, "\n") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "whitelist.txt"), []byte(list), 0o644); err != nil {
		t.Fatal(err)
	}
	p := strconv.Itoa(port)
	// -P binds the UDP tracker too; give it our port so that it does not
	// collide with other instances on the default 6969.
	pr := startProc(t, dir, bin, "-i", "127.0.0.1", "-p", p, "-P", p, "-d", dir, "-w", "whitelist.txt")
	addr := "127.0.0.1:" + p
	waitListening(t, pr, addr, startTimeout)
	return tracker{announce: "http://" + addr + "/announce", proc: pr}
}

// startFloodgateTracker runs `floodgate tracker` on port.
func startFloodgateTracker(t testing.TB, port int) tracker {
	t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	pr := startProc(t, t.TempDir(), floodgateBin, "tracker", "--listen", addr)
	waitListening(t, pr, addr, startTimeout)
	return tracker{announce: "http://" + addr + "/announce", proc: pr}
}

// floodgateCreate makes a torrent with `floodgate create`.
func floodgateCreate(t testing.TB, content, out string, pieceLength int, announce string) {
	t.Helper()
	args := []string{"create", "--piece-length", strconv.Itoa(pieceLength), "-o", out}
	if announce != "" {
		args = append(args, "--tracker", announce)
	}
	args = append(args, content)
	mustRun(t, time.Minute, "", floodgateBin, args...)
}

// startFloodgateSeed runs `floodgate seed --free` and returns its address
// once it accepts connections.
func startFloodgateSeed(t testing.TB, torrent, data string) (string, *proc) {
	t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(testport.Free(t))
	pr := startProc(t, t.TempDir(), floodgateBin, "seed", "--listen", addr, "--free", torrent, data)
	waitListening(t, pr, addr, startTimeout)
	return addr, pr
}

// floodgateGet runs `floodgate get` to completion and fails the test if it
// does not exit 0 (which it does only once every piece is verified).
func floodgateGet(t testing.TB, torrent, outDir string, peers ...string) {
	t.Helper()
	args := []string{"get", "--out", outDir}
	for _, p := range peers {
		args = append(args, "--peer", p)
	}
	args = append(args, torrent)
	r := run(t, transferTimeout, "", floodgateBin, args...)
	if r.err != nil {
		t.Fatalf("floodgate %s: %v\n%s", strings.Join(args, " "), r.err, r.out)
	}
}

// aria2Args are the options every aria2c here runs with: no DHT, local
// peer discovery or peer exchange (the swarm is exactly what the test
// builds), no user configuration, IPv4 loopback, quiet console.
func aria2Args(listenPort int) []string {
	return []string{
		"--no-conf=true",
		"--enable-dht=false", "--enable-dht6=false",
		"--bt-enable-lpd=false", "--enable-peer-exchange=false",
		"--disable-ipv6=true",
		"--bt-external-ip=127.0.0.1",
		"--listen-port=" + strconv.Itoa(listenPort),
		"--bt-tracker-connect-timeout=5", "--bt-tracker-timeout=5",
		"--file-allocation=none",
		"--console-log-level=notice", "--summary-interval=0",
		"--show-console-readout=false",
		"--enable-color=false",
		"--auto-file-renaming=false",
	}
}

// startAria2Seeder makes aria2c seed torrent from dataDir (which holds the
// torrent's NAME). With -V it hashes the data first and only then opens
// its listening port, so once it accepts connections it has every piece.
func startAria2Seeder(t testing.TB, torrent, dataDir string) (string, *proc) {
	t.Helper()
	bin := needTool(t, "aria2c")
	port := testport.Free(t)
	args := append(aria2Args(port),
		"--check-integrity=true",
		// 0.0: keep seeding regardless of share ratio, until killed.
		"--seed-ratio=0.0",
		"--dir="+dataDir, torrent)
	pr := startProc(t, dataDir, bin, args...)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	waitListening(t, pr, addr, startTimeout)
	return addr, pr
}

// aria2Leech downloads torrent into outDir with aria2c, which finds its
// peers through the torrent's tracker, and fails the test unless aria2c
// reports success (it verifies every piece).
func aria2Leech(t testing.TB, torrent, outDir string) {
	t.Helper()
	bin := needTool(t, "aria2c")
	args := append(aria2Args(testport.Free(t)),
		// Exit as soon as the download is complete instead of seeding.
		"--seed-time=0",
		// Give up (and fail the test) if nothing arrives for this long.
		"--bt-stop-timeout=30",
		"--dir="+outDir, torrent)
	r := run(t, transferTimeout, outDir, bin, args...)
	if r.err != nil {
		t.Fatalf("aria2c download failed: %v\n%s", r.err, r.out)
	}
}

// newTracker starts the named kind of tracker on a fresh port, allowing
// the info hash of the torrent that makeTorrent writes for its announce URL.
// It returns the tracker and the torrent's path.
func newTracker(t testing.TB, kind string, makeTorrent func(announce string) string) (tracker, string) {
	t.Helper()
	port := testport.Free(t, "tcp", "udp") // opentracker binds UDP too (-P)
	announce := fmt.Sprintf("http://127.0.0.1:%d/announce", port)
	switch kind {
	case "opentracker":
		// Check for the program before doing any work for it.
		needTool(t, "opentracker")
		torrent := makeTorrent(announce)
		return startOpentracker(t, port, mustOracleHash(t, torrent)), torrent
	case "floodgate":
		torrent := makeTorrent(announce)
		return startFloodgateTracker(t, port), torrent
	default:
		t.Fatalf("unknown tracker kind %q", kind)
		return tracker{}, ""
	}
}
