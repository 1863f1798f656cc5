// Package units parses and formats the byte sizes and rates used on the
// command line and in scenario files ("256KiB", "2MiB/s", "1.5GB").
package units

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

var suffixes = []struct {
	name string
	mult float64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30},
	{"B", 1},
}

// ParseSize parses a byte count such as "16384", "256KiB", "1.5MB". Binary
// suffixes (KiB, MiB, GiB, TiB, and bare K, M, G) are powers of 1024,
// decimal ones (KB, MB, GB, TB) powers of 1000.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("empty size")
	}
	mult := 1.0
	for _, sf := range suffixes {
		if strings.HasSuffix(t, sf.name) {
			mult = sf.mult
			t = strings.TrimSpace(strings.TrimSuffix(t, sf.name))
			break
		}
	}
	if n, err := strconv.ParseInt(t, 10, 64); err == nil && mult == 1 {
		if n < 0 {
			return 0, fmt.Errorf("size %q is negative", s)
		}
		return n, nil
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("invalid size %q (examples: 16384, 256KiB, 2MiB)", s)
	}
	v := f * mult
	if v < 0 {
		return 0, fmt.Errorf("size %q is negative", s)
	}
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return int64(v), nil
}

// ParseRate parses a rate in bytes per second such as "2MiB/s" or "500KB/s"
// (the "/s" is optional). "0" means zero; callers decide whether that
// means unlimited.
func ParseRate(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSpace(s), "/s")
	n, err := ParseSize(t)
	if err != nil {
		return 0, fmt.Errorf("invalid rate %q (examples: 2MiB/s, 500KB/s)", s)
	}
	return n, nil
}

// FormatBytes renders n with a binary suffix, e.g. "12.5 MiB".
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit && n > -unit {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	for _, s := range []string{"KiB", "MiB", "GiB", "TiB"} {
		f /= unit
		if math.Abs(f) < unit || s == "TiB" {
			return fmt.Sprintf("%.1f %s", f, s)
		}
	}
	return fmt.Sprintf("%d B", n)
}

// FormatRate renders bytes per second, e.g. "3.2 MiB/s".
func FormatRate(bps int64) string { return FormatBytes(bps) + "/s" }
