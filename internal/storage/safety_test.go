package storage

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/floodgate-p2p/floodgate/internal/metainfo"
)

func TestReadOnlyRefusesWrites(t *testing.T) {
	f := newFixture(t, "ro", 16, true, 20, 30)
	dir := t.TempDir()
	s := f.open(t, dir, ReadOnly)
	if _, err := os.Stat(filepath.Join(dir, "ro")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadOnly Open created files: %v", err)
	}
	if err := s.WritePiece(0, f.piece(0)); !errors.Is(err, ErrReadOnly) {
		t.Errorf("WritePiece in ReadOnly = %v, want ErrReadOnly", err)
	}
	if _, err := s.WriteAt([]byte{1}, 0); !errors.Is(err, ErrReadOnly) {
		t.Errorf("WriteAt in ReadOnly = %v, want ErrReadOnly", err)
	}
	if err := s.ReadBlock(0, 0, make([]byte, 4)); !errors.Is(err, ErrMissingData) {
		t.Errorf("ReadBlock with no files = %v, want ErrMissingData", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "ro")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadOnly reads created files: %v", err)
	}
	have, err := s.Check(context.Background(), nil)
	if err != nil || !have.Empty() {
		t.Errorf("Check with no files = %d pieces, %v", have.Count(), err)
	}
	var fse *FileSizeError
	if err := s.CheckFiles(); !errors.As(err, &fse) || !fse.Missing || !strings.Contains(err.Error(), "missing") {
		t.Errorf("CheckFiles with no files = %v", err)
	}
}

func TestPathEscapesRefused(t *testing.T) {
	bad := [][]string{
		{".."}, {"..", "x"}, {"a", "..", "..", "x"}, {"."}, {""}, {"a", ""},
		{"a/../../x"}, {"/etc/passwd"}, {"a\x00b"}, {},
	}
	for _, p := range bad {
		info := &metainfo.Info{Name: "t", PieceLength: 16, Files: []metainfo.File{
			{Path: []string{"ok"}, Length: 1}, {Path: p, Length: 1},
		}, Pieces: make([]metainfo.Hash, 1)}
		dir := t.TempDir()
		_, err := Open(info, filepath.Join(dir, "t"), ReadWrite)
		if !errors.Is(err, ErrUnsafePath) {
			t.Errorf("path %q: Open = %v, want ErrUnsafePath", p, err)
		}
		if _, err := Open(info, filepath.Join(dir, "t"), ReadOnly); !errors.Is(err, ErrUnsafePath) {
			t.Errorf("path %q: ReadOnly Open = %v, want ErrUnsafePath", p, err)
		}
	}
	for _, name := range []string{"..", ".", "", "a/b", "../x", "/abs"} {
		if _, err := DataPath(t.TempDir(), &metainfo.Info{Name: name}); !errors.Is(err, ErrUnsafePath) {
			t.Errorf("DataPath with name %q = %v, want ErrUnsafePath", name, err)
		}
	}
}

func TestBadLayoutRefused(t *testing.T) {
	files := func(fs ...metainfo.File) []metainfo.File { return fs }
	tests := []struct {
		name string
		info *metainfo.Info
	}{
		{"nil", nil},
		{"zero piece length", &metainfo.Info{Name: "t", Length: 1, Pieces: make([]metainfo.Hash, 1)}},
		{"too few hashes", &metainfo.Info{Name: "t", PieceLength: 4, Length: 9, Pieces: make([]metainfo.Hash, 2)}},
		{"too many hashes", &metainfo.Info{Name: "t", PieceLength: 4, Length: 8, Pieces: make([]metainfo.Hash, 3)}},
		{"negative length", &metainfo.Info{Name: "t", PieceLength: 4, Files: files(
			metainfo.File{Path: []string{"a"}, Length: 8}, metainfo.File{Path: []string{"b"}, Length: -4})}},
		{"duplicate path", &metainfo.Info{Name: "t", PieceLength: 4, Pieces: make([]metainfo.Hash, 1), Files: files(
			metainfo.File{Path: []string{"a"}, Length: 2}, metainfo.File{Path: []string{"a"}, Length: 2})}},
		{"file and directory", &metainfo.Info{Name: "t", PieceLength: 4, Pieces: make([]metainfo.Hash, 1), Files: files(
			metainfo.File{Path: []string{"a"}, Length: 2}, metainfo.File{Path: []string{"a", "b"}, Length: 2})}},
		{"directory and file", &metainfo.Info{Name: "t", PieceLength: 4, Pieces: make([]metainfo.Hash, 1), Files: files(
			metainfo.File{Path: []string{"a", "b"}, Length: 2}, metainfo.File{Path: []string{"a"}, Length: 2})}},
		{"overflow", &metainfo.Info{Name: "t", PieceLength: 1 << 62, Pieces: make([]metainfo.Hash, 2), Files: files(
			metainfo.File{Path: []string{"a"}, Length: 1 << 62}, metainfo.File{Path: []string{"b"}, Length: 1 << 62},
			metainfo.File{Path: []string{"c"}, Length: 1 << 62})}},
	}
	for _, tc := range tests {
		_, err := Open(tc.info, filepath.Join(t.TempDir(), "t"), ReadOnly)
		if !errors.Is(err, ErrBadLayout) {
			t.Errorf("%s: Open = %v, want ErrBadLayout", tc.name, err)
		}
	}
	if _, err := Open(&metainfo.Info{Name: "t", PieceLength: 4}, "", ReadOnly); err == nil {
		t.Errorf("Open with empty data path succeeded")
	}
	if _, err := Open(&metainfo.Info{Name: "t", PieceLength: 4}, "x", Mode(7)); err == nil {
		t.Errorf("Open with unknown mode succeeded")
	}
}

func TestSymlinkEscapeRefused(t *testing.T) {
	outside := t.TempDir()
	victim := filepath.Join(outside, "victim")
	if err := os.WriteFile(victim, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, "links", 16, true, 10, 10) // files a/f00 and b/f01

	// A directory link leading outside.
	dir := t.TempDir()
	root := filepath.Join(dir, "links")
	os.MkdirAll(root, 0o755)
	os.Symlink(outside, filepath.Join(root, "a"))
	if _, err := Open(f.info, root, ReadWrite); !errors.Is(err, ErrUnsafePath) {
		t.Errorf("directory link outside: Open = %v, want ErrUnsafePath", err)
	}
	if _, err := os.Stat(filepath.Join(outside, "f00")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a file was created outside the data path")
	}

	// A file link leading outside.
	dir = t.TempDir()
	root = filepath.Join(dir, "links")
	os.MkdirAll(filepath.Join(root, "a"), 0o755)
	os.Symlink(victim, filepath.Join(root, "a", "f00"))
	if _, err := Open(f.info, root, ReadWrite); !errors.Is(err, ErrUnsafePath) {
		t.Errorf("file link outside: Open = %v, want ErrUnsafePath", err)
	}
	// A dangling link is refused too: following it would create a file
	// wherever it points.
	os.Remove(filepath.Join(root, "a", "f00"))
	os.Symlink(filepath.Join(outside, "new"), filepath.Join(root, "a", "f00"))
	if _, err := Open(f.info, root, ReadWrite); !errors.Is(err, ErrUnsafePath) {
		t.Errorf("dangling link: Open = %v, want ErrUnsafePath", err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Errorf("victim file changed: %q", b)
	}

	// Single-file: NAME itself links outside the output directory.
	g := newFixture(t, "single", 16, false, 10)
	dir = t.TempDir()
	os.Symlink(victim, filepath.Join(dir, "single"))
	if _, err := Open(g.info, filepath.Join(dir, "single"), ReadWrite); !errors.Is(err, ErrUnsafePath) {
		t.Errorf("single-file link outside: Open = %v, want ErrUnsafePath", err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Errorf("victim file changed: %q", b)
	}

	// Links that stay inside are fine, and a symlinked data directory is
	// the user's choice.
	dir = t.TempDir()
	real := filepath.Join(dir, "real")
	os.MkdirAll(filepath.Join(real, "b"), 0o755)
	os.Symlink("b", filepath.Join(real, "a"))
	os.Symlink(real, filepath.Join(dir, "links"))
	h := newFixture(t, "links", 16, true, 10, 10)
	h.info.Files[0].Path = []string{"a", "x"}
	h.info.Files[1].Path = []string{"b", "y"}
	s, err := Open(h.info, filepath.Join(dir, "links"), ReadWrite)
	if err != nil {
		t.Fatalf("links inside: %v", err)
	}
	defer s.Close()
	h.writeAll(t, s)
	if got, _ := os.ReadFile(filepath.Join(real, "b", "x")); string(got) != string(h.data[:10]) {
		t.Errorf("write through an inside link went astray")
	}
}

func TestPermissionErrorWrapped(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores file permissions")
	}
	f := newFixture(t, "perm", 16, false, 10)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "perm"), make([]byte, 10), 0o444)
	_, err := Open(f.info, filepath.Join(dir, "perm"), ReadWrite)
	if !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), "perm") {
		t.Errorf("Open on a read-only file = %v, want a wrapped permission error naming it", err)
	}
}
