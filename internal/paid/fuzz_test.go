package paid

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/bencode"
	"github.com/floodgate-p2p/floodgate/internal/engine"
	"github.com/floodgate-p2p/floodgate/internal/hashchain"
	"github.com/floodgate-p2p/floodgate/internal/identity"
	"github.com/floodgate-p2p/floodgate/internal/metainfo"
	"github.com/floodgate-p2p/floodgate/internal/terms"
	"github.com/floodgate-p2p/floodgate/internal/wire"
)

// FuzzDecodeMessage: no input panics, and whatever is accepted survives an
// encode/decode round trip unchanged.
func FuzzDecodeMessage(f *testing.F) {
	for _, m := range []message{
		{Type: typeAuth, Sig: make([]byte, 64)},
		{Type: typeChannel, Voucher: []byte("voucher")},
		{Type: typePay, Channel: "ch", Index: 7, Preimage: make([]byte, 32)},
		{Type: typeInvoice, Owed: 10, Paid: 3},
		{Type: typeRefuse, Code: "unpaid", Reason: "unpaid 12 units"},
		{Type: typeClosed, Channel: "ch", Index: 12},
	} {
		f.Add(m.encode())
	}
	f.Add([]byte("d1:t5:helloe"))
	f.Add([]byte("d1:i-1e1:t3:paye"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMessage(b)
		if err != nil {
			if !errors.Is(err, ErrBadMessage) {
				t.Fatalf("error %v does not wrap ErrBadMessage", err)
			}
			return
		}
		enc := m.encode()
		m2, err := decodeMessage(enc)
		if err != nil {
			t.Fatalf("re-decoding %q: %v", enc, err)
		}
		if enc2 := m2.encode(); !bytes.Equal(enc, enc2) {
			t.Fatalf("round trip changed the message: %q then %q", enc, enc2)
		}
	})
}

// FuzzPayCodec: the hand-written pay codec agrees with the general one.
// Whatever decodePay accepts, the general decoder reads as the same valid
// message; and a pay message encodes to what bencode.Marshal gives, which
// decodes back to it by either path.
func FuzzPayCodec(f *testing.F) {
	pre := bytes.Repeat([]byte{0xab}, 32)
	good := message{Type: typePay, Channel: "0123456789abcdef0123456789abcdef", Index: 7, Preimage: pre}.encode()
	f.Add(good, "0123456789abcdef0123456789abcdef", int64(7), pre)
	f.Add([]byte("d2:ch1:x1:ii9223372036854775807e1:p32:"+string(pre)+"1:t3:paye"), "x", int64(1<<62), pre[:31])
	f.Add([]byte("d2:ch01:x1:ii1e1:p32:"+string(pre)+"1:t3:paye"), "", int64(0), pre)
	f.Add([]byte("d2:ch1:x1:ii01e1:p32:"+string(pre)+"1:t3:paye"), "x", int64(-5), pre)
	f.Add([]byte("d2:ch1:x1:ii1e1:p32:"+string(pre)+"1:t3:payee"), string(make([]byte, 65)), int64(10), pre)
	// A channel id so long that the message passes MaxMessageSize.
	f.Add([]byte("x"), string(bytes.Repeat([]byte{'c'}, 4060)), int64(1), pre)
	f.Fuzz(func(t *testing.T, raw []byte, channel string, index int64, preimage []byte) {
		if m, ok := decodePay(raw); ok {
			want, err := decodeAny(raw)
			if err != nil {
				t.Fatalf("decodePay accepted %q, the general decoder refused it: %v", raw, err)
			}
			if want.Type != m.Type || want.Channel != m.Channel || want.Index != m.Index || !bytes.Equal(want.Preimage, m.Preimage) {
				t.Fatalf("%q: decodePay read %+v, the general decoder %+v", raw, m, want)
			}
		}
		m := message{Type: typePay, Channel: channel, Index: index, Preimage: preimage}
		want, err := bencode.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		enc := m.encode()
		if !bytes.Equal(enc, want) {
			t.Fatalf("%+v encodes to %q, bencode.Marshal to %q", m, enc, want)
		}
		if len(enc) > MaxMessageSize {
			return // refused by size before either decoder looks at it
		}
		byHand, errHand := decodeMessage(enc)
		general, errGeneral := decodeAny(enc)
		if (errHand == nil) != (errGeneral == nil) {
			t.Fatalf("%q: decodeMessage says %v, the general decoder %v", enc, errHand, errGeneral)
		}
		if errHand == nil && (byHand.Channel != general.Channel || byHand.Index != general.Index || !bytes.Equal(byHand.Preimage, general.Preimage)) {
			t.Fatalf("%q: decodeMessage read %+v, the general decoder %+v", enc, byHand, general)
		}
	})
}

// fakePeer is an engine.Peer that records what the session sends.
type fakePeer struct {
	id           uint64
	sent         [][]byte
	uninterested bool // it wants nothing from us
}

func (p *fakePeer) ConnID() uint64       { return p.id }
func (p *fakePeer) Addr() netip.AddrPort { return netip.MustParseAddrPort("127.0.0.1:6881") }
func (p *fakePeer) SendExtension(b []byte) bool {
	p.sent = append(p.sent, append([]byte(nil), b...))
	return true
}
func (p *fakePeer) Close() {}

// fakeLocal is our end of the fake connection; the peer dialed us there.
var fakeLocal = netip.MustParseAddrPort("127.0.0.1:7000")

func (p *fakePeer) LocalAddr() netip.AddrPort { return fakeLocal }
func (p *fakePeer) Outgoing() bool            { return false }
func (p *fakePeer) Wake()                     {}
func (p *fakePeer) Interested() bool          { return !p.uninterested }

// fakeBroker answers like a broker that signs whatever is asked.
type fakeBroker struct {
	provider *identity.PrivateKey
	payer    string
}

func (b fakeBroker) Open(_ context.Context, _ string, payee string, root identity.Digest, length, unit int64, expiry time.Time) (identity.Voucher, error) {
	return identity.SignVoucher(b.provider, identity.Voucher{Channel: "out-" + payee[:8], Payer: b.payer, Payee: payee, Root: root, Length: length, Unit: unit, Expiry: expiry})
}
func (fakeBroker) Redeem(context.Context, []Redemption) ([]RedemptionResult, error) {
	return nil, errors.New("fake broker: no redemptions")
}
func (fakeBroker) Channel(context.Context, string) (ChannelState, error) {
	return ChannelState{}, errors.New("fake broker: no channel lookups")
}

// fuzzWorld is a session, an authenticated fake peer and a channel the
// peer opened to it, all derived from fixed seeds and a fixed clock so the
// seed corpus can hold valid vouchers and payments.
type fuzzWorld struct {
	sess  *Session
	peer  *fakePeer
	chain *hashchain.Chain
	vb    []byte // the peer's voucher for ch-fuzz
}

var fuzzNow = time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)

func fuzzKey(b byte) *identity.PrivateKey {
	var seed [32]byte
	seed[0] = b
	return identity.NewKeyFromSeed(seed)
}

func newFuzzWorld(t testing.TB) *fuzzWorld {
	prov, us, them := fuzzKey(1), fuzzKey(2), fuzzKey(3)
	mi := &metainfo.MetaInfo{InfoHash: metainfo.Hash{1, 2, 3}, Info: metainfo.Info{PieceLength: tPiece}}
	tm, err := terms.Sign(terms.Terms{Broker: "http://127.0.0.1:1", Classes: []terms.Class{{Name: "gold", PricePerMiB: tPrice}, {Name: "free", PricePerMiB: 0}}}, mi.InfoHash, prov)
	if err != nil {
		t.Fatal(err)
	}
	cert := func(k *identity.PrivateKey) identity.Certificate {
		c, err := identity.IssueCertificate(prov, k.Public(), k.AccountID(), fuzzNow.Add(-time.Hour), fuzzNow.Add(24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	gold, _ := tm.Class("gold")
	sess, err := NewSession(Config{
		Torrent: mi, Terms: &tm, Key: us, Cert: cert(us), Class: gold,
		Broker: fakeBroker{provider: prov, payer: us.AccountID()},
		Credit: testCredit(), RedeemEvery: time.Hour, Now: func() time.Time { return fuzzNow },
	})
	if err != nil {
		t.Fatal(err)
	}
	w := &fuzzWorld{sess: sess, peer: &fakePeer{id: 1}, chain: hashchain.New([32]byte{9}, 1000)}
	// The peer's half of the handshake, then its proof.
	ours := sess.HandshakeFields(w.peer)
	var ourNonce []byte
	if err := bencode.Unmarshal(ours[hsNonce], &ourNonce); err != nil {
		t.Fatal(err)
	}
	theirNonce := [32]byte{7}
	cb, _ := cert(them).MarshalBinary()
	hs := wire.ExtendedHandshake{Extra: map[string]bencode.RawMessage{hsCert: mustRaw(cb), hsNonce: mustRaw(theirNonce[:]), hsClass: mustRaw([]byte("gold"))}}
	if err := sess.PeerHandshake(w.peer, &hs, true); err != nil {
		t.Fatal(err)
	}
	sig := them.Sign(authMessage(mi.InfoHash, [32]byte(ourNonce), theirNonce, us.Public(), them.Public(), fakeLocal, true))
	if err := sess.Message(w.peer, message{Type: typeAuth, Sig: sig[:]}.encode()); err != nil {
		t.Fatal(err)
	}
	v, err := identity.SignVoucher(prov, identity.Voucher{Channel: "ch-fuzz", Payer: them.AccountID(), Payee: us.AccountID(), Root: identity.Digest(w.chain.Root()), Length: 1000, Unit: 1, Expiry: fuzzNow.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	w.vb, _ = v.MarshalBinary()
	return w
}

func (w *fuzzWorld) pay(i int64) []byte {
	p, _ := w.chain.Preimage(i)
	return message{Type: typePay, Channel: "ch-fuzz", Index: i, Preimage: p[:]}.encode()
}

// FuzzSessionMessage feeds two arbitrary messages from an authenticated
// peer (which has shown a real channel) to a session, then exercises the
// serving path: nothing may panic, and the credit book must stay
// consistent with what the session reports.
func FuzzSessionMessage(f *testing.F) {
	w := newFuzzWorld(f)
	f.Add(message{Type: typeChannel, Voucher: w.vb}.encode(), w.pay(5))
	f.Add(w.pay(3), w.pay(3))
	f.Add(message{Type: typeInvoice, Owed: 100}.encode(), message{Type: typeRefuse, Code: "x"}.encode())
	f.Add(message{Type: typeClosed, Channel: "ch-fuzz", Index: 3}.encode(), w.pay(1))
	f.Add([]byte("d1:t4:auth3:sig64:"+string(make([]byte, 64))+"e"), []byte("de"))
	w.sess.Close()
	f.Fuzz(func(t *testing.T, a, b []byte) {
		w := newFuzzWorld(t)
		defer w.sess.Close()
		// The channel is shown first in half the runs, so payments can
		// reach the hash-chain checks.
		if len(a)%2 == 0 {
			if err := w.sess.Message(w.peer, message{Type: typeChannel, Voucher: w.vb}.encode()); err != nil {
				t.Fatal(err)
			}
		}
		for _, m := range [][]byte{a, b} {
			if err := w.sess.Message(w.peer, m); err != nil {
				break // the engine closes the connection here
			}
		}
		w.sess.Refuses(w.peer)
		w.sess.Serve(w.peer, tBlock)
		w.sess.Uploaded(w.peer, tBlock)
		w.sess.Verified(0, []engine.Contribution{{Peer: w.peer, Bytes: tBlock}})
		st := w.sess.Stats()
		w.sess.mu.Lock()
		acct := w.sess.book.Status(fuzzKey(3).AccountID())
		var lastIndex int64
		if ch := w.sess.in["ch-fuzz"]; ch != nil {
			lastIndex = ch.lastIndex
		}
		w.sess.mu.Unlock()
		if acct.Paid != lastIndex || st.Pending != lastIndex {
			t.Fatalf("book says paid %d, channel at %d, pending %d", acct.Paid, lastIndex, st.Pending)
		}
		w.sess.Closed(w.peer)
	})
}
