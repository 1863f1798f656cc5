package terms

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseClass(t *testing.T) {
	good := []struct {
		spec string
		want Class
		// str is what String gives back, when it differs from spec.
		str string
	}{
		{spec: "gold:2MiB/s:30", want: Class{Name: "gold", MinRate: 2 << 20, PricePerMiB: 30}},
		{spec: "live:1MiB/s:40:stream:4s", want: Class{Name: "live", MinRate: 1 << 20, PricePerMiB: 40, Streaming: true, Startup: 4 * time.Second}},
		{spec: "bronze:0:10", want: Class{Name: "bronze", PricePerMiB: 10}},
		{spec: "free:0:0", want: Class{Name: "free"}},
		{spec: "tv:500KB/s:25:stream", want: Class{Name: "tv", MinRate: 500000, PricePerMiB: 25, Streaming: true}, str: "tv:500000:25:stream"},
		{spec: "hd_2-x:1.5MiB:7:stream:1.5s", want: Class{Name: "hd_2-x", MinRate: 3 << 19, PricePerMiB: 7, Streaming: true, Startup: 1500 * time.Millisecond}, str: "hd_2-x:1536KiB/s:7:stream:1.5s"},
		{spec: "g:1GiB/s:1099511627776", want: Class{Name: "g", MinRate: 1 << 30, PricePerMiB: MaxPricePerMiB}},
		{spec: "x:12345:3", want: Class{Name: "x", MinRate: 12345, PricePerMiB: 3}},
		{spec: "s:1KiB/s:1:stream:0s", want: Class{Name: "s", MinRate: 1024, PricePerMiB: 1, Streaming: true}, str: "s:1KiB/s:1:stream"},
		{spec: "s:1KiB/s:1:stream:1h", want: Class{Name: "s", MinRate: 1024, PricePerMiB: 1, Streaming: true, Startup: time.Hour}, str: "s:1KiB/s:1:stream:1h0m0s"},
		{spec: strings.Repeat("a", 32) + ":0:1", want: Class{Name: strings.Repeat("a", 32), PricePerMiB: 1}},
	}
	for _, tc := range good {
		t.Run(tc.spec, func(t *testing.T) {
			got, err := ParseClass(tc.spec)
			if err != nil {
				t.Fatalf("ParseClass: %v", err)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			str := tc.str
			if str == "" {
				str = tc.spec
			}
			if got.String() != str {
				t.Errorf("String() = %q, want %q", got.String(), str)
			}
			if again, err := ParseClass(got.String()); err != nil || again != got {
				t.Errorf("String does not round-trip: %+v, %v", again, err)
			}
		})
	}

	bad := []struct{ spec, msg string }{
		{"", "1 fields"},
		{"gold", "1 fields"},
		{"gold:2MiB/s", "2 fields"},
		{"a:1:2:stream:1s:extra", "6 fields"},
		{"Gold:2MiB/s:30", "name"},
		{":2MiB/s:30", "name"},
		{"gold plus:2MiB/s:30", "name"},
		{strings.Repeat("a", 33) + ":0:1", "name"},
		{"gold:fast:30", "min rate"},
		{"gold:-1:30", "min rate"},
		{"gold:2TiB/s:30", "min_rate"},
		{"gold:2MiB/s:", "price per MiB"},
		{"gold:2MiB/s:thirty", "price per MiB"},
		{"gold:2MiB/s:1.5", "price per MiB"},
		{"gold:2MiB/s:+3", "price per MiB"},
		{"gold:2MiB/s:-3", "price_per_mib -3"},
		{"gold:2MiB/s:99999999999999999999", "price per MiB"},
		{"gold:2MiB/s:1099511627777", "price_per_mib"},
		{"gold:2MiB/s:30:streaming", "must be \"stream\""},
		{"live:0:40:stream:4s", "needs its play-out rate"},
		{"live:1MiB/s:40:stream:soon", "startup"},
		{"live:1MiB/s:40:stream:-1s", "startup -1s"},
		{"live:1MiB/s:40:stream:2h", "startup 2h0m0s"},
		{"live:1MiB/s:40:stream:1.5ms", "whole number of milliseconds"},
	}
	for _, tc := range bad {
		t.Run("bad "+tc.spec, func(t *testing.T) {
			got, err := ParseClass(tc.spec)
			if err == nil {
				t.Fatalf("accepted as %+v", got)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not match ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), "e.g. gold:2MiB/s:30") {
				t.Errorf("error %q does not say %q and show the form", err, tc.msg)
			}
		})
	}
}
