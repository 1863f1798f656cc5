package wire

import (
	"bytes"
	"net/netip"
	"slices"
	"testing"
)

// The vectors are BEP 6's own: 80.4.4.200, an info hash of twenty 0xAA
// bytes, 1313 pieces.
func TestAllowedFastSetBEP6Vectors(t *testing.T) {
	var ih [20]byte
	copy(ih[:], bytes.Repeat([]byte{0xAA}, 20))
	ip := netip.MustParseAddr("80.4.4.200")
	if got, want := AllowedFastSet(ip, ih, 1313, 7), []uint32{1059, 431, 808, 1217, 287, 376, 1188}; !slices.Equal(got, want) {
		t.Errorf("k=7: got %v, want %v", got, want)
	}
	if got, want := AllowedFastSet(ip, ih, 1313, 9), []uint32{1059, 431, 808, 1217, 287, 376, 1188, 353, 508}; !slices.Equal(got, want) {
		t.Errorf("k=9: got %v, want %v", got, want)
	}
	// Same /24, same set; a mapped address is the same peer.
	if got := AllowedFastSet(netip.MustParseAddr("::ffff:80.4.4.1"), ih, 1313, 7); !slices.Equal(got, AllowedFastSet(ip, ih, 1313, 7)) {
		t.Errorf("same /24 gave %v", got)
	}
}

func TestAllowedFastSetEdges(t *testing.T) {
	var ih [20]byte
	ip := netip.MustParseAddr("10.1.2.3")
	if s := AllowedFastSet(ip, ih, 3, 10); len(s) != 3 || !slices.Contains(s, 0) || !slices.Contains(s, 1) || !slices.Contains(s, 2) {
		t.Errorf("k above piece count: %v, want all 3 pieces", s)
	}
	for name, s := range map[string][]uint32{
		"ipv6":      AllowedFastSet(netip.MustParseAddr("2001:db8::1"), ih, 100, 5),
		"invalid":   AllowedFastSet(netip.Addr{}, ih, 100, 5),
		"no pieces": AllowedFastSet(ip, ih, 0, 5),
		"k zero":    AllowedFastSet(ip, ih, 100, 0),
	} {
		if s != nil {
			t.Errorf("%s: %v, want nil", name, s)
		}
	}
}
