package terms

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/units"
)

// classSpecHelp is appended to ParseClass errors, because the user mistyped
// a flag and needs to see the form it takes.
const classSpecHelp = "want NAME:MIN_RATE:PRICE_PER_MIB[:stream[:STARTUP]], e.g. gold:2MiB/s:30, live:1MiB/s:40:stream:4s or bronze:0:10"

// ParseClass parses the command-line form of a class:
//
//	NAME:MIN_RATE:PRICE_PER_MIB[:stream[:STARTUP]]
//
// MIN_RATE is a rate such as "2MiB/s" or "0" (best effort), PRICE_PER_MIB a
// non-negative integer, and STARTUP a Go duration ("4s"; zero when left
// out). "stream" marks a streaming class, whose MIN_RATE is its play-out
// rate. Errors wrap ErrInvalid and show the expected form.
func ParseClass(spec string) (Class, error) {
	fail := func(format string, args ...any) (Class, error) {
		return Class{}, fmt.Errorf("%w: class %q: %s; %s", ErrInvalid, spec, fmt.Sprintf(format, args...), classSpecHelp)
	}
	f := strings.Split(spec, ":")
	if len(f) < 3 || len(f) > 5 {
		return fail("%d fields", len(f))
	}
	c := Class{Name: f[0]}
	if err := checkName(c.Name); err != nil {
		return fail("name must be 1..%d bytes of a-z, 0-9, '_' and '-'", MaxClassNameLen)
	}
	rate, err := units.ParseRate(f[1])
	if err != nil {
		return fail("min rate: %v", err)
	}
	c.MinRate = rate
	price, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil || f[2][0] == '+' {
		return fail("price per MiB %q is not a whole number", f[2])
	}
	c.PricePerMiB = price
	if len(f) >= 4 {
		if f[3] != "stream" {
			return fail("fourth field %q must be \"stream\"", f[3])
		}
		c.Streaming = true
	}
	if len(f) == 5 {
		d, err := time.ParseDuration(f[4])
		if err != nil {
			return fail("startup: %v", err)
		}
		c.Startup = d
	}
	if err := c.Validate(); err != nil {
		return fail("%v", strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": "))
	}
	return c, nil
}

// String returns the class in the form ParseClass reads, such as
// "live:1MiB/s:40:stream:4s", with the rate exact.
func (c Class) String() string {
	s := c.Name + ":" + formatRate(c.MinRate) + ":" + strconv.FormatInt(c.PricePerMiB, 10)
	if c.Streaming {
		s += ":stream"
		if c.Startup != 0 {
			s += ":" + c.Startup.String()
		}
	}
	return s
}

// formatRate writes a rate with the largest binary suffix that keeps it
// exact, so that String and ParseClass round-trip.
func formatRate(r int64) string {
	for _, u := range []struct {
		suffix string
		size   int64
	}{{"GiB/s", 1 << 30}, {"MiB/s", 1 << 20}, {"KiB/s", 1 << 10}} {
		if r != 0 && r%u.size == 0 {
			return strconv.FormatInt(r/u.size, 10) + u.suffix
		}
	}
	return strconv.FormatInt(r, 10)
}
