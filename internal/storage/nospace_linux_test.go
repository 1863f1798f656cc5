package storage

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestDiskFullWrapped fills a tiny tmpfs and expects the write error to say
// which file failed and to match syscall.ENOSPC. It needs permission to
// mount and skips without it.
func TestDiskFullWrapped(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	mnt := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=64k"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	f := newFixture(t, "full", 16<<10, false, 256<<10)
	s := f.open(t, mnt, ReadWrite) // sparse, so Open itself fits
	var err error
	for i := 0; i < s.NumPieces() && err == nil; i++ {
		err = s.WritePiece(i, f.piece(i))
	}
	s.Close()
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "full") {
		t.Fatalf("writing 256 KiB into 64 KiB = %v, want a wrapped ENOSPC naming the file", err)
	}
	t.Logf("error as the user sees it: %v", err)
}
