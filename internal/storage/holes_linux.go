package storage

import (
	"errors"
	"os"
	"syscall"
)

// seekData is lseek's SEEK_DATA whence (Linux 3.1+): the next offset at or
// after the given one that holds data.
const seekData = 3

// isHole reports whether bytes [start, end) of f were never written (a hole
// in a sparse file), asking the filesystem rather than reading. Any doubt,
// such as a filesystem without SEEK_DATA, answers false so the caller reads
// the bytes. The shared descriptor's offset moves, which is harmless because
// all I/O uses pread/pwrite.
func isHole(f *os.File, start, end int64) bool {
	next, err := f.Seek(start, seekData)
	if err != nil {
		// ENXIO: no data at or after start, so the rest is one hole.
		return errors.Is(err, syscall.ENXIO)
	}
	return next >= end
}
