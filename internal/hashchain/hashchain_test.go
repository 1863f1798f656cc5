package hashchain

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"
)

// naive builds the whole chain the obvious way: w[length] = H(seed),
// w[i-1] = H(w[i]).
func naive(seed [Size]byte, length int64) [][Size]byte {
	w := make([][Size]byte, length+1)
	w[length] = sha256.Sum256(seed[:])
	for i := length; i > 0; i-- {
		w[i-1] = sha256.Sum256(w[i][:])
	}
	return w
}

func TestChainMatchesDefinition(t *testing.T) {
	// Kept whole, and (past WholeLength) in checkpointed segments.
	for _, length := range []int64{1, 2, 3, 4, 5, 9, 10, 16, 17, 100, 1000, 1001, WholeLength, WholeLength + 1, 3*WholeLength + 7} {
		seed := sha256.Sum256([]byte{byte(length), byte(length >> 8)})
		want := naive(seed, length)
		c := New(seed, length)
		if c.Length() != length || c.Root() != want[0] {
			t.Fatalf("length %d: Length %d, root mismatch %v", length, c.Length(), c.Root() != want[0])
		}
		// In order, as a payer pays.
		for i := int64(1); i <= length; i++ {
			got, err := c.Preimage(i)
			if err != nil || got != want[i] {
				t.Fatalf("length %d: Preimage(%d) wrong (err %v)", length, i, err)
			}
		}
		// Out of order too: every access pattern must return the truth.
		for _, i := range []int64{length, 1, length / 2, length, 1} {
			if i < 1 {
				continue
			}
			got, err := c.Preimage(i)
			if err != nil || got != want[i] {
				t.Fatalf("length %d: Preimage(%d) out of order wrong (err %v)", length, i, err)
			}
		}
		for _, i := range []int64{0, -1, length + 1} {
			if _, err := c.Preimage(i); !errors.Is(err, ErrIndex) {
				t.Fatalf("length %d: Preimage(%d) err %v, want ErrIndex", length, i, err)
			}
		}
	}
}

func TestInvalidLength(t *testing.T) {
	for _, length := range []int64{0, -5, MaxLength + 1} {
		c := New([Size]byte{1}, length)
		if c.Length() != 0 {
			t.Fatalf("New(_, %d).Length() = %d, want 0", length, c.Length())
		}
		if _, err := c.Preimage(1); !errors.Is(err, ErrIndex) {
			t.Fatalf("New(_, %d).Preimage(1) err %v, want ErrIndex", length, err)
		}
	}
}

func TestVerify(t *testing.T) {
	seed := [Size]byte{7}
	w := naive(seed, 50)
	cases := []struct {
		name        string
		anchor      [Size]byte
		anchorIndex int64
		pre         [Size]byte
		index       int64
		maxSteps    int64
		want        error
	}{
		{"root to 1", w[0], 0, w[1], 1, 1, nil},
		{"root to 50", w[0], 0, w[50], 50, 50, nil},
		{"mid to later", w[20], 20, w[35], 35, 100, nil},
		{"wrong index claimed", w[0], 0, w[5], 6, 100, ErrMismatch},
		{"wrong preimage", w[0], 0, w[4], 5, 100, ErrMismatch},
		{"anchor itself", w[3], 3, w[3], 3, 100, ErrIndex},
		{"going back", w[3], 3, w[2], 2, 100, ErrIndex},
		{"negative anchor", w[0], -1, w[1], 0, 100, ErrIndex},
		{"too many steps", w[0], 0, w[50], 50, 49, ErrTooManySteps},
		{"huge index", w[0], 0, w[1], 1 << 62, 1000, ErrTooManySteps},
	}
	for _, tc := range cases {
		err := Verify(tc.anchor, tc.anchorIndex, tc.pre, tc.index, tc.maxSteps)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: Verify err %v, want %v", tc.name, err, tc.want)
		}
	}
}

// FuzzVerify feeds Verify arbitrary anchors, preimages and indexes. It must
// never panic or walk more than maxSteps, and must accept exactly the
// genuine chain elements.
func FuzzVerify(f *testing.F) {
	f.Add([]byte("seed"), int64(0), int64(1), int64(10), []byte{})
	f.Add([]byte("x"), int64(3), int64(7), int64(4), []byte{1})
	f.Add([]byte(""), int64(-1), int64(1<<62), int64(1<<40), []byte{2, 3})
	f.Fuzz(func(t *testing.T, seedBytes []byte, anchorIndex, index, maxSteps int64, junk []byte) {
		const length = 64
		seed := sha256.Sum256(seedBytes)
		w := naive(seed, length)
		anchor := w[min(max(anchorIndex, 0), length)]
		pre := w[min(max(index, 0), length)]
		if len(junk) > 0 {
			pre = sha256.Sum256(junk)
		}
		// Bound the work so the fuzzer stays fast; Verify must honour it.
		maxSteps = min(maxSteps, 1<<12)
		err := Verify(anchor, anchorIndex, pre, index, maxSteps)
		// The oracle is the definition, walked one hash at a time. (The
		// seed itself counts as element length+1, and the fuzzer finds
		// that, so membership in w alone is not the right oracle.)
		want := anchorIndex >= 0 && index > anchorIndex && index-anchorIndex <= maxSteps
		if want {
			x := pre
			for range index - anchorIndex {
				x = sha256.Sum256(x[:])
			}
			want = x == anchor
		}
		if want != (err == nil) {
			t.Fatalf("anchor %d index %d maxSteps %d junk %x: Verify err %v, definition says ok=%v",
				anchorIndex, index, maxSteps, junk, err, want)
		}
		genuine := len(junk) == 0 && anchorIndex >= 0 && index > anchorIndex && index <= length &&
			index-anchorIndex <= maxSteps
		if genuine && err != nil {
			t.Fatalf("genuine element %d from anchor %d rejected: %v", index, anchorIndex, err)
		}
	})
}

func BenchmarkPreimageSequential(b *testing.B) {
	c := New([Size]byte{1}, 1<<16)
	b.ResetTimer()
	for i := range b.N {
		if _, err := c.Preimage(int64(i%(1<<16)) + 1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPayWholeChain is a payer's cost per element of a channel it
// pays out completely: deriving the chain, then every preimage in order.
// A chain kept whole (up to WholeLength) hashes each element once; a
// longer one, twice.
func BenchmarkPayWholeChain(b *testing.B) {
	for _, length := range []int64{3840, WholeLength + 1} {
		b.Run(fmt.Sprint(length), func(b *testing.B) {
			for range b.N {
				c := New([Size]byte{1}, length)
				for i := int64(1); i <= length; i++ {
					if _, err := c.Preimage(i); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(int64(b.N)*length), "ns/element")
		})
	}
}

func BenchmarkVerifyStep(b *testing.B) {
	w := naive([Size]byte{1}, 1)
	for range b.N {
		if err := Verify(w[0], 0, w[1], 1, 1); err != nil {
			b.Fatal(err)
		}
	}
}
