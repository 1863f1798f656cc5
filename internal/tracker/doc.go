// Package tracker implements the HTTP BitTorrent tracker used by Floodgate:
// a server (BEP 3 announce, BEP 23 compact peers, BEP 7 peers6, BEP 48
// scrape) and a client (single announces and scrapes, plus an Announcer
// that keeps one torrent announced to a BEP 12 tier list).
//
// The server is plain BitTorrent on the wire so that ordinary clients can
// use it. Floodgate's own announce fields (signed peer identity, capacity,
// service class, QoS deficit) travel as extra query parameters; the server
// keeps them with each peer and hands them to a Policy before answering, so
// that admission control (DESIGN §5 part 4) can be plugged in without
// touching the HTTP layer. A client that sends none of them is answered
// like any other.
//
// Only http and https trackers are supported. udp:// announce URLs (BEP 15)
// are reported as ErrUnsupportedScheme and skipped; supporting them is
// later work.
package tracker
