package ledger

import (
	"context"
	"math/rand/v2"
	"time"
)

// backoff sleeps before retry attempt i+1: a pause that doubles from 1 ms
// up to 64 ms, jittered to half..full length so that transactions which
// collided once do not collide again in lockstep.
func backoff(ctx context.Context, i int) error {
	d := time.Millisecond << min(i, 6)
	d = d/2 + rand.N(d/2+1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
