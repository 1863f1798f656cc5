package storage

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

func TestMapping(t *testing.T) {
	tests := []struct {
		name     string
		pieceLen int64
		multi    bool
		lengths  []int64
	}{
		{"single exact pieces", 16, false, []int64{64}},
		{"single short last piece", 16, false, []int64{70}},
		{"single smaller than a piece", 1024, false, []int64{10}},
		{"multi spanning boundaries", 16, true, []int64{5, 30, 1, 2, 40}},
		{"multi zero-length files", 8, true, []int64{0, 5, 0, 0, 17, 3, 0}},
		{"multi file spanning many pieces", 4, true, []int64{1, 50, 1}},
		{"multi all empty but one", 32, true, []int64{0, 0, 1, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "content", tc.pieceLen, tc.multi, tc.lengths...)
			dir := t.TempDir()
			s := f.open(t, dir, ReadWrite)
			f.writeAll(t, s)
			f.assertFiles(t, dir)

			// Every range, including ones crossing files and pieces, reads back.
			total := int64(len(f.data))
			for off := int64(0); off < total; off++ {
				for _, n := range []int64{1, 3, tc.pieceLen, total - off} {
					if off+n > total {
						continue
					}
					buf := make([]byte, n)
					if m, err := s.ReadAt(buf, off); err != nil || int64(m) != n || !bytes.Equal(buf, f.data[off:off+n]) {
						t.Fatalf("ReadAt(%d bytes at %d) = %d, %v; data equal %v", n, off, m, err, bytes.Equal(buf, f.data[off:off+n]))
					}
				}
			}
			have, err := s.Check(context.Background(), nil)
			if err != nil || !have.Full() {
				t.Fatalf("Check after full write: %d of %d pieces, %v", have.Count(), s.NumPieces(), err)
			}
			if err := s.CheckFiles(); err != nil {
				t.Fatalf("CheckFiles: %v", err)
			}
		})
	}
}

func TestReadBlockBounds(t *testing.T) {
	f := newFixture(t, "x", 16, false, 40) // pieces 16, 16, 8
	s := f.open(t, t.TempDir(), ReadWrite)
	f.writeAll(t, s)
	good := []struct {
		piece int
		begin int64
		n     int
	}{{0, 0, 16}, {1, 4, 12}, {2, 0, 8}, {2, 7, 1}, {2, 8, 0}}
	for _, b := range good {
		p := make([]byte, b.n)
		if err := s.ReadBlock(b.piece, b.begin, p); err != nil {
			t.Errorf("ReadBlock(%d, %d, %d): %v", b.piece, b.begin, b.n, err)
		}
		if !bytes.Equal(p, f.piece(b.piece)[b.begin:b.begin+int64(b.n)]) {
			t.Errorf("ReadBlock(%d, %d, %d): wrong bytes", b.piece, b.begin, b.n)
		}
	}
	bad := []struct {
		piece int
		begin int64
		n     int
	}{{-1, 0, 1}, {3, 0, 1}, {0, -1, 1}, {0, 1, 16}, {2, 0, 9}, {2, 9, 0}, {0, 1 << 62, 1}}
	for _, b := range bad {
		if err := s.ReadBlock(b.piece, b.begin, make([]byte, b.n)); !errors.Is(err, ErrOutOfRange) {
			t.Errorf("ReadBlock(%d, %d, %d) = %v, want ErrOutOfRange", b.piece, b.begin, b.n, err)
		}
	}
	if err := s.WritePiece(2, make([]byte, 16)); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("WritePiece with wrong length = %v, want ErrOutOfRange", err)
	}
	if _, err := s.ReadAt(make([]byte, 2), 39); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("ReadAt past the end = %v, want ErrOutOfRange", err)
	}
}
