package storage

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
)

func TestConcurrentReadersAndWriters(t *testing.T) {
	lengths := make([]int64, 40)
	for i := range lengths {
		lengths[i] = int64(100 + 37*i)
	}
	f := newFixture(t, "many", 256, true, lengths...)
	// Two open files for forty: constant eviction while others read.
	s := f.open(t, t.TempDir(), ReadWrite, WithMaxOpenFiles(2))

	// Writers store disjoint pieces in parallel.
	var wg sync.WaitGroup
	const writers = 4
	errs := make(chan error, 64)
	for w := range writers {
		wg.Go(func() {
			for i := w; i < s.NumPieces(); i += writers {
				if err := s.WritePiece(i, f.piece(i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()

	// Readers fetch random blocks while a Check runs and flushes handles.
	for r := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(r), 1))
			for range 500 {
				i := rng.IntN(s.NumPieces())
				size := s.PieceSize(i)
				begin := rng.Int64N(size)
				n := rng.Int64N(size-begin) + 1
				p := make([]byte, n)
				if err := s.ReadBlock(i, begin, p); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(p, f.piece(i)[begin:begin+n]) {
					errs <- errors.New("a concurrent read returned wrong bytes")
					return
				}
			}
		})
	}
	wg.Go(func() {
		have, err := s.Check(context.Background(), nil)
		if err == nil && !have.Full() {
			err = errors.New("Check during reads missed pieces")
		}
		if err != nil {
			errs <- err
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	s.handles.mu.Lock()
	open := len(s.handles.byFile)
	s.handles.mu.Unlock()
	if open > 2 {
		t.Errorf("%d files cached open, cap is 2", open)
	}
}

func TestClose(t *testing.T) {
	f := newFixture(t, "closed", 16, false, 40)
	s := f.open(t, t.TempDir(), ReadWrite)
	f.writeAll(t, s)
	if err := s.Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.ReadBlock(0, 0, make([]byte, 1)); !errors.Is(err, ErrClosed) {
		t.Errorf("ReadBlock after Close = %v", err)
	}
	if err := s.WritePiece(0, f.piece(0)); !errors.Is(err, ErrClosed) {
		t.Errorf("WritePiece after Close = %v", err)
	}
	if _, err := s.Check(context.Background(), nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Check after Close = %v", err)
	}
	if err := s.Sync(); !errors.Is(err, ErrClosed) {
		t.Errorf("Sync after Close = %v", err)
	}
}

// TestHandleCacheReleaseAfterClose covers a read that is still running when
// the storage closes: its handle must stay usable until released.
func TestHandleCacheReleaseAfterClose(t *testing.T) {
	f := newFixture(t, "late", 16, false, 40)
	s := f.open(t, t.TempDir(), ReadWrite)
	h, err := s.handles.acquire(0)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := h.f.WriteAt([]byte("x"), 0); err != nil {
		t.Errorf("handle closed under a running operation: %v", err)
	}
	s.handles.release(h)
	if _, err := h.f.WriteAt([]byte("x"), 0); err == nil {
		t.Errorf("handle still open after the last release")
	}
}
