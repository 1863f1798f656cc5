package storage

import (
	"context"
	"errors"
	"os"
	"testing"
)

func TestCheckAfterPartialWrites(t *testing.T) {
	for _, multi := range []bool{false, true} {
		f := newFixture(t, "partial", 16, false, 100)
		if multi {
			f = newFixture(t, "partial", 16, true, 37, 0, 50, 13)
		}
		dir := t.TempDir()
		s := f.open(t, dir, ReadWrite)
		want := map[int]bool{}
		for i := 0; i < s.NumPieces(); i += 2 {
			if err := s.WritePiece(i, f.piece(i)); err != nil {
				t.Fatal(err)
			}
			want[i] = true
		}
		var calls, last int
		have, err := s.Check(context.Background(), func(done, total int) {
			calls++
			if done != last+1 || total != s.NumPieces() {
				t.Errorf("progress(%d, %d) after %d", done, total, last)
			}
			last = done
		})
		if err != nil {
			t.Fatal(err)
		}
		if calls != s.NumPieces() {
			t.Errorf("progress called %d times for %d pieces", calls, s.NumPieces())
		}
		for i := range s.NumPieces() {
			if have.Has(i) != want[i] {
				t.Errorf("multi=%v piece %d: Check says %v, want %v", multi, i, have.Has(i), want[i])
			}
		}

		// A restart (new Storage on the same files) sees the same pieces.
		s.Close()
		s2 := f.open(t, dir, ReadWrite)
		have2, err := s2.Check(context.Background(), nil)
		if err != nil || have2.Count() != len(want) {
			t.Fatalf("after reopen: %d pieces, %v; want %d", have2.Count(), err, len(want))
		}
		for i := range s2.NumPieces() {
			if ok, err := s2.VerifyPiece(i); err != nil || ok != want[i] {
				t.Errorf("VerifyPiece(%d) = %v, %v; want %v", i, ok, err, want[i])
			}
		}
	}
}

func TestTruncationDetected(t *testing.T) {
	f := newFixture(t, "trunc", 16, true, 40, 40, 40) // files at [0,40) [40,80) [80,120)
	dir := t.TempDir()
	f.writeAll(t, f.open(t, dir, ReadWrite))

	// Cut the middle file to 20 bytes: torrent bytes [60,80) are gone, so
	// pieces 3 (48..64) and 4 (64..80) cannot be right.
	if err := os.Truncate(f.filePath(dir, 1), 20); err != nil {
		t.Fatal(err)
	}
	s := f.open(t, dir, ReadOnly)
	have, err := s.Check(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range s.NumPieces() {
		if want := i != 3 && i != 4; have.Has(i) != want {
			t.Errorf("piece %d: Check says %v, want %v", i, have.Has(i), want)
		}
	}
	err = s.ReadBlock(4, 0, make([]byte, 16))
	if !errors.Is(err, ErrMissingData) {
		t.Errorf("ReadBlock of truncated data = %v, want ErrMissingData", err)
	}
	if err := s.ReadBlock(3, 0, make([]byte, 12)); err != nil {
		t.Errorf("ReadBlock of the part still on disk: %v", err)
	}

	err = s.CheckFiles()
	var fse *FileSizeError
	if !errors.As(err, &fse) || fse.Path != f.filePath(dir, 1) || fse.Got != 20 || fse.Want != 40 {
		t.Fatalf("CheckFiles = %v, want a FileSizeError for %s", err, f.filePath(dir, 1))
	}
	if !errors.Is(err, ErrMissingData) {
		t.Errorf("a short file should match ErrMissingData")
	}

	// A file removed altogether.
	if err := os.Remove(f.filePath(dir, 2)); err != nil {
		t.Fatal(err)
	}
	have, err = s.Check(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range s.NumPieces() {
		if want := i < 3; have.Has(i) != want {
			t.Errorf("after removal, piece %d: Check says %v, want %v", i, have.Has(i), want)
		}
	}
	if _, err := s.ReadAt(make([]byte, 1), 100); !errors.Is(err, ErrMissingData) {
		t.Errorf("ReadAt in a missing file = %v, want ErrMissingData", err)
	}
	if err := s.CheckFiles(); !errors.As(err, &fse) {
		t.Errorf("CheckFiles = %v, want FileSizeErrors", err)
	}

	// A longer file is a size error too, but its pieces still check.
	f2 := newFixture(t, "long", 16, false, 40)
	dir2 := t.TempDir()
	f2.writeAll(t, f2.open(t, dir2, ReadWrite))
	fh, err := os.OpenFile(f2.filePath(dir2, 0), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	fh.Write([]byte("extra"))
	fh.Close()
	s2 := f2.open(t, dir2, ReadOnly)
	if err := s2.CheckFiles(); !errors.As(err, &fse) || fse.Got != 45 || errors.Is(err, ErrMissingData) {
		t.Errorf("CheckFiles on a long file = %v", err)
	}
	if have, err := s2.Check(context.Background(), nil); err != nil || !have.Full() {
		t.Errorf("Check on a long file: %d pieces, %v", have.Count(), err)
	}
	// ReadWrite mode trims it back to the torrent's length.
	s2.Close()
	f2.open(t, dir2, ReadWrite)
	f2.assertFiles(t, dir2)
}

func TestCorruptionDetected(t *testing.T) {
	f := newFixture(t, "corrupt", 32, false, 200)
	dir := t.TempDir()
	s := f.open(t, dir, ReadWrite)
	f.writeAll(t, s)
	// Flip one bit in piece 2 behind the storage's back.
	fh, err := os.OpenFile(f.filePath(dir, 0), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := []byte{f.data[70] ^ 1}
	if _, err := fh.WriteAt(b, 70); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	have, err := s.Check(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if have.Has(2) || have.Count() != s.NumPieces()-1 {
		t.Errorf("Check after corrupting piece 2: has(2)=%v count=%d", have.Has(2), have.Count())
	}
	if ok, err := s.VerifyPiece(2); ok || err != nil {
		t.Errorf("VerifyPiece(2) = %v, %v; want false, nil", ok, err)
	}
	if s.PieceHashOK(2, f.piece(3)) || !s.PieceHashOK(2, f.piece(2)) || s.PieceHashOK(9, nil) {
		t.Errorf("PieceHashOK gives wrong answers")
	}
}

func TestCheckSparseZeros(t *testing.T) {
	// Content whose middle pieces are all zeros: a sparse copy on disk holds
	// them as holes, and Check must still count them.
	f := newFixture(t, "zeros", 64<<10, false, 5*64<<10+100)
	clear(f.data[64<<10 : 3*64<<10])
	clear(f.data[5*64<<10:])
	for i := range f.info.Pieces {
		f.info.Pieces[i] = HashPiece(f.piece(i))
	}
	dir := t.TempDir()
	s := f.open(t, dir, ReadWrite)
	for _, i := range []int{0, 3, 4} { // write only the non-zero pieces
		if err := s.WritePiece(i, f.piece(i)); err != nil {
			t.Fatal(err)
		}
	}
	have, err := s.Check(context.Background(), nil)
	if err != nil || !have.Full() {
		t.Fatalf("Check of sparse zero pieces: %d of %d, %v", have.Count(), s.NumPieces(), err)
	}
	f.assertFiles(t, dir)

	// Fresh download: nothing written, nothing valid (content is not zeros).
	g := newFixture(t, "fresh", 64<<10, true, 100<<10, 300<<10)
	s2 := g.open(t, t.TempDir(), ReadWrite)
	if have, err := s2.Check(context.Background(), nil); err != nil || !have.Empty() {
		t.Fatalf("Check of a fresh download: %d pieces, %v", have.Count(), err)
	}
}

func TestCheckCancel(t *testing.T) {
	f := newFixture(t, "cancel", 16, false, 4096)
	s := f.open(t, t.TempDir(), ReadWrite)
	f.writeAll(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	_, err := s.Check(ctx, func(done, total int) {
		calls++
		if done == 10 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Check with cancelled context = %v, want context.Canceled", err)
	}
	if calls >= 256 {
		t.Errorf("Check went on for %d pieces after cancel", calls)
	}
}

func TestEmptyTorrent(t *testing.T) {
	f := newFixture(t, "empty", 16, true, 0, 0)
	dir := t.TempDir()
	s := f.open(t, dir, ReadWrite)
	if s.NumPieces() != 0 {
		t.Fatalf("NumPieces = %d", s.NumPieces())
	}
	if have, err := s.Check(context.Background(), nil); err != nil || have.Len() != 0 {
		t.Fatalf("Check = %v, %v", have, err)
	}
	for i := range 2 {
		if fi, err := os.Stat(f.filePath(dir, i)); err != nil || fi.Size() != 0 {
			t.Errorf("zero-length file %d: %v", i, err)
		}
	}
}
