// Package bitfield implements the BitTorrent piece bitfield (BEP 3): bit i,
// counted from the high bit of the first byte, says whether piece i is held.
package bitfield

import (
	"errors"
	"math/bits"
)

// Bitfield is a fixed-length set of piece indexes.
type Bitfield struct {
	bits []byte
	n    int
}

// New returns an empty bitfield for n pieces.
func New(n int) Bitfield {
	return Bitfield{bits: make([]byte, (n+7)/8), n: n}
}

// ErrBadLength is returned when wire bytes do not match the piece count.
var ErrBadLength = errors.New("bitfield: wrong length")

// ErrSpareBits is returned when bits past the last piece are set, which BEP 3
// requires receivers to treat as an error.
var ErrSpareBits = errors.New("bitfield: spare bits set")

// FromBytes parses a bitfield message payload for n pieces. It copies b.
func FromBytes(b []byte, n int) (Bitfield, error) {
	if len(b) != (n+7)/8 {
		return Bitfield{}, ErrBadLength
	}
	if n%8 != 0 && len(b) > 0 && b[len(b)-1]&(0xff>>(n%8)) != 0 {
		return Bitfield{}, ErrSpareBits
	}
	bf := Bitfield{bits: make([]byte, len(b)), n: n}
	copy(bf.bits, b)
	return bf, nil
}

// Len is the number of pieces the bitfield covers.
func (b Bitfield) Len() int { return b.n }

// Has reports whether piece i is set. Out-of-range indexes are never set.
func (b Bitfield) Has(i int) bool {
	if i < 0 || i >= b.n {
		return false
	}
	return b.bits[i>>3]&(0x80>>(i&7)) != 0
}

// Set marks piece i. Out-of-range indexes are ignored.
func (b Bitfield) Set(i int) {
	if i < 0 || i >= b.n {
		return
	}
	b.bits[i>>3] |= 0x80 >> (i & 7)
}

// Clear unmarks piece i. Out-of-range indexes are ignored.
func (b Bitfield) Clear(i int) {
	if i < 0 || i >= b.n {
		return
	}
	b.bits[i>>3] &^= 0x80 >> (i & 7)
}

// SetAll marks every piece.
func (b Bitfield) SetAll() {
	for i := range b.n {
		b.Set(i)
	}
}

// Count returns how many pieces are set.
func (b Bitfield) Count() int {
	c := 0
	for _, x := range b.bits {
		c += bits.OnesCount8(x)
	}
	return c
}

// Full reports whether every piece is set.
func (b Bitfield) Full() bool { return b.Count() == b.n }

// Empty reports whether no piece is set.
func (b Bitfield) Empty() bool {
	for _, x := range b.bits {
		if x != 0 {
			return false
		}
	}
	return true
}

// Bytes returns the wire form. The slice is shared; do not modify it.
func (b Bitfield) Bytes() []byte { return b.bits }

// Clone returns an independent copy.
func (b Bitfield) Clone() Bitfield {
	c := Bitfield{bits: make([]byte, len(b.bits)), n: b.n}
	copy(c.bits, b.bits)
	return c
}
