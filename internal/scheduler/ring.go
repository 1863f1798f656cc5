package scheduler

// ring is a peer's FIFO of requests. It grows by doubling up to the queue
// cap and is then reused, so steady-state pushes and pops never allocate.
type ring struct {
	buf  []Request
	head int
	n    int
}

func (r *ring) len() int { return r.n }

func (r *ring) push(x Request) {
	if r.n == len(r.buf) {
		nb := make([]Request, max(8, 2*len(r.buf)))
		for i := range r.n {
			nb[i] = r.buf[(r.head+i)%len(r.buf)]
		}
		r.buf, r.head = nb, 0
	}
	r.buf[(r.head+r.n)%len(r.buf)] = x
	r.n++
}

func (r *ring) pop() Request {
	x := r.buf[r.head]
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	return x
}

// remove deletes the first occurrence of x, keeping the order of the rest.
// It is O(n), which is fine for cancels: they are rare next to requests and
// n is bounded by the queue cap.
func (r *ring) remove(x Request) bool {
	for i := range r.n {
		if r.buf[(r.head+i)%len(r.buf)] != x {
			continue
		}
		for j := i; j < r.n-1; j++ {
			r.buf[(r.head+j)%len(r.buf)] = r.buf[(r.head+j+1)%len(r.buf)]
		}
		r.n--
		return true
	}
	return false
}
