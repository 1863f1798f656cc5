package scheduler

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

const (
	KiB = 1 << 10
	MiB = 1 << 20
)

// Over a simulated second of contention, backlogged paying peers receive
// bytes in proportion to the price they pay, whatever their block sizes.
func TestSharesConvergeToWeights(t *testing.T) {
	type p struct {
		weight int64
		block  uint32
	}
	tests := []struct {
		name  string
		peers []p
	}{
		{"twice the price, twice the share", []p{{10, 16 * KiB}, {20, 16 * KiB}}},
		{"gold, live and bronze prices", []p{{30, 16 * KiB}, {40, 16 * KiB}, {10, 16 * KiB}}},
		{"equal prices, different block sizes", []p{{5, 16 * KiB}, {5, 64 * KiB}, {5, 128 * KiB}}},
		{"a hundredfold price gap", []p{{1, 16 * KiB}, {100, 16 * KiB}}},
		{"many peers", []p{{1, 16 * KiB}, {2, 16 * KiB}, {3, 32 * KiB}, {4, 16 * KiB}, {5, 64 * KiB}, {6, 16 * KiB}, {7, 16 * KiB}, {8, 32 * KiB}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			const capacity = 50 * MiB
			m := newSim(t, mustNew(t, Config{Capacity: capacity}), capacity)
			var total int64
			for i, pp := range tc.peers {
				m.add(PeerID(i+1), pp.weight, pp.block)
				total += pp.weight
			}
			m.run(time.Second)
			var sent int64
			for _, b := range m.sent {
				sent += b
			}
			for i, pp := range tc.peers {
				want := float64(sent) * float64(pp.weight) / float64(total)
				got := float64(m.sent[PeerID(i+1)])
				// Start-time fair queuing is exact up to one maximal block
				// per peer.
				if math.Abs(got-want) > 2*128*KiB {
					t.Errorf("peer %d (weight %d): got %.0f bytes, want %.0f ± 256 KiB", i+1, pp.weight, got, want)
				}
			}
		})
	}
}

// Free peers share what paying peers leave equally by bytes, whatever their
// block sizes.
func TestFreePeersShareEquallyByBytes(t *testing.T) {
	const capacity = 20 * MiB
	m := newSim(t, mustNew(t, Config{Capacity: capacity}), capacity)
	m.add(1, 0, 16*KiB)
	m.add(2, 0, 32*KiB)
	m.add(3, 0, 128*KiB)
	m.run(time.Second)
	mean := (m.sent[1] + m.sent[2] + m.sent[3]) / 3
	for id := PeerID(1); id <= 3; id++ {
		if d := m.sent[id] - mean; d > 128*KiB || d < -128*KiB {
			t.Errorf("free peer %d got %d bytes, mean %d", id, m.sent[id], mean)
		}
	}
}

// Tier order: reservations first, then paying peers, then free peers; a
// free peer waits while anyone paying is backlogged.
func TestTierOrder(t *testing.T) {
	s := mustNew(t, Config{Capacity: 10 * MiB})
	for id, w := range map[PeerID]int64{1: 0, 2: 10, 3: 0} {
		if err := s.SetPeer(id, Terms{Weight: w}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Reserve(3, 1*MiB, t0, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	for id := PeerID(1); id <= 3; id++ {
		for i := range 2 {
			if err := s.Enqueue(id, Request{Piece: uint32(i), Length: 16 * KiB}); err != nil {
				t.Fatal(err)
			}
		}
	}
	var order []PeerID
	for {
		id, _, ok := s.Next(t0, always)
		if !ok {
			break
		}
		order = append(order, id)
	}
	// At t0 peer 3 is owed one block (its clock stands at now); after it
	// the paying peer drains, then the free peers (3 again, now as a free
	// peer past its reservation) share by round robin.
	want := []PeerID{3, 2, 2, 1, 3, 1}
	if len(order) != len(want) {
		t.Fatalf("order %v, want %v", order, want)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("order %v, want %v", order, want)
		}
	}
}

// A reservation is honoured while heavy payers saturate the uploader, and
// the reserved peer still competes for the rest with its own price.
func TestReservationsHonouredUnderContention(t *testing.T) {
	tests := []struct {
		name         string
		reservedRate int64
		weight       int64 // the reserved peer's own price
	}{
		{"free peer with a reservation", 2 * MiB, 0},
		{"cheap peer with a reservation", 4 * MiB, 1},
		{"reservation at the reservable share", 8 * MiB, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			const capacity = 10 * MiB
			m := newSim(t, mustNew(t, Config{Capacity: capacity}), capacity)
			m.add(1, tc.weight, 0)
			got, err := m.s.Reserve(1, tc.reservedRate, t0, t0.Add(time.Minute))
			if err != nil || got != tc.reservedRate {
				t.Fatalf("Reserve = %d, %v", got, err)
			}
			m.backlog[1] = 16 * KiB
			m.add(2, 1000, 128*KiB)
			m.add(3, 1000, 16*KiB)
			m.run(2 * time.Second)
			if min := 2*tc.reservedRate - 16*KiB; m.sent[1] < min {
				t.Errorf("reserved peer got %d bytes in 2 s, want at least %d", m.sent[1], min)
			}
			if m.sent[2] == 0 || m.sent[3] == 0 {
				t.Errorf("payers starved: %v", m.sent)
			}
		})
	}
}

// Work conservation: a lone peer gets everything, whatever its tier, and
// a reserved peer is not held to its reserved rate when nobody else wants
// the capacity.
func TestWorkConserving(t *testing.T) {
	for _, w := range []int64{0, 7} {
		const capacity = 10 * MiB
		m := newSim(t, mustNew(t, Config{Capacity: capacity}), capacity)
		m.add(1, w, 0)
		if _, err := m.s.Reserve(1, 1*MiB, t0, t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		m.backlog[1] = 16 * KiB
		m.run(time.Second)
		if m.sent[1] < capacity-16*KiB {
			t.Errorf("weight %d: lone peer got %d of %d bytes", w, m.sent[1], capacity)
		}
	}
}

// Unlimited capacity (0) still serves everyone in turn.
func TestUnlimitedCapacityRoundRobins(t *testing.T) {
	s := mustNew(t, Config{})
	for id := PeerID(1); id <= 3; id++ {
		if err := s.SetPeer(id, Terms{}); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if err := s.Enqueue(id, Request{Piece: uint32(i), Length: 16 * KiB}); err != nil {
				t.Fatal(err)
			}
		}
	}
	var order []PeerID
	for {
		id, _, ok := s.Next(t0, always)
		if !ok {
			break
		}
		order = append(order, id)
	}
	want := []PeerID{1, 2, 3, 1, 2, 3, 1, 2, 3}
	if len(order) != len(want) {
		t.Fatalf("order %v", order)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("order %v, want %v", order, want)
		}
	}
	if _, err := s.Reserve(1, MiB, t0, t0.Add(time.Minute)); !errors.Is(err, ErrNoCapacity) {
		t.Errorf("Reserve with unknown capacity: %v, want ErrNoCapacity", err)
	}
	if s.Unreserved() != 0 {
		t.Errorf("Unreserved = %d with unknown capacity", s.Unreserved())
	}
}

// Requests of one peer are served in the order they arrived.
func TestFIFOPerPeer(t *testing.T) {
	s := mustNew(t, Config{Capacity: MiB})
	_ = s.SetPeer(1, Terms{Weight: 3})
	for i := range 10 {
		_ = s.Enqueue(1, Request{Piece: 9, Begin: uint32(i) * 16 * KiB, Length: 16 * KiB})
	}
	for i := range 10 {
		_, r, ok := s.Next(t0, always)
		if !ok || r.Begin != uint32(i)*16*KiB {
			t.Fatalf("block %d: got %+v, %v", i, r, ok)
		}
	}
}

// Peers whose connection cannot take more are skipped without losing their
// place, and cannot come back with a burst of everything they missed.
func TestReadyFilter(t *testing.T) {
	const capacity = 10 * MiB
	m := newSim(t, mustNew(t, Config{Capacity: capacity}), capacity)
	m.add(1, 1, 16*KiB)
	m.add(2, 1, 16*KiB)
	blocked := true
	m.ready = func(id PeerID) bool { return id != 1 || !blocked }
	m.run(500 * time.Millisecond)
	if m.sent[1] != 0 {
		t.Fatalf("unready peer was served %d bytes", m.sent[1])
	}
	blocked = false
	// Right after unblocking, peer 1 may catch up by at most the lag bound
	// (two maximal blocks), plus the block peer 2 is ahead of virtual time
	// and a tie, before it alternates with peer 2 again.
	var run int
	for range 20 {
		m.topUp()
		id, r, ok := m.s.Next(m.now, m.ready)
		if !ok {
			t.Fatal("nothing to send")
		}
		m.sent[id] += int64(r.Length)
		if id != 1 {
			break
		}
		run++
	}
	if max := 2*128*KiB/(16*KiB) + 2; run > max {
		t.Errorf("returning peer got %d blocks in a row, want at most %d", run, max)
	}
	if _, _, ok := m.s.Next(m.now, func(PeerID) bool { return false }); ok {
		t.Error("Next returned a block although no peer is ready")
	}
}

func TestQueueLimitsAndValidation(t *testing.T) {
	s := mustNew(t, Config{Capacity: MiB, MaxQueuePerPeer: 3, MaxRequestLength: 32 * KiB})
	if err := s.Enqueue(1, Request{Length: 1}); !errors.Is(err, ErrUnknownPeer) {
		t.Errorf("enqueue for unknown peer: %v", err)
	}
	_ = s.SetPeer(1, Terms{})
	tests := []struct {
		name string
		r    Request
		want error
	}{
		{"first", Request{Piece: 1, Length: 16 * KiB}, nil},
		{"zero length", Request{Piece: 2}, ErrBadRequest},
		{"oversized", Request{Piece: 2, Length: 32*KiB + 1}, ErrBadRequest},
		{"largest allowed", Request{Piece: 2, Length: 32 * KiB}, nil},
		{"duplicate is ignored", Request{Piece: 1, Length: 16 * KiB}, nil},
		{"third", Request{Piece: 3, Length: 16 * KiB}, nil},
		{"over the cap", Request{Piece: 4, Length: 16 * KiB}, ErrQueueFull},
		{"duplicate at the cap is still ignored", Request{Piece: 3, Length: 16 * KiB}, nil},
	}
	for _, tc := range tests {
		if err := s.Enqueue(1, tc.r); !errors.Is(err, tc.want) {
			t.Errorf("%s: Enqueue = %v, want %v", tc.name, err, tc.want)
		}
	}
	if q := s.Queued(1); q != 3 {
		t.Errorf("Queued = %d, want 3", q)
	}
	if err := s.SetPeer(2, Terms{Weight: -1}); !errors.Is(err, ErrBadTerms) {
		t.Errorf("negative weight: %v", err)
	}
}

func TestCancel(t *testing.T) {
	s := mustNew(t, Config{Capacity: MiB})
	_ = s.SetPeer(1, Terms{Weight: 1})
	a := Request{Piece: 1, Length: 16 * KiB}
	b := Request{Piece: 2, Length: 16 * KiB}
	_ = s.Enqueue(1, a)
	_ = s.Enqueue(1, b)
	if !s.Cancel(1, a) {
		t.Fatal("Cancel of a queued request = false")
	}
	if s.Cancel(1, a) || s.Cancel(1, Request{Piece: 9, Length: 1}) || s.Cancel(7, b) {
		t.Fatal("Cancel of something not queued = true")
	}
	if _, r, ok := s.Next(t0, always); !ok || r != b {
		t.Fatalf("Next = %+v, %v; want %+v", r, ok, b)
	}
	// Cancelling the last request takes the peer out of the running.
	_ = s.Enqueue(1, a)
	s.Cancel(1, a)
	if _, _, ok := s.Next(t0, always); ok {
		t.Fatal("Next served a cancelled request")
	}
	// A cancelled request may be asked for again.
	if err := s.Enqueue(1, a); err != nil || s.Queued(1) != 1 {
		t.Fatalf("re-enqueue after cancel: %v, queued %d", err, s.Queued(1))
	}
}

func TestRemovePeer(t *testing.T) {
	s := mustNew(t, Config{Capacity: 10 * MiB})
	_ = s.SetPeer(1, Terms{Weight: 1})
	_ = s.SetPeer(2, Terms{})
	if _, err := s.Reserve(1, 2*MiB, t0, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	_ = s.Enqueue(1, Request{Length: 16 * KiB})
	_ = s.Enqueue(2, Request{Length: 16 * KiB})
	s.RemovePeer(1)
	s.RemovePeer(1) // idempotent
	if s.Reserved() != 0 || s.Unreserved() != 8*MiB {
		t.Errorf("after removal Reserved = %d, Unreserved = %d", s.Reserved(), s.Unreserved())
	}
	if s.Queued(1) != 0 {
		t.Error("removed peer still has requests")
	}
	if id, _, ok := s.Next(t0, always); !ok || id != 2 {
		t.Errorf("Next = %d, %v; want peer 2", id, ok)
	}
	if _, _, ok := s.Next(t0, always); ok {
		t.Error("removed peer's request was served")
	}
	if err := s.Enqueue(1, Request{Length: 1}); !errors.Is(err, ErrUnknownPeer) {
		t.Errorf("enqueue after removal: %v", err)
	}
	if lapsed := s.Expire(t0.Add(time.Hour), nil); len(lapsed) != 0 {
		t.Errorf("removal reported as lapse: %v", lapsed)
	}
}

// Changing a peer's price moves it between tiers at once.
func TestSetPeerChangesTier(t *testing.T) {
	s := mustNew(t, Config{Capacity: MiB})
	_ = s.SetPeer(1, Terms{})
	_ = s.SetPeer(2, Terms{Weight: 1})
	_ = s.Enqueue(1, Request{Piece: 1, Length: 16 * KiB})
	_ = s.Enqueue(1, Request{Piece: 2, Length: 16 * KiB})
	_ = s.Enqueue(2, Request{Piece: 1, Length: 16 * KiB})
	_ = s.Enqueue(2, Request{Piece: 2, Length: 16 * KiB})
	if id, _, _ := s.Next(t0, always); id != 2 {
		t.Fatalf("paying peer not first: %d", id)
	}
	_ = s.SetPeer(2, Terms{})          // stops paying
	_ = s.SetPeer(1, Terms{Weight: 5}) // starts paying
	if id, _, _ := s.Next(t0, always); id != 1 {
		t.Fatalf("after price change got peer %d, want 1", id)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Capacity: -1},
		{ReservableShare: 1.5},
		{ReservableShare: -0.1},
		{ReservableShare: math.NaN()},
		{MaxQueuePerPeer: -1},
		{MaxReservation: -1},
		{IdleRelease: -time.Second},
	} {
		if _, err := New(cfg); !errors.Is(err, ErrBadConfig) {
			t.Errorf("New(%+v) = %v, want ErrBadConfig", cfg, err)
		}
	}
}

// Peers whose connection is full are parked and asked again later; Wake
// brings one back at once, and Next never reports "nothing to send" while
// a parked peer is ready.
func TestParking(t *testing.T) {
	s := mustNew(t, Config{Capacity: 10 * MiB, Recheck: 10 * time.Millisecond})
	_ = s.SetPeer(1, Terms{Weight: 1})
	_ = s.SetPeer(2, Terms{Weight: 1})
	for i := range 10 {
		_ = s.Enqueue(1, Request{Piece: uint32(i), Length: 16 * KiB})
		_ = s.Enqueue(2, Request{Piece: uint32(i), Length: 16 * KiB})
	}
	asked := map[PeerID]int{}
	full := map[PeerID]bool{1: true}
	ready := func(id PeerID) bool { asked[id]++; return !full[id] }

	if id, _, _ := s.Next(t0, ready); id != 2 {
		t.Fatalf("got peer %d, want 2", id)
	}
	// Peer 1 is parked: not asked again before the recheck interval.
	asked[1] = 0
	for range 3 {
		if id, _, _ := s.Next(t0.Add(time.Millisecond), ready); id != 2 {
			t.Fatalf("got peer %d, want 2", id)
		}
	}
	if asked[1] != 0 {
		t.Errorf("parked peer asked %d times before the recheck", asked[1])
	}
	// At the recheck it is asked, and served once ready.
	full[1] = false
	if id, _, _ := s.Next(t0.Add(10*time.Millisecond), ready); id != 1 {
		t.Errorf("after recheck got peer %d, want 1", id)
	}
	// Wake returns a parked peer before the next recheck.
	full[1] = true
	for range 4 {
		s.Next(t0.Add(11*time.Millisecond), ready)
	}
	full[1] = false
	s.Wake(1)
	s.Wake(2) // not parked: no effect
	if id, _, _ := s.Next(t0.Add(11*time.Millisecond), ready); id != 1 {
		t.Errorf("after Wake got peer %d, want 1", id)
	}
	// With peer 2 drained and peer 1 parked, a ready peer 1 is found even
	// before the recheck is due: the uploader never idles needlessly.
	for {
		if _, _, ok := s.Next(t0.Add(11*time.Millisecond), func(id PeerID) bool { return id == 2 }); !ok {
			break
		}
	}
	if s.Queued(2) != 0 || s.Queued(1) == 0 {
		t.Fatalf("queued: %d, %d", s.Queued(1), s.Queued(2))
	}
	if id, _, ok := s.Next(t0.Add(11*time.Millisecond), ready); !ok || id != 1 {
		t.Errorf("parked ready peer not served when nobody else could be: %d, %v", id, ok)
	}
	// Cancelling and removal clean up parked peers.
	s.Next(t0.Add(12*time.Millisecond), func(PeerID) bool { return false })
	s.RemovePeer(1)
	if len(s.parked) != 0 {
		t.Errorf("removed peer still parked")
	}
}

// A request handed back (the caller could not send it after all) is the
// peer's next one again, ahead of those that came after it.
func TestReturnKeepsTheOrder(t *testing.T) {
	s := mustNew(t, Config{Capacity: MiB, MaxQueuePerPeer: 4})
	_ = s.SetPeer(1, Terms{Weight: 1})
	for i := range 4 {
		if err := s.Enqueue(1, Request{Piece: 9, Begin: uint32(i) * 16 * KiB, Length: 16 * KiB}); err != nil {
			t.Fatal(err)
		}
	}
	_, first, ok := s.Next(t0, always)
	if !ok || first.Begin != 0 {
		t.Fatalf("first: %+v %v", first, ok)
	}
	if err := s.Enqueue(1, Request{Piece: 10, Length: 16 * KiB}); err != nil {
		t.Fatal(err)
	}
	// Back at the head even with the queue at its cap again.
	if err := s.Return(1, first); err != nil {
		t.Fatal(err)
	}
	if err := s.Return(1, first); err != nil { // a copy is already queued
		t.Fatal(err)
	}
	want := []Request{first}
	for i := 1; i < 4; i++ {
		want = append(want, Request{Piece: 9, Begin: uint32(i) * 16 * KiB, Length: 16 * KiB})
	}
	want = append(want, Request{Piece: 10, Length: 16 * KiB})
	for i, w := range want {
		_, r, ok := s.Next(t0, always)
		if !ok || r != w {
			t.Fatalf("request %d: got %+v %v, want %+v", i, r, ok, w)
		}
	}
	if _, _, ok := s.Next(t0, always); ok {
		t.Fatal("a returned request was queued twice")
	}
	if err := s.Return(99, first); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("Return for an unknown peer: %v", err)
	}
}

// The ring keeps its order when a request is put in front of a full,
// wrapped buffer.
func TestRingPushFront(t *testing.T) {
	var r ring
	for i := range 8 {
		r.push(Request{Piece: uint32(i)})
	}
	for range 3 {
		r.pop()
	}
	for i := 8; i < 11; i++ {
		r.push(Request{Piece: uint32(i)}) // wraps around
	}
	r.pushFront(Request{Piece: 99}) // grows
	want := []uint32{99, 3, 4, 5, 6, 7, 8, 9, 10}
	if r.len() != len(want) {
		t.Fatalf("len %d, want %d", r.len(), len(want))
	}
	for i, w := range want {
		if got := r.pop(); got.Piece != w {
			t.Fatalf("pop %d: piece %d, want %d", i, got.Piece, w)
		}
	}
}

// A ring answers contains, pop and remove alike whether or not it has
// grown an index: random pushes (of requests not queued, as the Scheduler
// does), pops and removes, checked against a plain list, across the
// length at which the index is made.
func TestRingIndexAgreesWithTheQueue(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 9))
	var r ring
	var model []Request
	find := func(x Request) int { return slices.Index(model, x) }
	for step := range 20000 {
		x := Request{Piece: uint32(rng.IntN(40)), Begin: uint32(rng.IntN(8)) * 16384, Length: 16384}
		if got, want := r.contains(x), find(x) >= 0; got != want {
			t.Fatalf("step %d: contains(%v) = %v, want %v", step, x, got, want)
		}
		// Lean towards growing until the queue is well past indexAbove,
		// then towards shrinking, so the index is made, used and emptied.
		grow := 0.7
		if step%4000 >= 2000 {
			grow = 0.3
		}
		switch f := rng.Float64(); {
		case f < grow && find(x) < 0:
			if rng.IntN(10) == 0 {
				r.pushFront(x)
				model = slices.Insert(model, 0, x)
			} else {
				r.push(x)
				model = append(model, x)
			}
		case f < grow+0.1:
			if got, want := r.remove(x), find(x) >= 0; got != want {
				t.Fatalf("step %d: remove(%v) = %v, want %v", step, x, got, want)
			}
			if i := find(x); i >= 0 {
				model = slices.Delete(model, i, i+1)
			}
		case len(model) > 0:
			if got := r.pop(); got != model[0] {
				t.Fatalf("step %d: pop = %v, want %v", step, got, model[0])
			}
			model = model[1:]
		}
		if r.len() != len(model) {
			t.Fatalf("step %d: len %d, want %d", step, r.len(), len(model))
		}
		if r.index != nil && len(r.index) != len(model) {
			t.Fatalf("step %d: index holds %d requests, queue %d", step, len(r.index), len(model))
		}
	}
	if r.index == nil {
		t.Fatal("the queue never grew an index; the test covers nothing")
	}
}
