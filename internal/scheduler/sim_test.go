package scheduler

import (
	"testing"
	"time"
)

// t0 is an arbitrary start for simulated clocks.
var t0 = time.Unix(1_700_000_000, 0)

func always(PeerID) bool { return true }

func mustNew(t testing.TB, cfg Config) *Scheduler {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sim drives a scheduler the way the engine does: whenever the uploader has
// budget it asks Next for a block and spends length/capacity seconds sending
// it. Peers listed in backlog are kept backlogged with blocks of the given
// size, like downloaders with deep request pipelines.
type sim struct {
	t        testing.TB
	s        *Scheduler
	now      time.Time
	capacity int64 // bytes/s the engine sends at
	backlog  map[PeerID]uint32
	sent     map[PeerID]int64
	seq      uint32
	ready    func(PeerID) bool
}

func newSim(t testing.TB, s *Scheduler, capacity int64) *sim {
	return &sim{t: t, s: s, now: t0, capacity: capacity, backlog: map[PeerID]uint32{}, sent: map[PeerID]int64{}, ready: always}
}

// add registers a peer with the scheduler and, if block > 0, keeps it
// backlogged with requests of that size.
func (m *sim) add(id PeerID, weight int64, block uint32) {
	m.t.Helper()
	if err := m.s.SetPeer(id, Terms{Weight: weight}); err != nil {
		m.t.Fatal(err)
	}
	if block > 0 {
		m.backlog[id] = block
		m.topUp()
	}
}

func (m *sim) topUp() {
	for id, block := range m.backlog {
		for m.s.Queued(id) < 8 {
			m.seq++
			if err := m.s.Enqueue(id, Request{Piece: m.seq, Length: block}); err != nil {
				m.t.Fatal(err)
			}
		}
	}
}

// run sends blocks for d of simulated time.
func (m *sim) run(d time.Duration) {
	end := m.now.Add(d)
	for m.now.Before(end) {
		m.topUp()
		id, r, ok := m.s.Next(m.now, m.ready)
		if !ok {
			m.now = m.now.Add(time.Millisecond)
			continue
		}
		m.sent[id] += int64(r.Length)
		m.now = m.now.Add(time.Duration(int64(r.Length) * int64(time.Second) / m.capacity))
	}
}
