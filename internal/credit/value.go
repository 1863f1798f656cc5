package credit

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
)

// MiB is the byte count a price is quoted for: prices are units per 2^20
// bytes.
const MiB = 1 << 20

// fracBits is log2(MiB): a byte at price p is worth p/2^20 units, so value
// is tracked in 2^-20 units and converted by a shift.
const fracBits = 20

// Sentinel errors. Callers test them with errors.Is.
var (
	// ErrNegative reports a negative byte count, price or payment.
	ErrNegative = errors.New("credit: negative amount")
	// ErrOverflow reports an amount that does not fit in an int64.
	ErrOverflow = errors.New("credit: amount overflows")
	// ErrAccount reports an empty or oversized account name.
	ErrAccount = errors.New("credit: invalid account name")
	// ErrConfig reports an inconsistent Config.
	ErrConfig = errors.New("credit: invalid config")
	// ErrSnapshot reports a snapshot that cannot be decoded or breaks an
	// invariant.
	ErrSnapshot = errors.New("credit: malformed snapshot")
)

// MaxAccountLen bounds the length of an account name. Account ids are 40
// characters (identity.AccountIDLen); the slack admits other naming schemes
// without letting a caller's bug grow the book's memory without bound.
const MaxAccountLen = 256

func checkAccount(account string) error {
	if account == "" || len(account) > MaxAccountLen {
		return fmt.Errorf("%w: length %d, want 1..%d", ErrAccount, len(account), MaxAccountLen)
	}
	return nil
}

// Owed is what bytes are worth at pricePerMiB: floor(bytes × price / 2^20)
// units (DESIGN §4). The product is taken in 128 bits, so it is exact for
// every pair of int64 inputs; a result above math.MaxInt64 is ErrOverflow.
func Owed(bytes, pricePerMiB int64) (int64, error) {
	if bytes < 0 || pricePerMiB < 0 {
		return 0, fmt.Errorf("%w: %d bytes at %d per MiB", ErrNegative, bytes, pricePerMiB)
	}
	hi, lo := bits.Mul64(uint64(bytes), uint64(pricePerMiB))
	units, _, ok := split(hi, lo)
	if !ok {
		return 0, fmt.Errorf("%w: %d bytes at %d per MiB", ErrOverflow, bytes, pricePerMiB)
	}
	return units, nil
}

// split divides the 128-bit value hi:lo (in 2^-20 units) into whole units
// and the remaining fraction. ok is false when the units exceed MaxInt64.
func split(hi, lo uint64) (units int64, frac uint64, ok bool) {
	if hi>>fracBits != 0 { // the units would not even fit in 64 bits
		return 0, 0, false
	}
	u := hi<<(64-fracBits) | lo>>fracBits
	if u > math.MaxInt64 {
		return 0, 0, false
	}
	return int64(u), lo & (MiB - 1), true
}

// meter accumulates the exact value of bytes served or received at possibly
// different prices: whole units plus the fraction below one unit, in 2^-20
// units. Keeping the fraction, rather than rounding each block, makes the
// value of many small blocks equal to that of one large one, and for one
// price equal to Owed(total bytes, price).
//
// With several prices the owed amount is the floor of the exact total
// value, floor(Σ bytes_p × p / 2^20). That is DESIGN's formula for a single
// price, never less than the sum of per-price floors, and independent of
// how bytes were split between prices and blocks.
//
// A meter saturates at math.MaxInt64 units instead of wrapping; a value
// that large (8 EiB at one unit per MiB) is beyond any real transfer.
type meter struct {
	units int64
	frac  uint64 // < MiB
}

// add adds bytes at price; both must be non-negative.
func (m *meter) add(bytes, price int64) {
	hi, lo := bits.Mul64(uint64(bytes), uint64(price))
	units, frac, ok := split(hi, lo)
	if !ok {
		m.saturate()
		return
	}
	m.frac += frac
	if m.frac >= MiB {
		m.frac -= MiB
		units = satAdd(units, 1)
	}
	m.units = satAdd(m.units, units)
	if m.units == math.MaxInt64 {
		m.frac = 0
	}
}

// sub removes bytes at price, stopping at zero, and reports whether the
// full amount was there to remove.
func (m *meter) sub(bytes, price int64) bool {
	hi, lo := bits.Mul64(uint64(bytes), uint64(price))
	units, frac, ok := split(hi, lo)
	if !ok || units > m.units || (units == m.units && frac > m.frac) {
		*m = meter{}
		return false
	}
	m.units -= units
	if frac > m.frac {
		m.units--
		m.frac += MiB
	}
	m.frac -= frac
	return true
}

func (m *meter) saturate() { *m = meter{units: math.MaxInt64} }

// satAdd adds two non-negative int64s, saturating at math.MaxInt64.
func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
