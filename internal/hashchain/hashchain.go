// Package hashchain implements PayWord-style payment chains over SHA-256.
//
// A payer picks a secret seed and derives a chain of length n:
// w_n = H(seed) and w_{i-1} = H(w_i), so the public root is w_0. Paying the
// i-th unit means revealing w_i; anyone holding an earlier value w_j (j < i)
// checks it with i-j hashes, no signature needed. Because H is one-way, a
// payee can never forge a later element than the payer revealed.
package hashchain

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
)

// Size is the length in bytes of every chain element (a SHA-256 digest).
const Size = 32

// MaxLength bounds the length of a chain New will build. Building costs one
// hash per element, so the bound keeps a mistaken length from freezing the
// caller; 2^24 elements take a few seconds to derive and far exceed any
// sensible channel.
const MaxLength = 1 << 24

// Errors returned by Preimage and Verify. Callers that must distinguish a
// malformed request from a forged one test with errors.Is.
var (
	// ErrIndex reports an index outside the chain or not beyond the anchor.
	ErrIndex = errors.New("hashchain: index out of range")
	// ErrTooManySteps reports a verification that would need more hashes
	// than the caller allows.
	ErrTooManySteps = errors.New("hashchain: too many steps")
	// ErrMismatch reports a preimage that does not hash to the anchor.
	ErrMismatch = errors.New("hashchain: preimage does not hash to anchor")
)

// Chain is the payer's side of a hash chain: it can produce any element.
// A chain of up to WholeLength elements is kept whole: deriving it is the
// only hashing it costs. A longer one keeps about sqrt(length) checkpoints
// plus one decoded segment instead, so it costs little memory while
// walking it in increasing order costs one more hash per element on
// average. A Chain is not safe for concurrent use.
type Chain struct {
	length int64
	root   [Size]byte
	// stride is the distance between checkpoints; checkpoints[k] holds
	// w_{length-k*stride}, and the last one is the root.
	stride      int64
	checkpoints [][Size]byte
	// segment caches w_{segLo..segHi} for the segment last touched, so
	// consecutive calls within one segment are a lookup.
	segLo, segHi int64
	segment      [][Size]byte
}

// WholeLength is the longest chain New keeps whole (512 KiB of elements):
// a payer pays a whole chain by revealing each element once, so keeping
// it saves the second hash per element that expanding segments from
// checkpoints costs (a 256 MiB download at 30 units per MiB is 7680
// elements, about 1 ms of hashing).
const WholeLength = 1 << 14

// New derives the chain of the given length from seed. The seed must be
// secret and random; whoever knows it can produce every element. A length
// outside [1, MaxLength] yields an empty chain (Length 0) whose Preimage
// always fails, so a bad length surfaces as an error at first use rather
// than a panic or an endless computation.
func New(seed [Size]byte, length int64) *Chain {
	c := &Chain{segLo: 1, segHi: 0}
	top := sha256.Sum256(seed[:])
	if length < 1 || length > MaxLength {
		c.root = top
		return c
	}
	c.length = length
	if length <= WholeLength {
		// One segment spanning the whole chain: Preimage never expands.
		c.segment = make([][Size]byte, length)
		w := top
		for i := length; i >= 1; i-- {
			c.segment[i-1] = w
			w = sha256.Sum256(w[:])
		}
		c.root = w
		c.segLo, c.segHi = 1, length
		return c
	}
	c.stride = int64(math.Ceil(math.Sqrt(float64(length))))
	// Checkpoint k holds w_{length - k*stride}: walking down from the top
	// we record every stride-th element, ending with the root.
	n := (length+c.stride-1)/c.stride + 1
	c.checkpoints = make([][Size]byte, 0, n)
	w := top
	for i := length; ; i-- {
		if (length-i)%c.stride == 0 {
			c.checkpoints = append(c.checkpoints, w)
		}
		if i == 0 {
			break
		}
		w = sha256.Sum256(w[:])
	}
	c.root = w
	return c
}

// Root returns w_0, the public commitment a voucher carries.
func (c *Chain) Root() [Size]byte { return c.root }

// Length returns the number of payable elements (0 for an invalid chain).
func (c *Chain) Length() int64 { return c.length }

// Preimage returns w_i for 1 <= i <= Length. Calls with increasing i cost
// O(1) hashes amortised: the segment holding i is expanded once from the
// checkpoint above it and then served from memory.
func (c *Chain) Preimage(i int64) ([Size]byte, error) {
	if i < 1 || i > c.length {
		return [Size]byte{}, fmt.Errorf("%w: %d not in [1, %d]", ErrIndex, i, c.length)
	}
	if i < c.segLo || i > c.segHi {
		c.loadSegment(i)
	}
	return c.segment[i-c.segLo], nil
}

// loadSegment expands the checkpoint segment containing index i. Segment k
// spans indexes (length-(k+1)*stride, length-k*stride], anchored at
// checkpoint k (its highest index).
func (c *Chain) loadSegment(i int64) {
	k := (c.length - i) / c.stride
	hi := c.length - k*c.stride
	lo := max(hi-c.stride+1, 1)
	if int64(cap(c.segment)) < c.stride {
		c.segment = make([][Size]byte, c.stride)
	}
	c.segment = c.segment[:hi-lo+1]
	w := c.checkpoints[k]
	for j := hi; j >= lo; j-- {
		c.segment[j-lo] = w
		w = sha256.Sum256(w[:])
	}
	c.segLo, c.segHi = lo, hi
}

// Verify checks that pre is the element at index of the chain whose element
// at anchorIndex is anchor, i.e. H^(index-anchorIndex)(pre) == anchor. It
// refuses index <= anchorIndex (nothing new is being paid), a negative
// anchorIndex, and more than maxSteps hashes, so a stranger cannot make the
// verifier spin.
func Verify(anchor [Size]byte, anchorIndex int64, pre [Size]byte, index int64, maxSteps int64) error {
	if anchorIndex < 0 || index <= anchorIndex {
		return fmt.Errorf("%w: index %d not beyond anchor %d", ErrIndex, index, anchorIndex)
	}
	steps := index - anchorIndex // cannot overflow: both non-negative
	if steps > maxSteps {
		return fmt.Errorf("%w: %d steps exceed the limit %d", ErrTooManySteps, steps, maxSteps)
	}
	w := pre
	for range steps {
		w = sha256.Sum256(w[:])
	}
	if w != anchor {
		return ErrMismatch
	}
	return nil
}
