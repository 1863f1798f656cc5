package choker

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

var t0 = time.Unix(1_700_000_000, 0)

func newChoker(t *testing.T, cfg Config) *Choker {
	t.Helper()
	c, err := New(cfg, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// peer returns an interested, eligible peer connected long ago.
func peer(id uint64, down, up int64) Peer {
	return Peer{ID: id, Interested: true, Eligible: true, DownloadRate: down, UploadRate: up, ConnectedAt: t0.Add(-time.Hour)}
}

func sorted(ids []uint64) []uint64 {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	return ids
}

// apply records a rechoke's outcome in the peers, as the engine would.
func apply(c *Choker, peers []Peer, unchoked []uint64) {
	opt, hasOpt := c.Optimistic()
	for i := range peers {
		peers[i].Unchoked = slices.Contains(unchoked, peers[i].ID)
		peers[i].Optimistic = hasOpt && peers[i].ID == opt
	}
}

func TestUnlimitedServesEveryInterestedEligiblePeer(t *testing.T) {
	seed := peer(4, 0, 0)
	seed.IsSeed, seed.Interested = true, false
	banned := peer(5, 0, 0)
	banned.Eligible = false
	bored := peer(6, 0, 0)
	bored.Interested = false
	snubbed := peer(7, 0, 0)
	snubbed.Snubbed = true
	peers := []Peer{peer(1, 0, 0), peer(2, 5, 5), peer(3, 9, 9), seed, banned, bored, snubbed}

	c := newChoker(t, Config{Limited: false, RechokeInterval: 10 * time.Second, OptimisticInterval: 30 * time.Second})
	for _, seeding := range []bool{false, true} {
		got := sorted(c.Rechoke(t0, peers, seeding))
		if want := []uint64{1, 2, 3, 7}; !slices.Equal(got, want) {
			t.Errorf("seeding=%v: unchoked %v, want %v", seeding, got, want)
		}
	}
	if _, ok := c.Optimistic(); ok {
		t.Error("unlimited choker has an optimistic unchoke")
	}
}

// With MaxUnchoked binding, priority ranks first and incumbents keep their
// slots; then those who waited longest.
func TestUnlimitedCapKeepsPriorityAndIncumbents(t *testing.T) {
	a, b, c3, d := peer(1, 0, 0), peer(2, 0, 0), peer(3, 0, 0), peer(4, 0, 0)
	a.Unchoked = true
	b.Priority = 5
	c3.LastUnchoked = t0.Add(-time.Minute)
	d.LastUnchoked = t0.Add(-time.Hour)
	c := newChoker(t, Config{MaxUnchoked: 3, RechokeInterval: time.Second, OptimisticInterval: time.Second})
	got := sorted(c.Rechoke(t0, []Peer{a, b, c3, d}, true))
	if want := []uint64{1, 2, 4}; !slices.Equal(got, want) {
		t.Errorf("unchoked %v, want %v", got, want)
	}
}

func TestLimitedRanking(t *testing.T) {
	snubbed := peer(9, 100<<20, 0)
	snubbed.Snubbed = true
	payer := peer(8, 0, 0)
	payer.Priority = 1
	tests := []struct {
		name    string
		seeding bool
		peers   []Peer
		regular []uint64 // the Slots-1 regular unchokes
	}{
		{"leeching: tit for tat by download rate", false,
			[]Peer{peer(1, 10, 900), peer(2, 50, 0), peer(3, 40, 0), peer(4, 30, 0), peer(5, 20, 0)},
			[]uint64{2, 3, 4}},
		{"leeching: snubbed peers lose regular slots", false,
			[]Peer{snubbed, peer(2, 50, 0), peer(3, 40, 0), peer(4, 30, 0), peer(5, 20, 0)},
			[]uint64{2, 3, 4}},
		{"seeding: by our upload rate to them", true,
			[]Peer{peer(1, 900, 10), peer(2, 0, 50), peer(3, 0, 40), peer(4, 0, 30), peer(5, 0, 20)},
			[]uint64{2, 3, 4}},
		{"seeding: snubbing is irrelevant", true,
			[]Peer{func() Peer { p := peer(1, 0, 90); p.Snubbed = true; return p }(), peer(2, 0, 50), peer(3, 0, 40), peer(4, 0, 30)},
			[]uint64{1, 2, 3}},
		{"priority before any rate", false,
			[]Peer{payer, peer(2, 50, 0), peer(3, 40, 0), peer(4, 30, 0), peer(5, 20, 0)},
			[]uint64{2, 3, 8}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newChoker(t, Config{Slots: 4, Limited: true, RechokeInterval: 10 * time.Second, OptimisticInterval: 30 * time.Second})
			got := c.Rechoke(t0, tc.peers, tc.seeding)
			opt, ok := c.Optimistic()
			if !ok {
				t.Fatal("no optimistic unchoke")
			}
			if slices.Contains(tc.regular, opt) {
				t.Errorf("optimistic %d is one of the regular picks", opt)
			}
			regular := sorted(slices.DeleteFunc(slices.Clone(got), func(id uint64) bool { return id == opt }))
			if !slices.Equal(regular, sorted(tc.regular)) {
				t.Errorf("regular unchokes %v, want %v (all: %v)", regular, tc.regular, got)
			}
		})
	}
}

// Slots = 1 leaves only the optimistic slot; a snubbed peer can hold it.
func TestOneSlotIsOptimisticOnly(t *testing.T) {
	p := peer(1, 0, 0)
	p.Snubbed = true
	c := newChoker(t, Config{Slots: 1, Limited: true, RechokeInterval: time.Second, OptimisticInterval: time.Second})
	if got := c.Rechoke(t0, []Peer{p}, false); !slices.Equal(got, []uint64{1}) {
		t.Errorf("unchoked %v, want [1]", got)
	}
}

// The optimistic unchoke lasts OptimisticInterval, then rotates; it is
// replaced at once if its peer goes away.
func TestOptimisticRotation(t *testing.T) {
	cfg := Config{Slots: 2, Limited: true, RechokeInterval: 10 * time.Second, OptimisticInterval: 30 * time.Second}
	c := newChoker(t, cfg)
	peers := []Peer{peer(1, 100, 0), peer(2, 0, 0), peer(3, 0, 0), peer(4, 0, 0), peer(5, 0, 0)}
	apply(c, peers, c.Rechoke(t0, peers, false))
	first, _ := c.Optimistic()
	for _, d := range []time.Duration{10 * time.Second, 20 * time.Second, 29 * time.Second} {
		apply(c, peers, c.Rechoke(t0.Add(d), peers, false))
		if opt, _ := c.Optimistic(); opt != first {
			t.Fatalf("optimistic changed from %d to %d after %v", first, opt, d)
		}
	}
	// Rotation draws among the others; over a few rotations it moves.
	moved := false
	for k := 1; k <= 5; k++ {
		apply(c, peers, c.Rechoke(t0.Add(time.Duration(k)*30*time.Second), peers, false))
		if opt, _ := c.Optimistic(); opt != first {
			moved = true
		}
	}
	if !moved {
		t.Error("optimistic unchoke never rotated")
	}
	// Its peer loses interest: a replacement is drawn on the next call.
	opt, _ := c.Optimistic()
	for i := range peers {
		if peers[i].ID == opt {
			peers[i].Interested = false
		}
	}
	got := c.Rechoke(t0.Add(181*time.Second), peers, false)
	if slices.Contains(got, opt) {
		t.Errorf("uninterested peer %d still unchoked", opt)
	}
	if now, ok := c.Optimistic(); !ok || now == opt {
		t.Errorf("no replacement optimistic: %d, %v", now, ok)
	}
}

// Newly connected peers are three times as likely to get the optimistic
// slot as old ones.
func TestNewPeersThreeTimesAsLikely(t *testing.T) {
	cfg := Config{Slots: 1, Limited: true, RechokeInterval: time.Second, OptimisticInterval: time.Second}
	c, _ := New(cfg, rand.New(rand.NewPCG(42, 42)))
	var peers []Peer
	for id := uint64(1); id <= 4; id++ {
		peers = append(peers, peer(id, 0, 0))
	}
	fresh := peer(5, 0, 0)
	peers = append(peers, fresh)
	const draws = 20000
	count := 0
	for i := range draws {
		now := t0.Add(time.Duration(i) * time.Second)
		peers[4].ConnectedAt = now // always new
		c.Rechoke(now, peers, false)
		if opt, _ := c.Optimistic(); opt == 5 {
			count++
		}
	}
	// Weights 3 against 4×1: the newcomer should win 3/7 of the draws.
	if got, want := float64(count)/draws, 3.0/7; got < want-0.02 || got > want+0.02 {
		t.Errorf("newcomer drawn %.3f of the time, want %.3f", got, want)
	}
}

// Between full rechokes the regular set is kept unless an outsider is
// clearly better; at the rechoke interval it is re-ranked exactly.
func TestNoFibrillation(t *testing.T) {
	cfg := Config{Slots: 3, Limited: true, RechokeInterval: 10 * time.Second, OptimisticInterval: time.Hour}
	tests := []struct {
		name    string
		at      time.Duration
		rate5   int64 // outsider's new download rate
		regular []uint64
	}{
		{"slightly faster outsider waits", 5 * time.Second, 120 << 10, []uint64{1, 2}},
		{"clearly faster outsider displaces the slowest", 5 * time.Second, 200 << 10, []uint64{1, 5}},
		{"at the interval, exact ranking", 10 * time.Second, 120 << 10, []uint64{1, 5}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newChoker(t, cfg)
			// Peer 3 is old and slow, so it is the optimistic pick as the
			// only one left; peer 5 starts slow and then speeds up.
			peers := []Peer{peer(1, 300<<10, 0), peer(2, 100<<10, 0), peer(5, 10<<10, 0)}
			apply(c, peers, c.Rechoke(t0, peers, false))
			opt, _ := c.Optimistic()
			if opt != 5 {
				t.Fatalf("setup: optimistic is %d", opt)
			}
			// A fourth peer takes over the optimistic role from the
			// engine's point of view: peer 5 must now compete for a
			// regular slot.
			peers = append(peers, peer(6, 0, 0))
			c.optimistic = 6
			apply(c, peers, []uint64{1, 2, 6})
			peers[2].DownloadRate = tc.rate5
			got := c.Rechoke(t0.Add(tc.at), peers, false)
			regular := sorted(slices.DeleteFunc(slices.Clone(got), func(id uint64) bool { return id == 6 }))
			if !slices.Equal(regular, tc.regular) {
				t.Errorf("regular %v, want %v", regular, tc.regular)
			}
		})
	}
}

// A slot freed between rechokes is filled at once.
func TestEmptySlotFilledBetweenRechokes(t *testing.T) {
	c := newChoker(t, Config{Slots: 3, Limited: true, RechokeInterval: 10 * time.Second, OptimisticInterval: time.Hour})
	peers := []Peer{peer(1, 300, 0), peer(2, 200, 0), peer(3, 100, 0), peer(4, 50, 0)}
	apply(c, peers, c.Rechoke(t0, peers, false))
	opt, _ := c.Optimistic()
	var gone uint64
	for i := range peers {
		if peers[i].Unchoked && peers[i].ID != opt {
			gone = peers[i].ID
			peers = slices.Delete(peers, i, i+1)
			break
		}
	}
	got := c.Rechoke(t0.Add(time.Second), peers, false)
	if len(got) != 3 || slices.Contains(got, gone) {
		t.Errorf("after peer %d left: unchoked %v, want 3 others", gone, got)
	}
}

func TestDue(t *testing.T) {
	c := newChoker(t, Config{Slots: 2, Limited: true, RechokeInterval: 10 * time.Second, OptimisticInterval: 30 * time.Second})
	if !c.Due(t0) {
		t.Fatal("first rechoke not due")
	}
	c.Rechoke(t0, nil, false)
	if c.Due(t0.Add(9*time.Second)) || !c.Due(t0.Add(10*time.Second)) {
		t.Error("Due disagrees with RechokeInterval")
	}
	if !c.NextRechoke().Equal(t0.Add(10 * time.Second)) {
		t.Errorf("NextRechoke = %v", c.NextRechoke())
	}
	// An early, event-driven call does not postpone the full rechoke.
	c.Rechoke(t0.Add(5*time.Second), nil, false)
	if !c.NextRechoke().Equal(t0.Add(10 * time.Second)) {
		t.Errorf("early call moved NextRechoke to %v", c.NextRechoke())
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	good := DefaultConfig()
	for name, mutate := range map[string]func(*Config){
		"no slots":        func(c *Config) { c.Slots = 0 },
		"negative cap":    func(c *Config) { c.MaxUnchoked = -1 },
		"zero rechoke":    func(c *Config) { c.RechokeInterval = 0 },
		"zero optimistic": func(c *Config) { c.OptimisticInterval = 0 },
	} {
		cfg := good
		mutate(&cfg)
		if _, err := New(cfg, rng); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%s: %v, want ErrBadConfig", name, err)
		}
	}
	if _, err := New(good, nil); !errors.Is(err, ErrBadConfig) {
		t.Errorf("nil rng: %v", err)
	}
	if _, err := New(good, rng); err != nil {
		t.Errorf("default config: %v", err)
	}
}
