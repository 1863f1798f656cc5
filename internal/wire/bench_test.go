package wire

import "testing"

// loopReader serves the same bytes forever, so a benchmark measures the
// decoder and not the producer.
type loopReader struct {
	data []byte
	off  int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], l.data[l.off:])
		n += c
		l.off = (l.off + c) % len(l.data)
	}
	return n, nil
}

func BenchmarkReadPiece(b *testing.B) {
	block := make([]byte, BlockSize)
	m := NewPiece(1, 0, block)
	var stream []byte
	for range 8 {
		stream, _ = m.AppendBinary(stream)
	}
	r := NewReader(&loopReader{data: stream}, Limits{})
	buf := make([]byte, BlockSize)
	b.SetBytes(int64(m.EncodedLen()))
	b.ReportAllocs()
	for b.Loop() {
		got, err := r.ReadMessageInto(buf)
		if err != nil || got.ID != Piece || len(got.Payload) != BlockSize {
			b.Fatalf("%v, %v", got, err)
		}
	}
}

func BenchmarkReadRequest(b *testing.B) {
	m := NewRequest(1, 0, BlockSize)
	var stream []byte
	for range 64 {
		stream, _ = m.AppendBinary(stream)
	}
	r := NewReader(&loopReader{data: stream}, Limits{})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.ReadMessage(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendRequest(b *testing.B) {
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		m := NewRequest(uint32(i), 0, BlockSize)
		var err error
		if buf, err = m.AppendBinary(buf); err != nil {
			b.Fatal(err)
		}
		if len(buf) > 4000 {
			buf = buf[:0]
		}
	}
}

func BenchmarkAppendPieceHeader(b *testing.B) {
	block := make([]byte, BlockSize)
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		m := NewPiece(uint32(i), 0, block)
		var err error
		if buf, err = m.AppendHeader(buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
}
