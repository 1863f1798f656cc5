// Package metainfo reads, validates, writes and builds .torrent files: BEP 3
// single- and multi-file torrents, BEP 12 announce-list, BEP 19 url-list,
// BEP 27 private flag, and the top-level "floodgate" terms dictionary of
// DESIGN §3, which is carried byte-exact but interpreted elsewhere.
//
// The info hash is always the SHA-1 of the info dictionary exactly as it
// appears in the file (InfoBytes), never of a re-encoding, so torrents with
// unsorted or unusual info dictionaries keep the hash every other client
// computes for them.
//
// Parsing is strict about everything that decides where data is written
// and how it is verified (piece length, piece count, lengths, names and
// paths), because a torrent is untrusted input: a path such as "../x" must
// never let it write outside its directory.
package metainfo

import (
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/floodgate-p2p/floodgate/internal/bencode"
)

// MaxTorrentSize is the largest .torrent file Load reads. 32 MiB holds the
// piece hashes of a 100 GiB torrent with 64 KiB pieces; anything larger is
// far more likely an attack or a wrong file than a real torrent.
const MaxTorrentSize = 32 << 20

// ErrInvalid is wrapped by every error that Parse and Validate return for a
// malformed or unsafe torrent, so callers can tell bad input from I/O
// failures with errors.Is.
var ErrInvalid = errors.New("metainfo: invalid torrent")

// ErrUnsafePath is wrapped (together with ErrInvalid) by errors about a
// name or path component that could escape the download directory or
// cannot be a file name: empty, ".", "..", or containing '/', '\\' or NUL.
var ErrUnsafePath = errors.New("unsafe file name")

// ErrTooLarge is returned by Load for a file larger than MaxTorrentSize.
var ErrTooLarge = errors.New("metainfo: torrent file too large")

// Hash is a 20-byte SHA-1 digest: an info hash or a piece hash.
type Hash [20]byte

// String returns the hash as 40 lowercase hex digits, the form trackers,
// magnet links and other clients show.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// MarshalText implements encoding.TextMarshaler with the hex form, so a
// Hash reads naturally in JSON reports and TOML files.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with the hex form.
func (h *Hash) UnmarshalText(text []byte) error {
	p, err := ParseHash(string(text))
	if err != nil {
		return err
	}
	*h = p
	return nil
}

// ParseHash parses 40 hex digits (either case) into a Hash.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 2*len(h) {
		return Hash{}, fmt.Errorf("metainfo: hash %q: want 40 hex digits, got %d characters", s, len(s))
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return Hash{}, fmt.Errorf("metainfo: hash %q: %w", s, err)
	}
	return h, nil
}

// MetaInfo is a parsed .torrent file.
type MetaInfo struct {
	// Announce is the tracker URL of BEP 3; AnnounceList holds the tiers of
	// BEP 12 and, when present, takes precedence. Use Trackers.
	Announce     string
	AnnounceList [][]string
	// URLList holds BEP 19 web seeds. The file may give a single string or
	// a list; both arrive here as a list.
	URLList      []string
	Comment      string
	CreatedBy    string
	CreationDate int64 // seconds since the Unix epoch; 0 when absent
	Info         Info
	// InfoBytes is the bencoded info dictionary exactly as found in the
	// file (or as built), the input of InfoHash.
	InfoBytes []byte
	// InfoHash is the SHA-1 of InfoBytes, the torrent's identity.
	InfoHash Hash
	// Floodgate is the top-level "floodgate" dictionary (the provider's
	// signed terms), kept byte-exact for signature checks; nil when the
	// torrent is a plain one.
	Floodgate bencode.RawMessage
}

// torrentDict is the top-level dictionary as it is read and written.
type torrentDict struct {
	Announce     string             `bencode:"announce,omitempty"`
	AnnounceList [][]string         `bencode:"announce-list,omitempty"`
	Comment      string             `bencode:"comment,omitempty"`
	CreatedBy    string             `bencode:"created by,omitempty"`
	CreationDate int64              `bencode:"creation date,omitempty"`
	Floodgate    bencode.RawMessage `bencode:"floodgate,omitempty"`
	Info         bencode.RawMessage `bencode:"info"`
	URLList      urlList            `bencode:"url-list,omitempty"`
}

// urlList is BEP 19's url-list, which writers give either as one string or
// as a list of strings.
type urlList []string

// UnmarshalBencode accepts a string or a list of strings. Empty strings,
// which some writers emit to mean "none", are dropped.
func (u *urlList) UnmarshalBencode(b []byte) error {
	if len(b) > 0 && b[0] == 'l' {
		var l []string
		if err := bencode.Unmarshal(b, &l); err != nil {
			return fmt.Errorf("url-list must be a string or a list of strings: %w", err)
		}
		*u = slices.DeleteFunc(l, func(s string) bool { return s == "" })
		if len(*u) == 0 {
			*u = nil
		}
		return nil
	}
	var s string
	if err := bencode.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("url-list must be a string or a list of strings: %w", err)
	}
	*u = nil
	if s != "" {
		*u = urlList{s}
	}
	return nil
}

// Parse decodes and validates a .torrent file. Every error for bad input
// wraps ErrInvalid and says what is wrong, with a byte offset where the
// bencoding itself is at fault.
func Parse(data []byte) (*MetaInfo, error) {
	var d torrentDict
	if err := bencode.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if len(d.Info) == 0 {
		return nil, fmt.Errorf("%w: no info dictionary", ErrInvalid)
	}
	if d.Info[0] != 'd' {
		return nil, fmt.Errorf("%w: info is not a dictionary", ErrInvalid)
	}
	info, err := parseInfo(d.Info)
	if err != nil {
		return nil, err
	}
	m := &MetaInfo{
		Announce:     d.Announce,
		AnnounceList: d.AnnounceList,
		URLList:      []string(d.URLList),
		Comment:      d.Comment,
		CreatedBy:    d.CreatedBy,
		CreationDate: d.CreationDate,
		Info:         *info,
		InfoBytes:    []byte(d.Info),
		InfoHash:     sha1.Sum(d.Info),
		Floodgate:    d.Floodgate,
	}
	if len(m.Floodgate) > 0 && m.Floodgate[0] != 'd' {
		return nil, fmt.Errorf("%w: floodgate terms are not a dictionary", ErrInvalid)
	}
	return m, nil
}

// Load reads and parses the .torrent file at path, refusing files larger
// than MaxTorrentSize before reading them.
func Load(path string) (*MetaInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("metainfo: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > MaxTorrentSize {
		return nil, fmt.Errorf("%w: %s is %d bytes, the limit is %d", ErrTooLarge, path, st.Size(), MaxTorrentSize)
	}
	// Read through a limit as well: the size may change, and special files
	// report none.
	data, err := io.ReadAll(io.LimitReader(f, MaxTorrentSize+1))
	if err != nil {
		return nil, fmt.Errorf("metainfo: reading %s: %w", path, err)
	}
	if len(data) > MaxTorrentSize {
		return nil, fmt.Errorf("%w: %s is over %d bytes", ErrTooLarge, path, MaxTorrentSize)
	}
	m, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// Encode writes m as a .torrent file. The info dictionary is InfoBytes,
// verbatim, so the info hash survives; only when InfoBytes is empty (a
// MetaInfo put together by hand) is it encoded from Info. Everything else
// is written in canonical order, and url-list always as a list.
func (m *MetaInfo) Encode() ([]byte, error) {
	info := m.InfoBytes
	if len(info) == 0 {
		var err error
		if info, err = m.Info.Encode(); err != nil {
			return nil, err
		}
	}
	d := torrentDict{
		Announce:     m.Announce,
		AnnounceList: m.AnnounceList,
		Comment:      m.Comment,
		CreatedBy:    m.CreatedBy,
		CreationDate: m.CreationDate,
		Floodgate:    m.Floodgate,
		Info:         info,
		URLList:      m.URLList,
	}
	b, err := bencode.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("metainfo: encoding torrent: %w", err)
	}
	return b, nil
}

// Trackers returns the tracker tiers to announce to, per BEP 12: the
// announce-list tiers when there is at least one non-empty one, otherwise
// the single announce URL as one tier, otherwise nil. Empty URLs and tiers
// are dropped. The result is a fresh copy, so callers may shuffle tiers as
// BEP 12 asks without changing m.
func (m *MetaInfo) Trackers() [][]string {
	var tiers [][]string
	for _, tier := range m.AnnounceList {
		var t []string
		for _, u := range tier {
			if u != "" {
				t = append(t, u)
			}
		}
		if len(t) > 0 {
			tiers = append(tiers, t)
		}
	}
	if len(tiers) == 0 && m.Announce != "" {
		tiers = [][]string{{m.Announce}}
	}
	return tiers
}
