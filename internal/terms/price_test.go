package terms

import (
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

func TestPriceFor(t *testing.T) {
	const MiB = 1 << 20
	cases := []struct {
		bytes, price, want int64
	}{
		{0, 30, 0},
		{MiB, 0, 0},
		{MiB, 30, 30},
		{MiB - 1, 1, 0},     // a byte short of a MiB at 1/MiB is still free
		{MiB, 1, 1},         // and the last byte completes the unit
		{MiB - 1, 30, 29},   // floor, not round: 29.99997
		{256 << 10, 30, 7},  // a 256 KiB piece at 30/MiB is 7.5, floored
		{512 << 10, 30, 15}, // two of them are exactly 15
		{16 << 10, 10, 0},   // one 16 KiB block at 10/MiB is 0.156
		{7 * MiB, 10, 70},
		{math.MaxInt64, 1, math.MaxInt64 >> 20},
		{math.MaxInt64, MiB, math.MaxInt64}, // the largest result that fits
	}
	for _, tc := range cases {
		got, err := PriceFor(tc.bytes, tc.price)
		if err != nil || got != tc.want {
			t.Errorf("PriceFor(%d, %d) = %d, %v; want %d", tc.bytes, tc.price, got, err, tc.want)
		}
	}

	overflow := []struct{ bytes, price int64 }{
		{math.MaxInt64, MiB + 1},
		{1 << 62, 1 << 21},        // exactly 2^63: one past MaxInt64
		{1 << 43, MaxPricePerMiB}, // 2^43·2^40/2^20 = 2^63
		{math.MaxInt64, math.MaxInt64},
	}
	for _, tc := range overflow {
		if got, err := PriceFor(tc.bytes, tc.price); !errors.Is(err, ErrOverflow) {
			t.Errorf("PriceFor(%d, %d) = %d, %v; want ErrOverflow", tc.bytes, tc.price, got, err)
		}
	}
	// One byte below that boundary: (2^62-1)·2 = 2^63-2 fits.
	if got, err := PriceFor(1<<62-1, 1<<21); err != nil || got != math.MaxInt64-1 {
		t.Errorf("PriceFor(2^62-1, 2^21) = %d, %v; want 2^63-2", got, err)
	}
	for _, tc := range []struct{ bytes, price int64 }{{-1, 1}, {1, -1}, {math.MinInt64, math.MinInt64}} {
		if _, err := PriceFor(tc.bytes, tc.price); err == nil {
			t.Errorf("PriceFor(%d, %d) accepted a negative input", tc.bytes, tc.price)
		}
	}
}

// TestPriceForMatchesBigInt checks PriceFor against the definition computed
// with arbitrary precision, over random inputs of every magnitude.
func TestPriceForMatchesBigInt(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	maxInt := big.NewInt(math.MaxInt64)
	for i := 0; i < 20000; i++ {
		b := r.Int64() >> r.IntN(63)
		p := r.Int64() >> r.IntN(63)
		want := new(big.Int).Mul(big.NewInt(b), big.NewInt(p))
		want.Rsh(want, 20)
		got, err := PriceFor(b, p)
		if want.Cmp(maxInt) > 0 {
			if !errors.Is(err, ErrOverflow) {
				t.Fatalf("PriceFor(%d, %d) = %d, %v; want ErrOverflow", b, p, got, err)
			}
			continue
		}
		if err != nil || got != want.Int64() {
			t.Fatalf("PriceFor(%d, %d) = %d, %v; want %s", b, p, got, err, want)
		}
	}
}

// TestCumulativePricing shows why callers price running totals: summing
// per-block prices loses a fraction per block, pricing the total loses less
// than one unit overall.
func TestCumulativePricing(t *testing.T) {
	c := Class{Name: "bronze", PricePerMiB: 10}
	const block = 16 << 10
	var perBlock, owedSoFar int64
	for n := int64(1); n <= 640; n++ {
		p, err := c.Price(block)
		if err != nil {
			t.Fatal(err)
		}
		perBlock += p
		total, err := c.Price(n * block)
		if err != nil {
			t.Fatal(err)
		}
		if total < owedSoFar {
			t.Fatalf("cumulative price went down at block %d", n)
		}
		owedSoFar = total
	}
	if perBlock != 0 || owedSoFar != 100 {
		t.Fatalf("per-block sum %d, cumulative %d; want 0 and 100 for 10 MiB at 10/MiB", perBlock, owedSoFar)
	}
}
