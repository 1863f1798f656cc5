package engine

import (
	"context"
	"crypto/sha1"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/bitfield"
	"github.com/floodgate-p2p/floodgate/internal/choker"
	"github.com/floodgate-p2p/floodgate/internal/metainfo"
	"github.com/floodgate-p2p/floodgate/internal/picker"
	"github.com/floodgate-p2p/floodgate/internal/scheduler"
	"github.com/floodgate-p2p/floodgate/internal/wire"
)

// Storage is what a torrent session needs from piece storage. The engine
// assembles and verifies pieces in memory and writes only verified ones.
type Storage interface {
	// ReadBlock fills p from piece at offset begin; it fails (rather than
	// returning garbage) when the data on disk is missing or short.
	ReadBlock(piece int, begin int64, p []byte) error
	// WritePiece stores a whole verified piece.
	WritePiece(piece int, data []byte) error
}

// TorrentOptions tune one torrent session.
type TorrentOptions struct {
	// Have lists the pieces already verified on disk (from a resume
	// check); nil means none.
	Have *bitfield.Bitfield
	// Payments, if set, makes the session a paid one (the Floodgate
	// extension); nil serves and downloads for free like any client.
	Payments Payments
}

// Stats is a snapshot of a torrent's progress.
type Stats struct {
	Pieces, HavePieces int
	Length, Left       int64
	Downloaded         int64 // verified payload bytes received
	Uploaded           int64 // payload bytes sent
	Wasted             int64 // bytes received that were duplicates or failed verification
	DownloadRate       int64 // bytes/s
	UploadRate         int64
	Peers              int
	Seeds              int
	HashFailures       int
	Complete           bool
}

// Torrent is one swarm session: its peers, its picker and its pieces.
type Torrent struct {
	c        *Client
	info     *metainfo.Info
	infoHash metainfo.Hash
	store    Storage
	pay      Payments
	opts     TorrentOptions
	log      logger

	ctx        context.Context
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	done       chan struct{} // closed once every piece is verified
	verify     chan verifyJob
	uploadWake chan struct{}
	freedMu    sync.Mutex
	freed      []uint64 // conns whose writer drained; see writerFreed

	mu          sync.Mutex
	picker      *picker.Picker
	conns       map[*peerConn]struct{}
	byPeerID    map[[20]byte]*peerConn
	nextConnID  uint64
	pieces      map[int]*pieceBuf
	banned      map[[20]byte]string
	strikes     map[[20]byte]int
	known       map[netip.AddrPort]time.Time // dial candidates -> earliest next attempt
	dialing     map[netip.AddrPort]bool
	byConnID    map[uint64]*peerConn
	choker      *choker.Choker
	sched       *scheduler.Scheduler
	closed      bool
	doneClosed  bool
	hashFails   int
	downMeter   meter // verified+received payload
	upMeter     meter
	wasted      meter
	left        int64
	recvFrom    map[netip.Addr]int64 // fresh payload bytes by sender IP
	onComplete  []func()
	lastRechoke time.Time
}

// pieceBuf collects the blocks of one piece until it can be verified.
type pieceBuf struct {
	data []byte
	// from records, per block, which peer sent it: on a hash failure the
	// senders are suspects, and a sole sender is certainly guilty.
	from []*peerConn
}

// verifyBacklog is how many completed pieces may wait for the hashers.
// Beyond it a connection's reader hashes its piece itself (see onPiece):
// a long queue only adds latency, and in a paid swarm each queued piece
// is a payment its uploader is still waiting for.
const verifyBacklog = 4

type verifyJob struct {
	piece int
	buf   *pieceBuf
}

// AddTorrent starts a session for mi backed by store.
func (c *Client) AddTorrent(mi *metainfo.MetaInfo, store Storage, opts TorrentOptions) (*Torrent, error) {
	info := &mi.Info
	t := &Torrent{
		c:          c,
		info:       info,
		infoHash:   mi.InfoHash,
		store:      store,
		pay:        opts.Payments,
		opts:       opts,
		log:        logger{c.log.With("torrent", mi.InfoHash.String()[:8])},
		done:       make(chan struct{}),
		verify:     make(chan verifyJob, verifyBacklog),
		uploadWake: make(chan struct{}, 1),
		conns:      make(map[*peerConn]struct{}),
		byPeerID:   make(map[[20]byte]*peerConn),
		pieces:     make(map[int]*pieceBuf),
		banned:     make(map[[20]byte]string),
		strikes:    make(map[[20]byte]int),
		known:      make(map[netip.AddrPort]time.Time),
		dialing:    make(map[netip.AddrPort]bool),
		byConnID:   make(map[uint64]*peerConn),
		recvFrom:   make(map[netip.Addr]int64),
	}
	seed := rand.Uint64()
	var err error
	if t.choker, t.sched, err = newUploadPolicy(c, seed); err != nil {
		return nil, err
	}
	t.picker = picker.New(picker.Config{
		NumPieces:   info.NumPieces(),
		PieceLength: info.PieceLength,
		TotalLength: info.TotalLength(),
	}, newRand(seed))
	t.left = info.TotalLength()
	if opts.Have != nil {
		for i := 0; i < info.NumPieces(); i++ {
			if opts.Have.Has(i) {
				t.picker.SetHave(i)
				t.left -= info.PieceSize(i)
			}
		}
	}
	if t.picker.Done() {
		close(t.done)
		t.doneClosed = true
	}
	c.mu.Lock()
	if _, dup := c.torrents[t.infoHash]; dup {
		c.mu.Unlock()
		return nil, fmt.Errorf("engine: torrent %s already added", t.infoHash)
	}
	c.torrents[t.infoHash] = t
	c.mu.Unlock()
	t.ctx, t.cancel = context.WithCancel(c.ctx)
	workers := max(1, runtime.GOMAXPROCS(0))
	t.wg.Add(workers + 2)
	for range workers {
		go t.verifyLoop()
	}
	go t.uploadLoop()
	go t.tickLoop()
	return t, nil
}

// InfoHash identifies the torrent.
func (t *Torrent) InfoHash() metainfo.Hash { return t.infoHash }

// Done is closed when every piece is verified and stored.
func (t *Torrent) Done() <-chan struct{} { return t.done }

// OnComplete registers f to run (once, on its own goroutine) when the
// download completes; if it already has, f runs at once.
func (t *Torrent) OnComplete(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.doneClosed {
		go f()
		return
	}
	t.onComplete = append(t.onComplete, f)
}

// Bitfield is a copy of the verified pieces.
func (t *Torrent) Bitfield() bitfield.Bitfield {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.picker.Bitfield()
}

// Stats returns a snapshot of progress and rates.
func (t *Torrent) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := Stats{
		Pieces:       t.info.NumPieces(),
		HavePieces:   t.picker.HaveCount(),
		Length:       t.info.TotalLength(),
		Left:         t.left,
		Downloaded:   t.downMeter.Total(),
		Uploaded:     t.upMeter.Total(),
		Wasted:       t.wasted.Total(),
		DownloadRate: t.downMeter.Rate(),
		UploadRate:   t.upMeter.Rate(),
		Peers:        len(t.conns),
		HashFailures: t.hashFails,
		Complete:     t.doneClosed,
	}
	for pc := range t.conns {
		if pc.peerHas.Full() {
			s.Seeds++
		}
	}
	return s
}

// AddPeers offers addresses to connect to (from a tracker or the command
// line); the session dials them as connection slots allow.
func (t *Torrent) AddPeers(addrs ...netip.AddrPort) {
	t.mu.Lock()
	self := t.c.Addr()
	for _, a := range addrs {
		if !a.IsValid() || a.Port() == 0 || a == self {
			continue
		}
		if _, ok := t.known[a]; !ok {
			t.known[a] = time.Time{}
		}
	}
	t.mu.Unlock()
	t.dialMore(time.Now())
}

// Close disconnects every peer and stops the session's goroutines.
func (t *Torrent) Close() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		t.wg.Wait()
		return
	}
	t.closed = true
	conns := make([]*peerConn, 0, len(t.conns))
	for pc := range t.conns {
		conns = append(conns, pc)
	}
	t.mu.Unlock()
	// Writers send what is queued before the sockets close: a payment
	// plug-in settles its last payments right before (pay after verify),
	// and an uploader paid nothing for them would count us as owing. The
	// write deadline also frees a writer stuck sending blocks to a peer
	// that stopped reading, so the wait below ends by drainTimeout.
	until := time.Now().Add(drainTimeout)
	for _, pc := range conns {
		_ = pc.nc.SetWriteDeadline(until)
		close(pc.drain)
	}
	drained, cancel := context.WithDeadline(context.Background(), until)
	defer cancel()
	for _, pc := range conns {
		select {
		case <-pc.writerDone:
		case <-drained.Done():
		}
	}
	t.cancel()
	for _, pc := range conns {
		pc.nc.Close()
	}
	t.wg.Wait()
	t.c.mu.Lock()
	delete(t.c.torrents, t.infoHash)
	t.c.mu.Unlock()
}

// dialMore starts connections to known peers while slots are free.
func (t *Torrent) dialMore(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	seeding := t.picker.Done()
	for a, next := range t.known {
		if len(t.conns)+len(t.dialing) >= t.c.cfg.MaxPeers || len(t.dialing) >= maxHalfOpen {
			return
		}
		if t.dialing[a] || now.Before(next) || t.connectedTo(a) {
			continue
		}
		if seeding {
			continue // a seed waits for leechers to come to it
		}
		t.dialing[a] = true
		t.known[a] = now.Add(redialDelay)
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			nc, hs, err := t.c.dial(t.ctx, t, a)
			t.mu.Lock()
			delete(t.dialing, a)
			t.mu.Unlock()
			if err != nil {
				t.log.debug("dial", "addr", a, "err", err)
				return
			}
			t.addConn(nc, hs, true)
		}()
	}
}

const (
	maxHalfOpen = 16
	redialDelay = 30 * time.Second
	// drainTimeout bounds how long closing waits for writers to send
	// what is queued to peers that stopped reading.
	drainTimeout = 500 * time.Millisecond
)

func (t *Torrent) connectedTo(a netip.AddrPort) bool {
	for pc := range t.conns {
		if pc.addr == a {
			return true
		}
	}
	return false
}

// tickLoop runs the once-a-second housekeeping: rates, timeouts,
// keep-alives, rechoking and dialing.
func (t *Torrent) tickLoop() {
	defer t.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-t.ctx.Done():
			return
		case now := <-tick.C:
			t.housekeeping(now)
			t.dialMore(now)
		}
	}
}

const (
	// snubTimeout: a peer that sends none of the blocks we asked for in
	// this long is snubbed and its requests go to other peers.
	snubTimeout = 20 * time.Second
	// idleTimeout: a connection that sends nothing at all (not even a
	// keep-alive, due every two minutes) is dead.
	idleTimeout = 3 * time.Minute
	// keepAliveInterval keeps NAT mappings and peers' idle timers happy.
	keepAliveInterval = 90 * time.Second
	rechokeInterval   = 10 * time.Second
)

func (t *Torrent) housekeeping(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.downMeter.Sample()
	t.upMeter.Sample()
	var dead []*peerConn
	for pc := range t.conns {
		pc.down.Sample()
		pc.up.Sample()
		if now.Sub(pc.lastRecv()) > idleTimeout {
			dead = append(dead, pc)
			continue
		}
		if len(pc.outstanding) > 0 && now.Sub(pc.lastBlock) > snubTimeout && !pc.snubbed {
			pc.snubbed = true
			t.unrequestAll(pc)
		}
		if now.Sub(pc.lastSent()) > keepAliveInterval {
			pc.send(wire.Message{Keepalive: true})
		}
	}
	for _, pc := range dead {
		pc.nc.Close()
	}
	// Requests are normally topped up as blocks arrive; this catches
	// pipelines that went idle for any other reason.
	t.fillAll()
	if now.Sub(t.lastRechoke) >= rechokeInterval {
		t.rechoke(now)
	}
}

// verifyLoop hashes completed pieces off the connection goroutines and
// writes the good ones to storage.
func (t *Torrent) verifyLoop() {
	defer t.wg.Done()
	for {
		select {
		case <-t.ctx.Done():
			return
		case job := <-t.verify:
			t.verifyPiece(job)
		}
	}
}

func (t *Torrent) verifyPiece(job verifyJob) {
	sum := sha1.Sum(job.buf.data)
	ok := metainfo.Hash(sum) == t.info.Pieces[job.piece]
	var werr error
	if ok {
		werr = t.store.WritePiece(job.piece, job.buf.data)
	}
	if ok && werr == nil && t.pay != nil {
		// Paid for outside the torrent lock, so the payment work does not
		// hold up every reader. A payment made at once goes out before
		// the HAVEs below; one the plug-in batches still goes before a
		// "not interested" (Payments.NotInterested).
		t.pay.Verified(job.piece, contributions(job.buf))
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case !ok:
		t.hashFails++
		t.wasted.Add(len(job.buf.data))
		t.picker.PieceFailed(job.piece)
		if t.pay != nil {
			t.pay.Failed(job.piece, contributions(job.buf))
		}
		t.punish(job)
		t.fillAll()
	case werr != nil:
		// A storage failure (disk full, permissions) is ours, not the
		// peers': forget the piece and report loudly.
		t.log.error("write piece", "piece", job.piece, "err", werr)
		t.picker.PieceFailed(job.piece)
		t.c.reportStorageError(werr)
		t.fillAll()
	default:
		t.picker.SetHave(job.piece)
		t.left -= int64(len(job.buf.data))
		t.broadcastHave(job.piece)
		if t.picker.Done() && !t.doneClosed {
			t.doneClosed = true
			close(t.done)
			for _, f := range t.onComplete {
				go f()
			}
			t.onComplete = nil
		}
	}
	putPieceBuf(job.buf)
}

// punish handles a piece that failed its hash: a sole sender is banned at
// once; when several peers contributed, each gets a strike, and a peer is
// banned after maxStrikes, so one liar cannot get honest co-senders banned.
func (t *Torrent) punish(job verifyJob) {
	senders := make(map[*peerConn]bool)
	for _, pc := range job.buf.from {
		if pc != nil {
			senders[pc] = true
		}
	}
	for pc := range senders {
		t.strikes[pc.peerID]++
		if len(senders) == 1 || t.strikes[pc.peerID] >= maxStrikes {
			t.ban(pc, fmt.Sprintf("sent data for piece %d that failed its hash", job.piece))
		}
	}
}

const maxStrikes = 3

// ban disconnects a peer and refuses it from now on.
func (t *Torrent) ban(pc *peerConn, reason string) {
	t.banned[pc.peerID] = reason
	t.log.info("banned peer", "peer", pc.addr, "reason", reason)
	// Drop what it contributed to unfinished pieces: honest peers must
	// not complete (and go unpaid for) pieces that hold a liar's data.
	for i, pb := range t.pieces {
		for k, from := range pb.from {
			if from == pc {
				pb.from[k] = nil
				t.picker.Forget(t.picker.BlockAt(i, k))
			}
		}
	}
	if t.pay != nil {
		t.pay.Banned(pc, reason)
	}
	pc.nc.Close()
}

func (t *Torrent) broadcastHave(i int) {
	for pc := range t.conns {
		if !pc.peerHas.Has(i) {
			pc.send(wire.NewHave(uint32(i)))
		}
		t.updateInterest(pc)
	}
}

func (c *Client) reportStorageError(err error) {
	c.mu.Lock()
	if c.storageErr == nil {
		c.storageErr = err
	}
	c.mu.Unlock()
}

// StorageError returns the first storage failure (a full disk, say), which a
// downloader should show and stop on.
func (c *Client) StorageError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.storageErr
}

// pieceBufs recycles piece buffers: allocating megabytes per piece would
// keep the garbage collector busy at gigabit rates.
var pieceBufs sync.Pool

func getPieceBuf(size int64, blocks int) *pieceBuf {
	if v, ok := pieceBufs.Get().(*pieceBuf); ok && int64(cap(v.data)) >= size && cap(v.from) >= blocks {
		v.data = v.data[:size]
		v.from = v.from[:blocks]
		clear(v.from)
		return v
	}
	return &pieceBuf{data: make([]byte, size), from: make([]*peerConn, blocks)}
}

func putPieceBuf(b *pieceBuf) {
	clear(b.from)
	pieceBufs.Put(b)
}

// newRand seeds a PCG generator; policies get their randomness passed in.
func newRand(seed uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// ReceivedFrom returns the fresh payload bytes received from each sender
// IP address over the session's life (the emulator uses it to tell origin
// bytes from peer bytes).
func (t *Torrent) ReceivedFrom() map[netip.Addr]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[netip.Addr]int64, len(t.recvFrom))
	for a, n := range t.recvFrom {
		out[a] = n
	}
	return out
}

// bannedPeers lists the peer IDs refused for misbehaviour (for tests and
// diagnostics).
func (t *Torrent) bannedPeers() [][20]byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([][20]byte, 0, len(t.banned))
	for id := range t.banned {
		out = append(out, id)
	}
	return out
}

// fillAll tops up every connection's request pipeline; t.mu is held.
func (t *Torrent) fillAll() {
	for pc := range t.conns {
		t.fillRequests(pc)
	}
}

// contributions sums a piece's bytes by the peer that sent them.
func contributions(b *pieceBuf) []Contribution {
	var out []Contribution
	for k, pc := range b.from {
		if pc == nil {
			continue
		}
		n := min(picker.BlockSize, len(b.data)-k*picker.BlockSize)
		found := false
		for i := range out {
			if out[i].Peer == Peer(pc) {
				out[i].Bytes += n
				found = true
				break
			}
		}
		if !found {
			out = append(out, Contribution{Peer: pc, Bytes: n})
		}
	}
	return out
}
