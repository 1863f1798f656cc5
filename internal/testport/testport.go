// Package testport picks loopback ports for tests that must name a port to
// another program (aria2c, opentracker) before that program binds it.
package testport

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// lowest is the bottom of the range Free draws from: above the ports
// well-known services listen on.
const lowest = 10000

// given holds the ports Free handed out in this process, so that two
// callers that have not bound theirs yet never get the same one.
var given struct {
	sync.Mutex
	ports map[int]bool
}

// Free returns a port on 127.0.0.1 that is free at this moment for every
// one of networks ("tcp", "udp"; none means "tcp"). It is drawn at random
// below the kernel's ephemeral range (net.ipv4.ip_local_port_range), from
// which the kernel takes the local ports of outgoing connections and of
// listeners on port 0: such a port, freed for the program to bind, could
// go to a connection of any test running alongside first, and did once.
// A port below the range can only be taken by a program that names it.
func Free(t testing.TB, networks ...string) int {
	t.Helper()
	if len(networks) == 0 {
		networks = []string{"tcp"}
	}
	top := ephemeralLow()
	if top-lowest < 1000 {
		// An unusual ephemeral range leaves no room below it: fall back
		// to a port the kernel picks.
		return kernelPort(t, networks[0])
	}
	given.Lock()
	defer given.Unlock()
	if given.ports == nil {
		given.ports = make(map[int]bool)
	}
	for range 100 {
		p := lowest + rand.IntN(top-lowest)
		if !given.ports[p] && free(p, networks) {
			given.ports[p] = true
			return p
		}
	}
	t.Fatalf("testport: no free port in %d..%d after 100 tries", lowest, top-1)
	return 0
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768,
// Linux's default, if it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 32768
	}
	low, err := strconv.Atoi(f[0])
	if err != nil || low <= 0 {
		return 32768
	}
	return low
}

// free reports whether port can be bound on 127.0.0.1 for every network.
func free(port int, networks []string) bool {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for _, network := range networks {
		var err error
		switch network {
		case "udp":
			var c net.PacketConn
			if c, err = net.ListenPacket("udp", addr); err == nil {
				c.Close()
			}
		default:
			var l net.Listener
			if l, err = net.Listen("tcp", addr); err == nil {
				l.Close()
			}
		}
		if err != nil {
			return false
		}
	}
	return true
}

// kernelPort asks the kernel for a free port of network.
func kernelPort(t testing.TB, network string) int {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("testport: %v", err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testport: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
