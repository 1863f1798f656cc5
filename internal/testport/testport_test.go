package testport

import (
	"net"
	"strconv"
	"testing"
)

// A port from Free lies below the ephemeral range and can be bound, for
// TCP and UDP alike, by whoever it is given to.
func TestFreePortIsBelowTheEphemeralRangeAndBindable(t *testing.T) {
	top := ephemeralLow()
	for range 20 {
		p := Free(t, "tcp", "udp")
		if p < lowest || p >= top {
			t.Fatalf("port %d outside %d..%d", p, lowest, top-1)
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("binding tcp %s: %v", addr, err)
		}
		c, err := net.ListenPacket("udp", addr)
		if err != nil {
			l.Close()
			t.Fatalf("binding udp %s: %v", addr, err)
		}
		l.Close()
		c.Close()
	}
}

// A port in use is never handed out.
func TestFreeSkipsAPortInUse(t *testing.T) {
	p := Free(t)
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if free(p, []string{"tcp"}) {
		t.Fatalf("port %d is bound but reported free", p)
	}
}

// Ports handed out are never handed out again, bound or not.
func TestFreeNeverRepeatsAPort(t *testing.T) {
	seen := make(map[int]bool)
	for range 500 {
		p := Free(t)
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
}
