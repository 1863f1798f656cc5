package scheduler

// ring is a peer's FIFO of distinct requests (the Scheduler checks contains
// before it pushes). Its buffer length is a power of two, so positions
// wrap with a mask; it grows by doubling up to the queue cap and is then
// reused, so steady-state pushes and pops never allocate a buffer.
type ring struct {
	buf  []Request
	head int
	n    int
	// index holds every queued request once the queue has grown past
	// indexAbove. Scanning for a duplicate costs about a nanosecond per
	// queued request, cheaper than a map up to a few dozen; but a paying
	// peer held for credit runs a queue of hundreds, and every request it
	// sends meanwhile was scanned against all of them. Once made, the
	// index is kept (the queue is likely to fill again), and its entries
	// are reused as requests come and go.
	index map[Request]struct{}
}

// indexAbove is the queue length beyond which a ring keeps an index.
const indexAbove = 64

func (r *ring) len() int { return r.n }

// at returns the position of the i-th queued request.
func (r *ring) at(i int) int { return (r.head + i) & (len(r.buf) - 1) }

func (r *ring) push(x Request) {
	r.add(x)
	if r.n == len(r.buf) {
		nb := make([]Request, max(8, 2*len(r.buf)))
		for i := range r.n {
			nb[i] = r.buf[r.at(i)]
		}
		r.buf, r.head = nb, 0
	}
	r.buf[r.at(r.n)] = x
	r.n++
}

// pushFront queues x ahead of everything else.
func (r *ring) pushFront(x Request) {
	r.push(x) // grows the buffer and indexes x if needed
	for i := r.n - 1; i > 0; i-- {
		r.buf[r.at(i)] = r.buf[r.at(i-1)]
	}
	r.buf[r.head] = x
}

func (r *ring) pop() Request {
	x := r.buf[r.head]
	r.head = r.at(1)
	r.n--
	if r.index != nil {
		delete(r.index, x)
	}
	return x
}

// add indexes x, about to be queued, if the queue is indexed or is about
// to outgrow indexAbove (then with everything already queued).
func (r *ring) add(x Request) {
	if r.index == nil {
		if r.n < indexAbove {
			return
		}
		r.index = make(map[Request]struct{}, 2*indexAbove)
		for i := range r.n {
			r.index[r.buf[r.at(i)]] = struct{}{}
		}
	}
	r.index[x] = struct{}{}
}

// contains reports whether x is queued.
func (r *ring) contains(x Request) bool {
	if r.index != nil {
		_, ok := r.index[x]
		return ok
	}
	for i := range r.n {
		if r.buf[r.at(i)] == x {
			return true
		}
	}
	return false
}

// remove deletes the first occurrence of x, keeping the order of the rest,
// and reports whether it was there. It is O(n), which is fine for cancels:
// they are rare next to requests and n is bounded by the queue cap.
func (r *ring) remove(x Request) bool {
	if r.index != nil {
		if _, ok := r.index[x]; !ok {
			return false
		}
		delete(r.index, x)
	}
	for i := range r.n {
		if r.buf[r.at(i)] != x {
			continue
		}
		for j := i; j < r.n-1; j++ {
			r.buf[r.at(j)] = r.buf[r.at(j+1)]
		}
		r.n--
		return true
	}
	return false
}
