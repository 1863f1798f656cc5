package broker

import (
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/floodgate-p2p/floodgate/internal/identity"
)

// keyLimiter gives every caller key its own token bucket, so one client
// (or one stolen key) cannot monopolise the broker. Keys cost nothing to
// make, so this bounds a single identity, not a determined flood; that is
// the job of the listener's connection limits. Memory is bounded: buckets
// idle for a minute are forgotten, and when maxKeys buckets are all busy
// new keys are refused.
type keyLimiter struct {
	mu      sync.Mutex
	limit   rate.Limit
	burst   int
	maxKeys int
	keys    map[identity.PublicKey]*keyBucket
	swept   time.Time
}

type keyBucket struct {
	lim  *rate.Limiter
	last time.Time
}

const limiterIdle = time.Minute

func newKeyLimiter(limit rate.Limit, burst, maxKeys int) *keyLimiter {
	return &keyLimiter{limit: limit, burst: burst, maxKeys: maxKeys, keys: make(map[identity.PublicKey]*keyBucket)}
}

// allow reports whether key may make a request at now.
func (l *keyLimiter) allow(key identity.PublicKey, now time.Time) bool { return l.allowN(key, now, 1) }

// allowN reports whether key may make n requests' worth of work at now.
// More than a full bucket is charged as a full bucket, or a request worth
// more than the burst could never pass.
func (l *keyLimiter) allowN(key identity.PublicKey, now time.Time, n int) bool {
	n = min(n, l.burst)
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.keys[key]
	if !ok {
		if len(l.keys) >= l.maxKeys && now.Sub(l.swept) >= time.Second {
			for k, b := range l.keys {
				if now.Sub(b.last) > limiterIdle {
					delete(l.keys, k)
				}
			}
			l.swept = now
		}
		if len(l.keys) >= l.maxKeys {
			return false
		}
		b = &keyBucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.keys[key] = b
	}
	b.last = now
	return b.lim.AllowN(now, n)
}
