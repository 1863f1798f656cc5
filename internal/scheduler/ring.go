package scheduler

// ring is a peer's FIFO of requests. Its buffer length is a power of two,
// so positions wrap with a mask; it grows by doubling up to the queue cap
// and is then reused, so steady-state pushes and pops never allocate.
type ring struct {
	buf  []Request
	head int
	n    int
}

func (r *ring) len() int { return r.n }

// at returns the position of the i-th queued request.
func (r *ring) at(i int) int { return (r.head + i) & (len(r.buf) - 1) }

func (r *ring) push(x Request) {
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
	r.push(x) // grows the buffer if needed
	for i := r.n - 1; i > 0; i-- {
		r.buf[r.at(i)] = r.buf[r.at(i-1)]
	}
	r.buf[r.head] = x
}

func (r *ring) pop() Request {
	x := r.buf[r.head]
	r.head = r.at(1)
	r.n--
	return x
}

// contains reports whether x is queued.
func (r *ring) contains(x Request) bool {
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
