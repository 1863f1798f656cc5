package storage

import (
	"errors"
	"fmt"
)

// ErrMissingData means the bytes asked for are not on disk: a file is
// missing or shorter than the torrent says. The engine treats the piece as
// not held (and stops advertising it) instead of serving what is there.
var ErrMissingData = errors.New("storage: data missing on disk")

// ErrReadOnly is returned by writes to a Storage opened with ReadOnly.
var ErrReadOnly = errors.New("storage: opened read-only")

// ErrOutOfRange is returned for a piece index, offset or length that lies
// outside the torrent. A peer asking for such a block is misbehaving.
var ErrOutOfRange = errors.New("storage: range outside the torrent")

// ErrUnsafePath is returned when a file of the torrent would land outside
// the data path, through a hostile name or an escaping symbolic link.
var ErrUnsafePath = errors.New("storage: unsafe path")

// ErrBadLayout is returned when the torrent's info does not describe a
// usable layout: inconsistent piece count, negative lengths, or two files
// that would occupy the same path.
var ErrBadLayout = errors.New("storage: bad torrent layout")

// ErrClosed is returned by every operation after Close.
var ErrClosed = errors.New("storage: closed")

// FileSizeError reports a file whose size on disk differs from the size the
// torrent gives it. A missing file has Missing set and Got zero.
type FileSizeError struct {
	Path    string // path on disk
	Want    int64  // size in the torrent
	Got     int64  // size on disk
	Missing bool   // the file does not exist
}

// Error names the file, so a user who points seed at the wrong data sees
// which file is at fault.
func (e *FileSizeError) Error() string {
	if e.Missing {
		return fmt.Sprintf("storage: %s: missing (torrent says %d bytes)", e.Path, e.Want)
	}
	return fmt.Sprintf("storage: %s: is %d bytes, torrent says %d", e.Path, e.Got, e.Want)
}

// Is makes a size mismatch match ErrMissingData when the file is too short
// or absent, since that is what it means for the pieces inside it.
func (e *FileSizeError) Is(target error) bool {
	return target == ErrMissingData && (e.Missing || e.Got < e.Want)
}
