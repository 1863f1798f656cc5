package storage

import (
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/floodgate-p2p/floodgate/internal/metainfo"
)

// FuzzLayout feeds hostile file lists to the layout: names that try to
// escape, odd lengths, conflicting paths. spec lists files as
// "comp|comp|...:length" separated by ";" (so components may contain "/").
// Whatever the input, building the layout must not panic, every accepted
// path must lie inside the data path, and any in-range span must map onto
// contiguous, in-bounds file runs.
func FuzzLayout(f *testing.F) {
	f.Add(uint16(16), "a|b:10;c:0;d:25", uint32(3), uint32(20))
	f.Add(uint16(4), "..|x:5", uint32(0), uint32(1))
	f.Add(uint16(1), "x:0;y:0;z:1", uint32(0), uint32(1))
	f.Fuzz(func(t *testing.T, pieceLen uint16, spec string, off, n uint32) {
		root := filepath.Join("/data", "t")
		info := &metainfo.Info{Name: "t", PieceLength: int64(pieceLen)}
		for _, fs := range strings.Split(spec, ";") {
			path, length, ok := strings.Cut(fs, ":")
			l, err := strconv.ParseInt(length, 10, 64)
			if !ok || err != nil || l > 1<<20 {
				return
			}
			info.Files = append(info.Files, metainfo.File{Path: strings.Split(path, "|"), Length: l})
		}
		if total := info.TotalLength(); pieceLen > 0 && total >= 0 {
			info.Pieces = make([]metainfo.Hash, (total+int64(pieceLen)-1)/int64(pieceLen))
		}
		l, err := newLayout(info, root)
		if err != nil {
			if !errors.Is(err, ErrBadLayout) && !errors.Is(err, ErrUnsafePath) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		for _, fe := range l.files {
			if !within(root, fe.path) {
				t.Fatalf("file %q placed at %q, outside %q", fe.rel, fe.path, root)
			}
		}
		start, size := int64(off), int64(n)
		if start+size > l.total {
			return
		}
		pos := start
		err = l.segments(start, size, func(fi int, fileOff int64, lo, hi int) error {
			fe := l.files[fi]
			if fe.offset+fileOff != pos || int64(lo) != pos-start || hi <= lo ||
				fileOff < 0 || fileOff+int64(hi-lo) > fe.length {
				t.Fatalf("bad run: file %d at %d, [%d,%d) while at %d", fi, fileOff, lo, hi, pos)
			}
			pos += int64(hi - lo)
			return nil
		})
		if err != nil || pos != start+size {
			t.Fatalf("runs covered [%d,%d), want [%d,%d): %v", start, pos, start, start+size, err)
		}
	})
}
