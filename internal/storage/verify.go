package storage

import (
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/floodgate-p2p/floodgate/internal/bitfield"
	"github.com/floodgate-p2p/floodgate/internal/metainfo"
)

// HashPiece returns the SHA-1 of data, the hash BEP 3 stores per piece.
func HashPiece(data []byte) metainfo.Hash {
	return metainfo.Hash(sha1.Sum(data))
}

// PieceHashOK reports whether data is exactly piece i of the torrent: right
// length and matching hash. The engine calls it on a downloaded piece
// before WritePiece.
func (s *Storage) PieceHashOK(i int, data []byte) bool {
	if i < 0 || i >= s.lay.numPieces || int64(len(data)) != s.lay.pieceSize(i) {
		return false
	}
	return HashPiece(data) == s.info.Pieces[i]
}

// VerifyPiece reads piece i back from disk and checks its hash. Data that
// is missing on disk makes it false with a nil error; other I/O errors are
// returned.
func (s *Storage) VerifyPiece(i int) (bool, error) {
	if i < 0 || i >= s.lay.numPieces {
		return false, fmt.Errorf("%w: piece %d of %d", ErrOutOfRange, i, s.lay.numPieces)
	}
	bp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bp)
	buf := (*bp)[:s.lay.pieceSize(i)]
	if _, err := s.ReadAt(buf, int64(i)*s.lay.pieceLen); err != nil {
		if errors.Is(err, ErrMissingData) {
			return false, nil
		}
		return false, err
	}
	return HashPiece(buf) == s.info.Pieces[i], nil
}

// Check finds the pieces that are correct on disk: the resume path of a
// restarted get or seed, or a re-check after trouble. It hashes pieces with one worker per CPU, skips
// without reading any piece that a missing or too short file cannot hold,
// and recognises never-written (sparse) ranges without reading them.
//
// progress, if not nil, is called after each piece with the number of
// pieces examined so far and the total; calls come from the goroutine that
// called Check, one at a time. Check returns early with ctx's error when ctx
// ends, and with an error for I/O failures other than missing data.
func (s *Storage) Check(ctx context.Context, progress func(done, total int)) (bitfield.Bitfield, error) {
	n := s.lay.numPieces
	have := bitfield.New(n)
	if s.closed.Load() {
		return have, ErrClosed
	}
	if n == 0 {
		return have, nil
	}
	// Reopen files from here on: a handle kept from before would still read
	// a file that has since been deleted or replaced.
	s.handles.flush()
	sizes := s.statSizes()
	workers := min(runtime.GOMAXPROCS(0), n)
	type result struct {
		piece int
		ok    bool
	}
	results := make(chan result, 4*workers)
	g, gctx := errgroup.WithContext(ctx)
	var next atomic.Int64
	for range workers {
		g.Go(func() error {
			c := checker{s: s, sizes: sizes, buf: make([]byte, s.lay.pieceLen)}
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return nil
				}
				if err := gctx.Err(); err != nil {
					return err
				}
				ok, err := c.piece(i)
				if err != nil {
					return err
				}
				select {
				case results <- result{i, ok}:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
		})
	}
	// The waiter closes results once every worker has returned; Check keeps
	// draining until then, so neither outlives this call.
	waitErr := make(chan error, 1)
	go func() {
		waitErr <- g.Wait()
		close(results)
	}()
	done := 0
	for r := range results {
		if r.ok {
			have.Set(r.piece)
		}
		done++
		if progress != nil {
			progress(done, n)
		}
	}
	if err := <-waitErr; err != nil {
		return bitfield.New(n), fmt.Errorf("storage: check: %w", err)
	}
	return have, nil
}

// statSizes returns each file's size on disk, -1 when it is missing or not
// a regular file, so Check can rule pieces out without opening anything.
func (s *Storage) statSizes() []int64 {
	sizes := make([]int64, len(s.lay.files))
	for i, f := range s.lay.files {
		sizes[i] = -1
		if fi, err := os.Stat(f.path); err == nil && fi.Mode().IsRegular() {
			sizes[i] = fi.Size()
		}
	}
	return sizes
}

// checker is one Check worker's state.
type checker struct {
	s     *Storage
	sizes []int64
	buf   []byte
	zero  map[int64]metainfo.Hash // SHA-1 of that many zero bytes
}

// piece reports whether piece i is correct on disk.
func (c *checker) piece(i int) (bool, error) {
	s := c.s
	size := s.lay.pieceSize(i)
	off := int64(i) * s.lay.pieceLen
	short, holes := false, true
	err := s.lay.segments(off, size, func(fi int, fileOff int64, lo, hi int) error {
		end := fileOff + int64(hi-lo)
		if c.sizes[fi] < end {
			short = true
			return errStop
		}
		if holes {
			h, err := s.handles.acquire(fi)
			if err != nil {
				return err
			}
			holes = isHole(h.f, fileOff, end)
			s.handles.release(h)
		}
		return nil
	})
	if short || errors.Is(err, ErrMissingData) {
		return false, nil // the file is missing or too short for this piece
	}
	if err != nil {
		return false, err
	}
	if holes {
		// Nothing was ever written here, so the piece reads as zeros: it is
		// right only if the content really is zeros (sparse images do that).
		return c.zeroHash(size) == s.info.Pieces[i], nil
	}
	buf := c.buf[:size]
	if _, err := s.ReadAt(buf, off); err != nil {
		if errors.Is(err, ErrMissingData) {
			return false, nil // truncated since statSizes
		}
		return false, err
	}
	return HashPiece(buf) == s.info.Pieces[i], nil
}

func (c *checker) zeroHash(size int64) metainfo.Hash {
	if h, ok := c.zero[size]; ok {
		return h
	}
	if c.zero == nil {
		c.zero = make(map[int64]metainfo.Hash, 2)
	}
	z := c.buf[:size]
	clear(z)
	h := HashPiece(z)
	c.zero[size] = h
	return h
}

// errStop ends a segment walk early; it never leaves the package.
var errStop = errors.New("stop")
