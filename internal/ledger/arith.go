package ledger

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
)

// mul returns a*b for non-negative a and b, or ErrOverflow.
func mul(a, b int64) (int64, error) {
	if a < 0 || b < 0 {
		return 0, fmt.Errorf("%w: negative factor", ErrInvalid)
	}
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	if hi != 0 || lo > math.MaxInt64 {
		return 0, fmt.Errorf("%w: %d × %d", ErrOverflow, a, b)
	}
	return int64(lo), nil
}

// fee returns floor(amount*bps/10000) for 0 <= amount and 0 <= bps <=
// 10000. The product is formed in 128 bits, so it cannot overflow, and the
// result never exceeds amount.
func fee(amount, bps int64) int64 {
	hi, lo := bits.Mul64(uint64(amount), uint64(bps))
	q, _ := bits.Div64(hi, lo, 10000) // hi < 10000 because bps <= 10000
	return int64(q)
}

// fingerprint hashes the fields of an idempotent call, each length-prefixed
// so that no two different argument lists collide by concatenation.
func fingerprint(fields ...any) []byte {
	h := sha256.New()
	var n [8]byte
	for _, f := range fields {
		var b []byte
		switch v := f.(type) {
		case string:
			b = []byte(v)
		case AccountID:
			b = []byte(v)
		case []byte:
			b = v
		case int64:
			b = binary.BigEndian.AppendUint64(nil, uint64(v))
		default:
			// Unreachable with the ledger's own calls; still hashed
			// unambiguously rather than panicking.
			b = fmt.Appendf(nil, "%T:%v", v, v)
		}
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	return h.Sum(nil)
}
