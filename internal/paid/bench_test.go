package paid

import (
	"testing"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/credit"
	"github.com/floodgate-p2p/floodgate/internal/hashchain"
	"github.com/floodgate-p2p/floodgate/internal/identity"
)

// BenchmarkServeBlock is the uploader's cost per block for a paying peer:
// the engine asks Serve when the request arrives and Charge when the block
// goes to the writer, and every 64 blocks (1024 units) a payment arrives.
func BenchmarkServeBlock(b *testing.B) {
	w := newFuzzWorld(b)
	defer w.sess.Close()
	// Room for every block of the run: a wide window and a channel whose
	// steps are worth 1024 units each.
	const unit, steps = 1024, 1 << 20
	chain := hashchain.New([32]byte{5}, steps)
	v, err := identity.SignVoucher(fuzzKey(1), identity.Voucher{Channel: "ch-bench", Payer: fuzzKey(3).AccountID(), Payee: fuzzKey(2).AccountID(),
		Root: identity.Digest(chain.Root()), Length: steps, Unit: unit, Expiry: fuzzNow.Add(time.Hour)})
	if err != nil {
		b.Fatal(err)
	}
	vb, _ := v.MarshalBinary()
	w.sess.mu.Lock()
	w.sess.book, err = credit.NewBook(credit.Config{InitialWindow: 1 << 40, MaxWindow: 1 << 40, MaxExposure: 1 << 41, GraceBytes: tBlock})
	w.sess.mu.Unlock()
	if err != nil {
		b.Fatal(err)
	}
	if err := w.sess.Message(w.peer, message{Type: typeChannel, Voucher: vb}.encode()); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var step int64
	for i := range b.N {
		if w.sess.Serve(w.peer, tBlock) != 0 || !w.sess.Charge(w.peer, tBlock) {
			b.Fatalf("block %d not served", i)
		}
		if i%64 == 63 && step < steps {
			step++
			pre, _ := chain.Preimage(step)
			if err := w.sess.Message(w.peer, message{Type: typePay, Channel: "ch-bench", Index: step, Preimage: pre[:]}.encode()); err != nil {
				b.Fatal(err)
			}
		}
	}
}
