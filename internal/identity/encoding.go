package identity

import (
	"encoding/binary"
	"fmt"
	"time"
)

// The signed encodings are fixed binary layouts, not JSON: JSON has many
// spellings of one value, and a verifier must hash exactly the bytes the
// signer hashed. Every layout starts with a NUL-terminated ASCII tag naming
// the message kind and version (domain separation), followed by fields in a
// fixed order: strings as a one-byte length and bytes, integers as 8-byte
// big-endian two's complement, keys and digests as raw bytes.

// maxStringLen bounds every string field; ids are far shorter.
const maxStringLen = 128

// encoder appends fields to a buffer.
type encoder struct{ b []byte }

func (e *encoder) raw(p []byte) { e.b = append(e.b, p...) }

func (e *encoder) str(s string) { e.b = append(e.b, byte(len(s))); e.b = append(e.b, s...) }

func (e *encoder) i64(v int64) { e.b = binary.BigEndian.AppendUint64(e.b, uint64(v)) }

// decoder consumes fields from a buffer; the first error sticks, so callers
// check once at the end.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
	}
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.fail("truncated: need %d bytes, have %d", n, len(d.b))
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) tag(t string) {
	p := d.take(len(t))
	if d.err == nil && string(p) != t {
		d.fail("wrong tag, want %q", t)
	}
}

func (d *decoder) raw(dst []byte) { copy(dst, d.take(len(dst))) }

func (d *decoder) str() string {
	n := d.take(1)
	if d.err != nil {
		return ""
	}
	return string(d.take(int(n[0])))
}

func (d *decoder) i64() int64 {
	p := d.take(8)
	if d.err != nil {
		return 0
	}
	return int64(binary.BigEndian.Uint64(p))
}

func (d *decoder) end() {
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
}

// checkID validates an account or channel id for a signed encoding: 1 to
// maxStringLen bytes of printable ASCII without spaces, so that ids print
// unambiguously in logs and URLs.
func checkID(what, s string) error {
	if len(s) == 0 || len(s) > maxStringLen {
		return fmt.Errorf("%w: %s must be 1..%d bytes, got %d", ErrMalformed, what, maxStringLen, len(s))
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' {
			return fmt.Errorf("%w: %s has byte %#x at %d", ErrMalformed, what, c, i)
		}
	}
	return nil
}

// maxUnix is the last second of year 9999: later times do not survive JSON
// (RFC 3339) encoding, so signed encodings refuse them.
const maxUnix = 253402300799

// checkTime validates a time field of a signed encoding.
func checkTime(what string, t time.Time) error {
	if s := t.Unix(); s < 0 || s > maxUnix {
		return fmt.Errorf("%w: %s %d outside 1970..9999", ErrMalformed, what, s)
	}
	return nil
}
