package broker

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/identity"
)

// Request authentication. Every API request carries four headers:
//
//	Floodgate-Key:       the caller's Ed25519 public key, hex
//	Floodgate-Timestamp: Unix time in milliseconds, decimal
//	Floodgate-Nonce:     16 random bytes, hex
//	Floodgate-Signature: Ed25519 signature over the message below, hex
//
// The signed message is a fixed binary layout (see requestMessage) over the
// method, the request URI (path and query), the timestamp, the nonce, the
// Idempotency-Key header and SHA-256 of the body. The server refuses
// timestamps more than the skew window away from its clock and nonces it has
// seen within the window, so a captured request cannot be replayed.
const (
	HeaderKey         = "Floodgate-Key"
	HeaderTimestamp   = "Floodgate-Timestamp"
	HeaderNonce       = "Floodgate-Nonce"
	HeaderSignature   = "Floodgate-Signature"
	HeaderIdempotency = "Idempotency-Key"
)

// NonceSize is the length of a request nonce in bytes.
const NonceSize = 16

// MaxIdempotencyKeyLen bounds the Idempotency-Key header.
const MaxIdempotencyKeyLen = 128

const requestTag = "floodgate/broker-request/v1\x00"

// requestMessage builds the signed bytes. Strings are length-prefixed (four
// bytes, big-endian) so no two field lists produce the same message.
func requestMessage(method, uri string, tsMillis int64, nonce [NonceSize]byte, idemKey string, body []byte) []byte {
	sum := sha256.Sum256(body)
	b := make([]byte, 0, len(requestTag)+12+len(method)+len(uri)+len(idemKey)+8+NonceSize+len(sum))
	b = append(b, requestTag...)
	for _, s := range []string{method, uri} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	b = binary.BigEndian.AppendUint64(b, uint64(tsMillis))
	b = append(b, nonce[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(idemKey)))
	b = append(b, idemKey...)
	return append(b, sum[:]...)
}

// SignRequest sets the authentication headers on req for body (which must be
// the exact bytes req will send) using key, at time now. req.URL must already
// hold the final path and query. The Idempotency-Key header, if any, must be
// set before signing.
func SignRequest(req *http.Request, body []byte, key *identity.PrivateKey, now time.Time) error {
	var nonce [NonceSize]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return fmt.Errorf("broker: nonce: %w", err)
	}
	ts := now.UnixMilli()
	msg := requestMessage(req.Method, req.URL.RequestURI(), ts, nonce, req.Header.Get(HeaderIdempotency), body)
	sig := key.Sign(msg)
	req.Header.Set(HeaderKey, key.Public().String())
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderNonce, hex.EncodeToString(nonce[:]))
	req.Header.Set(HeaderSignature, sig.String())
	return nil
}

// signedHeaders are the parsed authentication headers of a request.
type signedHeaders struct {
	key     identity.PublicKey
	ts      int64
	nonce   [NonceSize]byte
	sig     identity.Signature
	idemKey string
}

// parseAuthHeaders reads the authentication headers without verifying them.
func parseAuthHeaders(h http.Header) (signedHeaders, *Error) {
	var s signedHeaders
	get := func(name string) (string, *Error) {
		v := h.Values(name)
		if len(v) != 1 {
			return "", apiError(http.StatusUnauthorized, CodeUnauthenticated, "exactly one %s header is required", name)
		}
		return v[0], nil
	}
	v, e := get(HeaderKey)
	if e != nil {
		return s, e
	}
	if err := s.key.UnmarshalText([]byte(v)); err != nil {
		return s, apiError(http.StatusUnauthorized, CodeUnauthenticated, "%s: %v", HeaderKey, err)
	}
	if v, e = get(HeaderTimestamp); e != nil {
		return s, e
	}
	ts, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ts <= 0 || len(v) > 19 {
		return s, apiError(http.StatusUnauthorized, CodeUnauthenticated, "%s must be positive Unix milliseconds", HeaderTimestamp)
	}
	s.ts = ts
	if v, e = get(HeaderNonce); e != nil {
		return s, e
	}
	if len(v) != 2*NonceSize {
		return s, apiError(http.StatusUnauthorized, CodeUnauthenticated, "%s must be %d hex digits", HeaderNonce, 2*NonceSize)
	}
	if _, err := hex.Decode(s.nonce[:], []byte(v)); err != nil {
		return s, apiError(http.StatusUnauthorized, CodeUnauthenticated, "%s: %v", HeaderNonce, err)
	}
	if v, e = get(HeaderSignature); e != nil {
		return s, e
	}
	if err := s.sig.UnmarshalText([]byte(v)); err != nil {
		return s, apiError(http.StatusUnauthorized, CodeUnauthenticated, "%s: %v", HeaderSignature, err)
	}
	idem := h.Values(HeaderIdempotency)
	switch len(idem) {
	case 0:
	case 1:
		if err := checkIdempotencyKey(idem[0]); err != nil {
			return s, apiError(http.StatusBadRequest, CodeBadRequest, "%v", err)
		}
		s.idemKey = idem[0]
	default:
		return s, apiError(http.StatusBadRequest, CodeBadRequest, "more than one %s header", HeaderIdempotency)
	}
	return s, nil
}

// checkIdempotencyKey allows 1..MaxIdempotencyKeyLen printable ASCII bytes.
func checkIdempotencyKey(k string) error {
	if len(k) == 0 || len(k) > MaxIdempotencyKeyLen {
		return fmt.Errorf("%s must be 1..%d bytes", HeaderIdempotency, MaxIdempotencyKeyLen)
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c < '!' || c > '~' {
			return fmt.Errorf("%s must be printable ASCII without spaces", HeaderIdempotency)
		}
	}
	return nil
}

// nonceCache remembers (key, nonce) pairs until their timestamps leave the
// skew window; after that the timestamp check alone refuses a replay, so
// memory is bounded by the request rate times the window. A hard cap stops
// a flood of validly signed requests from exhausting memory: when full, new
// requests are refused with 503 until entries expire.
type nonceCache struct {
	mu        sync.Mutex
	seen      map[nonceKey]int64 // -> expiry, Unix ms
	max       int
	sweepAt   int // sweep when len(seen) reaches this
	lastSweep int64
}

type nonceKey struct {
	key   identity.PublicKey
	nonce [NonceSize]byte
}

func newNonceCache(max int) *nonceCache {
	return &nonceCache{seen: make(map[nonceKey]int64), max: max, sweepAt: 1024}
}

// add records the pair and reports whether it was new. full reports that the
// cache is at its cap (the pair was not recorded).
func (c *nonceCache) add(k nonceKey, expiryMillis, nowMillis int64) (fresh, full bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if exp, ok := c.seen[k]; ok && exp >= nowMillis {
		return false, false
	}
	// At the cap, sweep at most once a second: a flood must not turn every
	// request into a full scan.
	if len(c.seen) >= c.sweepAt || (len(c.seen) >= c.max && nowMillis-c.lastSweep >= 1000) {
		c.sweep(nowMillis)
	}
	if len(c.seen) >= c.max {
		return false, true
	}
	c.seen[k] = expiryMillis
	return true, false
}

// sweep drops expired entries. It runs when the map has doubled since the
// last sweep, so its cost is amortised over the inserts in between.
func (c *nonceCache) sweep(nowMillis int64) {
	for k, exp := range c.seen {
		if exp < nowMillis {
			delete(c.seen, k)
		}
	}
	c.sweepAt = max(1024, 2*len(c.seen))
	c.lastSweep = nowMillis
}

func (c *nonceCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}
