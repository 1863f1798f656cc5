package storage

import (
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strings"

	"github.com/floodgate-p2p/floodgate/internal/metainfo"
)

// fileEntry is one file of the torrent placed in the torrent-global byte
// space.
type fileEntry struct {
	rel    string // torrent path joined with "/", for messages
	path   string // where the file lives on disk
	offset int64  // torrent-global offset of its first byte
	length int64
	// noFollow is set in read-write mode for files that were not vetted
	// symbolic links at Open time, so a link planted later is not followed.
	noFollow bool
}

// layout maps torrent-global offsets onto files. It is immutable after
// Open, so readers need no lock to use it.
type layout struct {
	files     []fileEntry
	total     int64
	pieceLen  int64
	numPieces int
}

// newLayout validates info and places its files under dataPath.
func newLayout(info *metainfo.Info, dataPath string) (layout, error) {
	if info == nil {
		return layout{}, fmt.Errorf("%w: no info", ErrBadLayout)
	}
	if info.PieceLength <= 0 {
		return layout{}, fmt.Errorf("%w: piece length %d", ErrBadLayout, info.PieceLength)
	}
	if dataPath == "" {
		return layout{}, fmt.Errorf("%w: empty data path", ErrUnsafePath)
	}
	multi := info.IsMultiFile()
	list := info.FileList()
	l := layout{files: make([]fileEntry, 0, len(list)), pieceLen: info.PieceLength}
	seen := make(map[string]bool, len(list))   // file paths
	dirs := make(map[string]bool, len(list)/4) // directory paths implied by files
	for i, f := range list {
		if f.Length < 0 {
			return layout{}, fmt.Errorf("%w: file %d has negative length %d", ErrBadLayout, i, f.Length)
		}
		if l.total > math.MaxInt64-f.Length {
			return layout{}, fmt.Errorf("%w: total length overflows", ErrBadLayout)
		}
		var path, rel string
		if multi {
			p, err := safeJoin(dataPath, f.Path)
			if err != nil {
				return layout{}, fmt.Errorf("file %d: %w", i, err)
			}
			path, rel = p, strings.Join(f.Path, "/")
			if seen[rel] || dirs[rel] {
				return layout{}, fmt.Errorf("%w: path %q used twice", ErrBadLayout, rel)
			}
			seen[rel] = true
			for j := 1; j < len(f.Path); j++ {
				d := strings.Join(f.Path[:j], "/")
				if seen[d] {
					return layout{}, fmt.Errorf("%w: %q is both a file and a directory", ErrBadLayout, d)
				}
				dirs[d] = true
			}
		} else {
			// The data path of a single-file torrent is the file itself.
			path, rel = filepath.Clean(dataPath), info.Name
		}
		l.files = append(l.files, fileEntry{rel: rel, path: path, offset: l.total, length: f.Length})
		l.total += f.Length
	}
	want := int((l.total + l.pieceLen - 1) / l.pieceLen)
	if l.total/l.pieceLen >= math.MaxInt32 || len(info.Pieces) != want {
		return layout{}, fmt.Errorf("%w: %d bytes in pieces of %d need %d hashes, info has %d",
			ErrBadLayout, l.total, l.pieceLen, want, len(info.Pieces))
	}
	l.numPieces = want
	return l, nil
}

// pieceSize is the length of piece i; only the last piece may be short.
func (l *layout) pieceSize(i int) int64 {
	if i == l.numPieces-1 {
		return l.total - int64(i)*l.pieceLen
	}
	return l.pieceLen
}

// segments calls fn for each file-local run covering the n bytes at
// torrent offset off, in order; lo and hi index the caller's buffer. The
// range must already be checked against the total length. Zero-length files
// never receive a call.
func (l *layout) segments(off, n int64, fn func(fi int, fileOff int64, lo, hi int) error) error {
	if n <= 0 {
		return nil
	}
	fi := sort.Search(len(l.files), func(i int) bool {
		return l.files[i].offset+l.files[i].length > off
	})
	var done int64
	for ; done < n && fi < len(l.files); fi++ {
		f := &l.files[fi]
		if f.length == 0 {
			continue
		}
		fileOff := off + done - f.offset
		run := min(f.length-fileOff, n-done)
		if err := fn(fi, fileOff, int(done), int(done+run)); err != nil {
			return err
		}
		done += run
	}
	return nil
}

// safeJoin joins the torrent path components under root one by one,
// refusing anything that could name a place outside root. The metainfo
// parser already rejects such names; this is the second line of defence,
// because a mistake here would let a torrent overwrite arbitrary files.
func safeJoin(root string, comps []string) (string, error) {
	if len(comps) == 0 {
		return "", fmt.Errorf("%w: empty file path", ErrUnsafePath)
	}
	p := filepath.Clean(root)
	for _, c := range comps {
		if c == "" || c == "." || c == ".." || strings.ContainsAny(c, "/\x00") ||
			(filepath.Separator != '/' && strings.ContainsRune(c, filepath.Separator)) {
			return "", fmt.Errorf("%w: path component %q", ErrUnsafePath, c)
		}
		p = filepath.Join(p, c)
	}
	if !within(filepath.Clean(root), p) {
		return "", fmt.Errorf("%w: %q leaves %q", ErrUnsafePath, p, root)
	}
	return p, nil
}

// within reports whether path p lies strictly inside directory root (both
// cleaned, both absolute or both relative).
func within(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	if err != nil || rel == "." || filepath.IsAbs(rel) {
		return false
	}
	return rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}
