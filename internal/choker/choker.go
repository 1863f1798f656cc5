// Package choker decides which peers an uploader unchokes.
//
// It is pure policy: the engine hands it a snapshot of its peers and the
// current time, and gets back the set of peer IDs to unchoke; everyone else
// is choked. It never touches sockets, goroutines or clocks, and draws
// randomness only from the *rand.Rand it was given, so the engine, the
// emulator and tests all run the same, reproducible code.
//
// The rules are classic BitTorrent choking, adapted to a CDN whose uploaders
// are paid:
//
//   - Upload not limited (Config.Limited false): every interested, eligible
//     peer is unchoked, up to MaxUnchoked. A paid or CDN seeder with spare
//     bandwidth gains nothing by turning customers away; the upload
//     scheduler, not the choker, then divides the bandwidth by reservation
//     and price.
//   - Upload limited, leeching: Slots-1 regular slots go to the peers that
//     upload to us fastest (tit for tat), skipping snubbed peers, because
//     reciprocation is what finishes our own download.
//   - Upload limited, seeding: the regular slots go to the peers we upload to
//     fastest, since they spread our pieces through the swarm quickest and
//     use the scarce slots best.
//   - In both limited modes Priority (price or reservation) ranks before any
//     rate, so a paying or reserved peer is never crowded out by a fast free
//     one; with equal priorities the rules reduce to mainline BitTorrent.
//   - One optimistic unchoke rotates every OptimisticInterval among the
//     other interested peers, with newly connected peers three times as
//     likely to be drawn: it is how a newcomer with nothing to trade gets its
//     first pieces, and how we discover peers faster than our current ones.
//   - No fibrillation: between full rechokes (every RechokeInterval) the
//     current regular set is kept, and a member is replaced only by a
//     candidate that is clearly better (higher priority, or at least half as
//     fast again); choking and unchoking costs each side a round trip and
//     throws away TCP's congestion window, so churn must earn its keep.
package choker

import (
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
)

// Config holds the choker's knobs.
type Config struct {
	// Slots is the number of unchoke slots when upload is limited,
	// including the one optimistic slot (so Slots-1 regular slots).
	Slots int
	// MaxUnchoked caps the unchoked peers when upload is not limited;
	// 0 means no cap.
	MaxUnchoked int
	// RechokeInterval is how often a full re-ranking happens.
	RechokeInterval time.Duration
	// OptimisticInterval is how long one optimistic unchoke lasts.
	OptimisticInterval time.Duration
	// Limited says whether the uploader's bandwidth is capped, which is what
	// makes slots scarce and choking worthwhile.
	Limited bool
}

// DefaultConfig returns the mainline BitTorrent values: four slots, a
// rechoke every 10 s and an optimistic rotation every 30 s, limited upload.
func DefaultConfig() Config {
	return Config{
		Slots:              4,
		MaxUnchoked:        0,
		RechokeInterval:    10 * time.Second,
		OptimisticInterval: 30 * time.Second,
		Limited:            true,
	}
}

// Peer is the engine's snapshot of one connected peer.
type Peer struct {
	// ID identifies the peer to the engine; the choker only echoes it back.
	ID uint64
	// Interested is true when the peer wants something we have.
	Interested bool
	// Unchoked is true when the peer is currently unchoked by us.
	Unchoked bool
	// Optimistic is true when the current unchoke is the optimistic one.
	// The choker remembers its own choice; this flag only lets a freshly
	// created choker adopt the engine's state.
	Optimistic bool
	// Snubbed is true when the peer has sent us nothing for a while although
	// we asked; snubbed peers only get the optimistic slot while leeching.
	Snubbed bool
	// IsSeed is true when the peer has every piece (it can never be
	// interested in our data).
	IsSeed bool
	// DownloadRate is the rate at which we receive from the peer, bytes/s.
	DownloadRate int64
	// UploadRate is the rate at which we send to the peer, bytes/s.
	UploadRate int64
	// ConnectedAt is when the connection was established.
	ConnectedAt time.Time
	// LastUnchoked is when we last unchoked the peer (zero if never).
	LastUnchoked time.Time
	// Priority ranks peers before any rate; higher first (a price or a
	// reservation, as the engine sees fit).
	Priority int64
	// Eligible false means never unchoke (banned, unpaid debt, ...).
	Eligible bool
}

// ErrBadConfig is returned by New for a configuration it cannot honour.
var ErrBadConfig = errors.New("choker: invalid config")

// Hysteresis: a candidate displaces a regular member between full rechokes
// only if its rate is at least 3/2 of the member's plus minMargin. The
// ratio absorbs ordinary rate noise; the absolute margin keeps near-zero
// rates (idle peers measured at a few bytes/s) from trading places.
const (
	betterNum = 3
	betterDen = 2
	minMargin = 2 << 10 // bytes/s
)

// newPeerWeight is how much likelier a newly connected peer is to be drawn
// for the optimistic slot (mainline BitTorrent uses three).
const newPeerWeight = 3

// Choker is the unchoke policy of one torrent (or one uploader). It is not
// safe for concurrent use; the engine serialises calls.
type Choker struct {
	cfg Config
	rng *rand.Rand

	started        bool
	nextRechoke    time.Time
	optimistic     uint64
	hasOptimistic  bool
	nextOptimistic time.Time

	// Scratch slices reused between calls.
	cands []*Peer
	rest  []*Peer
}

// New returns a choker. rng is the only source of randomness it uses.
func New(cfg Config, rng *rand.Rand) (*Choker, error) {
	switch {
	case rng == nil:
		return nil, fmt.Errorf("%w: nil random source", ErrBadConfig)
	case cfg.Limited && cfg.Slots < 1:
		return nil, fmt.Errorf("%w: limited upload needs at least 1 slot, got %d", ErrBadConfig, cfg.Slots)
	case cfg.MaxUnchoked < 0:
		return nil, fmt.Errorf("%w: negative MaxUnchoked %d", ErrBadConfig, cfg.MaxUnchoked)
	case cfg.RechokeInterval <= 0:
		return nil, fmt.Errorf("%w: RechokeInterval must be positive, got %v", ErrBadConfig, cfg.RechokeInterval)
	case cfg.OptimisticInterval <= 0:
		return nil, fmt.Errorf("%w: OptimisticInterval must be positive, got %v", ErrBadConfig, cfg.OptimisticInterval)
	}
	return &Choker{cfg: cfg, rng: rng}, nil
}

// Due reports whether a full rechoke is due at now. The engine may also call
// Rechoke earlier, when a peer comes, goes or changes interest; such calls
// only fill or clearly improve the current set.
func (c *Choker) Due(now time.Time) bool {
	return !c.started || !now.Before(c.nextRechoke)
}

// NextRechoke is when the next full rechoke is due (zero before the first).
func (c *Choker) NextRechoke() time.Time { return c.nextRechoke }

// Optimistic returns the peer currently holding the optimistic slot, so the
// engine can set Peer.Optimistic; ok is false when there is none.
func (c *Choker) Optimistic() (id uint64, ok bool) { return c.optimistic, c.hasOptimistic }

// Rechoke returns the IDs of the peers to unchoke at now; every other peer
// is to be choked. seeding says whether we hold the whole content. The
// returned slice is freshly allocated and owned by the caller.
func (c *Choker) Rechoke(now time.Time, peers []Peer, seeding bool) []uint64 {
	full := c.Due(now)
	if full {
		c.started = true
		c.nextRechoke = now.Add(c.cfg.RechokeInterval)
	}
	c.cands = c.cands[:0]
	for i := range peers {
		p := &peers[i]
		if p.Interested && p.Eligible && !p.IsSeed {
			c.cands = append(c.cands, p)
		}
	}
	if !c.cfg.Limited {
		c.hasOptimistic = false
		return c.unlimited(full)
	}
	return c.limited(now, full, seeding)
}

// unlimited unchokes every candidate up to MaxUnchoked. When the cap binds,
// priority ranks first and incumbents keep their slots, so a busy seeder
// does not churn its connections; slots free up as peers finish and lose
// interest.
func (c *Choker) unlimited(full bool) []uint64 {
	cands := c.cands
	if c.cfg.MaxUnchoked > 0 && len(cands) > c.cfg.MaxUnchoked {
		slices.SortStableFunc(cands, func(a, b *Peer) int {
			if r := cmp.Compare(b.Priority, a.Priority); r != 0 {
				return r
			}
			if a.Unchoked != b.Unchoked {
				if a.Unchoked {
					return -1
				}
				return 1
			}
			if r := a.LastUnchoked.Compare(b.LastUnchoked); r != 0 {
				return r // longest-waiting first
			}
			return cmp.Compare(a.ID, b.ID)
		})
		cands = cands[:c.cfg.MaxUnchoked]
	}
	out := make([]uint64, len(cands))
	for i, p := range cands {
		out[i] = p.ID
	}
	return out
}

// limited runs the slot-based choker.
func (c *Choker) limited(now time.Time, full, seeding bool) []uint64 {
	// Adopt the engine's notion of the optimistic peer if we have none yet
	// (a restarted choker), and drop ours if it is gone or lost interest.
	if !c.hasOptimistic {
		for _, p := range c.cands {
			if p.Optimistic && p.Unchoked {
				c.optimistic, c.hasOptimistic = p.ID, true
				c.nextOptimistic = now.Add(c.cfg.OptimisticInterval)
				break
			}
		}
	}
	if c.hasOptimistic && c.find(c.optimistic) == nil {
		c.hasOptimistic = false
	}
	// The outgoing optimistic peer is no incumbent of the regular set: it
	// held its slot by lottery, not by merit, and must win one on rank.
	prevOptimistic, hadOptimistic := c.optimistic, c.hasOptimistic
	if !c.hasOptimistic || !now.Before(c.nextOptimistic) {
		c.hasOptimistic = false
	}
	incumbent := func(p *Peer) bool {
		return p.Unchoked && !p.Optimistic && !(hadOptimistic && p.ID == prevOptimistic)
	}

	rate := func(p *Peer) int64 {
		if seeding {
			return p.UploadRate
		}
		return p.DownloadRate
	}
	// better orders candidates by priority, then rate, then incumbency, then
	// ID so that results are deterministic.
	better := func(a, b *Peer) int {
		if r := cmp.Compare(b.Priority, a.Priority); r != 0 {
			return r
		}
		if r := cmp.Compare(rate(b), rate(a)); r != 0 {
			return r
		}
		if ia, ib := incumbent(a), incumbent(b); ia != ib {
			if ia {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.ID, b.ID)
	}
	regularOK := func(p *Peer) bool {
		if c.hasOptimistic && p.ID == c.optimistic {
			return false
		}
		return seeding || !p.Snubbed
	}

	slots := c.cfg.Slots - 1
	var regular []*Peer
	if full {
		for _, p := range c.cands {
			if regularOK(p) {
				regular = append(regular, p)
			}
		}
		slices.SortFunc(regular, better)
		if len(regular) > slots {
			regular = regular[:slots]
		}
	} else {
		// Keep incumbents, fill empty slots with the best outsiders, then
		// swap an incumbent out only for a clearly better outsider.
		c.rest = c.rest[:0]
		for _, p := range c.cands {
			if !regularOK(p) {
				continue
			}
			if incumbent(p) {
				regular = append(regular, p)
			} else {
				c.rest = append(c.rest, p)
			}
		}
		slices.SortFunc(regular, better)
		if len(regular) > slots {
			c.rest = append(c.rest, regular[slots:]...)
			regular = regular[:slots]
		}
		slices.SortFunc(c.rest, better)
		out := c.rest
		for len(out) > 0 && len(regular) < slots {
			regular = append(regular, out[0])
			out = out[1:]
		}
		slices.SortFunc(regular, better)
		for len(out) > 0 && len(regular) > 0 {
			worst := regular[len(regular)-1]
			if !clearlyBetter(out[0], worst, rate) {
				break
			}
			regular[len(regular)-1] = out[0]
			out = out[1:]
			slices.SortFunc(regular, better)
		}
	}

	ids := make([]uint64, 0, len(regular)+1)
	for _, p := range regular {
		ids = append(ids, p.ID)
	}
	if !c.hasOptimistic {
		c.pickOptimistic(now, ids)
	}
	if c.hasOptimistic {
		ids = append(ids, c.optimistic)
	}
	return ids
}

// clearlyBetter reports whether candidate a should displace incumbent b
// between full rechokes.
func clearlyBetter(a, b *Peer, rate func(*Peer) int64) bool {
	if a.Priority != b.Priority {
		return a.Priority > b.Priority
	}
	ra, rb := rate(a), rate(b)
	return ra >= rb+minMargin && ra*betterDen >= rb*betterNum
}

// pickOptimistic draws the optimistic peer among the candidates not already
// chosen, newcomers weighted newPeerWeight times.
func (c *Choker) pickOptimistic(now time.Time, chosen []uint64) {
	var total int
	c.rest = c.rest[:0]
	for _, p := range c.cands {
		if slices.Contains(chosen, p.ID) {
			continue
		}
		c.rest = append(c.rest, p)
		total += c.weight(now, p)
	}
	if total == 0 {
		return
	}
	n := c.rng.IntN(total)
	for _, p := range c.rest {
		n -= c.weight(now, p)
		if n < 0 {
			c.optimistic, c.hasOptimistic = p.ID, true
			c.nextOptimistic = now.Add(c.cfg.OptimisticInterval)
			return
		}
	}
}

// weight is a candidate's weight in the optimistic draw. A peer counts as
// new for one optimistic interval after connecting: long enough to be
// drawn at least once with good odds, short enough that old peers are not
// starved by a stream of arrivals.
func (c *Choker) weight(now time.Time, p *Peer) int {
	if now.Sub(p.ConnectedAt) < c.cfg.OptimisticInterval {
		return newPeerWeight
	}
	return 1
}

// find returns the candidate with the given ID, or nil.
func (c *Choker) find(id uint64) *Peer {
	for _, p := range c.cands {
		if p.ID == id {
			return p
		}
	}
	return nil
}
