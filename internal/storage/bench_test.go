package storage

import (
	"context"
	"sync/atomic"
	"testing"
)

// benchStorage writes a 256 MiB single-file torrent with the given piece
// length and returns it opened for reading.
func benchStorage(b *testing.B, pieceLen int64) (*fixture, *Storage) {
	b.Helper()
	f := newFixture(b, "bench", pieceLen, false, 256<<20)
	dir := b.TempDir()
	f.writeAll(b, f.open(b, dir, ReadWrite))
	return f, f.open(b, dir, ReadOnly)
}

// BenchmarkCheck measures the resume path over 256 MiB in the page cache,
// i.e. hashing throughput with one worker per CPU (MB/s column).
func BenchmarkCheck(b *testing.B) {
	for _, pl := range []struct {
		name string
		n    int64
	}{{"piece=256KiB", 256 << 10}, {"piece=4MiB", 4 << 20}} {
		b.Run(pl.name, func(b *testing.B) {
			_, s := benchStorage(b, pl.n)
			b.SetBytes(256 << 20)
			b.ResetTimer()
			for b.Loop() {
				have, err := s.Check(context.Background(), nil)
				if err != nil || !have.Full() {
					b.Fatalf("Check: %d pieces, %v", have.Count(), err)
				}
			}
		})
	}
}

// BenchmarkReadBlock measures serving 16 KiB requests from parallel
// goroutines, as upload connections do.
func BenchmarkReadBlock(b *testing.B) {
	_, s := benchStorage(b, 256<<10)
	const block = 16 << 10
	blocksPerPiece := int64(256<<10) / block
	b.SetBytes(block)
	b.ResetTimer()
	var next atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		p := make([]byte, block)
		for pb.Next() {
			k := next.Add(7919) % (int64(s.NumPieces()) * blocksPerPiece) // scattered
			if err := s.ReadBlock(int(k/blocksPerPiece), (k%blocksPerPiece)*block, p); err != nil {
				b.Fatal(err)
			}
		}
	})
}
