package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func testHandshake() Handshake {
	var ih, id [20]byte
	copy(ih[:], "infohash-0123456789x")
	copy(id[:], "-FG0001-abcdefghijkl")
	return NewHandshake(ih, id)
}

func TestHandshakeRoundTrip(t *testing.T) {
	h := testHandshake()
	var buf bytes.Buffer
	if err := WriteHandshake(&buf, h); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != HandshakeLen || HandshakeLen != 68 {
		t.Fatalf("handshake is %d bytes (HandshakeLen %d), want 68", buf.Len(), HandshakeLen)
	}
	// Bytes after the handshake must stay in the reader for NewReader.
	buf.Write([]byte{0, 0, 0, 1, byte(Unchoke)})
	got, err := ReadHandshake(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if got != h {
		t.Fatalf("got %+v, want %+v", got, h)
	}
	if m, err := NewReader(&buf, Limits{}).ReadMessage(); err != nil || m.ID != Unchoke {
		t.Fatalf("message after handshake: %v, %v", m, err)
	}
}

func TestHandshakeBits(t *testing.T) {
	h := testHandshake()
	if !h.SupportsExtensions() || !h.SupportsFast() {
		t.Fatal("NewHandshake must advertise BEP 10 and BEP 6")
	}
	// Exactly those two bits, nothing we do not implement (DHT, v2, ...).
	want := [8]byte{0, 0, 0, 0, 0, 0x10, 0, 0x04}
	if h.Reserved != want {
		t.Fatalf("reserved % x, want % x", h.Reserved, want)
	}
	var plain Handshake
	if plain.SupportsExtensions() || plain.SupportsFast() {
		t.Fatal("zero reserved bytes advertise nothing")
	}
	// Other bits in the same bytes must not be mistaken for ours.
	other := Handshake{Reserved: [8]byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xEF, 0xFF, 0xFB}}
	if other.SupportsExtensions() || other.SupportsFast() {
		t.Fatal("neighbouring bits are not BEP 10 / BEP 6")
	}
}

func TestReadHandshakeErrors(t *testing.T) {
	good, _ := testHandshake().AppendBinary(nil)
	mutate := func(f func(b []byte) []byte) []byte {
		return f(append([]byte(nil), good...))
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, io.EOF},
		{"pstrlen zero", mutate(func(b []byte) []byte { b[0] = 0; return b }), ErrBadProtocol},
		{"pstrlen 20", mutate(func(b []byte) []byte { b[0] = 20; return b }), ErrBadProtocol},
		{"pstrlen 255", mutate(func(b []byte) []byte { b[0] = 255; return b }), ErrBadProtocol},
		{"http request", []byte("GET / HTTP/1.1\r\n\r\n"), ErrBadProtocol},
		{"tls hello", []byte{0x16, 0x03, 0x01, 0x02, 0x00}, ErrBadProtocol},
		{"wrong pstr", mutate(func(b []byte) []byte { copy(b[1:], "BitTorrent protocoL"); return b }), ErrBadProtocol},
		{"truncated after pstrlen", good[:1], io.ErrUnexpectedEOF},
		{"truncated in pstr", good[:10], io.ErrUnexpectedEOF},
		{"truncated in peer id", good[:67], io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadHandshake(bytes.NewReader(tt.in))
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

// A non-BitTorrent client must be refused after its first byte, not left
// blocking us until 67 more bytes arrive.
func TestReadHandshakeRejectsEarly(t *testing.T) {
	r := &countingReader{r: bytes.NewReader([]byte("GET / HTTP/1.1\r\n"))}
	if _, err := ReadHandshake(r); !errors.Is(err, ErrBadProtocol) {
		t.Fatal(err)
	}
	if r.n != 1 {
		t.Fatalf("read %d bytes before refusing, want 1", r.n)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestWriteHandshakeError(t *testing.T) {
	if err := WriteHandshake(failingWriter{}, testHandshake()); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("got %v", err)
	}
}
