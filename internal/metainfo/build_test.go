package metainfo

import (
	"bytes"
	"context"
	"crypto/sha1"
	"errors"
	"math/bits"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// needTool returns the path of an external tool, skipping the test when it
// is missing, except under CI=true where a missing tool is a failure.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required under CI=true but not on PATH", name)
		}
		t.Skipf("%s not on PATH; install it (apt-get install mktorrent transmission-cli) to run this test", name)
	}
	return p
}

// writeFiles creates files under root with pseudo-random content of the
// given sizes, keyed by slash-separated relative path.
func writeFiles(t *testing.T, root string, sizes map[string]int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	for rel, size := range sizes {
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, size)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// expectedPieces hashes the concatenation of files independently of the
// parallel reader, as the reference for Build.
func expectedPieces(t *testing.T, root string, files []File, pieceLength int64) []Hash {
	t.Helper()
	var all []byte
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(append([]string{root}, f.Path...)...))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	var hs []Hash
	for off := 0; off < len(all); off += int(pieceLength) {
		hs = append(hs, sha1.Sum(all[off:min(off+int(pieceLength), len(all))]))
	}
	return hs
}

func TestBuildSingleFile(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]int{"data.bin": 5*16384 + 7})
	for _, workers := range []int{1, 2, 7} {
		m, err := Build(context.Background(), filepath.Join(dir, "data.bin"), BuildOptions{
			PieceLength: 16384, Announce: "http://t/announce", WebSeeds: []string{"http://w/data.bin"},
			Comment: "c", CreatedBy: "Floodgate", CreationDate: 1700000000, Workers: workers,
		})
		if err != nil {
			t.Fatal(err)
		}
		if m.Info.Name != "data.bin" || m.Info.Length != 5*16384+7 || m.Info.IsMultiFile() || m.Info.NumPieces() != 6 {
			t.Fatalf("info = %+v", m.Info)
		}
		want := expectedPieces(t, dir, []File{{Path: []string{"data.bin"}}}, 16384)
		if !reflect.DeepEqual(m.Info.Pieces, want) {
			t.Fatalf("workers=%d: piece hashes differ", workers)
		}
		if m.InfoHash != sha1.Sum(m.InfoBytes) {
			t.Fatal("InfoHash is not the SHA-1 of InfoBytes")
		}
		enc, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(enc)
		if err != nil {
			t.Fatal(err)
		}
		if back.InfoHash != m.InfoHash || back.Announce != "http://t/announce" || back.URLList[0] != "http://w/data.bin" {
			t.Fatalf("round trip = %+v", back)
		}
	}
}

func TestBuildMultiFileOrderAndSpans(t *testing.T) {
	root := filepath.Join(t.TempDir(), "content")
	// Sizes make pieces straddle file boundaries, including empty files
	// and files smaller than a piece.
	writeFiles(t, root, map[string]int{
		"a-b":          10000,
		"a/x":          40000,
		"a0":           0,
		".hidden":      3,
		".git/config":  16384,
		"B/upper":      1,
		"z/y/deep.bin": 70000,
		"z/empty":      0,
	})
	m, err := Build(context.Background(), root, BuildOptions{PieceLength: 32768})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range m.Info.Files {
		got = append(got, strings.Join(f.Path, "/"))
	}
	want := []string{".git/config", ".hidden", "B/upper", "a-b", "a/x", "a0", "z/empty", "z/y/deep.bin"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("file order = %q, want %q", got, want)
	}
	if !reflect.DeepEqual(m.Info.Pieces, expectedPieces(t, root, m.Info.Files, 32768)) {
		t.Fatal("piece hashes differ from a sequential hash of the concatenated files")
	}
	if m.Info.Name != "content" || m.Info.TotalLength() != 10000+40000+3+16384+1+70000 {
		t.Fatalf("info = %+v", m.Info)
	}
}

func TestBuildSymlinks(t *testing.T) {
	root := filepath.Join(t.TempDir(), "c")
	writeFiles(t, root, map[string]int{"real/f": 100, "top": 5})
	if err := os.Symlink("real", filepath.Join(root, "linkdir")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("top", filepath.Join(root, "linkfile")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(root, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := Build(context.Background(), root, BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range m.Info.Files {
		got = append(got, strings.Join(f.Path, "/"))
	}
	if want := []string{"linkdir/f", "linkfile", "real/f", "top"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("files = %q, want %q (links followed, FIFO skipped)", got, want)
	}

	if err := os.Symlink("..", filepath.Join(root, "real", "loop")); err != nil {
		t.Fatal(err)
	}
	if _, err := Build(context.Background(), root, BuildOptions{}); err == nil || !strings.Contains(err.Error(), "loop") {
		t.Fatalf("symlink loop: err = %v", err)
	}
	os.Remove(filepath.Join(root, "real", "loop"))
	if err := os.Symlink("/nonexistent/target", filepath.Join(root, "dangling")); err != nil {
		t.Fatal(err)
	}
	if _, err := Build(context.Background(), root, BuildOptions{}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("dangling link: err = %v", err)
	}
}

func TestBuildErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Build(context.Background(), empty, BuildOptions{}); !errors.Is(err, ErrEmpty) {
		t.Fatalf("empty dir: %v", err)
	}
	writeFiles(t, dir, map[string]int{"zeros/a": 0, "zeros/b/c": 0, "zero.bin": 0, "one.bin": 1})
	for _, p := range []string{"zeros", "zero.bin"} {
		if _, err := Build(context.Background(), filepath.Join(dir, p), BuildOptions{}); !errors.Is(err, ErrEmpty) {
			t.Fatalf("%s: %v", p, err)
		}
	}
	for _, pl := range []int64{1, 8192, 16384 * 3, 128 << 20, -16384} {
		if _, err := Build(context.Background(), filepath.Join(dir, "one.bin"), BuildOptions{PieceLength: pl}); err == nil {
			t.Errorf("piece length %d accepted", pl)
		}
	}
	if _, err := Build(context.Background(), filepath.Join(dir, "missing"), BuildOptions{}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Build(ctx, filepath.Join(dir, "one.bin"), BuildOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

func TestAutoPieceLength(t *testing.T) {
	tests := []struct {
		total int64
		want  int64
	}{
		{1, 16 << 10},
		{2000 * 16 << 10, 16 << 10},
		{2000*16<<10 + 1, 32 << 10},
		{1 << 30, 1 << 20},     // 1 GiB -> 1024 pieces of 1 MiB
		{256 << 20, 256 << 10}, // 256 MiB -> 1024 pieces
		{100 << 30, 16 << 20},  // capped: 6400 pieces of 16 MiB
	}
	for _, tt := range tests {
		got := AutoPieceLength(tt.total)
		if got != tt.want {
			t.Errorf("AutoPieceLength(%d) = %d, want %d", tt.total, got, tt.want)
		}
		if bits.OnesCount64(uint64(got)) != 1 {
			t.Errorf("AutoPieceLength(%d) = %d, not a power of two", tt.total, got)
		}
	}
	for total := int64(1 << 25); total < 1<<35; total = total*3/2 + 12345 {
		n := (total + AutoPieceLength(total) - 1) / AutoPieceLength(total)
		if n <= 1000 || n > 2000 {
			t.Errorf("AutoPieceLength(%d) gives %d pieces", total, n)
		}
	}
}

// runMktorrent makes a torrent of path with 2^exp-byte pieces and returns
// the parsed result.
func runMktorrent(t *testing.T, path string, exp int, extra ...string) *MetaInfo {
	t.Helper()
	bin := needTool(t, "mktorrent")
	out := filepath.Join(t.TempDir(), "mk.torrent")
	args := append([]string{"-l", strconv.Itoa(exp), "-o", out}, extra...)
	cmd := exec.Command(bin, append(args, path)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mktorrent: %v\n%s", err, b)
	}
	m, err := Load(out)
	if err != nil {
		t.Fatalf("parsing mktorrent's torrent: %v", err)
	}
	return m
}

func TestSameInfoHashAsMktorrent(t *testing.T) {
	needTool(t, "mktorrent")
	dir := t.TempDir()
	writeFiles(t, dir, map[string]int{
		"single.iso":        3*32768 + 1000,
		"tree/a-b":          10000,
		"tree/a/x":          40000,
		"tree/a0":           0,
		"tree/.hidden":      3,
		"tree/.git/config":  70000,
		"tree/B/upper":      1,
		"tree/z/y/deep.bin": 100000,
	})
	tests := []struct {
		name    string
		path    string
		exp     int
		private bool
	}{
		{"single file", filepath.Join(dir, "single.iso"), 15, false},
		{"single file private", filepath.Join(dir, "single.iso"), 16, true},
		{"multi file", filepath.Join(dir, "tree"), 15, false},
		{"multi file private", filepath.Join(dir, "tree"), 17, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var extra []string
			if tt.private {
				extra = append(extra, "-p")
			}
			mk := runMktorrent(t, tt.path, tt.exp, extra...)
			ours, err := Build(context.Background(), tt.path, BuildOptions{PieceLength: 1 << tt.exp, Private: tt.private})
			if err != nil {
				t.Fatal(err)
			}
			if ours.InfoHash != mk.InfoHash {
				t.Fatalf("info hash %s, mktorrent %s\nours: %q\nmk:   %q", ours.InfoHash, mk.InfoHash,
					truncate(ours.InfoBytes), truncate(mk.InfoBytes))
			}
			if !bytes.Equal(ours.InfoBytes, mk.InfoBytes) {
				t.Fatal("same hash but different info bytes?")
			}
		})
	}
}

func truncate(b []byte) []byte {
	if len(b) > 400 {
		return b[:400]
	}
	return b
}

var transmissionHash = regexp.MustCompile(`(?m)^\s*Hash(?: v1)?:\s*([0-9a-f]{40})\s*$`)

func TestTransmissionReadsBuiltTorrent(t *testing.T) {
	bin := needTool(t, "transmission-show")
	dir := t.TempDir()
	writeFiles(t, dir, map[string]int{"one.bin": 100000, "tree/a": 5000, "tree/sub/b": 70000})
	for _, p := range []string{"one.bin", "tree"} {
		m, err := Build(context.Background(), filepath.Join(dir, p), BuildOptions{
			Announce: "http://127.0.0.1:1/announce", WebSeeds: []string{"http://127.0.0.1:2/"}, CreatedBy: "Floodgate",
		})
		if err != nil {
			t.Fatal(err)
		}
		data, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, p+".torrent")
		if err := os.WriteFile(file, data, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, file).CombinedOutput()
		if err != nil {
			t.Fatalf("transmission-show: %v\n%s", err, out)
		}
		match := transmissionHash.FindSubmatch(out)
		if match == nil {
			t.Fatalf("no hash in transmission-show output:\n%s", out)
		}
		if string(match[1]) != m.InfoHash.String() {
			t.Fatalf("transmission-show hash %s, ours %s", match[1], m.InfoHash)
		}
	}
}

func BenchmarkBuild(b *testing.B) {
	dir := b.TempDir()
	f := filepath.Join(dir, "data")
	data := make([]byte, 256<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := os.WriteFile(f, data, 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Build(context.Background(), f, BuildOptions{PieceLength: 256 << 10}); err != nil {
			b.Fatal(err)
		}
	}
}

func TestHashPiecesDetectsShrunkFile(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]int{"f": 1000})
	// The listing says 5000 bytes, as if the file shrank after it was
	// listed; hashing must fail rather than hash a short piece.
	files := []sourceFile{{osPath: filepath.Join(dir, "f"), path: []string{"f"}, length: 5000}}
	_, err := hashPieces(context.Background(), files, 5000, 16384, 2)
	if err == nil || !strings.Contains(err.Error(), "shrank") {
		t.Fatalf("err = %v", err)
	}
}
