package engine

import (
	"errors"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/choker"
	"github.com/floodgate-p2p/floodgate/internal/picker"
	"github.com/floodgate-p2p/floodgate/internal/scheduler"
	"github.com/floodgate-p2p/floodgate/internal/wire"
)

// newUploadPolicy builds the session's choker and upload scheduler. The
// capacity is the client's upload limit; unlimited uploaders unchoke every
// interested peer (a CDN seeder serves all) and simply round-robin blocks.
func newUploadPolicy(c *Client, seed uint64) (*choker.Choker, *scheduler.Scheduler, error) {
	ccfg := choker.DefaultConfig()
	ccfg.Limited = c.upLimited()
	ch, err := choker.New(ccfg, newRand(seed))
	if err != nil {
		return nil, nil, err
	}
	sc, err := scheduler.New(scheduler.Config{
		Capacity:         c.cfg.UploadLimit,
		MaxQueuePerPeer:  maxQueuedUploads,
		MaxRequestLength: maxRequestLength,
	})
	if err != nil {
		return nil, nil, err
	}
	return ch, sc, nil
}

func toRequest(b picker.Block) scheduler.Request {
	return scheduler.Request{Piece: b.Piece, Begin: b.Begin, Length: b.Length}
}

// enqueueUpload queues a peer's request; t.mu is held.
func (t *Torrent) enqueueUpload(pc *peerConn, b picker.Block) error {
	err := t.sched.Enqueue(scheduler.PeerID(pc.id), toRequest(b))
	if errors.Is(err, scheduler.ErrQueueFull) {
		return errQueueFull
	}
	return err
}

var errQueueFull = errors.New("upload queue full")

// recheckHeld is how often an idle uploader re-asks whether held peers may
// be served: credit can free up without a payment from that peer (another
// account is cut off and its debt leaves the shared exposure cap).
const recheckHeld = 250 * time.Millisecond

// writerFreed records that pc's writer has room again: the scheduler sets
// aside peers whose connection is full until told so.
func (t *Torrent) writerFreed(pc *peerConn) {
	t.freedMu.Lock()
	t.freed = append(t.freed, pc.id)
	t.freedMu.Unlock()
	t.wakeUploader()
}

// wakeUploader tells the upload loop that a request or writer slot is new.
func (t *Torrent) wakeUploader() {
	select {
	case t.uploadWake <- struct{}{}:
	default:
	}
}

func (c *Client) upLimited() bool { return c.upLimit != nil }

// uploadLoop hands requested blocks to connection writers in the order the
// scheduler chooses, at the rate the upload limit allows.
func (t *Torrent) uploadLoop() {
	defer t.wg.Done()
	ready := func(id scheduler.PeerID) bool {
		pc := t.byConnID[uint64(id)]
		if pc == nil || pc.inWriter.Load() >= writerBacklog {
			return false
		}
		// A peer whose last Charge was refused waits until the plug-in
		// says it may be served: when it pays (Wake), or when credit
		// frees up otherwise (the scheduler asks parked peers again
		// every millisecond). Asking the plug-in for peers that were not
		// refused as well cost a third of its work per block.
		return !pc.payHeld.Load() || t.pay.Serve(pc, wire.BlockSize) == Serve
	}
	var freed []uint64
	recheck := time.NewTimer(recheckHeld)
	defer recheck.Stop()
	for {
		t.freedMu.Lock()
		freed, t.freed = t.freed, freed[:0]
		t.freedMu.Unlock()
		t.mu.Lock()
		for _, id := range freed {
			t.sched.Wake(scheduler.PeerID(id))
		}
		id, r, ok := t.sched.Next(time.Now(), ready)
		target := t.byConnID[uint64(id)]
		t.mu.Unlock()
		if !ok || target == nil {
			// Held peers (over credit, full writers) are rechecked on
			// Wake and, as a safety net, every recheckHeld.
			recheck.Reset(recheckHeld)
			select {
			case <-t.uploadWake:
			case <-recheck.C:
				t.mu.Lock()
				for id, pc := range t.byConnID {
					pc.payHeld.Store(false)
					t.sched.Wake(scheduler.PeerID(id))
				}
				t.mu.Unlock()
			case <-t.ctx.Done():
				return
			}
			continue
		}
		if t.pay != nil {
			// Held first and released on success, so that a Wake during
			// Charge (the peer just paid) is never overwritten.
			target.payHeld.Store(true)
			if !t.pay.Charge(target, int(r.Length)) {
				// Over its credit now: back to the head of its queue;
				// ready() holds the peer until it pays and Wake is called.
				t.mu.Lock()
				_ = t.sched.Return(id, r)
				t.mu.Unlock()
				continue
			}
			target.payHeld.Store(false)
		}
		if l := t.c.upLimit; l != nil {
			if err := l.WaitN(t.ctx, int(r.Length)); err != nil {
				return
			}
		}
		target.sendUpload(picker.Block{Piece: r.Piece, Begin: r.Begin, Length: r.Length})
	}
}

// rechokeSoon reacts to a change of interest: an unlimited uploader
// unchokes at once; a limited one waits for the choker's next round.
func (t *Torrent) rechokeSoon() {
	now := time.Now()
	if !t.c.upLimited() || t.choker.Due(now) || t.unchokedCount() < choker.DefaultConfig().Slots {
		// A free slot should not sit idle until the next round.
		t.rechoke(now)
	}
}

func (t *Torrent) unchokedCount() int {
	n := 0
	for pc := range t.conns {
		if !pc.amChoking && pc.peerInterested {
			n++
		}
	}
	return n
}

// rechoke asks the choker whom to serve and applies its answer; t.mu held.
func (t *Torrent) rechoke(now time.Time) {
	t.lastRechoke = now
	peers := make([]choker.Peer, 0, len(t.conns))
	for pc := range t.conns {
		peers = append(peers, choker.Peer{
			ID:           pc.id,
			Interested:   pc.peerInterested,
			Unchoked:     !pc.amChoking,
			Snubbed:      pc.snubbed,
			IsSeed:       pc.peerHas.Full(),
			DownloadRate: pc.down.Rate(),
			UploadRate:   pc.up.Rate(),
			ConnectedAt:  pc.connectedAt,
			LastUnchoked: pc.lastUnchoked,
			Eligible:     true,
		})
	}
	unchoke := make(map[uint64]bool)
	for _, id := range t.choker.Rechoke(now, peers, t.picker.Done()) {
		unchoke[id] = true
	}
	for pc := range t.conns {
		switch want := unchoke[pc.id]; {
		case want && pc.amChoking:
			pc.amChoking = false
			pc.lastUnchoked = now
			pc.send(wire.Message{ID: wire.Unchoke})
		case !want && !pc.amChoking:
			pc.amChoking = true
			// A choke discards the peer's queued requests (BEP 3).
			t.sched.RemovePeer(scheduler.PeerID(pc.id))
			_ = t.sched.SetPeer(scheduler.PeerID(pc.id), scheduler.Terms{})
			pc.send(wire.Message{ID: wire.Choke})
		}
	}
}
