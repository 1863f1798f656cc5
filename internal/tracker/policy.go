package tracker

import (
	"net/netip"
	"net/url"
	"time"
)

// Policy decides, before the server answers an announce, whether the
// announce is admitted. It is the hook for Floodgate's tracker admission
// control (DESIGN §5 part 4): the announcing peer's extension fields are in
// q.Extra, and the swarm's other peers (with the extension fields of their
// last announce) are visible through swarm.
//
// The server calls Admit with the swarm locked, so an implementation must
// be quick, must not call back into the Server, and must not keep swarm
// beyond the call. Like all Floodgate policy code it gets the time as an
// argument and starts no goroutines. Stopped announces are not shown to the
// Policy: they only ever remove the peer.
type Policy interface {
	// Admit returns the decision for one announce. A non-nil error is an
	// internal failure: the client is told "internal error" and nothing in
	// the swarm changes.
	Admit(q *AnnounceQuery, swarm SwarmView, now time.Time) (Decision, error)
}

// PeerRanker is an optional extension of Policy. When the configured Policy
// implements it, the server passes every eligible peer (in random order) to
// RankPeers and returns the first numwant of the result; otherwise it
// returns a uniform random sample. Floodgate uses it to hand QoS
// downloaders the peers with unreserved capacity first.
type PeerRanker interface {
	// RankPeers reorders candidates in place, best first. It must not add
	// peers: the server trusts that every entry came from candidates.
	RankPeers(q *AnnounceQuery, candidates []PeerInfo, now time.Time)
}

// Decision is a Policy's answer to one announce. The zero Decision admits
// the announce.
type Decision struct {
	// Refuse, when not empty, turns the announce away with this text as the
	// "failure reason". A refused announce changes nothing in the swarm.
	Refuse string
	// RetryIn tells a refused client when to try again. It is sent as the
	// BEP 31 "retry in" (whole minutes, rounded up) and, for clients that
	// understand it, as "retry after" in seconds.
	RetryIn time.Duration
	// Warning, when not empty, is sent as the "warning message" of an
	// admitted announce.
	Warning string
}

// SwarmView is a read-only view of one swarm, valid only during the Policy
// call it was passed to.
type SwarmView interface {
	// Seeders and Leechers count the live peers, the announcing peer
	// included if it was already registered.
	Seeders() int
	Leechers() int
	// Peer returns the registered peer with this peer id, if any.
	Peer(id [20]byte) (PeerInfo, bool)
	// Range calls fn for each live peer until fn returns false.
	Range(fn func(PeerInfo) bool)
}

// PeerInfo is what the tracker remembers about one peer.
type PeerInfo struct {
	// ID is the peer id and Addr its announced address.
	ID   [20]byte
	Addr netip.AddrPort
	// Left is the number of bytes the peer still needs; zero for a seeder.
	Left int64
	// Uploaded and Downloaded are the counters from its last announce.
	Uploaded, Downloaded int64
	// LastSeen is the time of its last announce.
	LastSeen time.Time
	// Extra holds the non-standard parameters of its last announce. It is
	// shared with the server and must not be modified.
	Extra url.Values
}

// Seeder reports whether the peer has the whole content.
func (p PeerInfo) Seeder() bool { return p.Left == 0 }

// AllowAll is the default Policy: it admits every announce.
type AllowAll struct{}

// Admit admits the announce.
func (AllowAll) Admit(*AnnounceQuery, SwarmView, time.Time) (Decision, error) {
	return Decision{}, nil
}
