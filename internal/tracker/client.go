package tracker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// MaxResponseBytes bounds a tracker reply the client reads. 1 MiB holds
// over 170,000 compact peers, far more than any tracker returns.
const MaxResponseBytes = 1 << 20

// DefaultRequestTimeout bounds one tracker request when the caller passes
// no *http.Client; a caller's own client keeps its own timeout.
const DefaultRequestTimeout = 30 * time.Second

// ErrUnsupportedScheme is returned for tracker URLs that are not http or
// https, such as udp:// (BEP 15), which this package does not speak yet.
var ErrUnsupportedScheme = errors.New("unsupported tracker URL scheme")

// ErrNoScrape is returned by ScrapeURL when the announce URL does not
// follow the BEP 48 convention, so the tracker has no known scrape URL.
var ErrNoScrape = errors.New("tracker does not support scrape")

// StatusError reports a tracker reply with an HTTP status other than 200
// that did not carry a bencoded failure reason.
type StatusError struct {
	// StatusCode is the HTTP status and Snippet the start of the body,
	// cleaned for display.
	StatusCode int
	Snippet    string
}

// Error describes the status.
func (e *StatusError) Error() string {
	msg := fmt.Sprintf("tracker answered HTTP %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.Snippet != "" {
		msg += ": " + e.Snippet
	}
	return msg
}

// parseTrackerURL checks that raw is an http(s) URL.
func parseTrackerURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("invalid tracker URL %q: %w", raw, err)
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
	case "udp":
		return nil, fmt.Errorf("%w: %q (UDP trackers, BEP 15, are not supported yet)", ErrUnsupportedScheme, raw)
	default:
		return nil, fmt.Errorf("%w: %q", ErrUnsupportedScheme, raw)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("invalid tracker URL %q: no host", raw)
	}
	return u, nil
}

// withQuery appends q to the URL's existing query string, if any. Trackers
// with passkeys put them in the query ("announce?passkey=..."), so the
// existing query must be kept verbatim rather than re-encoded.
func withQuery(u *url.URL, q string) string {
	c := *u
	c.Fragment, c.RawFragment = "", ""
	if c.RawQuery != "" {
		c.RawQuery += "&" + q
	} else {
		c.RawQuery = q
	}
	return c.String()
}

// Announce sends one announce to an http(s) tracker and returns its reply.
// A nil client uses a fresh client with DefaultRequestTimeout. The error is
// a *FailureError when the tracker refused the announce, and wraps
// ErrUnsupportedScheme, ErrMalformedResponse or a *StatusError, or the
// transport's error (timeouts and ctx cancellation included) otherwise.
func Announce(ctx context.Context, c *http.Client, announceURL string, req AnnounceRequest) (*AnnounceResponse, error) {
	u, err := parseTrackerURL(announceURL)
	if err != nil {
		return nil, err
	}
	q, err := req.encode()
	if err != nil {
		return nil, fmt.Errorf("announce to %s: %w", redact(u), err)
	}
	body, err := get(ctx, c, withQuery(u, q))
	if err != nil {
		return nil, fmt.Errorf("announce to %s: %w", redact(u), err)
	}
	resp, err := ParseAnnounceResponse(body)
	if err != nil {
		var fe *FailureError
		if errors.As(err, &fe) {
			return nil, fe
		}
		return nil, fmt.Errorf("announce to %s: %w", redact(u), err)
	}
	return resp, nil
}

// ScrapeURL derives the scrape URL from an announce URL (BEP 48): the last
// path element must start with "announce", which is replaced by "scrape".
func ScrapeURL(announceURL string) (string, error) {
	u, err := parseTrackerURL(announceURL)
	if err != nil {
		return "", err
	}
	i := strings.LastIndexByte(u.Path, '/') + 1
	last := u.Path[i:]
	if !strings.HasPrefix(last, "announce") {
		return "", fmt.Errorf("%w: %s does not end in /announce", ErrNoScrape, redact(u))
	}
	c := *u
	c.Path = u.Path[:i] + "scrape" + strings.TrimPrefix(last, "announce")
	c.RawPath = ""
	return c.String(), nil
}

// Scrape asks the tracker behind announceURL for the counts of the given
// torrents. Torrents the tracker does not report are missing from the map.
func Scrape(ctx context.Context, c *http.Client, announceURL string, hashes ...[20]byte) (map[[20]byte]ScrapeStats, error) {
	if len(hashes) == 0 {
		return nil, errors.New("scrape: no info hashes given")
	}
	su, err := ScrapeURL(announceURL)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(su)
	if err != nil {
		return nil, fmt.Errorf("scrape: %w", err)
	}
	parts := make([]string, len(hashes))
	for i, h := range hashes {
		parts[i] = "info_hash=" + escapeBytes(h[:])
	}
	body, err := get(ctx, c, withQuery(u, strings.Join(parts, "&")))
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", redact(u), err)
	}
	stats, err := ParseScrapeResponse(body)
	if err != nil {
		var fe *FailureError
		if errors.As(err, &fe) {
			return nil, fe
		}
		return nil, fmt.Errorf("scrape %s: %w", redact(u), err)
	}
	return stats, nil
}

// redact returns the URL without its query, which may hold a passkey that
// must not end up in logs.
func redact(u *url.URL) string {
	c := *u
	c.RawQuery, c.Fragment, c.RawFragment, c.User = "", "", "", nil
	return c.String()
}

// get fetches target and returns a body of at most MaxResponseBytes. A
// non-200 reply is an error unless it carries a bencoded failure reason,
// which some trackers send with 4xx statuses.
func get(ctx context.Context, c *http.Client, target string) ([]byte, error) {
	if c == nil {
		c = &http.Client{Timeout: DefaultRequestTimeout}
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("User-Agent", "Floodgate")
	hreq.Header.Set("Accept-Encoding", "identity")
	resp, err := c.Do(hreq)
	if err != nil {
		// The *url.Error from net/http includes the full URL with the
		// binary query; unwrap it so the message stays readable.
		var ue *url.Error
		if errors.As(err, &ue) {
			return nil, ue.Err
		}
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading reply: %w", err)
	}
	if len(body) > MaxResponseBytes {
		return nil, fmt.Errorf("%w: reply larger than %d bytes", ErrMalformedResponse, MaxResponseBytes)
	}
	if resp.StatusCode != http.StatusOK {
		if _, err := decodeDict(body); err != nil {
			var fe *FailureError
			if errors.As(err, &fe) {
				return body, nil
			}
		}
		snippet := body[:min(len(body), 200)]
		return nil, &StatusError{StatusCode: resp.StatusCode, Snippet: printable(strings.TrimSpace(string(snippet)))}
	}
	return body, nil
}
