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
// carried would go back to the payer (nor by a later settlement of it in
// the same batch). Only the payee may redeem; anyone
// may close as Close allows. A channel whose redemption needs a long
// chain walk (or would take the batch's walks beyond maxInlineSteps) is
// settled after the transaction by Redeem and Close, with every later
// settlement of it, so the walk holds no lock. The error is
// for the call as a whole: a store failure on any channel commits
// nothing, and repeating the call is harmless, as it is after success.
//
// On PostgreSQL the transaction takes its row locks in an order no other
// ledger transaction contradicts, so it cannot deadlock with them: first
// every channel, by ID (each checked, preimages verified, before any
// money moves), then the customers paid, by ID, then the fee account, as
// single redemptions do (channel, payee, fees), closes (channel, payer)
// and opens (payer). Escrow rows belong to their channel's lock.
func (l *Ledger) Settle(ctx context.Context, by AccountID, items []Settlement, now time.Time) ([]Settled, error) {
	if l.cfgErr != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, l.cfgErr)
	}
	out := make([]Settled, len(items))
	order := make([]int, 0, len(items))
	for i, it := range items {
		switch idErr := checkID("channel id", it.Channel); {
		case idErr != nil:
			out[i].Err = idErr
		case it.Index < 0:
			out[i].Err = fmt.Errorf("%w: index %d is negative", ErrInvalid, it.Index)
		case it.Index > 0 || it.Close:
			order = append(order, i)
		}
	}
	if len(order) == 0 {
		return out, nil
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(items[a].Channel, items[b].Channel) })
	var long []int // settled outside, in order, after the transaction
	var charged bool
	err := l.store.InTx(ctx, func(tx Tx) error {
		long, charged = long[:0], false
		p := settlePlan{l: l, by: by, now: now, chs: map[string]*Channel{}, outside: map[string]bool{}, refused: map[string]bool{}}
		for _, i := range order {
			out[i] = Settled{}
			outside, err := p.add(ctx, tx, items[i], &out[i])
			if err != nil {
				return err // the store failed: nothing commits
			}
			if outside {
				long = append(long, i)
			}
		}
		var err error
		charged, err = p.execute(ctx, tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("settle %d channels: %w", len(items), err)
	}
	if charged {
		l.feeAccountExists.Store(true)
	}
	refused := map[string]bool{}
	for _, i := range long {
		it, res := items[i], &out[i]
		*res = Settled{}
		if refused[it.Channel] && it.Close {
			res.Err = errEarlierRefused(it.Channel)
			continue
		}
		if it.Index > 0 {
			if res.Paid, res.Err = l.Redeem(ctx, it.Channel, it.Index, it.Preimage, now); res.Err != nil {
				refused[it.Channel] = true
				continue
			}
			res.Redeemed = it.Index
		}
		if it.Close {
			if res.Refund, res.Err = l.Close(ctx, it.Channel, by, now); res.Err == nil {
				res.Closed = true
			}
		}
	}
	return out, nil
}

// errEarlierRefused refuses to close a channel whose redemption earlier
// in the same batch was refused: closing it would return the payments it
// carried to the payer.
func errEarlierRefused(channel string) error {
	return fmt.Errorf("settle channel %s: %w: its redemption earlier in this batch was refused", channel, ErrInvalid)
}

// maxInlineSteps bounds the chain steps one Settle transaction verifies
// while it holds its channels (and, on SQLite, the one writer): four
// times what a single Redeem walks under its lock. Beyond it, channels
// are settled after the transaction.
const maxInlineSteps = 4 * inlineVerifySteps

// settlePlan collects what a Settle transaction changes, so that the rows
// are written in the lock order Settle promises.
type settlePlan struct {
	l       *Ledger
	by      AccountID
	now     time.Time
	chs     map[string]*Channel // locked channels, as the plan leaves them
	changed []string            // channels to write back, in lock order
	outside map[string]bool     // channels settled after the transaction
	refused map[string]bool     // channels whose redemption was refused
	steps   int64               // chain steps verified so far
	toCust  []Transfer          // escrow to payee or payer
	toFee   []Transfer          // escrow to the fee account
}

// add checks one Settlement against the channel as the plan leaves it and
// plans its transfers. Refusals go to res.Err; the error returned is a
// store failure. outside reports a settlement left for after the
// transaction: a redemption whose chain walk is too long to do under the
// lock, or any later settlement of such a channel.
func (p *settlePlan) add(ctx context.Context, tx Tx, it Settlement, res *Settled) (outside bool, err error) {
	ch := p.chs[it.Channel]
	if ch == nil {
		c, err := tx.Channel(ctx, it.Channel, true)
		if errors.Is(err, ErrNotFound) {
			res.Err = fmt.Errorf("settle channel %s: %w", it.Channel, err)
			return false, nil
		}
		if err != nil {
			return false, err
		}
		ch = &c
		p.chs[it.Channel] = ch
	}
	if p.outside[it.Channel] {
		return true, nil
	}
	if p.refused[it.Channel] && it.Close {
		res.Err = errEarlierRefused(it.Channel)
		return false, nil
	}
	refuse := func(e error) (bool, error) {
		res.Err = fmt.Errorf("settle channel %s: %w", it.Channel, e)
		if it.Index > ch.Redeemed {
			p.refused[it.Channel] = true
		}
		return false, nil
	}
	if it.Index > ch.Redeemed {
		if p.by != ch.Payee {
			return refuse(fmt.Errorf("%w: only the payee may redeem", ErrForbidden))
		}
		if err := p.l.redeemable(*ch, it.Index, p.now); err != nil {
			return refuse(err)
		}
		if steps := it.Index - ch.Redeemed; steps > inlineVerifySteps || p.steps+steps > maxInlineSteps {
			p.outside[it.Channel] = true
			return true, nil
		}
		p.steps += it.Index - ch.Redeemed
		if err := verifyPreimage(*ch, it.Index, it.Preimage); err != nil {
			return refuse(err)
		}
		toPayee, toFee, err := p.l.payoutTransfers(*ch, it.Index, p.now)
		if err != nil {
			return false, err
		}
		p.toCust = append(p.toCust, toPayee)
		p.toFee = append(p.toFee, toFee)
		res.Paid = toPayee.Amount
		ch.Redeemed, ch.Last = it.Index, it.Preimage
		p.change(ch.ID)
	}
	res.Redeemed = ch.Redeemed
	if !it.Close {
		return false, nil
	}
	if ch.State != StateClosed {
		if p.by != ch.Payee && p.now.Before(ch.Expiry.Add(p.l.cfg.ExpiryGrace)) {
			return refuse(fmt.Errorf("%w: only the payee may close before %s", ErrForbidden, ch.Expiry.Add(p.l.cfg.ExpiryGrace)))
		}
		refund, err := refundTransfer(*ch, p.now)
		if err != nil {
			return false, err
		}
		p.toCust = append(p.toCust, refund)
		ch.State = StateClosed
		p.change(ch.ID)
	}
	res.Closed = true
	res.Refund, err = mul(ch.Length-ch.Redeemed, ch.Unit)
	return false, err
}

// change marks a channel for writing back (channels are added in lock
// order).
func (p *settlePlan) change(id string) {
	if len(p.changed) == 0 || p.changed[len(p.changed)-1] != id {
		p.changed = append(p.changed, id)
	}
}

// execute writes the plan: the channels, then the customers' transfers by
// recipient, then the fees. It reports whether a fee was charged.
func (p *settlePlan) execute(ctx context.Context, tx Tx) (charged bool, err error) {
	for _, id := range p.changed {
		if err := tx.UpdateChannel(ctx, *p.chs[id]); err != nil {
			return false, err
		}
	}
	slices.SortStableFunc(p.toCust, func(a, b Transfer) int { return cmp.Compare(a.To, b.To) })
	for _, t := range p.toCust {
		if t.Amount > 0 {
			if err := tx.Transfer(ctx, t); err != nil {
				return false, err
			}
		}
	}
	for _, t := range p.toFee {
		if t.Amount == 0 {
			continue
		}
		if !charged {
			if err := p.l.ensureFeeAccount(ctx, tx, p.now); err != nil {
				return false, err
			}
			charged = true
		}
		if err := tx.Transfer(ctx, t); err != nil {
			return false, err
		}
	}
	return charged, nil
}
