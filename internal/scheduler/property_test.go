package scheduler

import (
	"math/rand/v2"
	"testing"
	"time"
)

// Property: over a long simulated run with random arrivals, request bursts,
// departures and heavy paying competitors, no peer holding a reservation
// receives less than its reserved rate while it is backlogged.
//
// Precisely: for every interval [a, b] inside a period in which the peer
// has requests queued, bytes sent to it in that interval are at least
// R·(b−a) − slack. The slack is one of the peer's own blocks (service comes
// in blocks) plus the non-preemption delay: a block already on the wire,
// and one block of each other reservation that is equally behind, may go
// before it, each taking at most MaxRequestLength/Capacity seconds.
func TestPropertyReservationsHonouredWhileBacklogged(t *testing.T) {
	for seed := uint64(1); seed <= 8; seed++ {
		t.Run("", func(t *testing.T) { runReservationProperty(t, seed, false) })
		// Competitors whose connections are often full exercise parking.
		t.Run("flaky competitors", func(t *testing.T) { runReservationProperty(t, seed, true) })
	}
}

func runReservationProperty(t *testing.T, seed uint64, flaky bool) {
	rng := rand.New(rand.NewPCG(seed, 7))
	const (
		capacity = 20 * MiB
		maxBlock = 128 * KiB
		duration = 60 * time.Second
	)
	s := mustNew(t, Config{Capacity: capacity, MaxRequestLength: maxBlock})

	type track struct {
		rate       int64
		block      uint32
		backlogged bool
		sent       int64 // bytes since the period began
		start      time.Time
		peak       float64 // max of sent−rate·(t−start) just after a send
		worst      float64 // worst shortfall seen
	}
	reserved := map[PeerID]*track{}
	var ids []PeerID // reserved peers in a fixed order, for reproducible runs
	const nReserved = 6
	var sum int64
	for id := PeerID(1); id <= nReserved; id++ {
		rate := int64(256*KiB + rng.IntN(2*MiB))
		if sum+rate > capacity*8/10 {
			break
		}
		sum += rate
		_ = s.SetPeer(id, Terms{Weight: int64(rng.IntN(3))})
		if got, err := s.Reserve(id, rate, t0, t0.Add(10*time.Second)); err != nil || got != rate {
			t.Fatalf("Reserve: %d, %v", got, err)
		}
		blocks := []uint32{16 * KiB, 16 * KiB, 32 * KiB, maxBlock}
		reserved[id] = &track{rate: rate, block: blocks[rng.IntN(len(blocks))]}
		ids = append(ids, id)
	}
	// Competitors: heavy payers always backlogged with maximal blocks, and
	// free and cheap peers that come and go.
	for id := PeerID(100); id < 104; id++ {
		_ = s.SetPeer(id, Terms{Weight: 1000})
	}
	for id := PeerID(200); id < 230; id++ {
		_ = s.SetPeer(id, Terms{Weight: int64(rng.IntN(2))})
	}

	now := t0
	seq := uint32(0)
	enqueue := func(id PeerID, n int, block uint32) {
		for range n {
			seq++
			_ = s.Enqueue(id, Request{Piece: seq, Length: block})
		}
	}
	shortfall := func(tr *track, at time.Time) float64 {
		owed := float64(tr.rate) * at.Sub(tr.start).Seconds()
		return tr.peak - (float64(tr.sent) - owed)
	}
	nextRenew := t0.Add(time.Second)
	end := t0.Add(duration)
	for now.Before(end) {
		if !now.Before(nextRenew) {
			for _, id := range ids {
				if err := s.Renew(id, now, now.Add(10*time.Second)); err != nil {
					t.Fatalf("Renew: %v", err)
				}
			}
			nextRenew = now.Add(time.Second)
		}
		// Heavy payers never run dry.
		for id := PeerID(100); id < 104; id++ {
			if s.Queued(id) < 4 {
				enqueue(id, 4, maxBlock)
			}
		}
		// Casual peers arrive in bursts and sometimes cancel everything.
		if rng.IntN(50) == 0 {
			enqueue(PeerID(200+rng.IntN(30)), 1+rng.IntN(20), 16*KiB)
		}
		// Reserved peers alternate between bursts of requests and silences
		// of about 0.3 s (far shorter than IdleRelease, so they keep their
		// reservations).
		for _, id := range ids {
			tr := reserved[id]
			if s.Queued(id) == 0 && rng.IntN(50) == 0 {
				enqueue(id, 1+rng.IntN(40), tr.block)
			} else if s.Queued(id) > 0 && s.Queued(id) < 8 && rng.IntN(3) == 0 {
				enqueue(id, 1+rng.IntN(4), tr.block)
			}
			if !tr.backlogged && s.Queued(id) > 0 {
				*tr = track{rate: tr.rate, block: tr.block, backlogged: true, start: now, worst: tr.worst}
			}
			if tr.backlogged {
				tr.worst = max(tr.worst, shortfall(tr, now))
			}
		}

		ready := always
		if flaky {
			ready = func(id PeerID) bool { return reserved[id] != nil || rng.IntN(2) == 0 }
		}
		id, r, ok := s.Next(now, ready)
		if !ok {
			now = now.Add(time.Millisecond)
			continue
		}
		if tr := reserved[id]; tr != nil {
			tr.sent += int64(r.Length)
			owed := float64(tr.rate) * now.Sub(tr.start).Seconds()
			tr.peak = max(tr.peak, float64(tr.sent)-owed)
			if s.Queued(id) == 0 {
				tr.backlogged = false
			}
		}
		now = now.Add(time.Duration(int64(r.Length) * int64(time.Second) / capacity))
	}
	for _, id := range ids {
		tr := reserved[id]
		delay := float64(len(reserved)+1) * maxBlock / capacity // seconds
		slack := float64(tr.block) + float64(tr.rate)*delay
		if tr.worst > slack {
			t.Errorf("seed %d: peer %d reserved %d B/s fell %.0f bytes behind, allowed %.0f", seed, id, tr.rate, tr.worst, slack)
		} else {
			t.Logf("seed %d: peer %d reserved %d B/s (blocks %d): worst shortfall %.0f of %.0f allowed", seed, id, tr.rate, tr.block, tr.worst, slack)
		}
	}
}
