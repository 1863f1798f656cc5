package tracker

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// AnnounceRequest is what a client tells the tracker in one announce.
type AnnounceRequest struct {
	// InfoHash identifies the torrent (SHA-1 of its bencoded info dict).
	InfoHash [20]byte
	// PeerID is this client's 20-byte peer id.
	PeerID [20]byte
	// Port is the TCP port other peers should connect to.
	Port uint16
	// Uploaded, Downloaded and Left are the BEP 3 byte counters since the
	// "started" event; Left is zero for a seeder.
	Uploaded, Downloaded, Left int64
	// Event is the lifecycle event this announce reports.
	Event Event
	// NumWant is how many peers to ask for; zero or less leaves the number
	// to the tracker.
	NumWant int
	// Key is the client's random session key. Trackers use it to recognise
	// the client when its address changes; zero omits it.
	Key uint32
	// TrackerID echoes the "tracker id" a tracker returned earlier.
	TrackerID string
	// IP, when valid, is sent as the "ip" parameter: the address peers
	// should use. Trackers, this one included, honour it only from
	// addresses they trust (this one: loopback).
	IP netip.Addr
	// Extra carries additional query parameters, such as Floodgate's signed
	// peer fields. They must not repeat a standard parameter.
	Extra url.Values
}

// standardParams are the announce parameters with a meaning in BEP 3 and
// the common extensions. Everything else is an extension field that the
// server keeps for its Policy.
var standardParams = map[string]bool{
	"info_hash": true, "peer_id": true, "port": true, "uploaded": true,
	"downloaded": true, "left": true, "event": true, "numwant": true,
	"compact": true, "no_peer_id": true, "key": true, "trackerid": true,
	"ip": true, "ipv4": true, "ipv6": true, "corrupt": true,
	"redundant": true, "supportcrypto": true, "requirecrypto": true,
	"cryptoport": true,
}

// maxQueryBytes bounds the raw announce query the server accepts. A
// standard announce is under 400 bytes; the rest leaves room for
// Floodgate's signed fields while bounding what one peer record can cost.
const maxQueryBytes = 4096

// escapeBytes percent-encodes every byte outside the RFC 3986 unreserved
// set. Binary info hashes and peer ids must be escaped byte by byte; form
// encoding (url.QueryEscape) would turn 0x20 into '+', which some trackers,
// opentracker among them, do not decode as a space.
func escapeBytes(b []byte) string {
	const hex = "0123456789ABCDEF"
	var sb strings.Builder
	sb.Grow(len(b) * 3)
	for _, c := range b {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' {
			sb.WriteByte(c)
			continue
		}
		sb.WriteByte('%')
		sb.WriteByte(hex[c>>4])
		sb.WriteByte(hex[c&15])
	}
	return sb.String()
}

// encode returns the announce query string (without the leading '?').
func (r *AnnounceRequest) encode() (string, error) {
	for k := range r.Extra {
		if standardParams[k] {
			return "", fmt.Errorf("extra parameter %q would override a standard announce parameter", k)
		}
	}
	if r.Port == 0 {
		return "", errors.New("announce port must not be zero")
	}
	if r.Uploaded < 0 || r.Downloaded < 0 || r.Left < 0 {
		return "", errors.New("announce byte counters must not be negative")
	}
	var sb strings.Builder
	sb.WriteString("info_hash=")
	sb.WriteString(escapeBytes(r.InfoHash[:]))
	sb.WriteString("&peer_id=")
	sb.WriteString(escapeBytes(r.PeerID[:]))
	fmt.Fprintf(&sb, "&port=%d&uploaded=%d&downloaded=%d&left=%d&compact=1",
		r.Port, r.Uploaded, r.Downloaded, r.Left)
	if r.Event != EventNone {
		sb.WriteString("&event=")
		sb.WriteString(r.Event.String())
	}
	if r.NumWant > 0 {
		fmt.Fprintf(&sb, "&numwant=%d", r.NumWant)
	}
	if r.Key != 0 {
		fmt.Fprintf(&sb, "&key=%08X", r.Key)
	}
	if r.TrackerID != "" {
		sb.WriteString("&trackerid=")
		sb.WriteString(escapeBytes([]byte(r.TrackerID)))
	}
	if r.IP.IsValid() {
		sb.WriteString("&ip=")
		sb.WriteString(escapeBytes([]byte(r.IP.Unmap().String())))
	}
	if len(r.Extra) > 0 {
		sb.WriteByte('&')
		sb.WriteString(r.Extra.Encode())
	}
	return sb.String(), nil
}

// AnnounceQuery is an announce as the server parsed it from one HTTP
// request. It keeps the raw parameters so that a Policy can read fields the
// server itself does not interpret.
type AnnounceQuery struct {
	// InfoHash and PeerID are the 20-byte identifiers from the query.
	InfoHash, PeerID [20]byte
	// Addr is where other peers will be told to connect: the remote IP of
	// the HTTP connection and the announced port.
	Addr netip.AddrPort
	// Uploaded, Downloaded and Left are the client's byte counters;
	// Uploaded and Downloaded default to zero when absent.
	Uploaded, Downloaded, Left int64
	// Event is the announced lifecycle event.
	Event Event
	// NumWant is the requested number of peers, or zero when the client
	// left the choice to the tracker (absent or not positive).
	NumWant int
	// Compact is true unless the client sent compact=0 (BEP 23).
	Compact bool
	// NoPeerID asks to omit peer ids in the dictionary peer model.
	NoPeerID bool
	// Key is the client's session key as sent (clients disagree on its
	// format, so it is kept verbatim).
	Key string
	// TrackerID is the tracker id the client echoed, if any.
	TrackerID string
	// Values holds every query parameter, standard or not.
	Values url.Values
	// Extra holds only the parameters that are not standard, such as
	// Floodgate's signed peer fields; it is nil for a plain client.
	Extra url.Values
}

// ParseAnnounceQuery parses and validates the raw query string of an
// announce request that arrived from remote. The "ip" parameter is honoured
// only when remote is a loopback address (a local test swarm or a reverse
// proxy on the same host); otherwise the peer's address is always the
// connection's, so nobody can register a third party's address.
func ParseAnnounceQuery(rawQuery string, remote netip.Addr) (*AnnounceQuery, error) {
	if len(rawQuery) > maxQueryBytes {
		return nil, fmt.Errorf("announce query is %d bytes, more than the limit of %d", len(rawQuery), maxQueryBytes)
	}
	vals, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, fmt.Errorf("malformed query: %w", err)
	}
	q := &AnnounceQuery{Values: vals, Compact: true}
	if q.InfoHash, err = hash20(vals, "info_hash"); err != nil {
		return nil, err
	}
	if q.PeerID, err = hash20(vals, "peer_id"); err != nil {
		return nil, err
	}
	port, err := singleParam(vals, "port", true)
	if err != nil {
		return nil, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return nil, fmt.Errorf("invalid port %q: want 1-65535", port)
	}
	if q.Uploaded, err = counter(vals, "uploaded", false); err != nil {
		return nil, err
	}
	if q.Downloaded, err = counter(vals, "downloaded", false); err != nil {
		return nil, err
	}
	if q.Left, err = counter(vals, "left", true); err != nil {
		return nil, err
	}
	ev, err := singleParam(vals, "event", false)
	if err != nil {
		return nil, err
	}
	if q.Event, err = ParseEvent(ev); err != nil {
		return nil, err
	}
	nw, err := singleParam(vals, "numwant", false)
	if err != nil {
		return nil, err
	}
	if nw != "" {
		n, err := strconv.ParseInt(nw, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("invalid numwant %q", nw)
		}
		// Negative values are sent by some clients to mean "default";
		// huge values are capped later, so clamp here to stay in int.
		q.NumWant = int(max(0, min(n, 1<<20)))
	}
	q.Compact = vals.Get("compact") != "0"
	q.NoPeerID = vals.Get("no_peer_id") == "1"
	q.Key = vals.Get("key")
	q.TrackerID = vals.Get("trackerid")

	addr := remote.Unmap()
	if addr.IsLoopback() {
		if ipParam := vals.Get("ip"); ipParam != "" {
			// Only literal addresses: resolving names here would let a
			// request make the tracker perform DNS lookups.
			if ip, err := netip.ParseAddr(ipParam); err == nil && ip.Zone() == "" {
				addr = ip.Unmap()
			}
		}
	}
	if !addr.IsValid() || addr.IsUnspecified() {
		return nil, fmt.Errorf("cannot determine the peer's address")
	}
	q.Addr = netip.AddrPortFrom(addr, uint16(p))

	for k, v := range vals {
		if standardParams[k] {
			continue
		}
		if q.Extra == nil {
			q.Extra = make(url.Values)
		}
		q.Extra[k] = v
	}
	return q, nil
}

// singleParam returns the only value of key. A repeated parameter is an
// error because the tracker would otherwise have to guess which one the
// client meant.
func singleParam(vals url.Values, key string, required bool) (string, error) {
	v := vals[key]
	switch {
	case len(v) == 0 && required:
		return "", fmt.Errorf("missing %s", key)
	case len(v) == 0:
		return "", nil
	case len(v) > 1:
		return "", fmt.Errorf("%s given %d times", key, len(v))
	}
	return v[0], nil
}

func hash20(vals url.Values, key string) ([20]byte, error) {
	var h [20]byte
	v, err := singleParam(vals, key, true)
	if err != nil {
		return h, err
	}
	if len(v) != 20 {
		return h, fmt.Errorf("invalid %s: %d bytes, want 20", key, len(v))
	}
	copy(h[:], v)
	return h, nil
}

func counter(vals url.Values, key string, required bool) (int64, error) {
	v, err := singleParam(vals, key, required)
	if err != nil || v == "" {
		return 0, err
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid %s %q: want a non-negative integer", key, v)
	}
	return n, nil
}
