package wire

import (
	"bytes"
	"crypto/sha1"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/bencode"
	"github.com/floodgate-p2p/floodgate/internal/testport"
)

// needTool returns the path of an external program, skipping the test when
// it is missing, except under CI=true where a missing tool is a failure.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required under CI=true: %v", name, err)
		}
		t.Skipf("%s not installed; skipping interoperability test", name)
	}
	return p
}

// TestInteropAria2Seeder speaks our codec to a real aria2c seeder: both
// handshakes, aria2's extension handshake and fast-extension opening, the
// allowed-fast set (which both sides compute from the address), and a
// block request answered with the right bytes.
func TestInteropAria2Seeder(t *testing.T) {
	if testing.Short() {
		t.Skip("starts aria2c")
	}
	aria2 := needTool(t, "aria2c")
	dir := t.TempDir()

	const pieceLen = 16 << 10
	const numPieces = 64
	data := make([]byte, pieceLen*numPieces-1000) // a short last piece
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rnd.Uint32())
	}
	if err := os.WriteFile(filepath.Join(dir, "data.bin"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	var pieces []byte
	for off := 0; off < len(data); off += pieceLen {
		sum := sha1.Sum(data[off:min(off+pieceLen, len(data))])
		pieces = append(pieces, sum[:]...)
	}
	info, err := bencode.Marshal(map[string]any{
		"name": "data.bin", "length": len(data), "piece length": pieceLen, "pieces": pieces,
	})
	if err != nil {
		t.Fatal(err)
	}
	infoHash := sha1.Sum(info)
	torrent, err := bencode.Marshal(map[string]any{
		"announce": "http://127.0.0.1:1/announce", "info": bencode.RawMessage(info),
	})
	if err != nil {
		t.Fatal(err)
	}
	torrentPath := filepath.Join(dir, "t.torrent")
	if err := os.WriteFile(torrentPath, torrent, 0o600); err != nil {
		t.Fatal(err)
	}

	port := testport.Free(t)
	cmd := exec.Command(aria2, "--seed-ratio=0", "--check-integrity=true", "--enable-dht=false",
		"--bt-enable-lpd=false", "--enable-peer-exchange=false", "--listen-port="+strconv.Itoa(port),
		"--dir="+dir, "--quiet=true", torrentPath)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})

	conn := dialRetry(t, "127.0.0.1:"+strconv.Itoa(port), 20*time.Second)
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))

	var ourID [20]byte
	copy(ourID[:], "-FG0001-wiretest0001")
	if err := WriteHandshake(conn, NewHandshake(infoHash, ourID)); err != nil {
		t.Fatal(err)
	}
	hs, err := ReadHandshake(conn)
	if err != nil {
		t.Fatal(err)
	}
	if hs.InfoHash != infoHash || !hs.SupportsExtensions() || !hs.SupportsFast() {
		t.Fatalf("aria2 handshake %+v: want our info hash, BEP 10 and BEP 6", hs)
	}

	r := NewReader(conn, Limits{MaxBitfield: (numPieces + 7) / 8, MaxBlock: BlockSize})
	var (
		ext         *ExtendedHandshake
		haveAll     bool
		allowedFast []uint32
	)
	w := func(m Message) {
		t.Helper()
		b, err := m.AppendBinary(nil)
		if err == nil {
			_, err = conn.Write(b)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	ours := ExtendedHandshake{M: map[string]uint8{}, V: "floodgate-wiretest", Reqq: 64}
	em, err := ours.Message()
	if err != nil {
		t.Fatal(err)
	}
	w(em)
	w(Message{ID: HaveNone})
	w(Message{ID: Interested})

	requested := false
	want := data[BlockSize : 2*BlockSize]
	if numPieces*pieceLen < 2*BlockSize {
		t.Fatal("test data too small")
	}
	for {
		m, err := r.ReadMessage()
		if err != nil {
			t.Fatalf("reading from aria2 (ext %v, have_all %v, allowed %v): %v", ext != nil, haveAll, allowedFast, err)
		}
		switch {
		case m.Keepalive:
		case m.ID == Extended && m.ExtendedID == ExtendedHandshakeID:
			h, err := ParseExtendedHandshake(m.Payload)
			if err != nil {
				t.Fatalf("aria2's extension handshake %q: %v", m.Payload, err)
			}
			ext = &h
		case m.ID == HaveAll:
			haveAll = true
		case m.ID == Bitfield:
			haveAll = bytes.Count(m.Payload, []byte{0xFF}) == numPieces/8
		case m.ID == AllowedFast:
			allowedFast = append(allowedFast, m.Index)
		case m.ID == Unchoke && !requested:
			// Piece 1 (the second 16 KiB) is requested once unchoked.
			w(NewRequest(1, 0, BlockSize))
			requested = true
		case m.ID == Piece:
			if m.Index != 1 || m.Begin != 0 || !bytes.Equal(m.Payload, want) {
				t.Fatalf("got %v, want piece(1, 0) with the file's bytes", m)
			}
			if ext == nil || !haveAll {
				t.Fatalf("served before its extension handshake (%v) or have_all (%v)", ext != nil, haveAll)
			}
			if _, ok := ext.ID("ut_metadata"); !ok || ext.V == "" || ext.P != uint16(port) {
				t.Errorf("aria2 extension handshake decoded as %+v", *ext)
			}
			// aria2 sends allowed_fast for the canonical BEP 6 set of our
			// address, in order; AllowedFastSet must agree with it.
			canon := AllowedFastSet(netip.MustParseAddr("127.0.0.1"), infoHash, numPieces, len(allowedFast))
			if len(allowedFast) == 0 || !slices.Equal(allowedFast, canon) {
				t.Errorf("aria2 allowed_fast %v, our BEP 6 set %v", allowedFast, canon)
			}
			return
		case m.ID == Choke, m.ID == Port, m.ID == Suggest:
		default:
			t.Logf("ignoring %v", m)
		}
	}
}

// dialRetry waits for a freshly started program to listen.
func dialRetry(t *testing.T, addr string, within time.Duration) net.Conn {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never accepted a connection: %v", addr, errors.Unwrap(err))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
