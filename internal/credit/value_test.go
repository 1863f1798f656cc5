package credit

import (
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

func TestOwedIsExact(t *testing.T) {
	tests := []struct {
		name         string
		bytes, price int64
		want         int64
	}{
		{"one byte at 30 is worth nothing yet", 1, 30, 0},
		{"one MiB at 30 is worth 30", MiB, 30, 30},
		{"one byte short of a MiB rounds down", MiB - 1, 30, 29},
		{"a 16 KiB block at 30 is 0.47 units, so 0", 16 << 10, 30, 0},
		{"a 256 KiB piece at 30 is 7.5 units, so 7", 256 << 10, 30, 7},
		{"free is free", 1 << 40, 0, 0},
		{"nothing is free", 0, 1 << 40, 0},
		{"one GiB at 1000", 1 << 30, 1000, 1_024_000},
		{"the largest byte count at 1 per MiB", math.MaxInt64, 1, math.MaxInt64 >> 20},
		{"a product beyond 64 bits is still exact", math.MaxInt64, MiB, math.MaxInt64},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Owed(tc.bytes, tc.price)
			if err != nil || got != tc.want {
				t.Fatalf("Owed(%d, %d) = %d, %v; want %d", tc.bytes, tc.price, got, err, tc.want)
			}
		})
	}
}

func TestOwedRejectsWhatItCannotRepresent(t *testing.T) {
	tests := []struct {
		name         string
		bytes, price int64
		want         error
	}{
		{"negative bytes", -1, 30, ErrNegative},
		{"negative price", 1, -30, ErrNegative},
		{"units beyond int64", math.MaxInt64, MiB + 1, ErrOverflow},
		{"both maximal", math.MaxInt64, math.MaxInt64, ErrOverflow},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Owed(tc.bytes, tc.price); !errors.Is(err, tc.want) {
				t.Fatalf("Owed(%d, %d) error = %v; want %v", tc.bytes, tc.price, err, tc.want)
			}
		})
	}
}

// exact computes floor(bytes × price / 2^20) with big integers, saturated.
func exact(bytes, price int64) int64 {
	v := new(big.Int).Mul(big.NewInt(bytes), big.NewInt(price))
	v.Rsh(v, fracBits)
	if !v.IsInt64() {
		return math.MaxInt64
	}
	return v.Int64()
}

func TestOwedMatchesBigIntegers(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100_000 {
		b := rng.Int64() >> rng.UintN(63)
		p := rng.Int64() >> rng.UintN(63)
		want := exact(b, p)
		got, err := Owed(b, p)
		if want == math.MaxInt64 && err != nil {
			continue // overflow reported, or exactly MaxInt64
		}
		if err != nil || got != want {
			t.Fatalf("Owed(%d, %d) = %d, %v; want %d", b, p, got, err, want)
		}
	}
}

func TestManySmallBlocksSumLikeOneBigOne(t *testing.T) {
	tests := []struct {
		name         string
		block, count int64
		price        int64
	}{
		{"16 KiB blocks at 30", 16 << 10, 1000, 30},
		{"odd 1234-byte blocks at 30", 1234, 10_000, 30},
		{"single bytes at 7", 1, 3 * MiB, 7},
		{"16 KiB blocks at 1 (each worth 1/64 unit)", 16 << 10, 64*5 - 1, 1},
		{"odd blocks at an odd price", 999, 4099, 1_000_003},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m meter
			for range tc.count {
				m.add(tc.block, tc.price)
			}
			want, err := Owed(tc.block*tc.count, tc.price)
			if err != nil || m.units != want {
				t.Fatalf("%d blocks of %d at %d: meter %d units; Owed(total) = %d, %v", tc.count, tc.block, tc.price, m.units, want, err)
			}
		})
	}
}

func TestSeveralPricesOweTheFloorOfTheExactTotal(t *testing.T) {
	// Half a MiB at 3 (1.5 units) plus half a MiB at 5 (2.5 units) is 4
	// units; rounding each price down first would give 3.
	var m meter
	m.add(MiB/2, 3)
	m.add(MiB/2, 5)
	if m.units != 4 {
		t.Fatalf("owed %d units, want 4", m.units)
	}
	// The order and interleaving of prices does not matter.
	var n meter
	for range 8 {
		n.add(MiB/16, 5)
		n.add(MiB/16, 3)
	}
	if n != m {
		t.Fatalf("interleaved %+v, in two calls %+v", n, m)
	}
}

func TestMeterSaturatesInsteadOfWrapping(t *testing.T) {
	var m meter
	m.add(math.MaxInt64, math.MaxInt64)
	if m.units != math.MaxInt64 {
		t.Fatalf("units %d, want saturation", m.units)
	}
	m = meter{units: math.MaxInt64 - 1, frac: MiB - 1}
	m.add(MiB, 2)
	if m.units != math.MaxInt64 || m.frac != 0 {
		t.Fatalf("meter %+v, want saturated", m)
	}
	m.add(1, 1)
	if m.units != math.MaxInt64 {
		t.Fatalf("a saturated meter moved: %+v", m)
	}
}

func TestMeterSubtractsExactlyAndStopsAtZero(t *testing.T) {
	var m meter
	m.add(3*MiB/2, 30) // 45 units
	if !m.sub(MiB/4, 30) || m.units != 37 || m.frac != MiB/2 {
		t.Fatalf("after removing 7.5 units: %+v, want 37.5", m)
	}
	if m.sub(2*MiB, 30) || m != (meter{}) {
		t.Fatalf("removing more than there is: %+v, want zero", m)
	}
}
