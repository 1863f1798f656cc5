package storage

import (
	"errors"
	"fmt"
	"io"
)

// checkRange validates n bytes at torrent offset off.
func (s *Storage) checkRange(off, n int64) error {
	if off < 0 || n < 0 || off > s.lay.total-n {
		return fmt.Errorf("%w: %d bytes at offset %d of %d", ErrOutOfRange, n, off, s.lay.total)
	}
	return nil
}

// ReadAt reads len(p) bytes at torrent-global offset off, across file
// boundaries. Following io.ReaderAt, it returns n < len(p) only with an
// error. Bytes that are not on disk (a missing or truncated file) give an
// error matching ErrMissingData rather than zeros.
func (s *Storage) ReadAt(p []byte, off int64) (int, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	if err := s.checkRange(off, int64(len(p))); err != nil {
		return 0, err
	}
	n := 0
	err := s.lay.segments(off, int64(len(p)), func(fi int, fileOff int64, lo, hi int) error {
		m, err := s.readFile(fi, p[lo:hi], fileOff)
		n += m
		return err
	})
	return n, err
}

func (s *Storage) readFile(fi int, p []byte, off int64) (int, error) {
	h, err := s.handles.acquire(fi)
	if err != nil {
		return 0, err
	}
	n, err := h.f.ReadAt(p, off)
	s.handles.release(h)
	if n == len(p) {
		return n, nil
	}
	rel := s.lay.files[fi].rel
	if err == nil || errors.Is(err, io.EOF) {
		return n, fmt.Errorf("storage: read %s: %d bytes at %d: file is truncated: %w",
			rel, len(p), off, ErrMissingData)
	}
	return n, fmt.Errorf("storage: read %s at %d: %w", rel, off, err)
}

// WriteAt writes p at torrent-global offset off, across file boundaries.
// Disk errors are wrapped, so errors.Is(err, syscall.ENOSPC) and
// errors.Is(err, fs.ErrPermission) work.
func (s *Storage) WriteAt(p []byte, off int64) (int, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	if s.mode != ReadWrite {
		return 0, ErrReadOnly
	}
	if err := s.checkRange(off, int64(len(p))); err != nil {
		return 0, err
	}
	n := 0
	err := s.lay.segments(off, int64(len(p)), func(fi int, fileOff int64, lo, hi int) error {
		h, err := s.handles.acquire(fi)
		if err != nil {
			return err
		}
		m, err := h.f.WriteAt(p[lo:hi], fileOff)
		s.handles.release(h)
		n += m
		if err != nil {
			return fmt.Errorf("storage: write %s at %d: %w", s.lay.files[fi].rel, fileOff, err)
		}
		return nil
	})
	return n, err
}

// ReadBlock fills p with the bytes of piece starting at begin; the block
// must lie inside the piece. This is the upload path for a peer's request.
// It fails with ErrOutOfRange for a block outside the piece and with
// ErrMissingData when the data is no longer on disk.
func (s *Storage) ReadBlock(piece int, begin int64, p []byte) error {
	if piece < 0 || piece >= s.lay.numPieces || begin < 0 ||
		begin > s.lay.pieceSize(piece)-int64(len(p)) {
		return fmt.Errorf("%w: piece %d, %d bytes at %d", ErrOutOfRange, piece, len(p), begin)
	}
	_, err := s.ReadAt(p, int64(piece)*s.lay.pieceLen+begin)
	return err
}

// WritePiece stores the whole of piece, whose hash the caller has already
// checked (see PieceHashOK); data must be exactly the piece's size.
func (s *Storage) WritePiece(piece int, data []byte) error {
	if piece < 0 || piece >= s.lay.numPieces {
		return fmt.Errorf("%w: piece %d of %d", ErrOutOfRange, piece, s.lay.numPieces)
	}
	if size := s.lay.pieceSize(piece); int64(len(data)) != size {
		return fmt.Errorf("%w: piece %d is %d bytes, got %d", ErrOutOfRange, piece, size, len(data))
	}
	_, err := s.WriteAt(data, int64(piece)*s.lay.pieceLen)
	return err
}
