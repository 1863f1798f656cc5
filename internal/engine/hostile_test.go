package engine

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/wire"
)

// rawPeer is a scripted, possibly hostile, peer speaking the wire protocol
// by hand.
type rawPeer struct {
	t  *testing.T
	nc net.Conn
	r  *wire.Reader
	w  *bufio.Writer
}

func dialRaw(t *testing.T, addr netip.AddrPort, infoHash [20]byte, id byte) *rawPeer {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	var pid [20]byte
	copy(pid[:], "-XX0001-hostile")
	pid[19] = id
	if err := wire.WriteHandshake(nc, wire.NewHandshake(infoHash, pid)); err != nil {
		t.Fatal(err)
	}
	if _, err := wire.ReadHandshake(nc); err != nil {
		t.Fatal(err)
	}
	return &rawPeer{t: t, nc: nc, r: wire.NewReader(nc, wire.Limits{}), w: bufio.NewWriter(nc)}
}

func (p *rawPeer) send(m wire.Message) {
	b, err := m.AppendBinary(nil)
	if err != nil {
		p.t.Fatal(err)
	}
	p.w.Write(b)
	p.w.Flush()
}

func (p *rawPeer) sendRaw(b []byte) { p.nc.Write(b) }

// waitClosed reads until the remote side closes; it fails if the peer keeps
// the connection open.
func (p *rawPeer) waitClosed() {
	p.t.Helper()
	p.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, err := p.r.ReadMessage(); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				p.t.Fatal("connection stayed open")
			}
			return
		}
	}
}

// next returns the next message with the given ID, skipping others.
func (p *rawPeer) next(id wire.MessageID) wire.Message {
	p.t.Helper()
	for {
		m, err := p.r.ReadMessage()
		if err != nil {
			p.t.Fatalf("waiting for %v: %v", id, err)
		}
		if !m.Keepalive && m.ID == id {
			return m
		}
	}
}

func TestSeederClosesOnOversizedMessage(t *testing.T) {
	f := newFixture(t, 256<<10, 16<<10)
	c, _ := f.startPeer(t, Config{}, f.content, true)
	p := dialRaw(t, c.Addr(), f.mi.InfoHash, 1)
	var hdr [5]byte
	binary.BigEndian.PutUint32(hdr[:], 64<<20)
	hdr[4] = byte(wire.Extended)
	p.sendRaw(hdr[:])
	p.waitClosed()
}

func TestSeederClosesOnInvalidRequests(t *testing.T) {
	f := newFixture(t, 256<<10, 16<<10)
	c, _ := f.startPeer(t, Config{}, f.content, true)
	for i, m := range []wire.Message{
		wire.NewRequest(999, 0, 16<<10),   // beyond the last piece
		wire.NewRequest(0, 8<<10, 16<<10), // past the end of the piece
		wire.NewRequest(0, 0, 1<<20),      // absurd length
		wire.NewHave(12345),               // have beyond the piece count
		wire.NewBitfield([]byte{0xff}),    // wrong length
		wire.NewReject(0, 0, 16<<10),      // reject: we never asked, but fast is on; a stray one is fine
	} {
		p := dialRaw(t, c.Addr(), f.mi.InfoHash, byte(10+i))
		p.send(wire.Message{ID: wire.Interested})
		p.send(m)
		if m.ID == wire.Reject {
			// Harmless: the connection must survive and still serve.
			p.send(wire.NewRequest(0, 0, 16<<10))
			if got := p.next(wire.Piece); got.Index != 0 || len(got.Payload) != 16<<10 {
				t.Fatalf("after stray reject: got %v", got)
			}
			continue
		}
		t.Logf("case %d: %v", i, m)
		p.waitClosed()
	}
}

func TestSeederClosesOnRequestFlood(t *testing.T) {
	// Enough distinct blocks to exceed the queue cap (duplicates are
	// simply ignored, so they cannot be used to flood).
	f := newFixture(t, 48<<20, 256<<10)
	c, _ := f.startPeer(t, Config{UploadLimit: 16 << 10}, f.content, true)
	p := dialRaw(t, c.Addr(), f.mi.InfoHash, 2)
	p.send(wire.Message{ID: wire.Interested})
	p.next(wire.Unchoke)
	var buf []byte
	for i := 0; i < maxQueuedUploads+50; i++ {
		m := wire.NewRequest(uint32(i/16), uint32(i%16)*16<<10, 16<<10)
		buf, _ = m.AppendBinary(buf)
	}
	p.sendRaw(buf)
	p.waitClosed()
}

// scriptedSeeder listens for one leecher, claims every piece, unchokes it
// and hands each message it sends to answer (with a way to reply) until
// the connection ends; done is closed then. name is the peer ID's tail.
func scriptedSeeder(t *testing.T, name string, answer func(m wire.Message, reply func(wire.Message))) (addr netip.AddrPort, done <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		hs, err := wire.ReadHandshake(nc)
		if err != nil {
			return
		}
		var pid [20]byte
		copy(pid[:], "-XX0001-"+name)
		wire.WriteHandshake(nc, wire.NewHandshake(hs.InfoHash, pid))
		w := bufio.NewWriter(nc)
		reply := func(m wire.Message) { b, _ := m.AppendBinary(nil); w.Write(b); w.Flush() }
		reply(wire.Message{ID: wire.HaveAll})
		reply(wire.Message{ID: wire.Unchoke})
		r := wire.NewReader(nc, wire.Limits{})
		for {
			m, err := r.ReadMessage()
			if err != nil {
				return
			}
			answer(m, reply)
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String()), ended
}

func TestLeecherBansCorruptSeederAndFinishesFromHonestOne(t *testing.T) {
	f := newFixture(t, 1<<20, 64<<10)
	// The liar answers every request with garbage.
	junk := make([]byte, 16<<10)
	liar, liarDone := scriptedSeeder(t, "liar-liar-xx", func(m wire.Message, reply func(wire.Message)) {
		if m.ID == wire.Request {
			reply(wire.NewPiece(m.Index, m.Begin, junk[:m.Length]))
		}
	})
	out := filepath.Join(f.dir, "dl", "content.bin")
	_, leech := f.startPeer(t, Config{}, out, false)
	leech.AddPeers(liar)
	// Wait for the ban, then bring in an honest seeder.
	deadline := time.Now().Add(15 * time.Second)
	for leech.Stats().HashFailures == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no hash failure recorded for garbage data")
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case <-liarDone:
	case <-time.After(10 * time.Second):
		t.Fatal("liar was not disconnected")
	}
	if len(leech.bannedPeers()) != 1 {
		t.Fatalf("banned = %v", leech.bannedPeers())
	}
	if leech.Stats().HavePieces != 0 {
		t.Fatal("garbage counted as verified")
	}
	seedC, _ := f.startPeer(t, Config{}, f.content, true)
	leech.AddPeers(seedC.Addr())
	waitDone(t, leech, 30*time.Second)
	sameFile(t, f.content, out)
}

// A peer that accepts requests and never answers sits on the blocks it
// was asked for. The end game must fetch them elsewhere, long before the
// snub timeout would give up on that peer.
func TestEndGameFetchesBlocksAStalledPeerSitsOn(t *testing.T) {
	f := newFixture(t, 1<<20, 64<<10)
	firstAsked := make(chan struct{})
	var once sync.Once
	staller, hungUp := scriptedSeeder(t, "staller-xxxx", func(m wire.Message, _ func(wire.Message)) {
		if m.ID == wire.Request {
			once.Do(func() { close(firstAsked) })
		}
	})
	out := filepath.Join(f.dir, "dl", "content.bin")
	_, leech := f.startPeer(t, Config{}, out, false)
	leech.AddPeers(staller)
	select { // the staller holds blocks before an honest seeder arrives
	case <-firstAsked:
	case <-time.After(10 * time.Second):
		t.Fatal("the leecher asked the staller for nothing")
	}
	seedC, _ := f.startPeer(t, Config{}, f.content, true)
	leech.AddPeers(seedC.Addr())
	waitDone(t, leech, snubTimeout/2)
	sameFile(t, f.content, out)
	if w := leech.Stats().Wasted; w != 0 {
		t.Errorf("wasted %d bytes, though only one peer ever sent data", w)
	}
	leech.Close()
	select {
	case <-hungUp:
	case <-time.After(10 * time.Second):
		t.Fatal("the leecher kept its connection to the staller after closing")
	}
}

func TestLeecherSurvivesPeerThatHangsUpMidMessage(t *testing.T) {
	f := newFixture(t, 256<<10, 16<<10)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		hs, _ := wire.ReadHandshake(nc)
		var pid [20]byte
		copy(pid[:], "-XX0001-truncator-xx")
		wire.WriteHandshake(nc, wire.NewHandshake(hs.InfoHash, pid))
		nc.Write([]byte{0, 0, 0x40, 0x09, byte(wire.Piece), 0, 0}) // cut short
		nc.Close()
	}()
	out := filepath.Join(f.dir, "dl", "content.bin")
	_, leech := f.startPeer(t, Config{}, out, false)
	leech.AddPeers(netip.MustParseAddrPort(ln.Addr().String()))
	time.Sleep(300 * time.Millisecond)
	seedC, _ := f.startPeer(t, Config{}, f.content, true)
	leech.AddPeers(seedC.Addr())
	waitDone(t, leech, 30*time.Second)
	sameFile(t, f.content, out)
}

func TestSeederRefusesToServeDataThatChangedOnDisk(t *testing.T) {
	f := newFixture(t, 256<<10, 16<<10)
	c, _ := f.startPeer(t, Config{}, f.content, true)
	// Truncate the file behind the seeder's back.
	if err := os.Truncate(f.content, 100<<10); err != nil {
		t.Fatal(err)
	}
	p := dialRaw(t, c.Addr(), f.mi.InfoHash, 3)
	p.send(wire.Message{ID: wire.Interested})
	p.send(wire.NewRequest(10, 0, 16<<10)) // lies beyond the truncation
	m := p.next(wire.Reject)
	if m.Index != 10 {
		t.Fatalf("got %v, want a reject of piece 10", m)
	}
	_ = io.EOF
}

// Closing a torrent sends what its writers have queued before the sockets
// close: a payment plug-in settles its last payments right before, and
// they must reach the uploader. The message here is queued without waking
// the writer, so only the close can send it.
func TestCloseSendsWhatIsQueued(t *testing.T) {
	for _, how := range []string{"torrent", "client"} {
		t.Run(how, func(t *testing.T) {
			f := newFixture(t, 256<<10, 16<<10)
			c, tor := f.startPeer(t, Config{}, f.content, true)
			p := dialRaw(t, c.Addr(), f.mi.InfoHash, 1)
			p.next(wire.HaveAll) // the connection is registered and its writer runs
			tor.mu.Lock()
			for pc := range tor.conns {
				pc.wmu.Lock()
				pc.queue = append(pc.queue, wire.NewHave(3))
				pc.wmu.Unlock()
			}
			tor.mu.Unlock()
			if how == "client" {
				c.Close() // what a node does when it stops
			} else {
				tor.Close()
			}
			if m := p.next(wire.Have); m.Index != 3 {
				t.Fatalf("got have %d, want 3", m.Index)
			}
		})
	}
}

// Closing does not wait for peers that asked for blocks and stopped
// reading: their writers, stuck sending, are cut off at the drain's
// deadline (the first version waited on such writers without end).
func TestCloseDoesNotWaitForPeersThatStoppedReading(t *testing.T) {
	f := newFixture(t, 16<<20, 256<<10)
	c, tor := f.startPeer(t, Config{}, f.content, true)
	for i := range 2 {
		p := dialRaw(t, c.Addr(), f.mi.InfoHash, byte(1+i))
		p.send(wire.Message{ID: wire.Interested})
		p.next(wire.Unchoke)
		// All 16 MiB asked for, nothing read: far more than the socket
		// buffers hold, so the writer blocks.
		for b := range 16 << 20 / (16 << 10) {
			p.send(wire.NewRequest(uint32(b/16), uint32(b%16)*16<<10, 16<<10))
		}
	}
	time.Sleep(300 * time.Millisecond) // the writers fill the buffers and block
	done := make(chan struct{})
	go func() {
		tor.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second): // a hang, not a slow close: the deadline is 0.5 s
		t.Fatal("Close still waits for peers that stopped reading")
	}
}
