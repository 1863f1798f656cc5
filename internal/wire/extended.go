package wire

import (
	"fmt"
	"net/netip"

	"github.com/floodgate-p2p/floodgate/internal/bencode"
)

// ExtendedHandshakeID is the extended message ID of the BEP 10 handshake.
// Every other ID is chosen by the receiver in its own handshake's "m".
const ExtendedHandshakeID = 0

// MaxExtendedHandshakeLen bounds an extension handshake payload. Real
// ones are 100 to 400 bytes (aria2 and Transmission send about 90 and
// 125); 64 KiB leaves room for Floodgate's identity fields in Extra and
// for clients with long extension lists, and no more.
const MaxExtendedHandshakeLen = 64 << 10

// Limits on the bencode inside an extension handshake. Real handshakes
// nest two levels ("m" inside the top dictionary); the margins are for
// Extra values while refusing anything built to waste our time.
const (
	extHandshakeMaxDepth   = 8
	extHandshakeMaxEntries = 512
)

// ExtendedHandshake is the BEP 10 handshake dictionary, sent as extended
// message 0 right after the BEP 3 handshake by peers that set the
// extension bit.
//
// Decoding is strict about the framing (a bencoded dictionary within
// MaxExtendedHandshakeLen, "m" a dictionary) and lenient about optional
// fields: a field of the wrong type or out of range is dropped as if
// absent, because real clients differ in small ways and refusing them
// over an unused hint would cost a working connection.
type ExtendedHandshake struct {
	// M maps extension names to the extended message ID the sender wants
	// to receive that extension's messages under. ID 0 means the sender
	// disables the extension; use ID to look names up.
	M map[string]uint8
	// V is the client name and version, e.g. "aria2/1.36.0". It is the
	// peer's claim, for logs only.
	V string
	// P is the sender's TCP listen port, 0 when absent.
	P uint16
	// Reqq is how many outstanding requests the sender queues without
	// dropping, 0 when absent. It is the peer's claim: the engine clamps
	// it before sizing its pipeline.
	Reqq int
	// YourIP is the address the sender sees us at (IPv4 or IPv6), the
	// zero Addr when absent.
	YourIP netip.Addr
	// IPv4 and IPv6 are the sender's own addresses, the zero Addr when
	// absent.
	IPv4, IPv6 netip.Addr
	// MetadataSize is the byte size of the info dictionary (BEP 9), 0 when
	// absent.
	MetadataSize int
	// UploadOnly says the sender only seeds (BEP 21 "upload_only").
	UploadOnly bool
	// Extra holds every other top-level key with its exact bencoded value,
	// so that extensions such as Floodgate's can carry their own fields
	// without this package knowing them. Encoding refuses an Extra key
	// that collides with a field above.
	Extra map[string]bencode.RawMessage
}

// knownExtendedKeys are the dictionary keys ExtendedHandshake has fields
// for; everything else lands in Extra.
var knownExtendedKeys = map[string]bool{
	"m": true, "v": true, "p": true, "reqq": true, "yourip": true,
	"ipv4": true, "ipv6": true, "metadata_size": true, "upload_only": true,
}

// ID returns the extended message ID under which the sender of h receives
// messages of extension name, and false if it does not support it (absent
// or disabled with 0).
func (h *ExtendedHandshake) ID(name string) (uint8, bool) {
	id, ok := h.M[name]
	return id, ok && id != 0
}

// AppendBinary appends the bencoded dictionary of h to b. Absent fields
// are left out; "m" is always written, even when empty, as BEP 10 requires.
func (h *ExtendedHandshake) AppendBinary(b []byte) ([]byte, error) {
	d := make(map[string]any, 9+len(h.Extra))
	for k, v := range h.Extra {
		if knownExtendedKeys[k] {
			return b, fmt.Errorf("wire: extended handshake: Extra key %q collides with a field", k)
		}
		d[k] = v
	}
	m := make(map[string]int, len(h.M))
	for k, v := range h.M {
		m[k] = int(v)
	}
	d["m"] = m
	if h.V != "" {
		d["v"] = h.V
	}
	if h.P != 0 {
		d["p"] = int(h.P)
	}
	if h.Reqq < 0 || h.MetadataSize < 0 {
		return b, fmt.Errorf("wire: extended handshake: negative reqq %d or metadata_size %d", h.Reqq, h.MetadataSize)
	}
	if h.Reqq != 0 {
		d["reqq"] = h.Reqq
	}
	if h.MetadataSize != 0 {
		d["metadata_size"] = h.MetadataSize
	}
	if h.UploadOnly {
		d["upload_only"] = 1
	}
	if h.YourIP.IsValid() {
		d["yourip"] = h.YourIP.Unmap().AsSlice()
	}
	if h.IPv4.IsValid() {
		if !h.IPv4.Unmap().Is4() {
			return b, fmt.Errorf("wire: extended handshake: ipv4 field holds %v", h.IPv4)
		}
		d["ipv4"] = h.IPv4.Unmap().AsSlice()
	}
	if h.IPv6.IsValid() {
		if !h.IPv6.Is6() || h.IPv6.Is4In6() {
			return b, fmt.Errorf("wire: extended handshake: ipv6 field holds %v", h.IPv6)
		}
		d["ipv6"] = h.IPv6.AsSlice()
	}
	out, err := bencode.AppendMarshal(b, d)
	if err != nil {
		return b, fmt.Errorf("wire: encode extended handshake: %w", err)
	}
	if len(out)-len(b) > MaxExtendedHandshakeLen {
		return b, fmt.Errorf("wire: extended handshake of %d bytes exceeds %d", len(out)-len(b), MaxExtendedHandshakeLen)
	}
	return out, nil
}

// Message returns h framed as extended message 0, ready to send.
func (h *ExtendedHandshake) Message() (Message, error) {
	p, err := h.AppendBinary(nil)
	if err != nil {
		return Message{}, err
	}
	return NewExtended(ExtendedHandshakeID, p), nil
}

// ParseExtendedHandshake decodes the payload of extended message 0 (the
// bytes after the extended ID). Errors wrap ErrTooLarge for a payload over
// MaxExtendedHandshakeLen and ErrMalformed for anything that is not a
// bencoded dictionary within the nesting and entry limits or whose "m" is
// not a dictionary. The result does not alias payload.
func ParseExtendedHandshake(payload []byte) (ExtendedHandshake, error) {
	if len(payload) > MaxExtendedHandshakeLen {
		return ExtendedHandshake{}, fmt.Errorf("%w: extended handshake of %d bytes, limit %d", ErrTooLarge, len(payload), MaxExtendedHandshakeLen)
	}
	dec := bencode.NewDecoder(bencode.Limits{
		MaxDepth:        extHandshakeMaxDepth,
		MaxStringLength: MaxExtendedHandshakeLen,
		MaxEntries:      extHandshakeMaxEntries,
	})
	var top map[string]bencode.RawMessage
	if err := dec.Unmarshal(payload, &top); err != nil {
		return ExtendedHandshake{}, fmt.Errorf("%w: extended handshake: %w", ErrMalformed, err)
	}
	var h ExtendedHandshake
	if raw, ok := top["m"]; ok {
		var m map[string]bencode.RawMessage
		if err := dec.Unmarshal(raw, &m); err != nil {
			return ExtendedHandshake{}, fmt.Errorf("%w: extended handshake \"m\": %w", ErrMalformed, err)
		}
		h.M = make(map[string]uint8, len(m))
		for name, raw := range m {
			// An ID outside a byte cannot be addressed, so the extension
			// is treated as unsupported rather than failing the peer.
			if id, ok := decodeInt(dec, raw); ok && id >= 0 && id <= 255 {
				h.M[name] = uint8(id)
			}
		}
	} else {
		h.M = map[string]uint8{}
	}
	if s, ok := decodeString(dec, top["v"]); ok {
		h.V = string(s)
	}
	if p, ok := decodeInt(dec, top["p"]); ok && p > 0 && p <= 65535 {
		h.P = uint16(p)
	}
	if q, ok := decodeInt(dec, top["reqq"]); ok && q > 0 {
		h.Reqq = clampInt(q)
	}
	if n, ok := decodeInt(dec, top["metadata_size"]); ok && n > 0 {
		h.MetadataSize = clampInt(n)
	}
	if u, ok := decodeInt(dec, top["upload_only"]); ok && u != 0 {
		h.UploadOnly = true
	}
	if ip, ok := decodeString(dec, top["yourip"]); ok {
		if a, ok := netip.AddrFromSlice(ip); ok {
			h.YourIP = a.Unmap()
		}
	}
	if ip, ok := decodeString(dec, top["ipv4"]); ok && len(ip) == 4 {
		h.IPv4 = netip.AddrFrom4([4]byte(ip))
	}
	if ip, ok := decodeString(dec, top["ipv6"]); ok && len(ip) == 16 {
		h.IPv6 = netip.AddrFrom16([16]byte(ip))
	}
	for k, v := range top {
		if !knownExtendedKeys[k] {
			if h.Extra == nil {
				h.Extra = make(map[string]bencode.RawMessage, len(top))
			}
			h.Extra[k] = v
		}
	}
	return h, nil
}

// decodeInt decodes raw as a bencode integer; ok is false when raw is
// absent or not an integer (or does not fit an int64).
func decodeInt(dec *bencode.Decoder, raw bencode.RawMessage) (int64, bool) {
	if len(raw) == 0 {
		return 0, false
	}
	var n int64
	if err := dec.Unmarshal(raw, &n); err != nil {
		return 0, false
	}
	return n, true
}

// decodeString decodes raw as a bencode byte string; ok is false when raw
// is absent or not a string.
func decodeString(dec *bencode.Decoder, raw bencode.RawMessage) ([]byte, bool) {
	if len(raw) == 0 {
		return nil, false
	}
	var s []byte
	if err := dec.Unmarshal(raw, &s); err != nil {
		return nil, false
	}
	return s, true
}

// clampInt converts a positive int64 claim to int without wrapping on
// 32-bit platforms.
func clampInt(n int64) int {
	const maxInt = int64(^uint(0) >> 1)
	return int(min(n, maxInt))
}
