package credit

import (
	"fmt"
	"math"
	"slices"
)

// Tab is a downloader's running account of what it owes each uploader:
// the exact value of the verified bytes each one contributed, and what was
// paid. The engine calls Received for each contributor once a piece passes
// its hash check, then pays Due in hash-chain steps and records it with
// Paid. Like Book, a Tab is pure state and not safe for concurrent use.
type Tab struct {
	accounts map[string]*debt
	spent    int64
}

// debt is what the downloader owes one uploader.
type debt struct {
	received meter // value of verified bytes received
	bytes    int64 // verified bytes received, saturating
	paid     int64
}

// NewTab returns an empty tab.
func NewTab() *Tab { return &Tab{accounts: make(map[string]*debt)} }

// Received records bytes of a verified piece received from account at
// pricePerMiB (the price of the downloader's class when the bytes were
// requested). Call it once per verified piece and contributor; blocks of a
// piece that failed its hash are never recorded, so never paid for. The
// value is exact: many calls sum to what one call with the total would
// give, and the value saturates at math.MaxInt64 units rather than wrap.
func (t *Tab) Received(account string, bytes, pricePerMiB int64) error {
	if err := checkAccount(account); err != nil {
		return err
	}
	if bytes < 0 || pricePerMiB < 0 {
		return fmt.Errorf("%w: received %d bytes at %d per MiB", ErrNegative, bytes, pricePerMiB)
	}
	d := t.get(account)
	d.received.add(bytes, pricePerMiB)
	d.bytes = satAdd(d.bytes, bytes)
	return nil
}

// Paid records units paid to account, after the preimages were sent. It
// records overpayment too (the money is gone); Due then stays 0 until the
// surplus is used up.
func (t *Tab) Paid(account string, units int64) error {
	if err := checkAccount(account); err != nil {
		return err
	}
	if units < 0 {
		return fmt.Errorf("%w: payment of %d units", ErrNegative, units)
	}
	d := t.get(account)
	if d.paid > math.MaxInt64-units || t.spent > math.MaxInt64-units {
		return fmt.Errorf("%w: paying %d more units to %q", ErrOverflow, units, account)
	}
	d.paid += units
	t.spent += units
	return nil
}

// Refunded records units paid to account that did not reach it: payments
// on a channel the payee had closed, which the broker returned to us with
// the rest of the channel. They are due again.
func (t *Tab) Refunded(account string, units int64) error {
	if err := checkAccount(account); err != nil {
		return err
	}
	d := t.accounts[account]
	if units < 0 || d == nil || units > d.paid {
		return fmt.Errorf("%w: refund of %d units of %d paid to %q", ErrNegative, units, t.PaidTo(account), account)
	}
	d.paid -= units
	t.spent -= units
	return nil
}

// Owed is the value of everything received from account, in whole units:
// floor(exact total value), see Owed the function.
func (t *Tab) Owed(account string) int64 {
	if d := t.accounts[account]; d != nil {
		return d.received.units
	}
	return 0
}

// Due is what must still be paid to account: Owed minus paid, or 0 if paid
// ahead.
func (t *Tab) Due(account string) int64 {
	if d := t.accounts[account]; d != nil {
		return max(0, d.received.units-d.paid)
	}
	return 0
}

// ReceivedBytes is the verified bytes received from account.
func (t *Tab) ReceivedBytes(account string) int64 {
	if d := t.accounts[account]; d != nil {
		return d.bytes
	}
	return 0
}

// PaidTo is what was paid to account, in units.
func (t *Tab) PaidTo(account string) int64 {
	if d := t.accounts[account]; d != nil {
		return d.paid
	}
	return 0
}

// Spent is the total paid to all accounts, in units.
func (t *Tab) Spent() int64 { return t.spent }

// Accounts lists the accounts on the tab, sorted.
func (t *Tab) Accounts() []string {
	out := make([]string, 0, len(t.accounts))
	for name := range t.accounts {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

func (t *Tab) get(account string) *debt {
	d := t.accounts[account]
	if d == nil {
		d = &debt{}
		t.accounts[account] = d
	}
	return d
}
