package engine

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/bitfield"
	"github.com/floodgate-p2p/floodgate/internal/picker"
	"github.com/floodgate-p2p/floodgate/internal/scheduler"
	"github.com/floodgate-p2p/floodgate/internal/wire"
)

// Request pipeline depths. We ask a peer for at most its advertised reqq
// (BEP 10), defaulting to what most clients accept, and advertise a deep
// queue ourselves so fast links stay full: at 1 GB/s and 0.1 ms RTT the
// bandwidth-delay product is small, but disk and scheduling hiccups are not.
const (
	// initialOutstanding is a new peer's pipeline depth; it grows by one
	// per block delivered, doubling each round trip, so a peer that takes
	// requests and never answers ties up a handful of blocks, not
	// hundreds, while a fast peer reaches full depth within megabytes.
	initialOutstanding = 8
	defaultPeerReqq    = 250
	maxOutstanding     = 1024
	ourReqq            = 2048
	// maxRequestLength bounds a block a peer may ask for; BEP 3 clients use
	// 16 KiB and some allow up to 128 KiB.
	maxRequestLength = 128 << 10
	// maxQueuedUploads bounds requests a peer may have waiting with us; a
	// flood beyond it is a protocol abuse.
	maxQueuedUploads = ourReqq
	// endGameDepth caps a peer's outstanding requests in the end game.
	// One at a time wasted less on loopback (by then most owed blocks
	// are in flight, and copies cross their cancel), but behind a 100 ms
	// round trip it rescued blocks a slow peer sat on four times slower:
	// one block per round trip per idle peer.
	endGameDepth = 4
	// writerBacklog is how many upload blocks may wait in a connection's
	// writer; more would only hide the peer's real speed from the scheduler.
	writerBacklog = 16
)

// clientVersion is sent as "v" in the extension handshake.
const clientVersion = "Floodgate 0.1"

// peerConn is one connection to a peer. Its reader goroutine handles
// incoming messages under the torrent lock; its writer goroutine owns the
// socket's write side.
type peerConn struct {
	t      *Torrent
	id     uint64
	nc     net.Conn
	addr   netip.AddrPort
	peerID [20]byte
	fast   bool // both sides speak BEP 6
	ext    bool // both sides speak BEP 10
	out    bool // we dialed

	// Guarded by t.mu.
	peerHas        bitfield.Bitfield
	amChoking      bool
	amInterested   bool
	peerChoking    bool
	peerInterested bool
	outstanding    map[picker.Block]struct{}
	// verifyNext is a completed piece the reader verifies itself after
	// handling the message, because the hashers' queue was full.
	verifyNext   *verifyJob
	maxOut       int // current pipeline depth: grows by one per block received (slow start)
	peerReqq     int // the peer's advertised queue, which maxOut never exceeds
	lastBlock    time.Time
	snubbed      bool
	mayRequest   bool // the payment plug-in let us ask for blocks (it never takes that back)
	clientName   string
	connectedAt  time.Time
	lastUnchoked time.Time
	down, up     meter

	fgID         atomic.Uint32 // the peer's extended ID for Floodgate messages; 0 = none
	lastRecvNano atomic.Int64
	lastSentNano atomic.Int64

	// Writer state.
	wmu      sync.Mutex
	queue    []wire.Message
	uploads  []picker.Block
	inWriter atomic.Int32 // upload blocks handed to the writer, not yet sent
	// payHeld: the payment plug-in refused the last Charge. Only the
	// upload loop sets it and reads it; Wake clears it.
	payHeld    atomic.Bool
	interested atomic.Bool // mirrors peerInterested for Peer.Interested
	wake       chan struct{}
	closing    chan struct{}
	// drain is closed when the torrent closes: the writer sends what is
	// queued (the payments for the last pieces, say), and stops;
	// writerDone is closed when the writer has stopped.
	drain      chan struct{}
	writerDone chan struct{}
}

func (pc *peerConn) lastRecv() time.Time { return time.Unix(0, pc.lastRecvNano.Load()) }
func (pc *peerConn) lastSent() time.Time { return time.Unix(0, pc.lastSentNano.Load()) }

// send queues a control message for the writer.
func (pc *peerConn) send(m wire.Message) {
	pc.wmu.Lock()
	pc.queue = append(pc.queue, m)
	pc.wmu.Unlock()
	pc.kick()
}

// sendUpload queues a block to read from storage and send.
func (pc *peerConn) sendUpload(b picker.Block) {
	pc.inWriter.Add(1)
	pc.wmu.Lock()
	pc.uploads = append(pc.uploads, b)
	pc.wmu.Unlock()
	pc.kick()
}

func (pc *peerConn) kick() {
	select {
	case pc.wake <- struct{}{}:
	default:
	}
}

// addConn registers a handshaken connection and starts its goroutines.
func (t *Torrent) addConn(nc net.Conn, hs wire.Handshake, out bool) {
	addr, _ := netip.ParseAddrPort(nc.RemoteAddr().String())
	t.mu.Lock()
	reason := ""
	switch {
	case t.closed:
		reason = "torrent closed"
	case t.banned[hs.PeerID] != "":
		reason = "banned"
	case t.byPeerID[hs.PeerID] != nil:
		reason = "duplicate connection"
	case len(t.conns) >= t.c.cfg.MaxPeers:
		reason = "too many peers"
	}
	if reason != "" {
		t.mu.Unlock()
		t.log.debug("refused peer", "addr", addr, "reason", reason)
		nc.Close()
		return
	}
	t.nextConnID++
	now := time.Now()
	pc := &peerConn{
		t:           t,
		id:          t.nextConnID,
		nc:          nc,
		addr:        addr,
		peerID:      hs.PeerID,
		fast:        hs.SupportsFast(),
		ext:         hs.SupportsExtensions(),
		out:         out,
		peerHas:     bitfield.New(t.info.NumPieces()),
		amChoking:   true,
		peerChoking: true,
		outstanding: make(map[picker.Block]struct{}),
		maxOut:      initialOutstanding,
		peerReqq:    defaultPeerReqq,
		lastBlock:   now,
		connectedAt: now,
		wake:        make(chan struct{}, 1),
		closing:     make(chan struct{}),
		drain:       make(chan struct{}),
		writerDone:  make(chan struct{}),
	}
	pc.lastRecvNano.Store(now.UnixNano())
	pc.lastSentNano.Store(now.UnixNano())
	t.conns[pc] = struct{}{}
	t.byPeerID[hs.PeerID] = pc
	if out {
		// The listening side's address is the one worth redialing.
		t.known[addr] = now.Add(redialDelay)
	}
	t.byConnID[pc.id] = pc
	_ = t.sched.SetPeer(scheduler.PeerID(pc.id), scheduler.Terms{})
	have := t.picker.Bitfield()
	switch {
	case pc.fast && have.Full():
		pc.send(wire.Message{ID: wire.HaveAll})
	case pc.fast && have.Empty():
		pc.send(wire.Message{ID: wire.HaveNone})
	case !have.Empty():
		pc.send(wire.NewBitfield(have.Bytes()))
	}
	if pc.ext {
		pc.send(wire.NewExtended(0, t.extendedHandshake(pc)))
	}
	if !t.c.upLimited() {
		// An unlimited uploader serves every peer; unchoking up front
		// saves the peer a round trip.
		pc.amChoking = false
		pc.lastUnchoked = now
		pc.send(wire.Message{ID: wire.Unchoke})
	}
	t.wg.Add(2)
	t.mu.Unlock()
	go pc.writeLoop()
	go pc.readLoop()
}

func (t *Torrent) extendedHandshake(pc *peerConn) []byte {
	hs := wire.ExtendedHandshake{
		M:      map[string]uint8{ExtensionName: extensionLocalID},
		V:      clientVersion,
		Reqq:   ourReqq,
		YourIP: pc.addr.Addr(),
		P:      t.c.Addr().Port(),
	}
	if t.pay != nil {
		hs.Extra = t.pay.HandshakeFields(pc)
	}
	b, err := hs.AppendBinary(nil)
	if err != nil {
		// Encoding our own fixed dictionary cannot fail; if it ever
		// does, an empty dictionary is still a valid handshake.
		return []byte("d1:mdee")
	}
	return b
}

// readLoop reads messages until the connection fails, then unregisters it.
func (pc *peerConn) readLoop() {
	t := pc.t
	defer t.wg.Done()
	r := wire.NewReader(pc.nc, wire.Limits{MaxBlock: maxRequestLength, MaxBitfield: (t.info.NumPieces() + 7) / 8})
	buf := make([]byte, wire.BlockSize)
	var err error
	for {
		var m wire.Message
		m, err = r.ReadMessageInto(buf)
		if err != nil {
			break
		}
		pc.lastRecvNano.Store(time.Now().UnixNano())
		if m.ID == wire.Piece && !m.Keepalive && t.c.dnLimit != nil {
			if err = t.c.dnLimit.WaitN(t.ctx, len(m.Payload)); err != nil {
				break
			}
		}
		t.mu.Lock()
		err = pc.handle(m)
		job := pc.verifyNext
		pc.verifyNext = nil
		t.mu.Unlock()
		if job != nil {
			t.verifyPiece(*job)
		}
		if err != nil {
			break
		}
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && t.ctx.Err() == nil {
		t.log.debug("peer connection ended", "addr", pc.addr, "err", err)
	}
	pc.close()
}

// close tears the connection down and returns its requests to the picker.
func (pc *peerConn) close() {
	t := pc.t
	pc.nc.Close()
	t.mu.Lock()
	if _, ok := t.conns[pc]; ok {
		delete(t.conns, pc)
		if t.byPeerID[pc.peerID] == pc {
			delete(t.byPeerID, pc.peerID)
		}
		t.picker.PeerGone(pc.peerHas)
		t.unrequestAll(pc)
		delete(t.byConnID, pc.id)
		t.sched.RemovePeer(scheduler.PeerID(pc.id))
		close(pc.closing)
		if t.pay != nil {
			t.pay.Closed(pc)
		}
	}
	t.mu.Unlock()
}

// errPeer marks misbehaviour that ends the connection.
var errPeer = errors.New("peer misbehaved")

func peerErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errPeer, fmt.Sprintf(format, args...))
}

// handle processes one message; t.mu is held.
func (pc *peerConn) handle(m wire.Message) error {
	t := pc.t
	if m.Keepalive {
		return nil
	}
	n := t.info.NumPieces()
	switch m.ID {
	case wire.Choke:
		pc.peerChoking = true
		if !pc.fast {
			// Without BEP 6 a choke silently drops our requests.
			t.unrequestAll(pc)
		}
	case wire.Unchoke:
		pc.peerChoking = false
		t.fillRequests(pc)
	case wire.Interested:
		pc.peerInterested = true
		pc.interested.Store(true)
		t.rechokeSoon()
	case wire.NotInterested:
		pc.peerInterested = false
		pc.interested.Store(false)
		t.sched.RemovePeer(scheduler.PeerID(pc.id))
		_ = t.sched.SetPeer(scheduler.PeerID(pc.id), scheduler.Terms{})
		if t.pay != nil {
			t.pay.LostInterest(pc)
		}
	case wire.Have:
		if int(m.Index) >= n {
			return peerErr("have(%d) beyond %d pieces", m.Index, n)
		}
		if !pc.peerHas.Has(int(m.Index)) {
			pc.peerHas.Set(int(m.Index))
			t.picker.PeerHasPiece(int(m.Index))
			if !pc.amInterested && !t.picker.Have(int(m.Index)) {
				t.updateInterest(pc)
			}
		}
	case wire.Bitfield:
		bf, err := bitfield.FromBytes(m.Payload, n)
		if err != nil {
			return peerErr("bad bitfield: %v", err)
		}
		// BEP 3 puts the bitfield first, but aria2 also sends one later
		// to summarise many haves; accept it as a replacement.
		pc.replaceHas(bf)
	case wire.HaveAll, wire.HaveNone:
		if !pc.fast {
			return peerErr("%v without fast extension", m.ID)
		}
		bf := bitfield.New(n)
		if m.ID == wire.HaveAll {
			bf.SetAll()
		}
		pc.replaceHas(bf)
	case wire.Request:
		return pc.onRequest(m)
	case wire.Cancel:
		t.sched.Cancel(scheduler.PeerID(pc.id), scheduler.Request{Piece: m.Index, Begin: m.Begin, Length: m.Length})
	case wire.Piece:
		return pc.onPiece(m)
	case wire.Reject:
		if !pc.fast {
			return peerErr("reject without fast extension")
		}
		b := picker.Block{Piece: m.Index, Begin: m.Begin, Length: m.Length}
		if _, ok := pc.outstanding[b]; ok {
			delete(pc.outstanding, b)
			t.picker.Unrequest(b)
		}
	case wire.Extended:
		switch {
		case m.ExtendedID == 0:
			return pc.onExtendedHandshake(m.Payload)
		case m.ExtendedID == extensionLocalID && t.pay != nil:
			if err := t.pay.Message(pc, m.Payload); err != nil {
				return peerErr("floodgate extension: %v", err)
			}
			// The message may have finished authentication: start
			// asking at once rather than at the next housekeeping tick.
			t.fillRequests(pc)
		}
	case wire.Suggest, wire.AllowedFast:
		if !pc.fast {
			return peerErr("%v without fast extension", m.ID)
		}
	default:
		// Port, suggest, allowed-fast and unknown messages are optional
		// hints; BEP 3 says to ignore what we do not use.
	}
	return nil
}

// replaceHas installs a peer's full piece set (bitfield, have-all or
// have-none), keeping the picker's availability counts exact; t.mu held.
func (pc *peerConn) replaceHas(bf bitfield.Bitfield) {
	t := pc.t
	t.picker.PeerGone(pc.peerHas)
	pc.peerHas = bf
	t.picker.PeerHasBitfield(bf)
	t.updateInterest(pc)
}

func (pc *peerConn) onExtendedHandshake(payload []byte) error {
	hs, err := wire.ParseExtendedHandshake(payload)
	if err != nil {
		pc.t.log.debug("bad extended handshake", "addr", pc.addr, "err", err)
		return nil
	}
	if hs.Reqq > 0 {
		pc.peerReqq = min(hs.Reqq, maxOutstanding)
		pc.maxOut = min(pc.maxOut, pc.peerReqq)
	}
	pc.clientName = hs.V
	id, ok := hs.ID(ExtensionName)
	if ok {
		pc.fgID.Store(uint32(id))
	}
	if pc.t.pay != nil {
		if err := pc.t.pay.PeerHandshake(pc, &hs, ok); err != nil {
			return peerErr("floodgate handshake: %v", err)
		}
	}
	return nil
}

func (pc *peerConn) onRequest(m wire.Message) error {
	t := pc.t
	b := picker.Block{Piece: m.Index, Begin: m.Begin, Length: m.Length}
	if int(b.Piece) >= t.info.NumPieces() || b.Length == 0 || b.Length > maxRequestLength ||
		int64(b.Begin)+int64(b.Length) > t.info.PieceSize(int(b.Piece)) {
		return peerErr("invalid request %v", m)
	}
	if !t.picker.Have(int(b.Piece)) {
		// Asking for what we never announced is a lie or a bug; with the
		// fast extension we can say no, otherwise just ignore it.
		pc.reject(b)
		return nil
	}
	if pc.amChoking {
		pc.reject(b)
		return nil
	}
	if t.pay != nil && t.pay.Refuses(pc) {
		pc.reject(b)
		return nil
	}
	if err := t.enqueueUpload(pc, b); err != nil {
		if errors.Is(err, errQueueFull) {
			return peerErr("request flood: more than %d requests queued", maxQueuedUploads)
		}
		pc.reject(b)
		return nil
	}
	t.wakeUploader()
	return nil
}

func (pc *peerConn) reject(b picker.Block) {
	if pc.fast {
		pc.send(wire.NewReject(b.Piece, b.Begin, b.Length))
	}
}

func (pc *peerConn) onPiece(m wire.Message) error {
	t := pc.t
	b := picker.Block{Piece: m.Index, Begin: m.Begin, Length: uint32(len(m.Payload))}
	if int(b.Piece) >= t.info.NumPieces() {
		return peerErr("piece %d beyond %d pieces", b.Piece, t.info.NumPieces())
	}
	_, asked := pc.outstanding[b]
	if asked {
		delete(pc.outstanding, b)
		pc.lastBlock = time.Now()
		pc.snubbed = false
		if pc.maxOut < pc.peerReqq {
			pc.maxOut++
		}
	}
	pc.down.Add(len(m.Payload))
	fresh, complete := t.picker.Received(b)
	if !fresh {
		t.wasted.Add(int(b.Length))
		if asked {
			t.fillRequests(pc)
		}
		return nil
	}
	t.downMeter.Add(int(b.Length))
	t.recvFrom[pc.addr.Addr()] += int64(b.Length)
	i := int(b.Piece)
	pb := t.pieces[i]
	if pb == nil {
		size := t.info.PieceSize(i)
		pb = getPieceBuf(size, int((size+picker.BlockSize-1)/picker.BlockSize))
		t.pieces[i] = pb
	}
	copy(pb.data[b.Begin:], m.Payload)
	pb.from[b.Begin/picker.BlockSize] = pc
	if t.picker.EndGame() {
		t.cancelDuplicates(pc, b)
	}
	if complete {
		delete(t.pieces, i)
		job := verifyJob{piece: i, buf: pb}
		select {
		case t.verify <- job:
		default:
			// The hashers are behind: this reader hashes the piece itself
			// once it let go of the lock, and reads nothing meanwhile, so
			// the backlog (and with it how late we pay, in a paid swarm)
			// stays bounded and TCP slows the senders down.
			pc.verifyNext = &job
		}
	}
	t.fillRequests(pc)
	return nil
}

// cancelDuplicates withdraws end-game copies of b asked of other peers.
func (t *Torrent) cancelDuplicates(got *peerConn, b picker.Block) {
	for pc := range t.conns {
		if pc == got {
			continue
		}
		if _, ok := pc.outstanding[b]; ok {
			delete(pc.outstanding, b)
			t.picker.Unrequest(b) // keep the picker's request counts exact
			pc.send(wire.NewCancel(b.Piece, b.Begin, b.Length))
		}
	}
}

// fillRequests tops up the request pipeline to the peer. Requests are sent
// in batches so one arriving block does not cost one pick and one write.
func (t *Torrent) fillRequests(pc *peerConn) {
	if pc.peerChoking || !pc.amInterested || t.closed {
		return
	}
	if t.pay != nil && pc.ext && !pc.mayRequest {
		if !t.pay.MayRequest(pc) {
			return
		}
		pc.mayRequest = true
	}
	limit := pc.maxOut
	if pc.snubbed {
		limit = 1
	}
	if t.picker.EndGame() {
		// Every missing block is asked of someone: more copies only
		// waste bandwidth (and, in a paid swarm, leave uploaders with
		// blocks nobody pays for), so a peer holds a few at a time.
		limit = min(limit, endGameDepth)
	}
	want := limit - len(pc.outstanding)
	if want <= 0 || (want < limit/4 && len(pc.outstanding) > 0) {
		return
	}
	mine := func(b picker.Block) bool { _, ok := pc.outstanding[b]; return ok }
	reqs := t.picker.Pick(pc.id, pc.peerHas, want, mine, nil)
	if len(reqs) == 0 {
		return
	}
	pc.wmu.Lock()
	for _, b := range reqs {
		pc.outstanding[b] = struct{}{}
		pc.queue = append(pc.queue, wire.NewRequest(b.Piece, b.Begin, b.Length))
	}
	pc.wmu.Unlock()
	pc.kick()
}

// unrequestAll returns every outstanding request of pc to the picker.
func (t *Torrent) unrequestAll(pc *peerConn) {
	for b := range pc.outstanding {
		t.picker.Unrequest(b)
		delete(pc.outstanding, b)
	}
}

// updateInterest tells the peer whether it has anything we want.
func (t *Torrent) updateInterest(pc *peerConn) {
	want := t.picker.Interesting(pc.peerHas)
	if want == pc.amInterested {
		return
	}
	pc.amInterested = want
	if want {
		pc.send(wire.Message{ID: wire.Interested})
		t.fillRequests(pc)
	} else {
		if t.pay != nil {
			t.pay.NotInterested(pc)
		}
		pc.send(wire.Message{ID: wire.NotInterested})
	}
}

// writeLoop owns the socket's write side: control messages first (they are
// small and some, like requests, keep the peer busy), then upload blocks.
func (pc *peerConn) writeLoop() {
	t := pc.t
	defer t.wg.Done()
	defer close(pc.writerDone)
	defer pc.nc.Close()
	w := bufio.NewWriterSize(pc.nc, 256<<10)
	var enc []byte
	block := make([]byte, maxRequestLength)
	var msgs []wire.Message
	var ups []picker.Block
	writeQueued := func() error {
		pc.wmu.Lock()
		msgs, pc.queue = pc.queue, msgs[:0]
		pc.wmu.Unlock()
		for i := range msgs {
			var err error
			enc, err = msgs[i].AppendBinary(enc[:0])
			if err == nil {
				_, err = w.Write(enc)
			}
			if err != nil {
				return err
			}
		}
		clear(msgs)
		return nil
	}
	for {
		select {
		case <-pc.drain:
			// Closing: what is queued goes out (blocks still queued do
			// not), within the write deadline Torrent.Close set.
			if writeQueued() == nil {
				w.Flush()
			}
			return
		case <-pc.wake:
		case <-pc.closing:
			return
		case <-t.ctx.Done():
			return
		}
		if err := writeQueued(); err != nil {
			return
		}
		pc.wmu.Lock()
		ups, pc.uploads = pc.uploads, ups[:0]
		pc.wmu.Unlock()
		for _, b := range ups {
			data := block[:b.Length]
			if err := t.store.ReadBlock(int(b.Piece), int64(b.Begin), data); err != nil {
				// Data we announced is gone or damaged on disk: never
				// send garbage; tell the peer no and stop offering it.
				t.log.error("read block for upload", "piece", b.Piece, "err", err)
				pc.reject(b)
				pc.inWriter.Add(-1)
				continue
			}
			m := wire.NewPiece(b.Piece, b.Begin, data)
			var err error
			enc, err = m.AppendHeader(enc[:0])
			if err == nil {
				_, err = w.Write(enc)
			}
			if err == nil {
				_, err = w.Write(data)
			}
			pc.inWriter.Add(-1)
			if err != nil {
				return
			}
			pc.up.Add(len(data))
			t.upMeter.Add(len(data))
			if t.pay != nil {
				t.pay.Uploaded(pc, len(data))
			}
		}
		if len(ups) > 0 {
			t.writerFreed(pc)
		}
		if err := w.Flush(); err != nil {
			return
		}
		pc.lastSentNano.Store(time.Now().UnixNano())
	}
}
