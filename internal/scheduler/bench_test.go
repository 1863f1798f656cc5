package scheduler

import (
	"fmt"
	"testing"
	"time"
)

// steady builds a scheduler with n backlogged peers: a tenth reserved, two
// thirds paying, the rest free, each with a full pipeline of 16 KiB
// requests.
func steady(tb testing.TB, n int) *Scheduler {
	s := mustNew(tb, Config{Capacity: 1 << 30})
	for i := range n {
		id := PeerID(i + 1)
		w := int64(0)
		if i%3 != 0 {
			w = int64(1 + i%7)
		}
		_ = s.SetPeer(id, Terms{Weight: w})
		if i%10 == 0 {
			if _, err := s.Reserve(id, 1<<20, t0, t0.Add(time.Minute)); err != nil {
				tb.Fatal(err)
			}
		}
		for j := range 64 {
			_ = s.Enqueue(id, Request{Piece: uint32(j), Length: 16 << 10})
		}
	}
	return s
}

// cycle sends one block and lets its peer ask for another, as a peer with a
// steady pipeline does.
func cycle(s *Scheduler, now time.Time, ready func(PeerID) bool) {
	id, r, ok := s.Next(now, ready)
	if !ok {
		panic("nothing to send")
	}
	r.Piece += 1 << 20
	if err := s.Enqueue(id, r); err != nil {
		panic(err)
	}
}

// Steady-state Next and Enqueue do not allocate.
func TestSteadyStateDoesNotAllocate(t *testing.T) {
	s := steady(t, 200)
	now := t0
	odd := func(id PeerID) bool { return id%2 == 1 }
	for range 10000 { // warm up: rings and maps reach their sizes
		now = now.Add(10 * time.Microsecond)
		cycle(s, now, odd)
	}
	allocs := testing.AllocsPerRun(10000, func() {
		now = now.Add(10 * time.Microsecond)
		cycle(s, now, odd)
	})
	if allocs != 0 {
		t.Errorf("%.3f allocations per Next+Enqueue, want 0", allocs)
	}
}

// Virtual time is rebased long before it could overflow, and shares stay
// exact across the rebase.
func TestFairQueueRebase(t *testing.T) {
	const capacity = 10 * MiB
	m := newSim(t, mustNew(t, Config{Capacity: capacity}), capacity)
	m.add(1, 1, 16*KiB)
	m.add(2, 3, 16*KiB)
	m.s.paid.v = rebaseAt - 1<<36
	for _, p := range m.s.paid.h.items {
		p.fair.start += rebaseAt - 1<<36
	}
	m.run(time.Second)
	if m.s.paid.epoch == 0 {
		t.Fatal("no rebase happened")
	}
	if d := 3*m.sent[1] - m.sent[2]; d > 3*32*KiB || d < -3*32*KiB {
		t.Errorf("shares across rebase: %d vs %d bytes, want 1:3", m.sent[1], m.sent[2])
	}
}

func BenchmarkNext(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		for _, mode := range []string{"all-ready", "half-ready"} {
			b.Run(fmt.Sprintf("peers=%d/%s", n, mode), func(b *testing.B) {
				s := steady(b, n)
				ready := always
				if mode == "half-ready" {
					ready = func(id PeerID) bool { return id%2 == 1 }
				}
				now := t0
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					now = now.Add(time.Microsecond)
					cycle(s, now, ready)
				}
			})
		}
	}
}
