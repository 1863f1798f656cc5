package metainfo

import (
	"fmt"
	"math"
	"strings"

	"github.com/floodgate-p2p/floodgate/internal/bencode"
)

// Piece length bounds. BlockSize is the request size every client uses
// (BEP 3 convention, 16 KiB); a piece length that is a whole number of
// blocks means only the torrent's last block can be short. The upper bound
// keeps a single piece, which is buffered and hashed whole, affordable.
const (
	BlockSize      = 16 << 10
	MinPieceLength = BlockSize
	MaxPieceLength = 64 << 20
)

// Info is the info dictionary: what the content is and how it is hashed.
type Info struct {
	// Name is the file name of a single-file torrent, or the directory
	// name of a multi-file one.
	Name string
	// PieceLength is the size of every piece but the last.
	PieceLength int64
	// Pieces holds the SHA-1 of each piece, in order.
	Pieces []Hash
	// Length is the content size of a single-file torrent (0 when
	// multi-file).
	Length int64
	// Files lists the files of a multi-file torrent, in content order; nil
	// for a single-file torrent.
	Files []File
	// Private is BEP 27's flag: only the torrent's trackers may be used
	// to find peers.
	Private bool
}

// File is one file of a multi-file torrent. Path holds the components of
// its path below the torrent's directory.
type File struct {
	Path   []string
	Length int64
}

// infoDict is the info dictionary as read and written. Pointer fields
// tell absence from zero, which matters for "length" versus "files".
type infoDict struct {
	Files       *[]fileDict `bencode:"files"`
	Length      *int64      `bencode:"length"`
	Name        *string     `bencode:"name"`
	PieceLength *int64      `bencode:"piece length"`
	Pieces      *[]byte     `bencode:"pieces"`
	Private     bool        `bencode:"private,omitempty"`
	// Only read, to explain why a BitTorrent v2-only torrent is refused.
	MetaVersion int64 `bencode:"meta version,omitempty"`
}

type fileDict struct {
	Length *int64    `bencode:"length"`
	Path   *[]string `bencode:"path"`
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

func unsafePath(format string, args ...any) error {
	return fmt.Errorf("%w: %w: %s", ErrInvalid, ErrUnsafePath, fmt.Sprintf(format, args...))
}

// parseInfo decodes and validates an info dictionary.
func parseInfo(raw []byte) (*Info, error) {
	var d infoDict
	if err := bencode.Unmarshal(raw, &d); err != nil {
		// Offsets in err count from the start of the info dictionary.
		return nil, fmt.Errorf("%w: in the info dictionary: %w", ErrInvalid, err)
	}
	if d.Pieces == nil && d.MetaVersion == 2 {
		return nil, invalid("BitTorrent v2-only torrents are not supported (no v1 \"pieces\")")
	}
	switch {
	case d.Name == nil:
		return nil, invalid("info has no name")
	case d.PieceLength == nil:
		return nil, invalid("info has no piece length")
	case d.Pieces == nil:
		return nil, invalid("info has no pieces")
	case d.Length != nil && d.Files != nil:
		return nil, invalid("info has both length and files")
	case d.Length == nil && d.Files == nil:
		return nil, invalid("info has neither length nor files")
	}
	if len(*d.Pieces)%len(Hash{}) != 0 {
		return nil, invalid("pieces is %d bytes long, not a multiple of 20", len(*d.Pieces))
	}
	info := &Info{
		Name:        *d.Name,
		PieceLength: *d.PieceLength,
		Pieces:      make([]Hash, len(*d.Pieces)/len(Hash{})),
		Private:     d.Private,
	}
	for i := range info.Pieces {
		copy(info.Pieces[i][:], (*d.Pieces)[i*20:])
	}
	if d.Length != nil {
		info.Length = *d.Length
	} else {
		info.Files = make([]File, len(*d.Files))
		for i, f := range *d.Files {
			if f.Length == nil {
				return nil, invalid("file %d has no length", i)
			}
			if f.Path == nil {
				return nil, invalid("file %d has no path", i)
			}
			info.Files[i] = File{Path: *f.Path, Length: *f.Length}
		}
	}
	if err := info.Validate(); err != nil {
		return nil, err
	}
	return info, nil
}

// Validate checks everything that decides where data goes and how it is
// verified; see the package comment. Parse calls it, and code that builds
// an Info by hand can too. The piece length must be a multiple of
// BlockSize between MinPieceLength and MaxPieceLength. Powers of two are
// what creators (mktorrent, Build) write, but nothing here depends on it,
// so other multiples found in the wild are accepted.
func (i *Info) Validate() error {
	if err := checkComponent(i.Name); err != nil {
		return fmt.Errorf("name: %w", err)
	}
	pl := i.PieceLength
	if pl < MinPieceLength || pl > MaxPieceLength || pl%BlockSize != 0 {
		return invalid("piece length %d is not a multiple of %d between %d and %d", pl, BlockSize, MinPieceLength, MaxPieceLength)
	}
	var total int64
	if i.Files == nil {
		if i.Length < 0 {
			return invalid("negative length %d", i.Length)
		}
		total = i.Length
	} else {
		if len(i.Files) == 0 {
			return invalid("files list is empty")
		}
		if i.Length != 0 {
			return invalid("both length and files are set")
		}
		if err := checkFiles(i.Files); err != nil {
			return err
		}
		for n, f := range i.Files {
			if f.Length < 0 {
				return invalid("file %d (%s): negative length %d", n, strings.Join(f.Path, "/"), f.Length)
			}
			if f.Length > math.MaxInt64-total {
				return invalid("total length overflows")
			}
			total += f.Length
		}
	}
	if total == 0 {
		return invalid("torrent has no content (total length 0)")
	}
	want := (total-1)/pl + 1
	if int64(len(i.Pieces)) != want {
		return invalid("%d piece hashes for %d bytes in pieces of %d; want %d", len(i.Pieces), total, pl, want)
	}
	return nil
}

// checkFiles validates every path and rejects two files at the same path,
// or a file at a path another file needs as a directory: either would make
// two parts of the content fight over one place on disk.
func checkFiles(files []File) error {
	paths := make(map[string]bool, len(files)) // joined path -> is a file
	for n, f := range files {
		if len(f.Path) == 0 {
			return invalid("file %d has an empty path", n)
		}
		for _, c := range f.Path {
			if err := checkComponent(c); err != nil {
				return fmt.Errorf("file %d: %w", n, err)
			}
		}
		joined := strings.Join(f.Path, "/")
		if isFile, seen := paths[joined]; seen {
			if isFile {
				return invalid("file %d: duplicate path %q", n, joined)
			}
			return invalid("file %d: path %q is also a directory of another file", n, joined)
		}
		paths[joined] = true
		for k := 1; k < len(f.Path); k++ {
			dir := strings.Join(f.Path[:k], "/")
			if isFile, seen := paths[dir]; seen && isFile {
				return invalid("file %d: directory %q of %q is also a file", n, dir, joined)
			}
			paths[dir] = false
		}
	}
	return nil
}

// checkComponent accepts a name only if it is a single, ordinary path
// element on every platform we write to.
func checkComponent(c string) error {
	switch {
	case c == "":
		return unsafePath("empty name")
	case c == "." || c == "..":
		return unsafePath("name %q", c)
	case strings.ContainsAny(c, "/\\\x00"):
		return unsafePath("name %q contains '/', '\\' or NUL", c)
	}
	return nil
}

// TotalLength returns the size of the content in bytes.
func (i *Info) TotalLength() int64 {
	if i.Files == nil {
		return i.Length
	}
	var n int64
	for _, f := range i.Files {
		n += f.Length
	}
	return n
}

// NumPieces returns the number of pieces, which is the number of piece
// hashes.
func (i *Info) NumPieces() int { return len(i.Pieces) }

// PieceSize returns the length of piece index: PieceLength for all but the
// last piece, which may be shorter. It returns 0 for an index out of range.
// Only the last piece needs the total length, which costs a pass over the
// file list, so the per-request calls of the wire layer stay O(1).
func (i *Info) PieceSize(index int) int64 {
	if index < 0 || index >= len(i.Pieces) || i.PieceLength <= 0 {
		return 0
	}
	if index < len(i.Pieces)-1 {
		return i.PieceLength
	}
	rest := i.TotalLength() - int64(index)*i.PieceLength
	return max(0, min(rest, i.PieceLength))
}

// IsMultiFile reports whether the torrent is a directory of files.
func (i *Info) IsMultiFile() bool { return i.Files != nil }

// FileList returns the files in content order. A single-file torrent gives
// one File whose path is its name, so callers can treat both kinds alike.
func (i *Info) FileList() []File {
	if i.Files == nil {
		return []File{{Path: []string{i.Name}, Length: i.Length}}
	}
	return i.Files
}

// Encode returns the canonical info dictionary: keys sorted, "length" for a
// single file or "files" otherwise, "private" only when set. For the same
// content and piece length this is byte-for-byte what mktorrent writes, so
// the info hashes agree.
func (i *Info) Encode() ([]byte, error) {
	pieces := make([]byte, 0, len(i.Pieces)*len(Hash{}))
	for _, h := range i.Pieces {
		pieces = append(pieces, h[:]...)
	}
	name, pl := i.Name, i.PieceLength
	d := infoDict{Name: &name, PieceLength: &pl, Pieces: &pieces, Private: i.Private}
	if i.Files == nil {
		length := i.Length
		d.Length = &length
	} else {
		files := make([]fileDict, len(i.Files))
		for n := range i.Files {
			files[n] = fileDict{Length: &i.Files[n].Length, Path: &i.Files[n].Path}
		}
		d.Files = &files
	}
	b, err := bencode.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("metainfo: encoding info: %w", err)
	}
	return b, nil
}
