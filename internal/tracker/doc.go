// Package tracker implements the HTTP BitTorrent tracker used by Floodgate:
// a server (BEP 3 announce, BEP 23 compact peers, BEP 7 peers6, BEP 48
// scrape, BEP 31 "retry in") and a client (single announces and scrapes,
// plus an Announcer that keeps one torrent announced to a BEP 12 tier
// list).
//
// The server is plain BitTorrent on the wire so that ordinary clients can
// use it. Floodgate's own announce fields (signed peer identity, capacity,
// service class, QoS deficit) travel as extra query parameters; the server
// keeps them with each peer and hands them to a Policy before answering, so
// that admission control (DESIGN §5 part 4) plugs in without touching the
// HTTP layer. A client that sends none of them is answered like any other.
//
// Decisions the server makes, and why:
//
//   - A peer's address is the remote address of its HTTP connection.
//     X-Forwarded-For is never trusted, and the "ip" parameter is honoured
//     only from loopback (a local test swarm on 127.0.0.x, or a proxy on
//     the same host), so a stranger cannot make the tracker advertise a
//     third party's address. Host names are never resolved.
//   - Peers are keyed by (info hash, peer id). A later announce for the
//     same peer id must carry the key it registered with, or come from the
//     same IP when either side sent no key; otherwise anyone who learned a
//     peer id could unregister or redirect that peer.
//   - Errors in the request are answered with HTTP 200 and a bencoded
//     "failure reason", which is what clients show to their user.
//   - Memory is bounded: a query is at most 4 KiB, a swarm holds at most
//     MaxPeersPerSwarm peers, the tracker MaxSwarms swarms and MaxPeers
//     peers in all. Full scrapes are not offered.
//   - Each swarm has its own lock; the server-wide map lock is held only
//     to find or create a swarm. Expiry is exact and cheap: peers sit in a
//     list ordered by last announce, so an announce drops expired peers
//     from the front, and a background sweeper does the same for idle
//     swarms and forgets empty ones.
//
// Only http and https trackers are supported by the client. udp:// announce
// URLs (BEP 15) are reported as ErrUnsupportedScheme and skipped; speaking
// UDP is later work.
package tracker
