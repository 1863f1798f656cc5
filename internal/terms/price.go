package terms

import (
	"errors"
	"fmt"
	"math/bits"
)

// ErrOverflow means a price does not fit in an int64.
var ErrOverflow = errors.New("terms: price overflows int64")

// PriceFor is what a downloader owes for bytes of verified data at
// pricePerMiB units per MiB: floor(bytes × pricePerMiB / 2^20), the rule of
// DESIGN §4. Callers apply it to cumulative totals (what is owed for all
// bytes so far, minus what was paid), never per piece and summed, so that
// rounding never loses more than one unit in total.
//
// The product is taken in 128 bits, so it is exact for every pair of
// non-negative int64 inputs; a result beyond int64 fails with ErrOverflow.
func PriceFor(bytes, pricePerMiB int64) (int64, error) {
	if bytes < 0 || pricePerMiB < 0 {
		return 0, fmt.Errorf("terms: price of %d bytes at %d per MiB: negative input", bytes, pricePerMiB)
	}
	hi, lo := bits.Mul64(uint64(bytes), uint64(pricePerMiB))
	// The result (hi·2^64 + lo) >> 20 = hi·2^44 + lo>>20 is below 2^63
	// exactly when hi < 2^19.
	if hi >= 1<<19 {
		return 0, fmt.Errorf("%w: %d bytes at %d per MiB", ErrOverflow, bytes, pricePerMiB)
	}
	return int64(hi<<44 | lo>>20), nil
}

// Price is PriceFor at the class's price.
func (c Class) Price(bytes int64) (int64, error) { return PriceFor(bytes, c.PricePerMiB) }
