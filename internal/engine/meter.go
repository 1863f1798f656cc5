package engine

import "sync/atomic"

// meter counts bytes and turns them into a rate over a sliding window of
// one-second samples. Add is called on the hot path (atomic, lock-free);
// Sample is called once a second by the torrent's ticker.
type meter struct {
	total   atomic.Int64
	samples [windowSeconds + 1]int64 // totals at the last few ticks
	head    int
	filled  int
}

// windowSeconds is how far back rates look: long enough to smooth bursts
// of pipelined blocks, short enough for the choker to react.
const windowSeconds = 5

func (m *meter) Add(n int) { m.total.Add(int64(n)) }

// Total is every byte counted so far.
func (m *meter) Total() int64 { return m.total.Load() }

// Sample records the running total; call it once per second.
func (m *meter) Sample() {
	m.head = (m.head + 1) % len(m.samples)
	m.samples[m.head] = m.total.Load()
	if m.filled < len(m.samples) {
		m.filled++
	}
}

// Rate is bytes per second over the window (or what of it has elapsed).
func (m *meter) Rate() int64 {
	if m.filled < 2 {
		return 0
	}
	span := min(m.filled-1, windowSeconds)
	oldest := m.samples[(m.head-span+len(m.samples))%len(m.samples)]
	return (m.samples[m.head] - oldest) / int64(span)
}

// LastSecond is the bytes counted between the last two samples.
func (m *meter) LastSecond() int64 {
	if m.filled < 2 {
		return 0
	}
	return m.samples[m.head] - m.samples[(m.head-1+len(m.samples))%len(m.samples)]
}
