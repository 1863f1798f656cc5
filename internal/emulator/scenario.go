// Package emulator runs a whole swarm in one process: a tracker, the
// provider's origin seeder and groups of peers with shaped upload and
// download rates, each on its own loopback address, over real TCP
// connections and the real engine. It measures what DESIGN §6's report
// asks for: completion times against the Kumar–Ross bound, per-peer rate
// series, and how many bytes came from the origin versus from peers.
package emulator

import (
	"fmt"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/terms"
)

// Scenario describes one emulated run. Sizes and rates are parsed values
// in bytes and bytes per second.
type Scenario struct {
	Size         int64
	PieceLength  int64
	RandomSeed   uint64
	StallTimeout time.Duration
	MaxDuration  time.Duration
	// OriginUpload is the provider's own upload capacity.
	OriginUpload int64
	// Payments makes the torrent a paid one: peers get accounts and
	// balances and pay for every verified piece; false runs the same swarm
	// for free.
	Payments bool
	// Classes are the service classes in the signed terms.
	Classes []terms.Class
	Groups  []Group
}

// minRate is the class's guaranteed rate (0 for unknown or free).
func (s *Scenario) minRate(class string) int64 {
	for _, c := range s.Classes {
		if c.Name == class {
			return c.MinRate
		}
	}
	return 0
}

// Group is a set of identical peers.
type Group struct {
	Name     string
	Count    int
	Upload   int64
	Download int64 // 0 = unlimited
	// ArriveFrom and ArriveTo spread arrivals uniformly; equal for one time.
	ArriveFrom, ArriveTo time.Duration
	// Linger is how long a peer seeds after completing; negative = forever.
	Linger time.Duration
	// Class is the service class the group buys with (paid runs).
	Class string
	// Balance is minted to each peer; 0 = enough for twice its cost.
	// Peers know it from the start, as `get` does from the broker, so a
	// group minted four times its cost or more sizes channels as a rich
	// buyer (see internal/paid).
	Balance int64
}

// Validate reports the first thing wrong with s.
func (s *Scenario) Validate() error {
	switch {
	case s.Size <= 0:
		return fmt.Errorf("scenario: size must be positive")
	case s.PieceLength < 16<<10 || s.PieceLength&(s.PieceLength-1) != 0:
		return fmt.Errorf("scenario: piece_length must be a power of two of at least 16KiB, got %d", s.PieceLength)
	case s.OriginUpload <= 0:
		return fmt.Errorf("scenario: origin upload must be positive")
	case s.MaxDuration <= 0:
		return fmt.Errorf("scenario: max_duration must be positive")
	}
	total := 0
	for _, g := range s.Groups {
		if g.Count <= 0 || g.Upload < 0 || g.Download < 0 || g.ArriveTo < g.ArriveFrom {
			return fmt.Errorf("scenario: group %q: bad count, rate or arrival spread", g.Name)
		}
		total += g.Count
	}
	if total == 0 {
		return fmt.Errorf("scenario: no peers")
	}
	if s.Payments {
		if len(s.Classes) == 0 {
			return fmt.Errorf("scenario: payments need at least one [[class]]")
		}
		for _, g := range s.Groups {
			if !s.hasClass(g.Class) {
				return fmt.Errorf("scenario: group %q buys class %q, which the scenario does not define", g.Name, g.Class)
			}
			if g.Balance < 0 {
				return fmt.Errorf("scenario: group %q: negative balance", g.Name)
			}
		}
	}
	if total > maxPeers {
		return fmt.Errorf("scenario: %d peers; at most %d fit on loopback addresses", total, maxPeers)
	}
	return nil
}

func (s *Scenario) hasClass(name string) bool {
	for _, c := range s.Classes {
		if c.Name == name {
			return true
		}
	}
	return false
}

// maxPeers is how many peers get distinct 127.0.x.y addresses.
const maxPeers = 250 * 200

// KumarRoss is the lower bound on the time for all N peers to finish:
// max(F/u_origin, F/d_min, N·F/(u_origin + Σu_i)), in seconds.
func (s *Scenario) KumarRoss() float64 {
	f := float64(s.Size)
	n := 0
	sumUp := float64(s.OriginUpload)
	dmin := 0.0
	for _, g := range s.Groups {
		n += g.Count
		sumUp += float64(g.Upload) * float64(g.Count)
		if g.Download > 0 && (dmin == 0 || float64(g.Download) < dmin) {
			dmin = float64(g.Download)
		}
	}
	bound := f / float64(s.OriginUpload)
	if dmin > 0 {
		bound = max(bound, f/dmin)
	}
	return max(bound, float64(n)*f/sumUp)
}

// Demo is the built-in scenario of `floodgate demo`: one origin and a
// handful of peers arriving over a few seconds, sized to finish in about
// half a minute while showing that peers, not the origin, carry the bulk.
func Demo() Scenario {
	return Scenario{
		Size:         48 << 20,
		PieceLength:  256 << 10,
		RandomSeed:   1,
		StallTimeout: 20 * time.Second,
		MaxDuration:  90 * time.Second,
		OriginUpload: 6 << 20,
		Payments:     true,
		// Guaranteed rates arrive with the QoS work; until then both
		// classes are best effort at different prices.
		Classes: []terms.Class{
			{Name: "premium", PricePerMiB: 30},
			{Name: "standard", PricePerMiB: 10},
		},
		Groups: []Group{
			{Name: "early", Count: 3, Upload: 3 << 20, Download: 16 << 20, ArriveFrom: 0, ArriveTo: time.Second, Linger: -1, Class: "premium"},
			{Name: "late", Count: 5, Upload: 2 << 20, Download: 16 << 20, ArriveFrom: 2 * time.Second, ArriveTo: 6 * time.Second, Linger: 5 * time.Second, Class: "standard"},
		},
	}
}
