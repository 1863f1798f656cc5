package paid

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/bencode"
	"github.com/floodgate-p2p/floodgate/internal/broker"
	"github.com/floodgate-p2p/floodgate/internal/credit"
	"github.com/floodgate-p2p/floodgate/internal/engine"
	"github.com/floodgate-p2p/floodgate/internal/hashchain"
	"github.com/floodgate-p2p/floodgate/internal/identity"
	"github.com/floodgate-p2p/floodgate/internal/ledger"
	"github.com/floodgate-p2p/floodgate/internal/metainfo"
	"github.com/floodgate-p2p/floodgate/internal/provider"
	"github.com/floodgate-p2p/floodgate/internal/storage"
	"github.com/floodgate-p2p/floodgate/internal/terms"
	"github.com/floodgate-p2p/floodgate/internal/wire"
)

// The attack swarm's economics are chosen so that amounts read easily: one
// unit buys one KiB, a 16 KiB block costs 16 units, a 64 KiB piece 64.
const (
	tPrice     = 1024 // units per MiB
	tPiece     = 64 << 10
	tBlock     = 16 << 10
	blockUnits = tBlock * tPrice / (1 << 20)
)

// testCredit is a small credit policy, so that what an attacker can take
// is a few blocks, not megabytes: a new account may owe eight blocks (two
// pieces: pay-after-verify needs at least a piece of credit to make
// progress), a reliable payer up to sixteen, all accounts together
// thirty-two and the fresh ones twelve.
func testCredit() credit.Config {
	return credit.Config{
		InitialWindow:    8 * blockUnits,
		MaxWindow:        16 * blockUnits,
		MaxExposure:      32 * blockUnits,
		MaxFreshExposure: 12 * blockUnits,
		GraceBytes:       tBlock,
		MaxResends:       3,
	}
}

// bytesFor is how many bytes units buy at tPrice.
func bytesFor(units int64) int64 { return units * (1 << 20) / tPrice }

// swarm is a provider (broker, ledger, tracker) and one paid torrent.
type swarm struct {
	t       *testing.T
	dir     string
	prov    *provider.Provider
	mi      *metainfo.MetaInfo
	tm      *terms.Terms
	content string
	data    []byte
}

func newSwarm(t *testing.T, size int) *swarm {
	return newSwarmWith(t, size, provider.Config{})
}

func newSwarmWith(t *testing.T, size int, pcfg provider.Config) *swarm {
	t.Helper()
	dir := t.TempDir()
	pcfg.Listen = "127.0.0.1:0"
	pcfg.DataDir = filepath.Join(dir, "provider")
	prov, err := provider.Start(context.Background(), pcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prov.Close() })
	s := &swarm{t: t, dir: dir, prov: prov}
	// Registered after the provider's Close, so it runs before it and
	// after every peer (cleanups run last in, first out): whatever the
	// attack, the money must still add up.
	t.Cleanup(s.audit)
	s.data = make([]byte, size)
	rand.Read(s.data)
	s.content = filepath.Join(dir, "content.bin")
	if err := os.WriteFile(s.content, s.data, 0o644); err != nil {
		t.Fatal(err)
	}
	s.mi, err = metainfo.Build(context.Background(), s.content, metainfo.BuildOptions{PieceLength: tPiece, Announce: prov.AnnounceURL()})
	if err != nil {
		t.Fatal(err)
	}
	tm, err := terms.Sign(terms.Terms{Broker: prov.URL(), Classes: []terms.Class{{Name: "gold", PricePerMiB: tPrice}}}, s.mi.InfoHash, prov.Key())
	if err != nil {
		t.Fatal(err)
	}
	if err := terms.Attach(s.mi, &tm); err != nil {
		t.Fatal(err)
	}
	if s.tm, err = terms.FromMetaInfo(s.mi); err != nil {
		t.Fatal(err)
	}
	return s
}

// audit fails the test unless every unit minted is in some balance.
func (s *swarm) audit() {
	s.t.Helper()
	minted, sum, err := s.prov.Ledger().Audit(context.Background())
	if err != nil || minted != sum {
		s.t.Errorf("ledger not conserved: minted %d, balances %d, %v", minted, sum, err)
	}
}

func (s *swarm) balance(account string) int64 {
	s.t.Helper()
	b, err := s.prov.Ledger().Balance(context.Background(), ledger.AccountID(account))
	if err != nil {
		s.t.Fatal(err)
	}
	return b
}

// account is a registered identity with its broker client.
type account struct {
	key  *identity.PrivateKey
	cert identity.Certificate
	bc   *broker.Client
	id   string
}

// account makes a fresh key, registers it with the broker (as `floodgate
// account register` does) and mints funds to it.
func (s *swarm) account(funds int64) *account {
	s.t.Helper()
	k, err := identity.GenerateKey(rand.Reader)
	if err != nil {
		s.t.Fatal(err)
	}
	pk := s.tm.Provider
	bc, err := broker.NewClient(broker.ClientConfig{BaseURL: s.tm.Broker, Key: k, ProviderKey: &pk})
	if err != nil {
		s.t.Fatal(err)
	}
	// Runs before the provider's Close (cleanups run last in, first
	// out): a connection dialed and never used holds its graceful
	// shutdown for 5 s.
	s.t.Cleanup(bc.CloseIdleConnections)
	reg, err := bc.Register(context.Background())
	if err != nil {
		s.t.Fatal(err)
	}
	a := &account{key: k, cert: reg.Certificate, bc: bc, id: reg.Account}
	if funds > 0 {
		if err := s.prov.Ledger().Mint(context.Background(), "test-"+a.id, ledger.AccountID(a.id), funds); err != nil {
			s.t.Fatal(err)
		}
	}
	return a
}

// peerOpts configures an honest peer.
type peerOpts struct {
	seed      bool
	acct      *account
	credit    credit.Config // zero = testCredit()
	statePath string
	now       func() time.Time
	overdue   time.Duration // zero = 1 s
	maxSpend  int64
	peers     []netip.AddrPort
	free      bool // serve plain BitTorrent peers without payment
	// prefix, for a leecher, is how many bytes of the content it starts
	// with (whole pieces verify at start-up, a partial last one does not).
	prefix int
	// redeemEvery is the periodic redemption (zero = 100 ms).
	redeemEvery time.Duration
	// broker, when set, wraps the session's broker (to count or fail calls).
	broker func(Broker) Broker
	// openGate holds back channel opens until closed (Config.OpenGate).
	openGate <-chan struct{}
	// balance reports the buyer's balance (Config.Balance).
	balance func() (int64, bool)
}

// peer is an honest Floodgate peer: storage, engine and paid session, as
// the node package assembles them.
type peer struct {
	s     *swarm
	acct  *account
	sess  *Session
	cl    *engine.Client
	tor   *engine.Torrent
	store *storage.Storage
	out   string
	once  sync.Once
}

func (s *swarm) start(o peerOpts) *peer {
	s.t.Helper()
	path, mode := s.content, storage.ReadOnly
	if !o.seed {
		path, mode = filepath.Join(s.t.TempDir(), "content.bin"), storage.ReadWrite
		if o.prefix > 0 {
			if err := os.WriteFile(path, append(s.data[:o.prefix:o.prefix], make([]byte, len(s.data)-o.prefix)...), 0o644); err != nil {
				s.t.Fatal(err)
			}
		}
	}
	st, err := storage.Open(&s.mi.Info, path, mode)
	if err != nil {
		s.t.Fatal(err)
	}
	have, err := st.Check(context.Background(), nil)
	if err != nil {
		s.t.Fatal(err)
	}
	if o.credit == (credit.Config{}) {
		o.credit = testCredit()
	}
	if o.overdue == 0 {
		o.overdue = time.Second
	}
	class, _ := s.tm.Class("")
	b := BrokerOver(o.acct.bc)
	if o.broker != nil {
		b = o.broker(b)
	}
	if o.redeemEvery == 0 {
		o.redeemEvery = 100 * time.Millisecond
	}
	sess, err := NewSession(Config{
		Torrent:      s.mi,
		Terms:        s.tm,
		Key:          o.acct.key,
		Cert:         o.acct.cert,
		Class:        class,
		Broker:       b,
		Credit:       o.credit,
		RedeemEvery:  o.redeemEvery,
		OverdueAfter: o.overdue,
		StatePath:    o.statePath,
		MaxSpend:     o.maxSpend,
		Now:          o.now,
		Free:         o.free,
		Logger:       debugLogger(o.acct.id),
		OpenGate:     o.openGate,
		Balance:      o.balance,
	})
	if err != nil {
		s.t.Fatal(err)
	}
	if have.Full() {
		sess.SetComplete()
	}
	cl, err := engine.NewClient(engine.Config{ListenAddr: "127.0.0.1:0"})
	if err != nil {
		s.t.Fatal(err)
	}
	tor, err := cl.AddTorrent(s.mi, st, engine.TorrentOptions{Have: &have, Payments: sess})
	if err != nil {
		s.t.Fatal(err)
	}
	tor.OnComplete(sess.SetComplete)
	p := &peer{s: s, acct: o.acct, sess: sess, cl: cl, tor: tor, store: st, out: path}
	s.t.Cleanup(p.close)
	if len(o.peers) > 0 {
		tor.AddPeers(o.peers...)
	}
	return p
}

// close stops the peer the way node.Close does: engine first, then the
// session (which redeems and closes the channels paid to it).
// startSeeder starts a seeder under account 0 that redeems only when it
// stops (tests settle by hand), reaching the broker through wrap if set.
func (s *swarm) startSeeder(wrap func(Broker) Broker) *peer {
	return s.start(peerOpts{seed: true, acct: s.account(0), redeemEvery: time.Hour, broker: wrap})
}

func (p *peer) close() {
	p.once.Do(func() {
		p.cl.Close()
		if err := p.sess.Close(); err != nil {
			p.s.t.Errorf("session close: %v", err)
		}
		p.store.Close()
	})
}

func (p *peer) addr() netip.AddrPort { return p.cl.Addr() }

// status is the uploader's credit-book entry for account.
func (p *peer) status(account string) credit.AccountStatus {
	p.sess.mu.Lock()
	defer p.sess.mu.Unlock()
	return p.sess.book.Status(account)
}

func (p *peer) refused(account string) bool {
	p.sess.mu.Lock()
	defer p.sess.mu.Unlock()
	return p.sess.refused[account] != ""
}

func (p *peer) waitDone(d time.Duration) {
	p.s.t.Helper()
	select {
	case <-p.tor.Done():
	case <-time.After(d):
		st := p.tor.Stats()
		p.s.t.Fatalf("download not done: %d/%d pieces, payments %+v", st.HavePieces, st.Pieces, p.sess.Stats())
	}
}

// bug skips a test that demonstrates a known bug in non-test code, unless
// FLOODGATE_BUG_TESTS is set (to check a fix: the test must then pass).
func bug(t *testing.T, desc string) {
	t.Helper()
	if os.Getenv("FLOODGATE_BUG_TESTS") == "" {
		t.Skip("BUG: " + desc)
	}
}

// eventually polls cond until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hostile is a scripted peer speaking BEP 3, BEP 10 and the Floodgate
// extension by hand over a real TCP connection, so it can misbehave in
// ways the Session never would.
type hostile struct {
	t    *testing.T
	s    *swarm
	acct *account
	nc   net.Conn
	w    *bufio.Writer
	in   chan wire.Message
	done chan struct{}
	wg   sync.WaitGroup

	nonce      [32]byte
	theirNonce [32]byte
	theirCert  identity.Certificate
	theirHS    bool // their extended handshake arrived
	fgID       uint8
	dialed     bool // we dialed (the proof then names their listening address)

	// onRequest, if set, answers the other side's requests (a hostile
	// uploader); otherwise they are ignored.
	onRequest func(m wire.Message)

	got    int64             // piece payload bytes received
	reject int               // BEP 6 rejects of our requests received
	blocks map[[2]uint32]int // blocks received, by piece and offset
	fg     []message         // Floodgate messages received
	closed bool              // the other side hung up
}

func newPeerID() [20]byte {
	var id [20]byte
	copy(id[:], "-XX0001-")
	rand.Read(id[8:])
	return id
}

// dial connects to addr and exchanges BitTorrent handshakes.
func (s *swarm) dial(addr netip.AddrPort, acct *account) *hostile {
	s.t.Helper()
	nc, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := wire.WriteHandshake(nc, wire.NewHandshake([20]byte(s.mi.InfoHash), newPeerID())); err != nil {
		s.t.Fatal(err)
	}
	if _, err := wire.ReadHandshake(nc); err != nil {
		s.t.Fatal(err)
	}
	return s.hostileOn(nc, acct, true)
}

// accept takes one connection from ln (an honest peer dialing us).
func (s *swarm) accept(ln net.Listener, acct *account) *hostile {
	s.t.Helper()
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	nc, err := ln.Accept()
	if err != nil {
		s.t.Fatal(err)
	}
	hs, err := wire.ReadHandshake(nc)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := wire.WriteHandshake(nc, wire.NewHandshake(hs.InfoHash, newPeerID())); err != nil {
		s.t.Fatal(err)
	}
	return s.hostileOn(nc, acct, false)
}

func (s *swarm) hostileOn(nc net.Conn, acct *account, dialed bool) *hostile {
	h := &hostile{t: s.t, s: s, acct: acct, nc: nc, w: bufio.NewWriter(nc), dialed: dialed,
		in: make(chan wire.Message, 64), done: make(chan struct{}), nonce: newNonce(),
		blocks: make(map[[2]uint32]int)}
	r := wire.NewReader(nc, wire.Limits{})
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer close(h.in)
		for {
			m, err := r.ReadMessage()
			if err != nil {
				return
			}
			m.Payload = append([]byte(nil), m.Payload...)
			select {
			case h.in <- m:
			case <-h.done:
				return
			}
		}
	}()
	s.t.Cleanup(h.close)
	return h
}

func (h *hostile) close() {
	select {
	case <-h.done:
		return
	default:
	}
	close(h.done)
	h.nc.Close()
	h.wg.Wait()
}

func (h *hostile) send(m wire.Message) {
	b, err := m.AppendBinary(nil)
	if err != nil {
		h.t.Fatal(err)
	}
	h.w.Write(b)
	h.w.Flush()
}

// sendFG sends a Floodgate extension message under the ID the other side
// asked for.
func (h *hostile) sendFG(m message) { h.sendFGRaw(m.encode()) }

func (h *hostile) sendFGRaw(payload []byte) {
	id := h.fgID
	if id == 0 {
		id = 1 // what our engine always asks for
	}
	h.send(wire.NewExtended(id, payload))
}

// handle records one incoming message.
func (h *hostile) handle(m wire.Message) {
	if m.Keepalive {
		return
	}
	switch {
	case m.ID == wire.Request && h.onRequest != nil:
		h.onRequest(m)
	case m.ID == wire.Reject:
		h.reject++
	case m.ID == wire.Piece:
		h.got += int64(len(m.Payload))
		h.blocks[[2]uint32{m.Index, m.Begin}]++
	case m.ID == wire.Extended && m.ExtendedID == 0:
		hs, err := wire.ParseExtendedHandshake(m.Payload)
		if err != nil {
			h.t.Fatalf("their extended handshake: %v", err)
		}
		h.theirHS = true
		h.fgID, _ = hs.ID(engine.ExtensionName)
		var cert, nonce []byte
		bencode.Unmarshal(hs.Extra[hsCert], &cert)
		bencode.Unmarshal(hs.Extra[hsNonce], &nonce)
		if err := h.theirCert.UnmarshalBinary(cert); err != nil {
			h.t.Fatalf("their certificate: %v", err)
		}
		copy(h.theirNonce[:], nonce)
	case m.ID == wire.Extended && m.ExtendedID == 1:
		fm, err := decodeMessage(m.Payload)
		if err != nil {
			h.t.Fatalf("honest peer sent a bad Floodgate message: %v", err)
		}
		h.fg = append(h.fg, fm)
	}
}

// pump handles messages until cond holds (true), the connection closes or
// nothing arrives for idle (false).
func (h *hostile) pump(idle time.Duration, cond func() bool) bool {
	for {
		if cond != nil && cond() {
			return true
		}
		if h.closed {
			return false
		}
		select {
		case m, ok := <-h.in:
			if !ok {
				h.closed = true
				continue
			}
			h.handle(m)
		case <-time.After(idle):
			return false
		}
	}
}

// waitClosed reports whether the other side hung up within d.
func (h *hostile) waitClosed(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !h.closed && time.Now().Before(deadline) {
		h.pump(time.Until(deadline), nil)
	}
	return h.closed
}

// lastFG returns the latest received Floodgate message of type typ.
func (h *hostile) lastFG(typ string) (message, bool) {
	for i := len(h.fg) - 1; i >= 0; i-- {
		if h.fg[i].Type == typ {
			return h.fg[i], true
		}
	}
	return message{}, false
}

// handshake sends our BEP 10 handshake showing cert and nonce, once theirs
// has arrived.
func (h *hostile) handshake(cert identity.Certificate, class string) {
	h.t.Helper()
	if !h.pump(5*time.Second, func() bool { return h.theirHS }) {
		h.t.Fatal("no extended handshake from the honest peer")
	}
	cb, err := cert.MarshalBinary()
	if err != nil {
		h.t.Fatal(err)
	}
	h.handshakeFields(map[string]bencode.RawMessage{
		hsCert:  mustRaw(cb),
		hsNonce: mustRaw(h.nonce[:]),
		hsClass: mustRaw([]byte(class)),
	})
}

func (h *hostile) handshakeFields(extra map[string]bencode.RawMessage) {
	hs := wire.ExtendedHandshake{M: map[string]uint8{engine.ExtensionName: 1}, Reqq: 4096, Extra: extra}
	b, err := hs.AppendBinary(nil)
	if err != nil {
		h.t.Fatal(err)
	}
	h.send(wire.NewExtended(0, b))
}

// authSig is our proof of key possession on this connection.
func (h *hostile) authSig(key *identity.PrivateKey) []byte {
	sig := key.Sign(authMessage(h.s.mi.InfoHash, h.theirNonce, h.nonce, h.theirCert.Key, key.Public(), h.remote(), h.dialed))
	return sig[:]
}

// authenticate runs the honest extension handshake with our own identity.
func (h *hostile) authenticate() {
	h.t.Helper()
	h.handshake(h.acct.cert, "gold")
	if !h.pump(5*time.Second, func() bool { _, ok := h.lastFG(typeAuth); return ok }) {
		h.t.Fatal("no auth from the honest peer")
	}
	h.sendFG(message{Type: typeAuth, Sig: h.authSig(h.acct.key)})
}

// channel is a payment channel the hostile side opened with the broker.
type channel struct {
	v     identity.Voucher
	vb    []byte
	chain *hashchain.Chain
	used  int64
}

// openChannel locks length units for payee at the broker.
func openChannel(t *testing.T, payer *account, payee string, length int64, expiry time.Time) *channel {
	t.Helper()
	var seed [32]byte
	rand.Read(seed[:])
	chain := hashchain.New(seed, length)
	var idem [8]byte
	rand.Read(idem[:])
	resp, err := payer.bc.OpenChannel(context.Background(), "atk-"+hex.EncodeToString(idem[:]),
		broker.OpenRequest{Payee: payee, Root: identity.Digest(chain.Root()), Length: length, Unit: 1, Expiry: expiry})
	if err != nil {
		t.Fatal(err)
	}
	vb, err := resp.Voucher.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return &channel{v: resp.Voucher, vb: vb, chain: chain}
}

func (c *channel) preimage(t *testing.T, i int64) []byte {
	t.Helper()
	p, err := c.chain.Preimage(i)
	if err != nil {
		t.Fatal(err)
	}
	return p[:]
}

// pay sends the preimage at index i of c.
func (h *hostile) pay(c *channel, i int64) {
	h.sendFG(message{Type: typePay, Channel: c.v.Channel, Index: i, Preimage: c.preimage(h.t, i)})
	c.used = max(c.used, i)
}

// payUnits advances c by units.
func (h *hostile) payUnits(c *channel, units int64) {
	if units > 0 {
		h.pay(c, c.used+units)
	}
}

// request asks for n blocks starting at block number from (16 KiB blocks
// in torrent order).
func (h *hostile) request(from, n int) {
	h.send(wire.Message{ID: wire.Interested})
	for b := from; b < from+n; b++ {
		off := int64(b) * tBlock
		h.send(wire.NewRequest(uint32(off/tPiece), uint32(off%tPiece), tBlock))
	}
}

// drain reads until nothing arrives for idle.
func (h *hostile) drain(idle time.Duration) { h.pump(idle, nil) }

// valueOf is what bytes are worth at tPrice, rounded up (what the
// uploader risks serving them).
func valueOf(bytes int64) int64 { return (bytes*tPrice + (1<<20 - 1)) >> 20 }

// remote is the other side's address as we see it.
func (h *hostile) remote() netip.AddrPort {
	ap, _ := netip.ParseAddrPort(h.nc.RemoteAddr().String())
	return ap
}

// debugLogger logs a test peer's payment events to stderr when
// FLOODGATE_TEST_LOG is set (go test -v -run NAME), tagged with its
// account; otherwise the session discards them.
func debugLogger(id string) *slog.Logger {
	if os.Getenv("FLOODGATE_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("me", id[:6])
}
