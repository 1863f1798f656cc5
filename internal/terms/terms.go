package terms

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/identity"
)

// Limits on the terms. They are far above anything a provider needs and
// exist so that a hostile torrent cannot make peers allocate, print or sum
// unbounded values.
const (
	// MaxClasses is the most service classes one set of terms may offer.
	MaxClasses = 64
	// MaxClassNameLen is the longest class name, in bytes.
	MaxClassNameLen = 32
	// MaxBrokerURLLen is the longest broker URL, in bytes.
	MaxBrokerURLLen = 4096
	// MaxMinRate (1 TiB/s) caps a class's guaranteed rate, so that code
	// summing the guarantees of many peers stays far from int64 overflow.
	MaxMinRate = 1 << 40
	// MaxPricePerMiB caps a class's price for the same reason.
	MaxPricePerMiB = 1 << 40
	// MaxStartup caps the play-out delay of a streaming class.
	MaxStartup = time.Hour
)

// Sentinel errors, matched with errors.Is. A client refuses a torrent whose
// terms fail with ErrInvalid or ErrTampered rather than downloading it for
// free: the provider meant it to be paid.
var (
	// ErrInvalid means the terms are malformed or break a rule of this
	// package (an unknown key, a bad URL, a duplicate class name, ...).
	ErrInvalid = errors.New("terms: invalid Floodgate terms")
	// ErrUnsupportedVersion is wrapped, together with ErrInvalid, when the
	// terms carry a version this client does not know; the user needs a
	// newer Floodgate rather than a new torrent.
	ErrUnsupportedVersion = errors.New("unsupported terms version")
	// ErrTampered means the signature does not verify: the terms were
	// changed after signing, or were signed for another torrent.
	ErrTampered = errors.New("terms: Floodgate terms are not signed by their provider for this torrent (tampered or moved from another torrent)")
	// ErrUntrustedProvider means the terms verify, but under a key other
	// than the one the caller trusts.
	ErrUntrustedProvider = errors.New("terms: Floodgate terms are signed by an untrusted provider")
	// ErrUnknownClass means a buyer asked for a class the terms do not
	// offer.
	ErrUnknownClass = errors.New("terms: unknown service class")
)

// Class is one service class the provider sells.
type Class struct {
	// Name identifies the class on the command line and in tickets:
	// 1 to MaxClassNameLen bytes of [a-z0-9_-].
	Name string
	// MinRate is the guaranteed download rate in bytes per second; 0 means
	// best effort. For a streaming class it is the play-out rate.
	MinRate int64
	// PricePerMiB is what a buyer of this class pays its uploaders per MiB
	// (2^20 bytes) of verified data, in the ledger's smallest unit; see
	// PriceFor for the exact rule.
	PricePerMiB int64
	// Streaming means pieces are due in order at MinRate.
	Streaming bool
	// Startup is how long after admission play-out starts, for streaming
	// classes; it is zero for the others and a whole number of
	// milliseconds, the precision of the signed encoding.
	Startup time.Duration
}

// Terms are the provider-signed Floodgate terms of one torrent.
type Terms struct {
	// Provider is the key that signs the terms, the peers' certificates and
	// the broker's vouchers.
	Provider identity.PublicKey
	// Broker is the base URL (http or https) of the provider's broker.
	Broker string
	// Classes are the service classes offered, at least one, with unique
	// names, in the order the provider lists them.
	Classes []Class
	// Default names the class a buyer gets when it names none; it must be
	// one of Classes.
	Default string
	// Signature is the provider's signature; see Sign.
	Signature identity.Signature
}

// Class returns the class called name, or the default class when name is
// empty. An unknown name yields an error matching ErrUnknownClass that lists
// the classes on offer, so the user can correct a --class flag.
func (t *Terms) Class(name string) (Class, error) {
	if name == "" {
		name = t.Default
	}
	for _, c := range t.Classes {
		if c.Name == name {
			return c, nil
		}
	}
	return Class{}, fmt.Errorf("%w %q; this torrent offers: %s", ErrUnknownClass, name, strings.Join(t.Names(), ", "))
}

// Names returns the names of the offered classes in their listed order.
func (t *Terms) Names() []string {
	names := make([]string, len(t.Classes))
	for i, c := range t.Classes {
		names[i] = c.Name
	}
	return names
}

// Validate checks every rule of the terms except the signature. Its errors
// wrap ErrInvalid.
func (t *Terms) Validate() error {
	if t.Provider == (identity.PublicKey{}) {
		return invalid("provider key is all zeros")
	}
	if err := checkBroker(t.Broker); err != nil {
		return err
	}
	if len(t.Classes) == 0 {
		return invalid("no service classes")
	}
	if len(t.Classes) > MaxClasses {
		return invalid("%d service classes, at most %d allowed", len(t.Classes), MaxClasses)
	}
	seen := make(map[string]bool, len(t.Classes))
	for _, c := range t.Classes {
		if err := c.Validate(); err != nil {
			return err
		}
		if seen[c.Name] {
			return invalid("class name %q appears twice", c.Name)
		}
		seen[c.Name] = true
	}
	if !seen[t.Default] {
		return invalid("default class %q is not one of the offered classes (%s)", t.Default, strings.Join(t.Names(), ", "))
	}
	return nil
}

// Validate checks the class on its own. Its errors wrap ErrInvalid.
func (c Class) Validate() error {
	if err := checkName(c.Name); err != nil {
		return err
	}
	switch {
	case c.MinRate < 0 || c.MinRate > MaxMinRate:
		return invalid("class %q: min_rate %d outside 0..%d bytes/s", c.Name, c.MinRate, int64(MaxMinRate))
	case c.PricePerMiB < 0 || c.PricePerMiB > MaxPricePerMiB:
		return invalid("class %q: price_per_mib %d outside 0..%d", c.Name, c.PricePerMiB, int64(MaxPricePerMiB))
	case c.Startup < 0 || c.Startup > MaxStartup:
		return invalid("class %q: startup %v outside 0..%v", c.Name, c.Startup, MaxStartup)
	case c.Startup%time.Millisecond != 0:
		return invalid("class %q: startup %v is not a whole number of milliseconds", c.Name, c.Startup)
	case c.Streaming && c.MinRate == 0:
		// Deadlines are piece_length / min_rate apart; without a rate
		// there is no schedule to meet.
		return invalid("streaming class %q needs its play-out rate as min_rate", c.Name)
	case !c.Streaming && c.Startup != 0:
		return invalid("class %q: startup %v is only meaningful for a streaming class", c.Name, c.Startup)
	}
	return nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

func checkName(name string) error {
	if len(name) == 0 || len(name) > MaxClassNameLen {
		return invalid("class name %q must be 1..%d bytes long", name, MaxClassNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return invalid("class name %q: only a-z, 0-9, '_' and '-' are allowed", name)
		}
	}
	return nil
}

// checkBroker accepts an absolute http or https URL with a host and without
// credentials, query or fragment: it is a base URL that API paths are
// appended to, and a torrent is public, so it must not carry secrets.
func checkBroker(s string) error {
	if s == "" {
		return invalid("no broker URL")
	}
	if len(s) > MaxBrokerURLLen {
		return invalid("broker URL is %d bytes, at most %d allowed", len(s), MaxBrokerURLLen)
	}
	for i := 0; i < len(s); i++ {
		// Printable ASCII only, so the URL shows unambiguously to users
		// and in logs (no look-alike or control characters).
		if c := s[i]; c <= ' ' || c > '~' {
			return invalid("broker URL has byte %#x at %d; only printable ASCII without spaces is allowed", c, i)
		}
	}
	u, err := url.Parse(s)
	if err != nil {
		return invalid("broker URL: %v", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return invalid("broker URL %q: scheme must be http or https", s)
	case u.Host == "" || u.Hostname() == "":
		return invalid("broker URL %q has no host", s)
	case u.User != nil:
		return invalid("broker URL %q must not contain credentials", s)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#"):
		return invalid("broker URL %q must not have a query or fragment", s)
	case u.Opaque != "":
		return invalid("broker URL %q is not hierarchical", s)
	}
	return nil
}
