package storage

import (
	"container/list"
	"errors"
	"os"
	"sync"
)

// handle is one open file shared by concurrent readers and writers. pread
// and pwrite carry their own offsets, so sharing needs no lock around I/O.
type handle struct {
	f    *os.File
	fi   int
	refs int           // operations using f right now
	elem *list.Element // position in the LRU; nil once evicted
}

// handleCache keeps at most max files open, closing the least recently
// used idle one when a new file is needed. Torrents with thousands of files
// would otherwise exhaust file descriptors. The mutex guards only the
// bookkeeping; no I/O or blocking open happens while it is held, so reads of
// different files never wait for each other.
type handleCache struct {
	open func(fi int) (*os.File, error)
	max  int

	mu     sync.Mutex
	lru    list.List // of *handle, most recent at the front
	byFile map[int]*handle
	closed bool
}

func newHandleCache(max int, open func(fi int) (*os.File, error)) *handleCache {
	return &handleCache{open: open, max: max, byFile: make(map[int]*handle)}
}

// acquire returns an open handle for file fi; the caller must release it.
func (c *handleCache) acquire(fi int) (*handle, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if h, ok := c.byFile[fi]; ok {
		h.refs++
		c.lru.MoveToFront(h.elem)
		c.mu.Unlock()
		return h, nil
	}
	c.mu.Unlock()

	// Open outside the lock: opening may block on a slow disk and other
	// files must stay readable meanwhile. Two callers may race to open the
	// same file; the loser closes its copy.
	f, err := c.open(fi)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		f.Close()
		return nil, ErrClosed
	}
	if h, ok := c.byFile[fi]; ok {
		h.refs++
		c.lru.MoveToFront(h.elem)
		c.mu.Unlock()
		f.Close()
		return h, nil
	}
	h := &handle{f: f, fi: fi, refs: 1}
	h.elem = c.lru.PushFront(h)
	c.byFile[fi] = h
	idle := c.evictLocked()
	c.mu.Unlock()
	closeAll(idle)
	return h, nil
}

// evictLocked drops least recently used handles beyond the cap and returns
// the idle ones for the caller to close after unlocking. Busy handles are
// closed by their last release.
func (c *handleCache) evictLocked() []*os.File {
	var idle []*os.File
	for e := c.lru.Back(); e != nil && len(c.byFile) > c.max; {
		h := e.Value.(*handle)
		prev := e.Prev()
		c.lru.Remove(e)
		h.elem = nil
		delete(c.byFile, h.fi)
		if h.refs == 0 {
			idle = append(idle, h.f)
		}
		e = prev
	}
	return idle
}

// release ends one use of h.
func (c *handleCache) release(h *handle) {
	c.mu.Lock()
	h.refs--
	orphan := h.refs == 0 && h.elem == nil
	c.mu.Unlock()
	if orphan {
		h.f.Close()
	}
}

// flush forgets every handle, so later operations reopen files and see
// what is on disk now (a file replaced or deleted behind our back). Handles
// in use are closed when released.
func (c *handleCache) flush() {
	c.mu.Lock()
	idle := c.dropAllLocked()
	c.mu.Unlock()
	closeAll(idle)
}

// close closes every idle handle and refuses further acquires; handles in
// use are closed when released.
func (c *handleCache) close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	idle := c.dropAllLocked()
	c.mu.Unlock()
	return closeAll(idle)
}

// dropAllLocked empties the cache and returns the idle files to close.
func (c *handleCache) dropAllLocked() []*os.File {
	var idle []*os.File
	for e := c.lru.Front(); e != nil; e = e.Next() {
		h := e.Value.(*handle)
		h.elem = nil
		if h.refs == 0 {
			idle = append(idle, h.f)
		}
	}
	c.lru.Init()
	clear(c.byFile)
	return idle
}

func closeAll(fs []*os.File) error {
	var errs []error
	for _, f := range fs {
		if err := f.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
