package terms

import (
	"bytes"
	"errors"
	"testing"

	"github.com/floodgate-p2p/floodgate/internal/metainfo"
)

// FuzzDecode checks that no input panics Decode, that every refusal wraps
// ErrInvalid, and that whatever it accepts re-encodes to exactly the same
// bytes (one encoding per set of terms) and can be verified without
// panicking. The committed corpus holds real signed terms.
func FuzzDecode(f *testing.F) {
	var h metainfo.Hash
	signed := mustSign(f, sampleTerms(), h)
	f.Add(mustEncode(f, &signed))
	f.Fuzz(func(t *testing.T, raw []byte) {
		tm, err := Decode(raw)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("refusal does not wrap ErrInvalid: %v", err)
			}
			return
		}
		if err := tm.Validate(); err != nil {
			t.Fatalf("Decode accepted invalid terms: %v", err)
		}
		enc, err := tm.Encode()
		if err != nil {
			t.Fatalf("Encode of accepted terms: %v", err)
		}
		if !bytes.Equal(enc, raw) {
			t.Fatalf("re-encoding differs:\n%q\n%q", raw, enc)
		}
		if _, err := tm.Class(""); err != nil {
			t.Fatalf("accepted terms without a usable default class: %v", err)
		}
		if err := tm.Verify(h); err != nil && !errors.Is(err, ErrTampered) {
			t.Fatalf("Verify of decoded terms: %v", err)
		}
	})
}

// FuzzParseClass checks that no spec panics ParseClass, and that every
// class it accepts is valid and survives String and ParseClass unchanged.
func FuzzParseClass(f *testing.F) {
	for _, s := range []string{"gold:2MiB/s:30", "live:1MiB/s:40:stream:4s", "bronze:0:10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		c, err := ParseClass(spec)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("refusal does not wrap ErrInvalid: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("ParseClass accepted an invalid class: %v", err)
		}
		again, err := ParseClass(c.String())
		if err != nil || again != c {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", spec, c, c.String(), again, err)
		}
	})
}
