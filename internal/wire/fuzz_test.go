package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// fuzzLimits are small so the fuzzer reaches the limit checks with short
// inputs; the logic does not depend on the values.
var fuzzLimits = Limits{MaxBlock: 4096, MaxBitfield: 64, MaxExtended: 1024, MaxUnknown: 32}

func FuzzReadMessage(f *testing.F) {
	for _, m := range allMessages() {
		if m.EncodedLen() < 512 {
			b, _ := m.AppendBinary(nil)
			f.Add(b)
		}
	}
	f.Add(frame(13, 6, 0, 0, 0, 1))
	f.Add(frame(0xFFFFFFFF, 7))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data), fuzzLimits)
		off := 0
		for {
			m, err := r.ReadMessage()
			if err == io.EOF {
				if off != len(data) {
					t.Fatalf("io.EOF at offset %d of %d", off, len(data))
				}
				return
			}
			if err != nil {
				if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("unclassified error: %v", err)
				}
				if _, err2 := r.ReadMessage(); err2 != err {
					t.Fatalf("error not sticky: %v then %v", err, err2)
				}
				return
			}
			// The encoding is canonical, so a decoded message re-encodes
			// to exactly the bytes it came from.
			enc, err := m.AppendBinary(nil)
			if err != nil {
				t.Fatalf("re-encode %v: %v", m, err)
			}
			if !bytes.Equal(enc, data[off:off+len(enc)]) {
				t.Fatalf("%v re-encodes to % x, read from % x", m, enc, data[off:off+len(enc)])
			}
			off += len(enc)
		}
	})
}

func FuzzReadHandshake(f *testing.F) {
	good, _ := testHandshake().AppendBinary(nil)
	f.Add(good)
	f.Add(good[:40])
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ReadHandshake(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrBadProtocol) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		enc, _ := h.AppendBinary(nil)
		if !bytes.Equal(enc, data[:HandshakeLen]) {
			t.Fatalf("re-encodes to % x, read from % x", enc, data[:HandshakeLen])
		}
	})
}

func FuzzExtendedHandshake(f *testing.F) {
	for _, s := range []string{aria2Handshake, transmissionHandshake, libtorrentHandshake, "d1:mdee", "d1:mi1ee"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseExtendedHandshake(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		// Whatever we accept we can send back, and it means the same.
		enc, err := h.AppendBinary(nil)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", h, err)
		}
		h2, err := ParseExtendedHandshake(enc)
		if err != nil {
			t.Fatalf("re-parse %q: %v", enc, err)
		}
		if !equalHandshake(&h, &h2) {
			t.Fatalf("round trip changed\n%+v\nto\n%+v", h, h2)
		}
		enc2, _ := h2.AppendBinary(nil)
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not canonical: %q then %q", enc, enc2)
		}
	})
}
