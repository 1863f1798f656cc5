package metainfo

import (
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
)

// ErrEmpty is returned by Build when there is nothing to share: a
// directory without regular files, or only empty files.
var ErrEmpty = errors.New("metainfo: no content to make a torrent of")

// BuildOptions are the choices Build leaves to the caller.
type BuildOptions struct {
	// PieceLength is a power of two between MinPieceLength and
	// MaxPieceLength, or 0 for AutoPieceLength.
	PieceLength int64
	// Announce and AnnounceList are the trackers (BEP 3, BEP 12).
	Announce     string
	AnnounceList [][]string
	// WebSeeds become the url-list (BEP 19).
	WebSeeds     []string
	Comment      string
	CreatedBy    string
	CreationDate int64 // Unix seconds; 0 leaves it out
	// Private sets BEP 27's private flag, which changes the info hash.
	Private bool
	// Workers is how many goroutines hash pieces at once; 0 means one per
	// CPU (GOMAXPROCS), since SHA-1 is the bottleneck when files are cached.
	Workers int
}

// AutoPieceLength chooses a piece length for content of total bytes: the
// smallest power of two, at least 16 KiB and at most 16 MiB, that keeps the
// piece count at or below 2000. Unless a bound applies, that puts the count
// between 1001 and 2000: few enough to keep the torrent file and bitfields
// small, many enough for swarming to spread pieces early.
func AutoPieceLength(total int64) int64 {
	const (
		minAuto   = MinPieceLength
		maxAuto   = 16 << 20
		maxPieces = 2000
	)
	pl := int64(minAuto)
	for pl < maxAuto && (total+pl-1)/pl > maxPieces {
		pl <<= 1
	}
	return pl
}

// sourceFile is one file to hash: where it is on disk and where it sits in
// the torrent.
type sourceFile struct {
	osPath string
	path   []string // components below the torrent directory
	length int64
	offset int64 // of its first byte in the content
}

// Build makes a torrent of the file or directory at path, hashing its
// pieces in parallel.
//
// The info dictionary matches mktorrent's for the same content and piece
// length, so the info hashes agree: a single file gives {length, name,
// piece length, pieces}; a directory gives {files, name, piece length,
// pieces}; "private" is added only when set. Like mktorrent, a directory
// contributes every regular file below it, hidden files and directories
// included; symbolic links are followed (a dangling one is an error, a
// loop too); FIFOs, sockets and devices are skipped; empty files are kept;
// and files are ordered by their slash-joined relative path compared byte
// by byte (so "a-b" sorts before "a/x", which sorts before "a0").
//
// Files must not change while Build reads them; a file that shrinks is an
// error. Cancelling ctx stops the hashing and returns ctx's error.
func Build(ctx context.Context, path string, opts BuildOptions) (*MetaInfo, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("metainfo: %w", err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("metainfo: %w", err)
	}
	info := Info{Name: filepath.Base(abs)}
	if err := checkComponent(info.Name); err != nil {
		return nil, fmt.Errorf("metainfo: cannot use %q as the torrent name: %w", info.Name, err)
	}
	var files []sourceFile
	switch {
	case st.Mode().IsRegular():
		files = []sourceFile{{osPath: abs, path: []string{info.Name}, length: st.Size()}}
		info.Length = st.Size()
	case st.IsDir():
		if files, err = listDir(ctx, abs); err != nil {
			return nil, err
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("%w: %s holds no regular files", ErrEmpty, path)
		}
		info.Files = make([]File, len(files))
		for i, f := range files {
			info.Files[i] = File{Path: f.path, Length: f.length}
		}
	default:
		return nil, fmt.Errorf("metainfo: %s is neither a regular file nor a directory", path)
	}
	var total int64
	for i := range files {
		files[i].offset = total
		total += files[i].length
	}
	if total == 0 {
		return nil, fmt.Errorf("%w: %s has only empty files", ErrEmpty, path)
	}

	info.PieceLength = opts.PieceLength
	if info.PieceLength == 0 {
		info.PieceLength = AutoPieceLength(total)
	}
	if pl := info.PieceLength; pl < MinPieceLength || pl > MaxPieceLength || bits.OnesCount64(uint64(pl)) != 1 {
		return nil, fmt.Errorf("metainfo: piece length %d is not a power of two between %d and %d", pl, MinPieceLength, MaxPieceLength)
	}
	info.Private = opts.Private
	info.Pieces, err = hashPieces(ctx, files, total, info.PieceLength, opts.Workers)
	if err != nil {
		return nil, err
	}
	if err := info.Validate(); err != nil {
		return nil, err
	}
	infoBytes, err := info.Encode()
	if err != nil {
		return nil, err
	}
	return &MetaInfo{
		Announce:     opts.Announce,
		AnnounceList: opts.AnnounceList,
		URLList:      opts.WebSeeds,
		Comment:      opts.Comment,
		CreatedBy:    opts.CreatedBy,
		CreationDate: opts.CreationDate,
		Info:         info,
		InfoBytes:    infoBytes,
		InfoHash:     sha1.Sum(infoBytes),
	}, nil
}

// listDir returns the regular files below root in mktorrent's order.
func listDir(ctx context.Context, root string) ([]sourceFile, error) {
	var files []sourceFile
	rootInfo, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("metainfo: %w", err)
	}
	// ancestors holds the directories on the current path, to catch
	// symbolic links that lead back into themselves.
	ancestors := []os.FileInfo{rootInfo}
	var walk func(dir string, rel []string) error
	walk = func(dir string, rel []string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("metainfo: %w", err)
		}
		for _, e := range entries {
			p := filepath.Join(dir, e.Name())
			st, err := os.Stat(p) // follows symbolic links, as mktorrent does
			if err != nil {
				return fmt.Errorf("metainfo: %w", err)
			}
			childRel := append(slices.Clip(rel), e.Name())
			switch {
			case st.IsDir():
				if slices.ContainsFunc(ancestors, func(a os.FileInfo) bool { return os.SameFile(a, st) }) {
					return fmt.Errorf("metainfo: %s: symbolic link loop", p)
				}
				ancestors = append(ancestors, st)
				err := walk(p, childRel)
				ancestors = ancestors[:len(ancestors)-1]
				if err != nil {
					return err
				}
			case st.Mode().IsRegular():
				files = append(files, sourceFile{osPath: p, path: childRel, length: st.Size()})
			}
		}
		return nil
	}
	if err := walk(root, nil); err != nil {
		return nil, err
	}
	slices.SortFunc(files, func(a, b sourceFile) int {
		return strings.Compare(strings.Join(a.path, "/"), strings.Join(b.path, "/"))
	})
	return files, nil
}

// hashPieces computes the piece hashes of the concatenated files. Workers
// claim runs of consecutive pieces from a shared counter, so each reads
// mostly sequentially from one file at a time and all cores stay busy to
// the end however file sizes vary.
func hashPieces(ctx context.Context, files []sourceFile, total, pieceLength int64, workers int) ([]Hash, error) {
	numPieces := int((total + pieceLength - 1) / pieceLength)
	hashes := make([]Hash, numPieces)
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, numPieces)
	// About 8 MiB per claim: big enough to amortise the counter and keep
	// reads sequential, small enough to balance the last claims.
	batch := int(max(1, (8<<20)/pieceLength))
	var next atomic.Int64
	g, ctx := errgroup.WithContext(ctx)
	for range workers {
		g.Go(func() error {
			r := newContentReader(files)
			defer r.close()
			buf := make([]byte, min(pieceLength, 1<<20))
			h := sha1.New()
			for {
				first := int(next.Add(int64(batch))) - batch
				if first >= numPieces {
					return nil
				}
				for p := first; p < min(first+batch, numPieces); p++ {
					if err := ctx.Err(); err != nil {
						return err
					}
					start := int64(p) * pieceLength
					size := min(pieceLength, total-start)
					h.Reset()
					for done := int64(0); done < size; {
						n := min(int64(len(buf)), size-done)
						if err := r.readAt(buf[:n], start+done); err != nil {
							return err
						}
						h.Write(buf[:n])
						done += n
					}
					h.Sum(hashes[p][:0])
				}
			}
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return hashes, nil
}

// contentReader reads the concatenated files, keeping one file open at a
// time so a torrent of many files never holds many descriptors.
type contentReader struct {
	files []sourceFile
	cur   int // index of the open file, -1 for none
	f     *os.File
}

func newContentReader(files []sourceFile) *contentReader {
	return &contentReader{files: files, cur: -1}
}

func (r *contentReader) close() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
		r.cur = -1
	}
}

// readAt fills p with content starting at offset off.
func (r *contentReader) readAt(p []byte, off int64) error {
	// The last file whose offset is <= off; empty files share an offset
	// with their successor and are skipped by the loop below.
	i, found := slices.BinarySearchFunc(r.files, off, func(f sourceFile, off int64) int {
		switch {
		case f.offset < off:
			return -1
		case f.offset > off:
			return 1
		}
		return 0
	})
	if !found {
		i--
	}
	for len(p) > 0 {
		if i >= len(r.files) {
			return fmt.Errorf("metainfo: read past the end of the content at offset %d", off)
		}
		f := &r.files[i]
		within := off - f.offset
		if within >= f.length {
			i++
			continue
		}
		if r.cur != i {
			r.close()
			fh, err := os.Open(f.osPath)
			if err != nil {
				return fmt.Errorf("metainfo: %w", err)
			}
			r.f, r.cur = fh, i
		}
		n := int(min(int64(len(p)), f.length-within))
		if _, err := r.f.ReadAt(p[:n], within); err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("metainfo: %s shrank while it was being hashed", f.osPath)
			}
			return fmt.Errorf("metainfo: %w", err)
		}
		p = p[n:]
		off += int64(n)
		i++
	}
	return nil
}
