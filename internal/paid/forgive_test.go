package paid

import (
	"testing"

	"github.com/floodgate-p2p/floodgate/internal/metainfo"
)

// A downloader that reports a failed piece gets the uploader's bytes in it
// written off, a bounded number of times per account (MaxResends); false
// claims beyond that change nothing.
func TestFailedPieceIsForgivenBoundedTimes(t *testing.T) {
	w := newFuzzWorld(t)
	defer w.sess.Close()
	w.sess.cfg.Torrent.Info.Length = 8 * tPiece
	w.sess.cfg.Torrent.Info.Pieces = make([]metainfo.Hash, 8)
	if err := w.sess.Message(w.peer, message{Type: typeChannel, Voucher: w.vb}.encode()); err != nil {
		t.Fatal(err)
	}
	them := fuzzKey(3).AccountID()
	owed := func() int64 {
		w.sess.mu.Lock()
		defer w.sess.mu.Unlock()
		return w.sess.book.Status(them).Owed
	}
	// Serve one piece's worth of blocks.
	for range tPiece / tBlock {
		if !w.sess.Charge(w.peer, tBlock) {
			t.Fatal("a block within the window was refused")
		}
	}
	full := owed()
	if full != valueOf(tPiece) {
		t.Fatalf("owed %d after one piece, want %d", full, valueOf(tPiece))
	}
	maxResends := testCredit().MaxResends
	for i := 0; i < maxResends+2; i++ {
		before := owed()
		if err := w.sess.Message(w.peer, message{Type: typeFailed, Piece: 0, Bytes: tBlock}.encode()); err != nil {
			t.Fatal(err)
		}
		forgiven := before - owed()
		switch {
		case i < maxResends && forgiven != valueOf(tBlock):
			t.Fatalf("claim %d: forgave %d units, want %d", i, forgiven, valueOf(tBlock))
		case i >= maxResends && forgiven != 0:
			t.Fatalf("claim %d beyond MaxResends forgave %d units", i, forgiven)
		}
	}
	// Nonsense claims are dropped or refused, never forgiven.
	if err := w.sess.Message(w.peer, message{Type: typeFailed, Piece: 99, Bytes: tBlock}.encode()); err != nil {
		t.Fatal(err)
	}
	if _, err := decodeMessage(message{Type: typeFailed, Piece: 0, Bytes: 0}.encode()); err == nil {
		t.Fatal("a failed message without bytes decoded")
	}
}
