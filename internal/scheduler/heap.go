package scheduler

// peerHeap is a binary min-heap of peers that records each peer's position
// (through index) so a peer can be removed or re-keyed in O(log n). It is
// written out rather than built on container/heap to avoid boxing peers in
// interfaces on every operation.
type peerHeap struct {
	items []*peer
	less  func(a, b *peer) bool
	index func(p *peer) *int
}

func (h *peerHeap) len() int { return len(h.items) }

func (h *peerHeap) push(p *peer) {
	*h.index(p) = len(h.items)
	h.items = append(h.items, p)
	h.up(len(h.items) - 1)
}

func (h *peerHeap) pop() *peer {
	p := h.items[0]
	h.remove(p)
	return p
}

func (h *peerHeap) remove(p *peer) {
	i := *h.index(p)
	last := len(h.items) - 1
	if i != last {
		h.swap(i, last)
	}
	h.items[last] = nil
	h.items = h.items[:last]
	*h.index(p) = -1
	if i != last {
		h.fixAt(i)
	}
}

// fix restores the heap after p's key changed.
func (h *peerHeap) fix(p *peer) { h.fixAt(*h.index(p)) }

func (h *peerHeap) fixAt(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h *peerHeap) swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	*h.index(h.items[i]) = i
	*h.index(h.items[j]) = j
}

func (h *peerHeap) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !h.less(h.items[i], h.items[parent]) {
			return
		}
		h.swap(i, parent)
		i = parent
	}
}

// down sifts item i down and reports whether it moved.
func (h *peerHeap) down(i int) bool {
	start := i
	n := len(h.items)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && h.less(h.items[r], h.items[l]) {
			m = r
		}
		if !h.less(h.items[m], h.items[i]) {
			break
		}
		h.swap(i, m)
		i = m
	}
	return i > start
}
