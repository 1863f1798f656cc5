package tracker

import (
	"math/rand/v2"
	"sync"
	"time"
)

// peerEntry is one registered peer. Entries sit in two structures: the
// slice used for uniform random sampling (idx is the position there) and a
// doubly linked list ordered by last announce, so that expiry only ever
// looks at the oldest entries and the counts stay exact without scanning.
type peerEntry struct {
	info       PeerInfo
	key        string
	idx        int
	prev, next *peerEntry
}

// swarm is the state of one torrent. Every field is guarded by mu; each
// swarm has its own lock so that announces for different torrents never
// wait for each other.
type swarm struct {
	mu         sync.Mutex
	peers      map[[20]byte]*peerEntry
	list       []*peerEntry
	oldest     *peerEntry // head of the last-announce list
	newest     *peerEntry // tail
	seeders    int
	downloaded int64 // "completed" events seen, for scrape
	lastActive time.Time
	// dead is set when the sweeper has removed the swarm from the server's
	// map; an announce that still holds a pointer to it must look again.
	dead bool
}

func newSwarm(now time.Time) *swarm {
	return &swarm{peers: make(map[[20]byte]*peerEntry), lastActive: now}
}

func (s *swarm) len() int { return len(s.list) }

// add registers e as the newest peer.
func (s *swarm) add(e *peerEntry) {
	s.peers[e.info.ID] = e
	e.idx = len(s.list)
	s.list = append(s.list, e)
	s.pushNewest(e)
	if e.info.Seeder() {
		s.seeders++
	}
}

// remove unregisters e.
func (s *swarm) remove(e *peerEntry) {
	delete(s.peers, e.info.ID)
	last := len(s.list) - 1
	moved := s.list[last]
	s.list[e.idx] = moved
	moved.idx = e.idx
	s.list[last] = nil
	s.list = s.list[:last]
	s.unlink(e)
	if e.info.Seeder() {
		s.seeders--
	}
}

// touch records a new announce from e: it updates the stored state and
// moves e to the newest end of the expiry list.
func (s *swarm) touch(e *peerEntry, info PeerInfo) {
	if e.info.Seeder() {
		s.seeders--
	}
	e.info = info
	if e.info.Seeder() {
		s.seeders++
	}
	s.unlink(e)
	s.pushNewest(e)
}

func (s *swarm) pushNewest(e *peerEntry) {
	e.prev, e.next = s.newest, nil
	if s.newest != nil {
		s.newest.next = e
	} else {
		s.oldest = e
	}
	s.newest = e
}

func (s *swarm) unlink(e *peerEntry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		s.oldest = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		s.newest = e.prev
	}
	e.prev, e.next = nil, nil
}

// expire removes every peer whose last announce is older than ttl and
// returns how many peers and seeders it removed.
func (s *swarm) expire(now time.Time, ttl time.Duration) (peers, seeders int) {
	for e := s.oldest; e != nil && now.Sub(e.info.LastSeen) >= ttl; e = s.oldest {
		if e.info.Seeder() {
			seeders++
		}
		s.remove(e)
		peers++
	}
	return peers, seeders
}

// sample returns up to want peers other than self, chosen uniformly at
// random, leaving out seeders when the requester is one. It walks a lazy
// Fisher–Yates shuffle of the peer slice, so it costs time in proportion
// to the peers it looks at, not to the swarm size, unless most peers are
// ineligible.
func (s *swarm) sample(self [20]byte, seeder bool, want int) []PeerInfo {
	n := len(s.list)
	if want <= 0 || n == 0 {
		return nil
	}
	out := make([]PeerInfo, 0, min(want, n))
	swapped := make(map[int]int)
	at := func(i int) int {
		if v, ok := swapped[i]; ok {
			return v
		}
		return i
	}
	for i := 0; i < n && len(out) < want; i++ {
		j := i + rand.IntN(n-i)
		vi, vj := at(i), at(j)
		swapped[j] = vi
		e := s.list[vj]
		if e.info.ID == self || (seeder && e.info.Seeder()) {
			continue
		}
		out = append(out, e.info)
	}
	return out
}

// swarmView adapts a locked swarm to SwarmView.
type swarmView struct{ s *swarm }

func (v swarmView) Seeders() int  { return v.s.seeders }
func (v swarmView) Leechers() int { return v.s.len() - v.s.seeders }

func (v swarmView) Peer(id [20]byte) (PeerInfo, bool) {
	e, ok := v.s.peers[id]
	if !ok {
		return PeerInfo{}, false
	}
	return e.info, true
}

func (v swarmView) Range(fn func(PeerInfo) bool) {
	for _, e := range v.s.list {
		if !fn(e.info) {
			return
		}
	}
}
