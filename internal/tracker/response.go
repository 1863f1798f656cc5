package tracker

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/bencode"
)

// AnnounceResponse is a tracker's successful answer to an announce.
type AnnounceResponse struct {
	// Interval is how long to wait before the next regular announce and
	// MinInterval the shortest wait the tracker tolerates; zero when the
	// tracker did not say.
	Interval, MinInterval time.Duration
	// Peers are the returned peers, IPv4 and IPv6 together. Entries the
	// client cannot use (port 0, host names in the dictionary model) are
	// left out.
	Peers []netip.AddrPort
	// Complete and Incomplete are the tracker's seeder and leecher counts,
	// or -1 when it did not send them.
	Complete, Incomplete int
	// Warning is the tracker's "warning message", for the user.
	Warning string
	// TrackerID is the "tracker id" to echo in later announces.
	TrackerID string
	// ExternalIP is the address the tracker saw the request come from
	// (BEP 24 "external ip"); invalid when the tracker did not say.
	ExternalIP netip.Addr
}

// ScrapeStats is one torrent's entry in a scrape response (BEP 48).
type ScrapeStats struct {
	// Complete and Incomplete count seeders and leechers; Downloaded
	// counts completed downloads ever reported.
	Complete, Incomplete, Downloaded int
}

// FailureError is a tracker's "failure reason": the tracker understood the
// request and refused it. Callers show Reason to the user.
type FailureError struct {
	// Reason is the tracker's text.
	Reason string
	// RetryIn is when the tracker asked to be asked again, if it said
	// (BEP 31 "retry in", or Floodgate's "retry after" in seconds); zero
	// when it did not. A negative value means "never" (BEP 31).
	RetryIn time.Duration
}

// Error returns the failure reason prefixed with "tracker failure".
func (e *FailureError) Error() string { return "tracker failure: " + e.Reason }

// ErrMalformedResponse is wrapped by every error about a tracker response
// that is not a valid tracker reply (not bencode, HTML, wrong types).
var ErrMalformedResponse = errors.New("malformed tracker response")

// responseLimits bound the decoding of a tracker reply. Replies are flat
// dictionaries; the depth allows the dictionary peer model and a little
// room for extensions.
var responseLimits = bencode.Limits{MaxDepth: 16, MaxStringLength: MaxResponseBytes, MaxEntries: 1 << 16}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformedResponse, fmt.Sprintf(format, args...))
}

// decodeDict decodes a tracker reply and returns its top-level dictionary,
// or a *FailureError when the reply carries a "failure reason".
func decodeDict(body []byte) (map[string]any, error) {
	if looksLikeHTML(body) {
		return nil, malformed("got HTML, not bencode (is the URL a tracker?)")
	}
	d := bencode.NewDecoder(responseLimits)
	v, err := d.Decode(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedResponse, err)
	}
	dict, ok := v.(map[string]any)
	if !ok {
		return nil, malformed("top level is not a dictionary")
	}
	if fr, ok := dict["failure reason"]; ok {
		reason, ok := fr.(string)
		if !ok {
			return nil, malformed("failure reason is not a string")
		}
		fe := &FailureError{Reason: printable(reason)}
		if s, ok := dict["retry after"].(int64); ok && s > 0 {
			fe.RetryIn = time.Duration(min(s, 1<<31)) * time.Second
		} else if m, ok := dict["retry in"].(int64); ok && m > 0 {
			fe.RetryIn = time.Duration(min(m, 1<<24)) * time.Minute
		} else if m, ok := dict["retry in"].(string); ok && m == "never" {
			fe.RetryIn = -1
		}
		return nil, fe
	}
	return dict, nil
}

// looksLikeHTML recognises the error pages of web servers and captive
// portals, so the user sees "HTML" rather than a bencode syntax error.
func looksLikeHTML(b []byte) bool {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r' || b[0] == '\n') {
		b = b[1:]
	}
	return len(b) > 0 && b[0] == '<'
}

// printable bounds and cleans a text from the tracker before it is shown
// to a user's terminal: control characters could rewrite the screen.
func printable(s string) string {
	const maxLen = 512
	if len(s) > maxLen {
		s = s[:maxLen]
	}
	out := []rune{}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			r = '?'
		}
		out = append(out, r)
	}
	return string(out)
}

// ParseAnnounceResponse parses the body of an announce reply. It returns a
// *FailureError when the tracker sent a "failure reason" and an error
// wrapping ErrMalformedResponse when the body is not a valid reply.
func ParseAnnounceResponse(body []byte) (*AnnounceResponse, error) {
	dict, err := decodeDict(body)
	if err != nil {
		return nil, err
	}
	resp := &AnnounceResponse{Complete: -1, Incomplete: -1}
	if resp.Interval, err = seconds(dict, "interval"); err != nil {
		return nil, err
	}
	if resp.MinInterval, err = seconds(dict, "min interval"); err != nil {
		return nil, err
	}
	if resp.Complete, err = count(dict, "complete"); err != nil {
		return nil, err
	}
	if resp.Incomplete, err = count(dict, "incomplete"); err != nil {
		return nil, err
	}
	if w, ok := dict["warning message"]; ok {
		s, ok := w.(string)
		if !ok {
			return nil, malformed("warning message is not a string")
		}
		resp.Warning = printable(s)
	}
	if t, ok := dict["tracker id"]; ok {
		s, ok := t.(string)
		if !ok {
			return nil, malformed("tracker id is not a string")
		}
		resp.TrackerID = s
	}
	if e, ok := dict["external ip"]; ok {
		b, ok := e.(string)
		if !ok || (len(b) != 4 && len(b) != 16) {
			return nil, malformed("external ip is not a 4- or 16-byte string")
		}
		resp.ExternalIP, _ = netip.AddrFromSlice([]byte(b))
		resp.ExternalIP = resp.ExternalIP.Unmap()
	}
	switch p := dict["peers"].(type) {
	case nil:
		// Absent: some trackers omit peers when they have none.
	case string:
		if resp.Peers, err = compactPeers(p, 4); err != nil {
			return nil, err
		}
	case []any:
		if resp.Peers, err = dictPeers(p); err != nil {
			return nil, err
		}
	default:
		return nil, malformed("peers is neither a string nor a list")
	}
	switch p := dict["peers6"].(type) {
	case nil:
	case string:
		p6, err := compactPeers(p, 16)
		if err != nil {
			return nil, err
		}
		resp.Peers = append(resp.Peers, p6...)
	default:
		return nil, malformed("peers6 is not a string")
	}
	return resp, nil
}

func seconds(dict map[string]any, key string) (time.Duration, error) {
	v, ok := dict[key]
	if !ok {
		return 0, nil
	}
	n, ok := v.(int64)
	if !ok || n < 0 {
		return 0, malformed("%s is not a non-negative integer", key)
	}
	// A year is far beyond any sane interval and keeps the Duration from
	// overflowing.
	return time.Duration(min(n, 365*24*3600)) * time.Second, nil
}

func count(dict map[string]any, key string) (int, error) {
	v, ok := dict[key]
	if !ok {
		return -1, nil
	}
	n, ok := v.(int64)
	if !ok || n < 0 {
		return 0, malformed("%s is not a non-negative integer", key)
	}
	return int(min(n, 1<<31)), nil
}

// compactPeers decodes BEP 23 (ipLen 4) or BEP 7 (ipLen 16) compact peers.
func compactPeers(s string, ipLen int) ([]netip.AddrPort, error) {
	size := ipLen + 2
	if len(s)%size != 0 {
		return nil, malformed("compact peers length %d is not a multiple of %d", len(s), size)
	}
	peers := make([]netip.AddrPort, 0, len(s)/size)
	for i := 0; i+size <= len(s); i += size {
		ip, _ := netip.AddrFromSlice([]byte(s[i : i+ipLen]))
		port := uint16(s[i+ipLen])<<8 | uint16(s[i+ipLen+1])
		if port == 0 || !ip.IsValid() || ip.IsUnspecified() {
			continue
		}
		peers = append(peers, netip.AddrPortFrom(ip.Unmap(), port))
	}
	return peers, nil
}

// dictPeers decodes the original BEP 3 peer list of dictionaries.
func dictPeers(list []any) ([]netip.AddrPort, error) {
	peers := make([]netip.AddrPort, 0, len(list))
	for i, item := range list {
		d, ok := item.(map[string]any)
		if !ok {
			return nil, malformed("peer %d is not a dictionary", i)
		}
		ipStr, ok := d["ip"].(string)
		if !ok {
			return nil, malformed("peer %d has no ip string", i)
		}
		port, ok := d["port"].(int64)
		if !ok || port < 0 || port > 65535 {
			return nil, malformed("peer %d has no valid port", i)
		}
		ip, err := netip.ParseAddr(ipStr)
		if err != nil || port == 0 || ip.IsUnspecified() || ip.Zone() != "" {
			// BEP 3 allows DNS names here; resolving names a tracker
			// hands out would let it steer our lookups, so skip them.
			continue
		}
		peers = append(peers, netip.AddrPortFrom(ip.Unmap(), uint16(port)))
	}
	return peers, nil
}

// ParseScrapeResponse parses the body of a scrape reply. Entries whose key
// is not a 20-byte info hash are an error.
func ParseScrapeResponse(body []byte) (map[[20]byte]ScrapeStats, error) {
	dict, err := decodeDict(body)
	if err != nil {
		return nil, err
	}
	files, ok := dict["files"].(map[string]any)
	if !ok {
		if _, present := dict["files"]; present {
			return nil, malformed("files is not a dictionary")
		}
		return map[[20]byte]ScrapeStats{}, nil
	}
	out := make(map[[20]byte]ScrapeStats, len(files))
	for k, v := range files {
		if len(k) != 20 {
			return nil, malformed("scrape key of %d bytes is not an info hash", len(k))
		}
		d, ok := v.(map[string]any)
		if !ok {
			return nil, malformed("scrape entry for %x is not a dictionary", k)
		}
		var st ScrapeStats
		for key, dst := range map[string]*int{"complete": &st.Complete, "incomplete": &st.Incomplete, "downloaded": &st.Downloaded} {
			n, err := count(d, key)
			if err != nil {
				return nil, err
			}
			*dst = max(n, 0)
		}
		out[[20]byte([]byte(k))] = st
	}
	return out, nil
}
