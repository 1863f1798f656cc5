package scheduler

// Start-time fair queuing (Goyal, Vin and Cheng, 1996) over bytes.
//
// Each backlogged peer carries the start tag of its head request; the
// queue serves the smallest start tag. Serving L bytes to a peer of weight
// w gives its next request the start tag S + L/w, so over any interval in
// which two peers stay backlogged their bytes differ from the ratio of
// their weights by at most one maximal block each. The system virtual time
// v is the start tag of the request last served; a peer that becomes
// backlogged starts at max(v, its last finish tag), so idling earns no
// credit and a peer cannot bank service by asking in bursts.
//
// Tags are fixed point: L/w is computed as L·2^20/w, which keeps integer
// precision for weights up to about 2^30 at 16 KiB blocks. When v passes
// 2^62 every tag is rebased (a few hours of a single fast peer); tags of
// peers idle across a rebase are discarded, which costs them nothing but
// can give them up to one block of extra service.

const (
	tagShift = 20
	rebaseAt = uint64(1) << 62
)

// fairState is a peer's place in its fair queue.
type fairState struct {
	start  uint64 // tag of the head request while backlogged
	finish uint64 // tag after the last request served
	epoch  uint32 // the queue's epoch the tags belong to
	idx    int    // index in the queue's heap, -1 if absent
}

// fairQueue is one tier of start-time fair queuing.
type fairQueue struct {
	h        peerHeap
	v        uint64 // virtual time
	epoch    uint32 // bumped on each rebase
	lagBytes uint64 // catch-up bound for a peer that was not ready
}

func (f *fairQueue) init() {
	f.h.less = func(a, b *peer) bool {
		if a.fair.start != b.fair.start {
			return a.fair.start < b.fair.start
		}
		return a.id < b.id
	}
	f.h.index = func(p *peer) *int { return &p.fair.idx }
}

// weight is the peer's share weight in this queue. Free peers all have
// weight 0 and share equally, so they count as 1.
func weight(p *peer) uint64 {
	if p.weight > 0 {
		return uint64(p.weight)
	}
	return 1
}

// tag is the virtual-time length of n bytes at weight w (at least 1, so
// every block moves a peer on).
func tag(n uint64, w uint64) uint64 {
	return max((n<<tagShift)/w, 1)
}

// activate enters a newly backlogged peer.
func (f *fairQueue) activate(p *peer) {
	st := &p.fair
	if st.epoch != f.epoch {
		st.finish, st.epoch = 0, f.epoch
	}
	st.start = max(f.v, st.finish)
	f.h.push(p)
}

// resume re-enters a parked peer at the tag it left with; charge bounds
// how far behind v that may be. Tags from before a rebase are void.
func (f *fairQueue) resume(p *peer) {
	st := &p.fair
	if st.epoch != f.epoch {
		st.start, st.finish, st.epoch = f.v, 0, f.epoch
	}
	f.h.push(p)
}

func (f *fairQueue) remove(p *peer) { f.h.remove(p) }

// charge accounts n bytes served to p by this tier.
func (f *fairQueue) charge(p *peer, n uint32) {
	st := &p.fair
	w := weight(p)
	s := st.start
	// A peer that sat backlogged but unready fell behind v; it may catch
	// up by lagBytes, not by everything the others were sent meanwhile.
	if lag := tag(f.lagBytes, w); f.v > lag && s < f.v-lag {
		s = f.v - lag
	}
	f.v = max(f.v, s)
	st.finish = s + tag(uint64(n), w)
	st.epoch = f.epoch
	st.start = st.finish
	if st.idx >= 0 {
		f.h.fix(p)
	}
	if f.v >= rebaseAt {
		f.rebase()
	}
}

// rebase shifts every backlogged peer's tags down by v, preserving their
// order and differences, and starts a new epoch for idle peers.
func (f *fairQueue) rebase() {
	base := f.v
	for _, p := range f.h.items {
		p.fair.start -= min(p.fair.start, base)
		p.fair.finish -= min(p.fair.finish, base)
		p.fair.epoch = f.epoch + 1
	}
	f.v = 0
	f.epoch++
}
