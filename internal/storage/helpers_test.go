package storage

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"

	"github.com/floodgate-p2p/floodgate/internal/metainfo"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fixture is a torrent's content and info, built in memory.
type fixture struct {
	info *metainfo.Info
	data []byte
}

// newFixture builds a torrent named name whose files have the given
// lengths (one length and multi=false makes a single-file torrent), filled
// with reproducible random bytes.
func newFixture(t testing.TB, name string, pieceLen int64, multi bool, lengths ...int64) *fixture {
	t.Helper()
	var total int64
	for _, l := range lengths {
		total += l
	}
	data := make([]byte, total)
	r := rand.NewChaCha8([32]byte{byte(total), byte(pieceLen), 7})
	r.Read(data)
	info := &metainfo.Info{Name: name, PieceLength: pieceLen}
	if multi {
		for i, l := range lengths {
			dir := string(rune('a' + i%3))
			info.Files = append(info.Files, metainfo.File{
				Path:   []string{dir, "f" + string(rune('0'+i/10)) + string(rune('0'+i%10))},
				Length: l,
			})
		}
	} else {
		if len(lengths) != 1 {
			t.Fatalf("single-file fixture needs one length")
		}
		info.Length = lengths[0]
	}
	for off := int64(0); off < total; off += pieceLen {
		info.Pieces = append(info.Pieces, HashPiece(data[off:min(off+pieceLen, total)]))
	}
	return &fixture{info: info, data: data}
}

func (f *fixture) piece(i int) []byte {
	pl := f.info.PieceLength
	return f.data[int64(i)*pl : min(int64(i+1)*pl, int64(len(f.data)))]
}

// open opens the fixture under a fresh directory and closes it at cleanup.
func (f *fixture) open(t testing.TB, dir string, mode Mode, opts ...Option) *Storage {
	t.Helper()
	p, err := DataPath(dir, f.info)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(f.info, p, mode, opts...)
	if err != nil {
		t.Fatalf("Open(%s): %v", mode, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// writeAll stores every piece.
func (f *fixture) writeAll(t testing.TB, s *Storage) {
	t.Helper()
	for i := range s.NumPieces() {
		if err := s.WritePiece(i, f.piece(i)); err != nil {
			t.Fatalf("WritePiece(%d): %v", i, err)
		}
	}
}

// filePath is where file i of the fixture lives under dir.
func (f *fixture) filePath(dir string, i int) string {
	if !f.info.IsMultiFile() {
		return filepath.Join(dir, f.info.Name)
	}
	return filepath.Join(append([]string{dir, f.info.Name}, f.info.Files[i].Path...)...)
}

// fileRange is the torrent-global span of file i.
func (f *fixture) fileRange(i int) (start, end int64) {
	for j, fl := range f.info.FileList() {
		if j == i {
			return start, start + fl.Length
		}
		start += fl.Length
	}
	panic("no such file")
}

// assertFiles checks every file on disk holds exactly its slice of data.
func (f *fixture) assertFiles(t testing.TB, dir string) {
	t.Helper()
	for i := range f.info.FileList() {
		got, err := os.ReadFile(f.filePath(dir, i))
		if err != nil {
			t.Fatal(err)
		}
		start, end := f.fileRange(i)
		if !bytes.Equal(got, f.data[start:end]) {
			t.Errorf("file %d: %d bytes on disk differ from its %d expected bytes", i, len(got), end-start)
		}
	}
}
