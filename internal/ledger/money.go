package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
)

// Mint credits amount to a customer or provider account from the issuance
// account: the provider recording a real-world payment. idemKey makes it
// safe to retry; the same key with the same account and amount moves money
// once, and with anything else is ErrConflict.
func (l *Ledger) Mint(ctx context.Context, idemKey string, to AccountID, amount int64) error {
	if l.cfgErr != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, l.cfgErr)
	}
	if err := checkKey(idemKey); err != nil {
		return err
	}
	if amount <= 0 {
		return fmt.Errorf("%w: mint amount %d must be positive", ErrInvalid, amount)
	}
	key := "mint:" + idemKey
	fp := fingerprint("mint", to, amount)
	at := l.cfg.Now()
	err := l.store.InTx(ctx, func(tx Tx) error {
		done, err := checkIdem(ctx, tx, key, fp)
		if err != nil || done != nil {
			return err
		}
		a, err := tx.Account(ctx, to)
		if err != nil {
			return err
		}
		if a.Kind != KindCustomer && a.Kind != KindProvider {
			return fmt.Errorf("%w: cannot mint into a %s account", ErrInvalid, a.Kind)
		}
		if err := tx.Transfer(ctx, Transfer{From: IssuanceAccount, To: to, Amount: amount, Ref: key, At: at}); err != nil {
			return err
		}
		return tx.PutIdempotency(ctx, IdemRecord{Key: key, Fingerprint: fp, At: at})
	})
	if err != nil {
		return fmt.Errorf("mint %d to %q: %w", amount, to, err)
	}
	return nil
}

// checkIdem looks up an idempotency record. It returns the record when the
// call was already done with the same arguments, ErrConflict when the key
// was used for different ones, and nil, nil when the call is new.
func checkIdem(ctx context.Context, tx Tx, key string, fp []byte) (*IdemRecord, error) {
	rec, err := tx.Idempotency(ctx, key)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	case !bytes.Equal(rec.Fingerprint, fp):
		return nil, fmt.Errorf("%w: idempotency key reused with different arguments", ErrConflict)
	}
	return &rec, nil
}

// Audit checks conservation in one consistent snapshot. It returns the
// money minted (minus the issuance balance) and the sum of every other
// balance; they are equal in a sound ledger. It fails with ErrCorrupt if
// they differ, if any cached balance disagrees with the transfer journal,
// if any escrow holds other than its channel's unredeemed rest, or if any
// account but issuance is negative.
func (l *Ledger) Audit(ctx context.Context) (minted, sumOfBalances int64, err error) {
	var s AuditSums
	err = l.store.View(ctx, func(tx Tx) error {
		var err error
		s, err = tx.Audit(ctx)
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("audit: %w", err)
	}
	minted = -s.Issuance // the issuance balance never reaches MinInt64: Transfer refuses
	var problems []string
	if s.Others != minted {
		problems = append(problems, fmt.Sprintf("balances sum to %d but %d was minted", s.Others, minted))
	}
	if s.JournalMinted != minted {
		problems = append(problems, fmt.Sprintf("journal mints %d but issuance balance says %d", s.JournalMinted, minted))
	}
	if s.JournalMismatches != 0 {
		problems = append(problems, fmt.Sprintf("%d balances disagree with the journal", s.JournalMismatches))
	}
	if s.EscrowMismatches != 0 {
		problems = append(problems, fmt.Sprintf("%d escrows disagree with their channels", s.EscrowMismatches))
	}
	if s.Negative != 0 {
		problems = append(problems, fmt.Sprintf("%d accounts are negative", s.Negative))
	}
	if len(problems) > 0 {
		return minted, s.Others, fmt.Errorf("audit: %w: %v", ErrCorrupt, problems)
	}
	return minted, s.Others, nil
}
