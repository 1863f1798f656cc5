package terms

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/bencode"
	"github.com/floodgate-p2p/floodgate/internal/identity"
	"github.com/floodgate-p2p/floodgate/internal/metainfo"
)

// Version is the format version this package reads and writes, carried in
// the "version" key. A client meeting a higher one refuses the torrent with
// ErrUnsupportedVersion: terms it cannot read are terms it cannot honour.
const Version = 1

// SignatureTag starts every signed message, so a signature over terms can
// never be taken for a signature over anything else the provider signs.
const SignatureTag = "floodgate/terms/v1\x00"

// MaxEncodedSize bounds the "floodgate" dictionary. The largest valid terms
// (MaxClasses classes with the longest names and values, the longest broker
// URL) take about 15 KiB.
const MaxEncodedSize = 32 << 10

// decodeLimits let the bencode decoder refuse oversized input before it
// builds anything: the dictionary nests three levels deep (terms, classes
// list, class), the longest string is the broker URL, and no container
// holds more than MaxClasses entries.
var decodeLimits = bencode.Limits{MaxDepth: 3, MaxStringLength: MaxBrokerURLLen, MaxEntries: MaxClasses}

// wireTerms is the "floodgate" dictionary. Every key is required; Sig is
// left out (nil) only when building the bytes to sign.
type wireTerms struct {
	Broker   string      `bencode:"broker"`
	Classes  []wireClass `bencode:"classes"`
	Default  string      `bencode:"default"`
	Provider [32]byte    `bencode:"provider"`
	Sig      []byte      `bencode:"sig,omitempty"`
	Version  int64       `bencode:"version"`
}

// wireClass is one entry of the "classes" list. Every key is required.
type wireClass struct {
	MinRate     int64  `bencode:"min_rate"`
	Name        string `bencode:"name"`
	PricePerMiB int64  `bencode:"price_per_mib"`
	StartupMS   int64  `bencode:"startup_ms"`
	Streaming   bool   `bencode:"streaming"`
}

var (
	termsKeys = []string{"broker", "classes", "default", "provider", "sig", "version"}
	classKeys = []string{"min_rate", "name", "price_per_mib", "startup_ms", "streaming"}
)

func (t *Terms) wire(withSig bool) wireTerms {
	w := wireTerms{
		Broker:   t.Broker,
		Classes:  make([]wireClass, len(t.Classes)),
		Default:  t.Default,
		Provider: t.Provider,
		Version:  Version,
	}
	for i, c := range t.Classes {
		w.Classes[i] = wireClass{
			MinRate:     c.MinRate,
			Name:        c.Name,
			PricePerMiB: c.PricePerMiB,
			StartupMS:   c.Startup.Milliseconds(),
			Streaming:   c.Streaming,
		}
	}
	if withSig {
		w.Sig = t.Signature[:]
	}
	return w
}

// signedBytes is the message the provider signs: SignatureTag, the 20-byte
// info hash, then the canonical bencoding of the terms without "sig". The
// tag and hash have fixed lengths and bencode is self-delimiting, so the
// message parses one way only.
func (t *Terms) signedBytes(infoHash metainfo.Hash) ([]byte, error) {
	buf := make([]byte, 0, 512)
	buf = append(buf, SignatureTag...)
	buf = append(buf, infoHash[:]...)
	buf, err := bencode.AppendMarshal(buf, t.wire(false))
	if err != nil {
		return nil, fmt.Errorf("terms: encoding the signed message: %w", err)
	}
	return buf, nil
}

// Encode returns the "floodgate" dictionary in its canonical bencoding. It
// refuses terms that Decode would refuse (errors wrap ErrInvalid); it does
// not check the signature.
func (t *Terms) Encode() (bencode.RawMessage, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	b, err := bencode.Marshal(t.wire(true))
	if err != nil {
		return nil, fmt.Errorf("terms: encoding: %w", err)
	}
	return b, nil
}

// Decode parses a "floodgate" dictionary. It is strict, because the terms
// decide who gets paid: unknown or missing keys, wrong types, values that
// break a rule of Validate, and encodings other than the canonical one are
// refused with an error wrapping ErrInvalid that says what is wrong. It does
// not verify the signature; use Verify or FromMetaInfo.
func Decode(raw []byte) (*Terms, error) {
	if len(raw) > MaxEncodedSize {
		return nil, invalid("dictionary is %d bytes, at most %d allowed", len(raw), MaxEncodedSize)
	}
	dec := bencode.NewDecoder(decodeLimits)
	var keys map[string]bencode.RawMessage
	if err := dec.Unmarshal(raw, &keys); err != nil {
		if errors.Is(err, bencode.ErrLimitExceeded) {
			return nil, fmt.Errorf("%w: over a size limit (at most %d classes, strings of %d bytes, nesting %d): %w",
				ErrInvalid, MaxClasses, MaxBrokerURLLen, decodeLimits.MaxDepth, err)
		}
		return nil, fmt.Errorf("%w: not a bencoded dictionary: %w", ErrInvalid, err)
	}
	// The version comes first, so that a newer format (which may well have
	// new keys) is reported as such rather than as an unknown key.
	var version int64
	if v, ok := keys["version"]; !ok {
		return nil, invalid("missing key \"version\"")
	} else if err := dec.Unmarshal(v, &version); err != nil {
		return nil, fmt.Errorf("%w: version: %w", ErrInvalid, err)
	}
	if version != Version {
		return nil, fmt.Errorf("%w: %w %d (this client reads version %d; a newer Floodgate may read it)", ErrInvalid, ErrUnsupportedVersion, version, Version)
	}
	if err := checkKeys("", keys, termsKeys); err != nil {
		return nil, err
	}
	var classes []map[string]bencode.RawMessage
	if err := dec.Unmarshal(keys["classes"], &classes); err != nil {
		return nil, fmt.Errorf("%w: classes must be a list of dictionaries: %w", ErrInvalid, err)
	}
	for i, c := range classes {
		if err := checkKeys(fmt.Sprintf("classes[%d].", i), c, classKeys); err != nil {
			return nil, err
		}
	}
	var w wireTerms
	if err := dec.Unmarshal(raw, &w); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if len(w.Sig) != identity.SignatureSize {
		return nil, invalid("sig is %d bytes, want %d", len(w.Sig), identity.SignatureSize)
	}
	t := &Terms{
		Provider: w.Provider,
		Broker:   w.Broker,
		Classes:  make([]Class, len(w.Classes)),
		Default:  w.Default,
	}
	copy(t.Signature[:], w.Sig)
	for i, c := range w.Classes {
		// Bound the milliseconds before converting, so a huge value is
		// reported as too long instead of wrapping into a valid duration.
		if c.StartupMS < 0 || c.StartupMS > MaxStartup.Milliseconds() {
			return nil, invalid("class %q: startup_ms %d outside 0..%d", c.Name, c.StartupMS, MaxStartup.Milliseconds())
		}
		t.Classes[i] = Class{
			Name:        c.Name,
			MinRate:     c.MinRate,
			PricePerMiB: c.PricePerMiB,
			Streaming:   c.Streaming,
			Startup:     time.Duration(c.StartupMS) * time.Millisecond,
		}
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	// Everything else being checked, the one freedom left to an encoder is
	// the order of keys. Refusing it keeps one encoding per set of terms,
	// so the bytes in a torrent are exactly the bytes that were published.
	canon, err := t.Encode()
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(canon, raw) {
		return nil, invalid("dictionary is not in canonical form (keys must be sorted)")
	}
	return t, nil
}

// checkKeys requires dict to hold exactly the keys in want (which is
// sorted).
func checkKeys(prefix string, dict map[string]bencode.RawMessage, want []string) error {
	for k := range dict {
		if _, found := slices.BinarySearch(want, k); !found {
			return invalid("unknown key %q", prefix+k)
		}
	}
	for _, k := range want {
		if _, ok := dict[k]; !ok {
			return invalid("missing key %q", prefix+k)
		}
	}
	return nil
}
