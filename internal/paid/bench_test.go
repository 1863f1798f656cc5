package paid

import (
	"testing"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/bencode"
	"github.com/floodgate-p2p/floodgate/internal/credit"
	"github.com/floodgate-p2p/floodgate/internal/hashchain"
	"github.com/floodgate-p2p/floodgate/internal/identity"
)

// BenchmarkServeBlock is the uploader's cost per block for a paying peer:
// the engine asks Refuses when the request arrives and Charge when the block
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
		if w.sess.Refuses(w.peer) || !w.sess.Charge(w.peer, tBlock) {
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

// BenchmarkPayMessage: encoding and decoding one pay message, by the hand
// codec and by the general one.
func BenchmarkPayMessage(b *testing.B) {
	m := message{Type: typePay, Channel: "0123456789abcdef0123456789abcdef", Index: 123456, Preimage: make([]byte, 32)}
	enc := m.encode()
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			_ = m.encode()
		}
	})
	b.Run("encode-general", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			_, _ = bencode.Marshal(m)
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := decodeMessage(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode-general", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := decodeAny(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
}
