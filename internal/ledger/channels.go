package ledger

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/hashchain"
)

// inlineVerifySteps is the longest chain walk Redeem does while holding the
// channel's lock. Longer walks (up to MaxStep) are done outside the
// transaction first, so one large redemption does not stall every other
// writer; SQLite has a single writer.
const inlineVerifySteps = 4096

// maxVerifyRounds bounds how often Redeem walks a long chain outside the
// transaction before giving up.
const maxVerifyRounds = 4

// expireBatch is how many expired channels ExpireChannels lists at a time.
const expireBatch = 100

// maxExpiry is the latest expiry the stores can represent (nanoseconds
// since the Unix epoch in an int64).
var maxExpiry = time.Unix(0, math.MaxInt64)

// OpenChannel locks spec.Length*spec.Unit from spec.Payer for spec.Payee
// and returns the channel with its ledger-assigned ID, Redeemed 0, Last
// equal to Root and State open. The expiry must lie after now, Length in
// [1, MaxChainLength] and Unit positive; the product is overflow-checked.
// A payer without the funds gets ErrInsufficientFunds and nothing changes.
// Retrying with the same idemKey (scoped to the payer) and the same spec
// returns the same channel in its current state and locks nothing more; the
// same key with a different spec is ErrConflict.
func (l *Ledger) OpenChannel(ctx context.Context, idemKey string, spec Channel, now time.Time) (Channel, error) {
	if l.cfgErr != nil {
		return Channel{}, fmt.Errorf("%w: %w", ErrInvalid, l.cfgErr)
	}
	amount, err := l.checkSpec(idemKey, spec, now)
	if err != nil {
		return Channel{}, fmt.Errorf("open channel: %w", err)
	}
	expiry := time.Unix(0, spec.Expiry.UnixNano()).UTC()
	key := "open:" + string(spec.Payer) + ":" + idemKey
	fp := fingerprint("open", spec.Payer, spec.Payee, spec.Root[:], spec.Length, spec.Unit, expiry.UnixNano())
	id, err := newChannelID()
	if err != nil {
		return Channel{}, fmt.Errorf("open channel: %w", err)
	}
	var out Channel
	err = l.store.InTx(ctx, func(tx Tx) error {
		done, err := checkIdem(ctx, tx, key, fp)
		if err != nil {
			return err
		}
		if done != nil {
			out, err = tx.Channel(ctx, done.Result, false)
			return err
		}
		// Checked after the idempotency lookup, so that a retry of a
		// successful open gets its channel even if the retry comes late.
		if !spec.Expiry.After(now) {
			return fmt.Errorf("%w: expiry %s is not after %s", ErrExpired, spec.Expiry, now)
		}
		for _, id := range []AccountID{spec.Payer, spec.Payee} {
			a, err := tx.Account(ctx, id)
			if err != nil {
				return err
			}
			if a.Kind != KindCustomer && a.Kind != KindProvider {
				return fmt.Errorf("%w: a %s account cannot hold a channel", ErrInvalid, a.Kind)
			}
		}
		ch := Channel{
			ID: id, Payer: spec.Payer, Payee: spec.Payee, Root: spec.Root,
			Length: spec.Length, Unit: spec.Unit, Expiry: expiry,
			Last: spec.Root, State: StateOpen,
		}
		escrow := escrowOf(id)
		if err := tx.InsertAccount(ctx, Account{ID: escrow, Kind: KindEscrow}, now); err != nil {
			return err
		}
		if err := tx.InsertChannel(ctx, ch, now); err != nil {
			return err
		}
		if err := tx.Transfer(ctx, Transfer{From: spec.Payer, To: escrow, Amount: amount, Ref: "open:" + id, At: now}); err != nil {
			return err
		}
		out = ch
		return tx.PutIdempotency(ctx, IdemRecord{Key: key, Fingerprint: fp, Result: id, At: now})
	})
	if err != nil {
		return Channel{}, fmt.Errorf("open channel from %q to %q: %w", spec.Payer, spec.Payee, err)
	}
	return out, nil
}

// checkSpec validates an OpenChannel request and returns the amount to lock.
func (l *Ledger) checkSpec(idemKey string, spec Channel, now time.Time) (int64, error) {
	if err := checkKey(idemKey); err != nil {
		return 0, err
	}
	if err := checkID("payer", string(spec.Payer)); err != nil {
		return 0, err
	}
	if err := checkID("payee", string(spec.Payee)); err != nil {
		return 0, err
	}
	if spec.Payer == spec.Payee {
		return 0, fmt.Errorf("%w: payer and payee are the same account", ErrInvalid)
	}
	if spec.Length < 1 || spec.Length > l.cfg.MaxChainLength {
		return 0, fmt.Errorf("%w: chain length %d not in [1, %d]", ErrInvalid, spec.Length, l.cfg.MaxChainLength)
	}
	if spec.Unit < 1 {
		return 0, fmt.Errorf("%w: unit value %d must be positive", ErrInvalid, spec.Unit)
	}
	if spec.Expiry.After(maxExpiry) || spec.Expiry.Before(time.Unix(0, 0)) {
		return 0, fmt.Errorf("%w: expiry %s too far in the future", ErrInvalid, spec.Expiry)
	}
	return mul(spec.Length, spec.Unit)
}

// escrowOf names the escrow account of a channel. One escrow per channel
// keeps concurrent channels from contending on one hot row and lets Audit
// check every channel's locked funds individually.
func escrowOf(channelID string) AccountID { return AccountID(escrowPrefix + channelID) }

// newChannelID returns 128 random bits in hex, unguessable so that channel
// IDs reveal nothing about other customers' activity.
func newChannelID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("channel id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// verified remembers a chain walk done outside a transaction: preimage at
// index hashes to anchor at anchorIndex.
type verified struct {
	ok          bool
	anchorIndex int64
	anchor      [32]byte
}

// errVerifyOutside aborts a redemption transaction whose chain walk is too
// long to do while holding the lock.
var errVerifyOutside = errors.New("ledger: verify outside the transaction")

// Redeem pays the payee for chain elements Redeemed+1..index of the
// channel. preimage must be w_index, checked by hashing it
// index-Redeemed times to Last. The payee receives (index-Redeemed)*Unit
// minus the fee, which goes to the fee account. An index at or below
// Redeemed is a no-op (paid 0, no error), even on a closed or expired
// channel, so retries are harmless. Otherwise an index beyond Length or an
// advance beyond MaxStep is ErrInvalid, a wrong preimage ErrBadPreimage, a
// closed channel ErrClosed, and a redemption at or after Expiry+ExpiryGrace
// ErrExpired. An advance beyond MaxStep is a *StepError (which is
// ErrInvalid), refused before any hashing. paid is what the payee received.
func (l *Ledger) Redeem(ctx context.Context, channelID string, index int64, preimage [32]byte, now time.Time) (paid int64, err error) {
	if l.cfgErr != nil {
		return 0, fmt.Errorf("%w: %w", ErrInvalid, l.cfgErr)
	}
	if err := checkID("channel id", channelID); err != nil {
		return 0, err
	}
	if index < 1 {
		return 0, fmt.Errorf("%w: index %d must be positive", ErrInvalid, index)
	}
	var v verified
	var charged bool // the committed transaction charged a fee
	// A long walk is done outside and the transaction run again; if another
	// redemption moved the anchor meanwhile, the next walk is shorter and,
	// if still long, done outside once more. The rounds are bounded so a
	// stream of competing redemptions cannot keep this call looping.
	for round := 0; ; round++ {
		var need Channel
		err = l.store.InTx(ctx, func(tx Tx) error {
			paid, charged = 0, false
			ch, err := tx.Channel(ctx, channelID, true)
			if err != nil {
				return err
			}
			if index <= ch.Redeemed {
				return nil
			}
			if err := l.redeemable(ch, index, now); err != nil {
				return err
			}
			if !(v.ok && v.anchorIndex == ch.Redeemed && v.anchor == ch.Last) {
				if index-ch.Redeemed > inlineVerifySteps {
					need = ch
					return errVerifyOutside
				}
				if err := verifyPreimage(ch, index, preimage); err != nil {
					return err
				}
			}
			// The channel row is updated first and the fee account,
			// shared by every channel, credited last; see payOut.
			next := ch
			next.Redeemed, next.Last = index, preimage
			if err := tx.UpdateChannel(ctx, next); err != nil {
				return err
			}
			paid, charged, err = l.payOut(ctx, tx, ch, index, now)
			return err
		})
		if !errors.Is(err, errVerifyOutside) {
			break
		}
		if round == maxVerifyRounds {
			err = errors.New("channel too busy to verify a long redemption; retry")
			break
		}
		if err = verifyPreimage(need, index, preimage); err != nil {
			break
		}
		v = verified{ok: true, anchorIndex: need.Redeemed, anchor: need.Last}
	}
	if err != nil {
		return 0, fmt.Errorf("redeem channel %s at %d: %w", channelID, index, err)
	}
	if charged {
		l.feeAccountExists.Store(true)
	}
	return paid, nil
}

// redeemable checks everything about a redemption but the preimage.
func (l *Ledger) redeemable(ch Channel, index int64, now time.Time) error {
	switch {
	case ch.State != StateOpen:
		return ErrClosed
	case !now.Before(ch.Expiry.Add(l.cfg.ExpiryGrace)):
		return fmt.Errorf("%w: redemption window ended at %s", ErrExpired, ch.Expiry.Add(l.cfg.ExpiryGrace))
	case index > ch.Length:
		return fmt.Errorf("%w: index %d beyond chain length %d", ErrInvalid, index, ch.Length)
	case index-ch.Redeemed > l.cfg.MaxStep:
		return &StepError{Steps: index - ch.Redeemed, Max: l.cfg.MaxStep}
	}
	return nil
}

// verifyPreimage checks preimage against the channel's last redeemed
// element. The step count is already bounded by redeemable.
func verifyPreimage(ch Channel, index int64, preimage [32]byte) error {
	if err := hashchain.Verify(ch.Last, ch.Redeemed, preimage, index, math.MaxInt64); err != nil {
		return fmt.Errorf("%w: %w", ErrBadPreimage, err)
	}
	return nil
}

// payOut moves (index-Redeemed)*Unit out of the channel's escrow: the fee
// to the fee account, the rest to the payee. It returns the payee's share
// and whether a fee was charged.
func (l *Ledger) payOut(ctx context.Context, tx Tx, ch Channel, index int64, now time.Time) (int64, bool, error) {
	toPayee, toFee, err := l.payoutTransfers(ch, index, now)
	if err != nil {
		return 0, false, err
	}
	if toPayee.Amount > 0 {
		if err := tx.Transfer(ctx, toPayee); err != nil {
			return 0, false, err
		}
	}
	// The fee goes last: on PostgreSQL, crediting the fee account locks
	// its row until commit, and every redemption on every channel needs
	// that row, so the shorter the hold the more redemptions run in
	// parallel.
	if toFee.Amount > 0 {
		if err := l.ensureFeeAccount(ctx, tx, now); err != nil {
			return 0, false, err
		}
		if err := tx.Transfer(ctx, toFee); err != nil {
			return 0, false, err
		}
	}
	return toPayee.Amount, toFee.Amount > 0, nil
}

// payoutTransfers are the two transfers that redeem ch up to index: the
// payee's share and the fee (either may be zero). Their journal refs name
// the channel and index, so the same step can never be paid twice even if
// a bug got past the channel row lock.
func (l *Ledger) payoutTransfers(ch Channel, index int64, now time.Time) (toPayee, toFee Transfer, err error) {
	amount, err := mul(index-ch.Redeemed, ch.Unit) // <= Length*Unit, checked at open
	if err != nil {
		return Transfer{}, Transfer{}, err
	}
	f := fee(amount, l.cfg.FeeBasisPoints)
	escrow := escrowOf(ch.ID)
	suffix := fmt.Sprintf("%s:%d", ch.ID, index)
	toPayee = Transfer{From: escrow, To: ch.Payee, Amount: amount - f, Ref: "pay:" + suffix, At: now}
	toFee = Transfer{From: escrow, To: l.cfg.FeeAccount, Amount: f, Ref: "fee:" + suffix, At: now}
	return toPayee, toFee, nil
}

// ensureFeeAccount creates the fee account on first use, so a deployment
// needs no setup step before charging fees. Accounts are never deleted, so
// once a redemption has committed with the account in place the check is
// skipped, saving a query on the hot path.
func (l *Ledger) ensureFeeAccount(ctx context.Context, tx Tx, now time.Time) error {
	if l.feeAccountExists.Load() {
		return nil
	}
	_, err := tx.Account(ctx, l.cfg.FeeAccount)
	if errors.Is(err, ErrNotFound) {
		return tx.InsertAccount(ctx, Account{ID: l.cfg.FeeAccount, Kind: KindFees}, now)
	}
	return err
}

// Close closes the channel and returns the unredeemed rest,
// (Length-Redeemed)*Unit, to the payer. The payee may close at any time
// (giving up further redemptions); anyone may once Expiry+ExpiryGrace has
// passed; otherwise it is ErrForbidden. Closing a closed channel succeeds
// and reports the same refund, so retries are harmless.
func (l *Ledger) Close(ctx context.Context, channelID string, by AccountID, now time.Time) (refund int64, err error) {
	if l.cfgErr != nil {
		return 0, fmt.Errorf("%w: %w", ErrInvalid, l.cfgErr)
	}
	if err := checkID("channel id", channelID); err != nil {
		return 0, err
	}
	err = l.store.InTx(ctx, func(tx Tx) error {
		ch, err := tx.Channel(ctx, channelID, true)
		if err != nil {
			return err
		}
		if ch.State == StateClosed {
			refund, err = mul(ch.Length-ch.Redeemed, ch.Unit)
			return err
		}
		if by != ch.Payee && now.Before(ch.Expiry.Add(l.cfg.ExpiryGrace)) {
			return fmt.Errorf("%w: only the payee may close before %s", ErrForbidden, ch.Expiry.Add(l.cfg.ExpiryGrace))
		}
		refund, err = closeChannel(ctx, tx, ch, now)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("close channel %s: %w", channelID, err)
	}
	return refund, nil
}

// closeChannel returns an open channel's rest to the payer and marks it
// closed.
func closeChannel(ctx context.Context, tx Tx, ch Channel, now time.Time) (int64, error) {
	refund, err := refundTransfer(ch, now)
	if err != nil {
		return 0, err
	}
	if refund.Amount > 0 {
		if err := tx.Transfer(ctx, refund); err != nil {
			return 0, err
		}
	}
	ch.State = StateClosed
	return refund.Amount, tx.UpdateChannel(ctx, ch)
}

// refundTransfer returns what is left in ch's escrow to the payer (the
// amount may be zero).
func refundTransfer(ch Channel, now time.Time) (Transfer, error) {
	refund, err := mul(ch.Length-ch.Redeemed, ch.Unit)
	if err != nil {
		return Transfer{}, err
	}
	return Transfer{From: escrowOf(ch.ID), To: ch.Payer, Amount: refund, Ref: "refund:" + ch.ID, At: now}, nil
}

// ExpireChannels closes every open channel whose Expiry+ExpiryGrace is at
// or before now, refunding the payers, and reports how many it closed. Each
// channel is closed in its own short transaction so a large backlog does
// not hold the database; an error stops the sweep and is returned with the
// count so far. Running it again is harmless.
func (l *Ledger) ExpireChannels(ctx context.Context, now time.Time) (closed int, err error) {
	if l.cfgErr != nil {
		return 0, fmt.Errorf("%w: %w", ErrInvalid, l.cfgErr)
	}
	cutoff := now.Add(-l.cfg.ExpiryGrace)
	for {
		var ids []string
		err := l.store.View(ctx, func(tx Tx) error {
			var err error
			ids, err = tx.ExpiredChannels(ctx, cutoff, expireBatch)
			return err
		})
		if err != nil {
			return closed, fmt.Errorf("expire channels: %w", err)
		}
		for _, id := range ids {
			var did bool
			err := l.store.InTx(ctx, func(tx Tx) error {
				did = false
				ch, err := tx.Channel(ctx, id, true)
				if err != nil {
					return err
				}
				if ch.State != StateOpen || now.Before(ch.Expiry.Add(l.cfg.ExpiryGrace)) {
					return nil // closed meanwhile by its payee or another sweep
				}
				did = true
				_, err = closeChannel(ctx, tx, ch, now)
				return err
			})
			if err != nil {
				return closed, fmt.Errorf("expire channel %s: %w", id, err)
			}
			if did {
				closed++
			}
		}
		if len(ids) < expireBatch {
			return closed, nil
		}
	}
}

// Channel returns the channel's current state, or ErrNotFound.
func (l *Ledger) Channel(ctx context.Context, id string) (Channel, error) {
	if err := checkID("channel id", id); err != nil {
		return Channel{}, err
	}
	var ch Channel
	err := l.store.View(ctx, func(tx Tx) error {
		var err error
		ch, err = tx.Channel(ctx, id, false)
		return err
	})
	if err != nil {
		return Channel{}, fmt.Errorf("channel %s: %w", id, err)
	}
	return ch, nil
}
