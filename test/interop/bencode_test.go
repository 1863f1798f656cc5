package interop

import (
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
)

// The tests carry their own minimal bencode reader instead of using
// internal/bencode: it is the independent oracle that the info hashes of
// Floodgate, mktorrent and transmission-show are checked against, and it
// reads tracker scrape replies without trusting the code under test.

// errBencode marks malformed input to the test oracle.
var errBencode = errors.New("malformed bencode")

// bdecoder walks one bencoded buffer.
type bdecoder struct {
	buf []byte
	pos int
}

// value decodes the value at the current position. Strings come back as
// string, integers as int64, lists as []any and dictionaries as
// map[string]any.
func (d *bdecoder) value(depth int) (any, error) {
	if depth > 64 {
		return nil, fmt.Errorf("%w: nested too deep", errBencode)
	}
	if d.pos >= len(d.buf) {
		return nil, fmt.Errorf("%w: unexpected end at %d", errBencode, d.pos)
	}
	switch c := d.buf[d.pos]; {
	case c == 'i':
		end := d.find('e')
		if end < 0 {
			return nil, fmt.Errorf("%w: unterminated integer at %d", errBencode, d.pos)
		}
		n, err := strconv.ParseInt(string(d.buf[d.pos+1:end]), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: integer at %d: %v", errBencode, d.pos, err)
		}
		d.pos = end + 1
		return n, nil
	case c == 'l':
		d.pos++
		var list []any
		for d.pos < len(d.buf) && d.buf[d.pos] != 'e' {
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			list = append(list, v)
		}
		if d.pos >= len(d.buf) {
			return nil, fmt.Errorf("%w: unterminated list", errBencode)
		}
		d.pos++
		return list, nil
	case c == 'd':
		d.pos++
		dict := map[string]any{}
		for d.pos < len(d.buf) && d.buf[d.pos] != 'e' {
			k, err := d.str()
			if err != nil {
				return nil, err
			}
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			dict[k] = v
		}
		if d.pos >= len(d.buf) {
			return nil, fmt.Errorf("%w: unterminated dictionary", errBencode)
		}
		d.pos++
		return dict, nil
	case c >= '0' && c <= '9':
		return d.str()
	default:
		return nil, fmt.Errorf("%w: unexpected byte %q at %d", errBencode, c, d.pos)
	}
}

// str decodes a byte string at the current position.
func (d *bdecoder) str() (string, error) {
	colon := d.find(':')
	if colon < 0 {
		return "", fmt.Errorf("%w: string without ':' at %d", errBencode, d.pos)
	}
	n, err := strconv.Atoi(string(d.buf[d.pos:colon]))
	if err != nil || n < 0 || colon+1+n > len(d.buf) {
		return "", fmt.Errorf("%w: bad string length at %d", errBencode, d.pos)
	}
	s := string(d.buf[colon+1 : colon+1+n])
	d.pos = colon + 1 + n
	return s, nil
}

// find returns the index of the next c at or after the current position.
func (d *bdecoder) find(c byte) int {
	for i := d.pos; i < len(d.buf); i++ {
		if d.buf[i] == c {
			return i
		}
	}
	return -1
}

// bdecode decodes a whole buffer holding exactly one value.
func bdecode(b []byte) (any, error) {
	d := &bdecoder{buf: b}
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	if d.pos != len(b) {
		return nil, fmt.Errorf("%w: %d trailing bytes", errBencode, len(b)-d.pos)
	}
	return v, nil
}

// rawInfo returns the exact bytes of the top-level "info" value of a
// metainfo file: the info hash is the SHA-1 of these bytes as written, not
// of any re-encoding.
func rawInfo(b []byte) ([]byte, error) {
	d := &bdecoder{buf: b}
	if len(b) == 0 || b[0] != 'd' {
		return nil, fmt.Errorf("%w: metainfo is not a dictionary", errBencode)
	}
	d.pos = 1
	for d.pos < len(b) && b[d.pos] != 'e' {
		k, err := d.str()
		if err != nil {
			return nil, err
		}
		start := d.pos
		if _, err := d.value(1); err != nil {
			return nil, err
		}
		if k == "info" {
			return b[start:d.pos], nil
		}
	}
	return nil, fmt.Errorf("%w: no info dictionary", errBencode)
}

// oracleInfoHash computes the hex info hash of a .torrent file.
func oracleInfoHash(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading torrent: %w", err)
	}
	info, err := rawInfo(b)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	sum := sha1.Sum(info)
	return hex.EncodeToString(sum[:]), nil
}

// infoDict returns the decoded info dictionary of a .torrent file, for
// messages that explain why two info hashes differ.
func infoDict(path string) (map[string]any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading torrent: %w", err)
	}
	raw, err := rawInfo(b)
	if err != nil {
		return nil, err
	}
	v, err := bdecode(raw)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: info is not a dictionary", errBencode)
	}
	return m, nil
}
