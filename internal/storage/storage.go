// Package storage keeps a torrent's pieces in files on disk. It maps the
// torrent's single byte space onto one or many files, reads and writes at
// torrent-global offsets, verifies pieces against their SHA-1 hashes and, on
// restart, checks what is already on disk (the resume path).
//
// A Storage is safe for concurrent use. Reads and writes of different files
// proceed in parallel: files are accessed with pread/pwrite through a
// bounded cache of open handles, with no lock held during I/O.
//
// Storage does not remember which pieces are verified: that bitfield belongs
// to the engine, which fills it from Check at start and from its own hash
// checks of downloaded pieces afterwards, and which must only serve pieces
// it holds. Storage's part is never to return bytes that are not on disk: a
// read of a missing or truncated file fails with ErrMissingData. (A
// ReadWrite storage sizes its files up front, so there a not yet written
// piece reads as zeros; only the engine's bitfield says what is valid.)
package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/floodgate-p2p/floodgate/internal/metainfo"
)

// Mode says whether a Storage may change files on disk.
type Mode int

const (
	// ReadOnly serves existing data (seed). Files are never created,
	// extended or written; missing files read as ErrMissingData.
	ReadOnly Mode = iota
	// ReadWrite downloads into the data path (get). Open creates the
	// directories and files up front, sized to the torrent (sparse where the
	// filesystem allows), and refuses paths that escape through symbolic
	// links.
	ReadWrite
)

// String names the mode for messages.
func (m Mode) String() string {
	switch m {
	case ReadOnly:
		return "read-only"
	case ReadWrite:
		return "read-write"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// DefaultMaxOpenFiles is how many files a Storage keeps open at once unless
// told otherwise. It is far below common descriptor limits, leaving room for
// sockets, yet large enough that ordinary torrents never reopen a file.
const DefaultMaxOpenFiles = 128

// Option adjusts Open.
type Option func(*options)

type options struct {
	maxOpen int
}

// WithMaxOpenFiles caps the number of files held open at once (n >= 1).
// Smaller values trade descriptor use for reopening files more often. Files
// in use by running operations are closed when those finish, so the cap can
// be exceeded briefly by at most the number of concurrent operations.
func WithMaxOpenFiles(n int) Option {
	return func(o *options) {
		if n >= 1 {
			o.maxOpen = n
		}
	}
}

// Storage is the on-disk data of one torrent. Create it with Open.
type Storage struct {
	info    *metainfo.Info
	mode    Mode
	lay     layout
	handles *handleCache
	closed  atomic.Bool
	bufs    sync.Pool // *[]byte of one piece length, for VerifyPiece
}

// DataPath returns where the data of info lives when downloading into
// outDir: outDir/NAME, which is the file itself for a single-file torrent
// and the top directory for a multi-file one. It refuses a NAME that is not
// a single plain path component.
func DataPath(outDir string, info *metainfo.Info) (string, error) {
	if info == nil {
		return "", fmt.Errorf("%w: no info", ErrBadLayout)
	}
	if outDir == "" {
		outDir = "."
	}
	p, err := safeJoin(outDir, []string{info.Name})
	if err != nil {
		return "", fmt.Errorf("torrent name: %w", err)
	}
	return p, nil
}

// Open prepares the data of info at dataPath: the file itself for a
// single-file torrent, the NAME directory for a multi-file one (see
// DataPath). info must not be modified while the Storage is in use.
//
// In ReadOnly mode Open touches nothing on disk and follows symbolic links
// (the files are the user's own); use CheckFiles to learn whether the files
// have the right sizes. In ReadWrite mode Open creates
// missing directories and files, sets every file to its torrent length
// (extending sparsely, or truncating a longer file so that the finished
// download is exact), and refuses symbolic links that lead outside the data
// directory.
func Open(info *metainfo.Info, dataPath string, mode Mode, opts ...Option) (*Storage, error) {
	if mode != ReadOnly && mode != ReadWrite {
		return nil, fmt.Errorf("storage: unknown mode %d", int(mode))
	}
	o := options{maxOpen: DefaultMaxOpenFiles}
	for _, opt := range opts {
		opt(&o)
	}
	lay, err := newLayout(info, dataPath)
	if err != nil {
		return nil, err
	}
	s := &Storage{info: info, mode: mode, lay: lay}
	s.bufs.New = func() any {
		b := make([]byte, lay.pieceLen)
		return &b
	}
	if mode == ReadWrite {
		if err := s.prepare(dataPath, info.IsMultiFile()); err != nil {
			return nil, err
		}
	}
	s.handles = newHandleCache(o.maxOpen, s.openFile)
	return s, nil
}

// Mode reports how the Storage was opened.
func (s *Storage) Mode() Mode { return s.mode }

// NumPieces is the number of pieces of the torrent.
func (s *Storage) NumPieces() int { return s.lay.numPieces }

// PieceSize is the length of piece i (only the last may be short), or 0 for
// an index outside the torrent.
func (s *Storage) PieceSize(i int) int64 {
	if i < 0 || i >= s.lay.numPieces {
		return 0
	}
	return s.lay.pieceSize(i)
}

// openFile opens file fi for the handle cache.
func (s *Storage) openFile(fi int) (*os.File, error) {
	f := &s.lay.files[fi]
	flag := os.O_RDONLY
	if s.mode == ReadWrite {
		// O_CREATE brings back a file deleted under a running download
		// instead of failing every write to it.
		flag = os.O_RDWR | os.O_CREATE
		if f.noFollow {
			flag |= oNoFollow
		}
	}
	h, err := os.OpenFile(f.path, flag, 0o644)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("storage: open %s: %w: %w", f.rel, ErrMissingData, err)
		}
		return nil, fmt.Errorf("storage: open %s: %w", f.rel, err)
	}
	return h, nil
}

// prepare creates the directory tree and the files of a ReadWrite storage,
// checking every existing component for escaping symbolic links.
func (s *Storage) prepare(dataPath string, multi bool) error {
	root := filepath.Clean(dataPath)
	if !multi {
		root = filepath.Dir(root)
	}
	// The root itself is the user's choice (a symlinked download directory
	// is fine); only what the torrent names below it is policed.
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("storage: create %s: %w", root, err)
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return fmt.Errorf("storage: resolve %s: %w", root, err)
	}
	for i := range s.lay.files {
		f := &s.lay.files[i]
		rel, err := filepath.Rel(root, f.path)
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrUnsafePath, f.rel, err)
		}
		noFollow, err := makeParents(root, realRoot, rel)
		if err != nil {
			return fmt.Errorf("storage: %s: %w", f.rel, err)
		}
		f.noFollow = noFollow
		if err := s.createFile(f); err != nil {
			return err
		}
	}
	return nil
}

// makeParents walks rel below root component by component, creating
// missing directories and refusing any symbolic link whose target lies
// outside realRoot. It reports whether the final component may be opened
// with O_NOFOLLOW (it is not a vetted link).
func makeParents(root, realRoot, rel string) (noFollow bool, err error) {
	comps := strings.Split(rel, string(filepath.Separator))
	p := root
	for i, c := range comps {
		p = filepath.Join(p, c)
		last := i == len(comps)-1
		fi, err := os.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if last {
				return true, nil
			}
			if err := os.Mkdir(p, 0o755); err != nil {
				return false, fmt.Errorf("create directory: %w", err)
			}
			continue
		case err != nil:
			return false, err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			target, err := filepath.EvalSymlinks(p)
			if err != nil {
				return false, fmt.Errorf("%w: symbolic link %s: %w", ErrUnsafePath, p, err)
			}
			if !within(realRoot, target) {
				return false, fmt.Errorf("%w: symbolic link %s points outside %s", ErrUnsafePath, p, root)
			}
			if fi, err = os.Stat(p); err != nil {
				return false, err
			}
			if last {
				if !fi.Mode().IsRegular() {
					return false, fmt.Errorf("%s is not a regular file", p)
				}
				return false, nil
			}
		}
		if last && !fi.Mode().IsRegular() {
			return false, fmt.Errorf("%s exists and is not a regular file", p)
		}
		if !last && !fi.IsDir() {
			return false, fmt.Errorf("%s exists and is not a directory", p)
		}
	}
	return true, nil
}

// createFile makes f exist with exactly its torrent length.
func (s *Storage) createFile(f *fileEntry) error {
	flag := os.O_RDWR | os.O_CREATE
	if f.noFollow {
		flag |= oNoFollow
	}
	h, err := os.OpenFile(f.path, flag, 0o644)
	if err != nil {
		return fmt.Errorf("storage: create %s: %w", f.rel, err)
	}
	fi, err := h.Stat()
	if err == nil && fi.Size() != f.length {
		err = h.Truncate(f.length)
	}
	if cerr := h.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("storage: size %s to %d bytes: %w", f.rel, f.length, err)
	}
	return nil
}

// CheckFiles compares each file's size on disk with the torrent and returns
// one *FileSizeError per file that is missing or has the wrong size (joined
// with errors.Join), or nil. A seeder calls it to tell the user exactly
// which file does not match; the pieces of good files remain usable.
func (s *Storage) CheckFiles() error {
	if s.closed.Load() {
		return ErrClosed
	}
	var errs []error
	for _, f := range s.lay.files {
		fi, err := os.Stat(f.path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			errs = append(errs, &FileSizeError{Path: f.path, Want: f.length, Missing: true})
		case err != nil:
			errs = append(errs, fmt.Errorf("storage: %s: %w", f.path, err))
		case !fi.Mode().IsRegular():
			errs = append(errs, fmt.Errorf("storage: %s: not a regular file", f.path))
		case fi.Size() != f.length:
			errs = append(errs, &FileSizeError{Path: f.path, Want: f.length, Got: fi.Size()})
		}
	}
	return errors.Join(errs...)
}

// Sync flushes written data of every file to stable storage. The engine
// calls it before reporting a download complete, so that "done" survives a
// crash.
func (s *Storage) Sync() error {
	if s.closed.Load() {
		return ErrClosed
	}
	if s.mode != ReadWrite {
		return nil
	}
	for fi, f := range s.lay.files {
		if f.length == 0 {
			continue
		}
		h, err := s.handles.acquire(fi)
		if err != nil {
			return err
		}
		err = h.f.Sync()
		s.handles.release(h)
		if err != nil {
			return fmt.Errorf("storage: sync %s: %w", f.rel, err)
		}
	}
	return nil
}

// Close releases every open file. Operations still running finish; later
// ones fail with ErrClosed. Close does not sync; call Sync first when
// durability matters.
func (s *Storage) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	return s.handles.close()
}
