package ledger

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Settlement asks Settle to redeem one channel and then, if Close is set,
// to close it.
type Settlement struct {
	// Channel is the channel's ID.
	Channel string
	// Index and Preimage redeem the channel as Redeem does; Index 0
	// redeems nothing.
	Index    int64
	Preimage [32]byte
	// Close closes the channel once it is redeemed, as Close does.
	Close bool
}

// Settled is what Settle did with one Settlement.
type Settled struct {
	// Paid is what the payee received from this call's redemption.
	Paid int64
	// Redeemed is how far the channel is redeemed afterwards.
	Redeemed int64
	// Closed reports that the channel is closed, and Refund what its close
	// returned to the payer (the same figure when it was closed before).
	Closed bool
	Refund int64
	// Err says why the channel was not redeemed, or not closed; nothing
	// of it changed then, except a redemption that succeeded before its
	// close failed.
	Err error
}

// Settle redeems and closes several channels for by, as Redeem and then
// Close would one after the other for each, but in one transaction: a
// payee settling a dozen channels at exit costs the database one commit
// instead of two per channel. Each channel succeeds or fails on its own
// (a wrong preimage or an expired channel spoils only its own result), and
// a channel that could not be redeemed is not closed, or the payments it
// carried would go back to the payer. Only the payee may redeem; anyone
// may close as Close allows. A channel whose redemption needs a long
// chain walk is settled after the transaction by Redeem and Close, so the
// walk holds no lock. The error is for the call as a whole (a store
// failure); then nothing was committed, and repeating the call is
// harmless, as it is after success.
func (l *Ledger) Settle(ctx context.Context, by AccountID, items []Settlement, now time.Time) ([]Settled, error) {
	if l.cfgErr != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, l.cfgErr)
	}
	out := make([]Settled, len(items))
	// Rows are locked in channel order, so two settlements sharing
	// channels (on PostgreSQL) cannot deadlock.
	order := make([]int, 0, len(items))
	for i, it := range items {
		switch {
		case checkID("channel id", it.Channel) != nil:
			out[i].Err = checkID("channel id", it.Channel)
		case it.Index < 0:
			out[i].Err = fmt.Errorf("%w: index %d is negative", ErrInvalid, it.Index)
		case it.Index > 0 || it.Close:
			order = append(order, i)
		}
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(items[a].Channel, items[b].Channel) })
	var long []int // redemptions whose chain walk is done outside
	var charged bool
	err := l.store.InTx(ctx, func(tx Tx) error {
		long, charged = long[:0], false
		for _, i := range order {
			out[i] = Settled{}
			walk, c, err := l.settleOne(ctx, tx, by, items[i], now, &out[i])
			if err != nil {
				return err // the store failed: nothing commits
			}
			charged = charged || c
			if walk {
				long = append(long, i)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("settle %d channels: %w", len(items), err)
	}
	if charged {
		l.feeAccountExists.Store(true)
	}
	for _, i := range long {
		it, res := items[i], &out[i]
		*res = Settled{}
		if res.Paid, res.Err = l.Redeem(ctx, it.Channel, it.Index, it.Preimage, now); res.Err != nil {
			continue
		}
		res.Redeemed = it.Index
		if it.Close {
			if res.Refund, res.Err = l.Close(ctx, it.Channel, by, now); res.Err == nil {
				res.Closed = true
			}
		}
	}
	return out, nil
}

// settleOne does one Settlement within tx. Refusals go to res.Err; the
// error returned is a store failure, which aborts the transaction. walk
// reports a redemption left for outside the transaction (its chain walk
// is too long to do under the lock), charged that a fee was paid.
func (l *Ledger) settleOne(ctx context.Context, tx Tx, by AccountID, it Settlement, now time.Time, res *Settled) (walk, charged bool, err error) {
	ch, err := tx.Channel(ctx, it.Channel, true)
	if errors.Is(err, ErrNotFound) {
		res.Err = fmt.Errorf("settle channel %s: %w", it.Channel, err)
		return false, false, nil
	}
	if err != nil {
		return false, false, err
	}
	refuse := func(e error) (bool, bool, error) {
		res.Err = fmt.Errorf("settle channel %s: %w", it.Channel, e)
		return false, charged, nil
	}
	if it.Index > ch.Redeemed {
		if by != ch.Payee {
			return refuse(fmt.Errorf("%w: only the payee may redeem", ErrForbidden))
		}
		if err := l.redeemable(ch, it.Index, now); err != nil {
			return refuse(err)
		}
		if it.Index-ch.Redeemed > inlineVerifySteps {
			return true, false, nil
		}
		if err := verifyPreimage(ch, it.Index, it.Preimage); err != nil {
			return refuse(err)
		}
		next := ch
		next.Redeemed, next.Last = it.Index, it.Preimage
		if err := tx.UpdateChannel(ctx, next); err != nil {
			return false, false, err
		}
		if res.Paid, charged, err = l.payOut(ctx, tx, ch, it.Index, now); err != nil {
			return false, false, err
		}
		ch = next
	}
	res.Redeemed = ch.Redeemed
	if !it.Close {
		return false, charged, nil
	}
	if ch.State == StateClosed {
		res.Closed = true
		res.Refund, err = mul(ch.Length-ch.Redeemed, ch.Unit)
		return false, charged, err
	}
	if by != ch.Payee && now.Before(ch.Expiry.Add(l.cfg.ExpiryGrace)) {
		return refuse(fmt.Errorf("%w: only the payee may close before %s", ErrForbidden, ch.Expiry.Add(l.cfg.ExpiryGrace)))
	}
	if res.Refund, err = closeChannel(ctx, tx, ch, now); err != nil {
		return false, false, err
	}
	res.Closed = true
	return false, charged, nil
}
