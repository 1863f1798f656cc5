// Package scheduler is the upload side of every uploader (peer or origin):
// peers' block requests queue here, and the engine asks for the next block
// to send whenever it has upload budget (DESIGN §5.2).
//
// It is pure policy: state and the current time in, decisions out; no
// goroutines, sockets, sleeps or clock reads. The engine serialises calls.
//
// The order in which requests are served, in three tiers:
//
//  1. Reservations. A QoS downloader may hold a rate reservation. Each
//     reserved peer carries a virtual clock: the time up to which it has been
//     served at its reserved rate. A backlogged reserved peer whose clock is
//     at or before now is behind its guarantee and is served first, the one
//     furthest behind first; each block advances its clock by
//     length/rate. Reservations are admitted only while they sum to at most
//     ReservableShare × Capacity, so tier 1 can always be honoured, and the
//     rest of the capacity remains for everybody else.
//  2. Proportional share. What tier 1 leaves is shared among paying peers in
//     proportion to Terms.Weight (the price per MiB they pay), using
//     start-time fair queuing over bytes: a peer paying twice the price gets
//     twice the bytes while both are backlogged, whatever their block sizes.
//     Bytes sent under a reservation are not charged here, so a reserved
//     peer gets its reservation plus its paid share of the remainder.
//  3. Free peers (weight 0, e.g. plain BitTorrent clients served by a
//     --free seeder) share what is still left equally, by bytes.
//
// The scheduler is work-conserving: a tier is skipped only when it has no
// ready, backlogged peer, so a lone peer gets everything. Next accounts the
// block it returns as sent at now; the engine must send it (or remove the
// peer).
//
// Reservations do not hoard: each is capped (Config.MaxReservation and the
// rate the caller passes, normally the ticket's min_rate), lapses at its
// expiry unless renewed, and is released early when no block has been sent
// under it for Config.IdleRelease.
package scheduler

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// PeerID identifies a peer (a connection's owner) to the scheduler.
type PeerID uint64

// Request is one block request: Length bytes at offset Begin of piece Piece.
type Request struct {
	Piece, Begin, Length uint32
}

// Terms are what a peer pays for service.
type Terms struct {
	// Weight is the price per MiB the peer pays; 0 means a free or plain
	// peer, served only from what paying peers leave.
	Weight int64
}

// Config holds the scheduler's limits. Zero fields take the defaults shown.
type Config struct {
	// Capacity is the uploader's capacity in bytes/s; 0 means unknown or
	// unlimited. Reservations need a known capacity and are refused at 0.
	Capacity int64
	// ReservableShare is the fraction of Capacity that reservations may
	// take together (default 0.8). The rest keeps paid and free service
	// alive and absorbs measurement error in Capacity.
	ReservableShare float64
	// MaxQueuePerPeer caps queued requests per peer (default 512), so a
	// flooding peer costs bounded memory.
	MaxQueuePerPeer int
	// MaxRequestLength is the largest block a peer may request (default
	// 128 KiB; BEP 3 clients use 16 KiB and close on more than 128 KiB).
	MaxRequestLength uint32
	// MaxReservation caps any one reservation in bytes/s (0: only the
	// reservable share limits it).
	MaxReservation int64
	// MinReservation is the smallest partial grant worth making (default
	// 16 KiB/s); a smaller remainder is refused rather than granted.
	MinReservation int64
	// MaxTerm is how far in the future a reservation may expire (default
	// 60 s); longer expiries are shortened, so a holder must keep renewing.
	MaxTerm time.Duration
	// IdleRelease releases a reservation under which nothing was sent for
	// this long (default 5 s).
	IdleRelease time.Duration
	// MaxLag bounds the catch-up credit of a reserved peer that was
	// backlogged but not ready (default 1 s of its rate), so a stalled
	// connection cannot come back and monopolise the uploader.
	MaxLag time.Duration
	// Recheck is how often peers parked as not ready are asked again
	// (default 1 ms). Wake brings one back at once; and whenever no active
	// peer is ready, Next asks every parked peer before giving up.
	Recheck time.Duration
}

// Defaults for zero Config fields.
const (
	DefaultReservableShare  = 0.8
	DefaultMaxQueuePerPeer  = 512
	DefaultMaxRequestLength = 128 << 10
	DefaultMinReservation   = 16 << 10
	DefaultMaxTerm          = 60 * time.Second
	DefaultIdleRelease      = 5 * time.Second
	DefaultMaxLag           = time.Second
	DefaultRecheck          = time.Millisecond
)

// Errors callers react to.
var (
	// ErrUnknownPeer: the peer was never added with SetPeer, or was removed.
	ErrUnknownPeer = errors.New("scheduler: unknown peer")
	// ErrQueueFull: the peer has MaxQueuePerPeer requests queued; the engine
	// drops the request (or sends a BEP 6 reject).
	ErrQueueFull = errors.New("scheduler: request queue full")
	// ErrBadRequest: a zero-length or oversized request; the peer is broken
	// or hostile.
	ErrBadRequest = errors.New("scheduler: bad request")
	// ErrBadTerms: negative weight.
	ErrBadTerms = errors.New("scheduler: bad terms")
	// ErrBadReservation: a non-positive rate or an expiry not after now.
	ErrBadReservation = errors.New("scheduler: bad reservation")
	// ErrNoCapacity: the reservable share is used up (or capacity unknown).
	ErrNoCapacity = errors.New("scheduler: no reservable capacity")
	// ErrNoReservation: Renew for a peer that holds no reservation (it
	// lapsed or was never granted); the caller must Reserve again.
	ErrNoReservation = errors.New("scheduler: no reservation")
	// ErrBadConfig: New was given limits it cannot honour.
	ErrBadConfig = errors.New("scheduler: invalid config")
)

// Scheduler orders one uploader's outgoing blocks. It is not safe for
// concurrent use.
type Scheduler struct {
	cfg        Config
	reservable int64 // ReservableShare × Capacity, bytes/s
	reserved   int64 // sum of granted rates

	peers map[PeerID]*peer

	res  peerHeap // tier 1: backlogged reserved peers by virtual clock
	paid fairQueue
	free fairQueue

	holders   []*peer // every peer holding a reservation, for sweeps
	nextSweep int64   // no reservation lapses before this (ns)
	lapsed    []PeerID

	clock int64 // latest now seen (ns); time never runs backwards here

	// Backlogged peers whose connection could not take more when last
	// asked. They sit outside the tiers, so an uploader with many slow
	// connections does not re-examine them on every Next.
	parked      []*peer
	nextRecheck int64
}

// New returns an empty scheduler.
func New(cfg Config) (*Scheduler, error) {
	if cfg.ReservableShare == 0 {
		cfg.ReservableShare = DefaultReservableShare
	}
	if cfg.MaxQueuePerPeer == 0 {
		cfg.MaxQueuePerPeer = DefaultMaxQueuePerPeer
	}
	if cfg.MaxRequestLength == 0 {
		cfg.MaxRequestLength = DefaultMaxRequestLength
	}
	if cfg.MinReservation == 0 {
		cfg.MinReservation = DefaultMinReservation
	}
	if cfg.MaxTerm == 0 {
		cfg.MaxTerm = DefaultMaxTerm
	}
	if cfg.IdleRelease == 0 {
		cfg.IdleRelease = DefaultIdleRelease
	}
	if cfg.MaxLag == 0 {
		cfg.MaxLag = DefaultMaxLag
	}
	if cfg.Recheck == 0 {
		cfg.Recheck = DefaultRecheck
	}
	switch {
	case cfg.Capacity < 0:
		return nil, fmt.Errorf("%w: negative capacity %d", ErrBadConfig, cfg.Capacity)
	case !(cfg.ReservableShare > 0 && cfg.ReservableShare <= 1):
		return nil, fmt.Errorf("%w: reservable share %v not in (0, 1]", ErrBadConfig, cfg.ReservableShare)
	case cfg.MaxQueuePerPeer < 0:
		return nil, fmt.Errorf("%w: negative queue cap %d", ErrBadConfig, cfg.MaxQueuePerPeer)
	case cfg.MaxReservation < 0 || cfg.MinReservation < 0:
		return nil, fmt.Errorf("%w: negative reservation bound", ErrBadConfig)
	case cfg.MaxTerm < 0 || cfg.IdleRelease < 0 || cfg.MaxLag < 0 || cfg.Recheck < 0:
		return nil, fmt.Errorf("%w: negative duration", ErrBadConfig)
	}
	s := &Scheduler{
		cfg:        cfg,
		reservable: int64(float64(cfg.Capacity) * cfg.ReservableShare),
		peers:      make(map[PeerID]*peer),
		nextSweep:  math.MaxInt64,
	}
	s.res.less = func(a, b *peer) bool {
		if a.vt != b.vt {
			return a.vt < b.vt
		}
		return a.id < b.id
	}
	s.res.index = func(p *peer) *int { return &p.resIdx }
	s.paid.init()
	s.free.init()
	// A stalled fair-queued peer may catch up by at most two maximal blocks.
	s.paid.lagBytes = 2 * uint64(cfg.MaxRequestLength)
	s.free.lagBytes = 2 * uint64(cfg.MaxRequestLength)
	return s, nil
}

// peer is the scheduler's state for one peer.
type peer struct {
	id     PeerID
	weight int64
	q      ring
	sent   int64

	// Reservation; rate 0 means none.
	rate     int64
	expiry   int64 // ns
	lastUsed int64 // ns: last send under the reservation, or its grant
	vt       int64 // ns: virtual clock, served at rate up to here
	resIdx   int   // index in Scheduler.res, -1 if absent
	holdIdx  int   // index in Scheduler.holders, -1 if absent
	parkIdx  int   // index in Scheduler.parked, -1 if active or idle

	fair fairState
}

// fairQueueOf returns the fair-queuing tier the peer belongs to.
func (s *Scheduler) fairQueueOf(p *peer) *fairQueue {
	if p.weight > 0 {
		return &s.paid
	}
	return &s.free
}

// now converts t to the scheduler's monotonic nanosecond clock.
func (s *Scheduler) now(t time.Time) int64 {
	n := t.UnixNano()
	if n > s.clock {
		s.clock = n
	}
	return s.clock
}

// SetPeer adds a peer or changes its terms. A changed weight takes effect
// from the peer's next block.
func (s *Scheduler) SetPeer(id PeerID, t Terms) error {
	if t.Weight < 0 {
		return fmt.Errorf("%w: negative weight %d for peer %d", ErrBadTerms, t.Weight, id)
	}
	p := s.peers[id]
	if p == nil {
		p = &peer{id: id, weight: t.Weight, resIdx: -1, holdIdx: -1, parkIdx: -1}
		p.fair.idx = -1
		s.peers[id] = p
		return nil
	}
	if p.weight == t.Weight {
		return nil
	}
	active := p.fair.idx >= 0
	if active {
		s.fairQueueOf(p).remove(p)
	}
	moved := (p.weight > 0) != (t.Weight > 0)
	p.weight = t.Weight
	if moved {
		// Tags from the other tier mean nothing in this one: start afresh.
		fq := s.fairQueueOf(p)
		p.fair.start, p.fair.finish, p.fair.epoch = fq.v, 0, fq.epoch
	}
	if active {
		s.fairQueueOf(p).resume(p)
	}
	return nil
}

// RemovePeer forgets a peer: its queue and its reservation are dropped. The
// release is not reported by Expire, since the caller knows.
func (s *Scheduler) RemovePeer(id PeerID) {
	p := s.peers[id]
	if p == nil {
		return
	}
	s.deactivate(p)
	s.dropReservation(p)
	delete(s.peers, id)
}

// Enqueue queues a request from a peer. A request already queued is ignored
// (nil error). ErrQueueFull means the engine should drop or reject it.
func (s *Scheduler) Enqueue(id PeerID, r Request) error {
	p := s.peers[id]
	if p == nil {
		return fmt.Errorf("%w: %d", ErrUnknownPeer, id)
	}
	if r.Length == 0 || r.Length > s.cfg.MaxRequestLength {
		return fmt.Errorf("%w: length %d (max %d) from peer %d", ErrBadRequest, r.Length, s.cfg.MaxRequestLength, id)
	}
	// A duplicate is ignored (see ring.contains for how it is found).
	if p.q.contains(r) {
		return nil
	}
	if p.q.len() >= s.cfg.MaxQueuePerPeer {
		return fmt.Errorf("%w: peer %d has %d requests queued", ErrQueueFull, id, p.q.len())
	}
	p.q.push(r)
	if p.q.len() == 1 {
		s.activate(p)
	}
	return nil
}

// Return puts back a request Next handed out and the caller could not send
// after all (the peer may not have it yet): at the head of the peer's
// queue, so its requests still go out in the order they came (pieces are
// completed, and paid for, in order). It is not a new request: the queue
// cap does not apply, and a copy already queued is left as it is.
func (s *Scheduler) Return(id PeerID, r Request) error {
	p := s.peers[id]
	if p == nil {
		return fmt.Errorf("%w: %d", ErrUnknownPeer, id)
	}
	if p.q.contains(r) {
		return nil
	}
	p.q.pushFront(r)
	if p.q.len() == 1 {
		s.activate(p)
	}
	return nil
}

// Cancel removes a queued request (a BEP 3 cancel) and reports whether it
// was queued.
func (s *Scheduler) Cancel(id PeerID, r Request) bool {
	p := s.peers[id]
	if p == nil {
		return false
	}
	if !p.q.remove(r) {
		return false
	}
	if p.q.len() == 0 {
		s.deactivate(p)
	}
	return true
}

// Queued returns how many requests the peer has queued (0 if unknown).
func (s *Scheduler) Queued(id PeerID) int {
	if p := s.peers[id]; p != nil {
		return p.q.len()
	}
	return 0
}

// Sent returns the payload bytes handed out for the peer by Next since it
// was added (0 if unknown).
func (s *Scheduler) Sent(id PeerID) int64 {
	if p := s.peers[id]; p != nil {
		return p.sent
	}
	return 0
}

// activate enters a newly backlogged peer into its tiers.
func (s *Scheduler) activate(p *peer) {
	if p.rate > 0 {
		// No credit for the time it had nothing to ask for.
		p.vt = max(p.vt, s.clock)
		s.res.push(p)
	}
	s.fairQueueOf(p).activate(p)
}

// deactivate takes a peer out of every tier and out of the parked list
// (its queue emptied or it left).
func (s *Scheduler) deactivate(p *peer) {
	if p.resIdx >= 0 {
		s.res.remove(p)
	}
	if p.fair.idx >= 0 {
		s.fairQueueOf(p).remove(p)
	}
	if p.parkIdx >= 0 {
		last := len(s.parked) - 1
		moved := s.parked[last]
		s.parked[p.parkIdx] = moved
		moved.parkIdx = p.parkIdx
		s.parked[last] = nil
		s.parked = s.parked[:last]
		p.parkIdx = -1
	}
}

// park moves a backlogged peer that is not ready out of the tiers.
func (s *Scheduler) park(p *peer) {
	s.deactivate(p)
	if len(s.parked) == 0 {
		s.nextRecheck = s.clock + int64(s.cfg.Recheck)
	}
	p.parkIdx = len(s.parked)
	s.parked = append(s.parked, p)
}

// unpark returns a parked peer to its tiers in the place it left: its
// virtual clock and fair tag are kept, and the lag bounds applied when it is
// next served stop it from cashing in the whole time it was away.
func (s *Scheduler) unpark(p *peer) {
	s.deactivate(p)
	if p.rate > 0 {
		s.res.push(p)
	}
	s.fairQueueOf(p).resume(p)
}

// Wake tells the scheduler that peer id's connection can take data again,
// so it competes from the next call on instead of waiting for the next
// recheck. Calling it for a peer that is not parked does nothing.
func (s *Scheduler) Wake(id PeerID) {
	if p := s.peers[id]; p != nil && p.parkIdx >= 0 {
		s.unpark(p)
	}
}

// recheck unparks every parked peer that is ready now and reports whether
// any was.
func (s *Scheduler) recheck(ready func(PeerID) bool) bool {
	woke := false
	for i := 0; i < len(s.parked); {
		if p := s.parked[i]; ready(p.id) {
			s.unpark(p) // moves the last parked peer into slot i
			woke = true
			continue
		}
		i++
	}
	return woke
}

// Next returns the next block to send among peers for which ready reports
// true (their connection can take more), and accounts it as sent at now.
// ok is false when no peer with requests queued is ready.
//
// A peer found not ready is parked: taken out of the tiers and asked again
// every Config.Recheck, on Wake, or when nobody else is ready. So Next costs
// O(log n), plus O(log n) once per not-ready episode of a peer, plus one
// ready call per parked peer per Recheck interval; an uploader with
// hundreds of stalled connections does not pay for them on every block.
// Parking never idles the uploader: Next returns false only after every
// parked peer has been asked.
func (s *Scheduler) Next(now time.Time, ready func(PeerID) bool) (PeerID, Request, bool) {
	t := s.now(now)
	s.sweep(t)
	if len(s.parked) > 0 && t >= s.nextRecheck {
		s.recheck(ready)
		s.nextRecheck = t + int64(s.cfg.Recheck)
	}
	// Two passes at most: if the active peers are all unready, the parked
	// ones are asked once more, so a ready peer is never left waiting while
	// the uploader idles.
	for pass := 0; pass < 2; pass++ {
		if p := s.pickReserved(t, ready); p != nil {
			return s.serve(p, t, false)
		}
		if p := s.pickFair(&s.paid, ready); p != nil {
			return s.serve(p, t, true)
		}
		if p := s.pickFair(&s.free, ready); p != nil {
			return s.serve(p, t, true)
		}
		if len(s.parked) == 0 || !s.recheck(ready) {
			break
		}
	}
	return 0, Request{}, false
}

// pickReserved returns the ready reserved peer furthest behind its
// guarantee, or nil if no ready peer is behind.
func (s *Scheduler) pickReserved(t int64, ready func(PeerID) bool) *peer {
	for s.res.len() > 0 {
		p := s.res.items[0]
		if p.vt > t {
			return nil // the furthest behind is ahead: nobody is owed service
		}
		if ready(p.id) {
			return p
		}
		s.park(p)
	}
	return nil
}

// pickFair returns the ready peer of a fair tier with the smallest start
// tag, or nil.
func (s *Scheduler) pickFair(f *fairQueue, ready func(PeerID) bool) *peer {
	for f.h.len() > 0 {
		p := f.h.items[0]
		if ready(p.id) {
			return p
		}
		s.park(p)
	}
	return nil
}

// serve pops p's head request and charges it to the tier that chose it.
func (s *Scheduler) serve(p *peer, t int64, fair bool) (PeerID, Request, bool) {
	r := p.q.pop()
	p.sent += int64(r.Length)
	if p.rate > 0 {
		// Credit is bounded: a peer that could not take data for a while
		// catches up by at most MaxLag of its rate.
		if floor := t - int64(s.cfg.MaxLag); p.vt < floor {
			p.vt = floor
		}
		if !fair {
			p.vt += int64(r.Length) * int64(time.Second) / p.rate
		}
		p.lastUsed = t
	}
	if fair {
		s.fairQueueOf(p).charge(p, r.Length)
	}
	if p.q.len() == 0 {
		s.deactivate(p)
	} else if p.resIdx >= 0 {
		s.res.fix(p)
	}
	return p.id, r, true
}
