package credit

import (
	"fmt"
	"math"
	"math/bits"
	"slices"
	"time"
)

// Decision is the Book's answer to "may I send this block to this account?".
// The zero Decision is Refuse, so a forgotten assignment fails closed.
type Decision int

// Decisions returned by Book.MayServe.
const (
	// Refuse: the account is blocked or its debt is overdue. Do not serve
	// it; the engine reports it to the broker.
	Refuse Decision = iota
	// Wait: the account's window (or the uploader's exposure cap) is full.
	// Hold the request and ask the peer for payment; serve it once paid.
	Wait
	// Serve: send the block, then record it with Served.
	Serve
)

// String names the decision for logs.
func (d Decision) String() string {
	switch d {
	case Refuse:
		return "refuse"
	case Wait:
		return "wait"
	case Serve:
		return "serve"
	}
	return fmt.Sprintf("Decision(%d)", int(d))
}

// Config holds an uploader's credit limits. Amounts are in units (the
// smallest money unit; one hash-chain step). What the limits bound is an
// account's value at risk: value served and not paid, rounded up to a unit.
//
// The window rule. A new account may run up InitialWindow. Each payment
// sets its window to min(MaxWindow, max(InitialWindow, 2 × paid)), where
// paid is everything the account has ever paid, so the window is a pure
// function of the payment history and never shrinks. Doubling what was paid
// works like TCP slow start: an honest peer paying per piece doubles its
// window with every round of payments and needs only
// log2(needed/InitialWindow) rounds to stop waiting, while a peer that
// defects after paying P has received at most P + window, so at most two
// thirds of the value it ever took (and never more than MaxWindow) is
// unpaid.
//
// The window needed not to stall an honest peer. Paying after verifying
// means an honest downloader owes, at any moment, for the blocks of pieces
// it has not finished plus the blocks sent during the round trip of its
// last payment: roughly (piece length + pipeline depth × block length) at
// its price. MaxWindow must exceed that; InitialWindow should be about two
// pieces' worth, so a newcomer starts at once but a non-payer gets little.
type Config struct {
	// InitialWindow is the unpaid value a new account may run up, in units;
	// at least 1 so every account can be sent its first block.
	InitialWindow int64
	// MaxWindow caps any account's window, in units.
	MaxWindow int64
	// MaxExposure caps the value at risk with all accounts together, in
	// units (blocked accounts excepted, see Block). It bounds what a swarm
	// of non-payers can take between complaints.
	MaxExposure int64
	// MaxFreshExposure caps the value at risk with fresh accounts (those
	// that have never paid), in units. Fresh identities are cheap to churn
	// through (a certificate and a refundable voucher), so they share this
	// smaller cap and cannot crowd out accounts with a payment history. Zero means MaxExposure/2.
	MaxFreshExposure int64
	// GraceBytes is unpaid service an account may carry indefinitely
	// without being overdue, in bytes (valued at the account's latest
	// price). Pay-after-verify leaves honest residue that is never paid:
	// blocks sent twice in endgame, blocks of a piece the downloader
	// abandoned. A few blocks' worth keeps such peers from being reported.
	GraceBytes int64
	// PaymentTimeout, if positive, makes MayServe refuse an account whose
	// unpaid value has not shrunk for this long (see Overdue). Zero leaves
	// refusal to the engine, which calls Overdue and Block.
	PaymentTimeout time.Duration
	// MaxResends is how many times per account Forgive writes off the
	// bytes of a piece that failed its hash in transit.
	MaxResends int
}

// validate checks c and fills in defaults.
func (c Config) validate() (Config, error) {
	switch {
	case c.InitialWindow < 1:
		return c, fmt.Errorf("%w: InitialWindow %d must be at least 1", ErrConfig, c.InitialWindow)
	case c.MaxWindow < c.InitialWindow:
		return c, fmt.Errorf("%w: MaxWindow %d is below InitialWindow %d", ErrConfig, c.MaxWindow, c.InitialWindow)
	case c.MaxExposure < c.InitialWindow:
		return c, fmt.Errorf("%w: MaxExposure %d is below InitialWindow %d", ErrConfig, c.MaxExposure, c.InitialWindow)
	case c.MaxFreshExposure < 0 || c.MaxFreshExposure > c.MaxExposure:
		return c, fmt.Errorf("%w: MaxFreshExposure %d must be within 0..MaxExposure (%d)", ErrConfig, c.MaxFreshExposure, c.MaxExposure)
	case c.GraceBytes < 0:
		return c, fmt.Errorf("%w: GraceBytes %d is negative", ErrConfig, c.GraceBytes)
	case c.PaymentTimeout < 0:
		return c, fmt.Errorf("%w: PaymentTimeout %v is negative", ErrConfig, c.PaymentTimeout)
	case c.MaxResends < 0:
		return c, fmt.Errorf("%w: MaxResends %d is negative", ErrConfig, c.MaxResends)
	}
	if c.MaxFreshExposure == 0 {
		c.MaxFreshExposure = max(1, c.MaxExposure/2)
	}
	return c, nil
}

// window is the credit window of an account that has paid paid units in
// total; see Config for the rule.
func (c *Config) window(paid int64) int64 {
	twice := int64(math.MaxInt64)
	if paid <= math.MaxInt64/2 {
		twice = 2 * paid
	}
	return min(c.MaxWindow, max(c.InitialWindow, twice))
}

// AccountStatus is what a Book knows about one account.
type AccountStatus struct {
	// Known is false for an account the book has never seen (all other
	// fields then describe a new account).
	Known bool
	// Owed is the value served, in whole units, less forgiven resends.
	Owed int64
	// Paid is everything the account has paid, in units.
	Paid int64
	// Unpaid is Owed - Paid, or 0 if the account paid ahead: what it must
	// pay by now.
	Unpaid int64
	// AtRisk is the value served and not paid, rounded up to whole units
	// (Unpaid plus any fraction of a unit). The window and the exposure
	// caps bound it.
	AtRisk int64
	// Window is the unpaid value the account may run up.
	Window int64
	// ServedBytes counts bytes served, less forgiven resends.
	ServedBytes int64
	// LastPayment is when the account last paid; zero if never.
	LastPayment time.Time
	// OverdueSince is when the account's unpaid value, above its grace,
	// last shrank or started; zero while it is within its grace.
	OverdueSince time.Time
	// Resends counts forgiven resends.
	Resends int
	// Blocked reports an account refused by Block.
	Blocked bool
}

// entry is the credit state of one account.
type entry struct {
	served      meter // value served less forgiven
	bytes       int64 // bytes served less forgiven, saturating
	paid        int64
	lastPrice   int64 // price of the latest block served, for the grace
	lastPayment time.Time
	// since is when the unpaid value last shrank, or last rose above the
	// grace; it is meaningful only while unpaid exceeds the grace.
	since   time.Time
	seen    time.Time // latest Served or Paid, for Prune
	resends int
	blocked bool
}

// due is what the account must pay by now: whole units owed less paid.
func (a *entry) due() int64 { return max(0, a.served.units-a.paid) }

// risk is the value served and not paid, rounded up to whole units. The
// window and the exposure caps bound risk, not due: a fraction of a unit is
// never due (the downloader pays floor of the value), so counting only due
// would let every fresh account take almost a unit unseen, and a thousand
// fresh accounts almost a thousand.
func (a *entry) risk() int64 {
	v := a.served.units
	if a.served.frac != 0 {
		v = satAdd(v, 1)
	}
	return max(0, v-a.paid)
}

// settled reports that the account owes nothing, not even a fraction of a
// unit, so forgetting it loses no money.
func (a *entry) settled() bool { return a.risk() == 0 }

// Book is an uploader's credit ledger: per account, what it was served and
// what it paid, and from that whether it may be served more. Credit belongs
// to the account, not to a connection: reconnecting finds the same entry,
// and Snapshot/Restore carry it across restarts.
//
// A Book is pure policy: no clock, no goroutines. It is not safe for
// concurrent use, its queries included (they keep the entry found last);
// the engine calls it under its own lock and must pair
// MayServe with Served for the same block without another MayServe for the
// same account in between, or the window can be overrun by the blocks
// approved in the gap.
type Book struct {
	cfg      Config
	accounts map[string]*entry
	// exposure and freshExposure sum the unpaid value of the unblocked
	// accounts and of the unblocked accounts that never paid. They are kept
	// in 128 bits so that no number of saturated accounts can wrap them.
	exposure, freshExposure u128
	// lastName and lastEntry cache the account found last: an uploader
	// asks about the same account several times per block (Unpaid,
	// MayServe, Served), and hashing its 40-character ID every time
	// was most of what the book cost per block.
	lastName  string
	lastEntry *entry
}

// NewBook returns an empty book with the given limits.
func NewBook(cfg Config) (*Book, error) {
	cfg, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	return &Book{cfg: cfg, accounts: make(map[string]*entry)}, nil
}

// find returns the account's entry, or nil.
func (b *Book) find(name string) *entry {
	if b.lastEntry != nil && name == b.lastName {
		return b.lastEntry
	}
	a := b.accounts[name]
	if a != nil {
		b.lastName, b.lastEntry = name, a
	}
	return a
}

// get returns the account's entry, creating it.
func (b *Book) get(name string) *entry {
	a := b.find(name)
	if a == nil {
		a = &entry{}
		b.accounts[name] = a
		b.lastName, b.lastEntry = name, a
	}
	return a
}

// detach removes a's debt from the exposure sums before a changes; attach
// adds it back after. Every mutation of an account is bracketed by them.
func (b *Book) detach(a *entry) {
	if a.blocked {
		return
	}
	u := a.risk()
	b.exposure.sub(u)
	if a.paid == 0 {
		b.freshExposure.sub(u)
	}
}

func (b *Book) attach(a *entry) {
	if a.blocked {
		return
	}
	u := a.risk()
	b.exposure.add(u)
	if a.paid == 0 {
		b.freshExposure.add(u)
	}
}

// grace is the unpaid value a may carry without being overdue.
func (b *Book) grace(a *entry) int64 {
	g, err := Owed(b.cfg.GraceBytes, a.lastPrice)
	if err != nil {
		return math.MaxInt64
	}
	return g
}

// overdue reports whether a's unpaid value has exceeded its grace without
// shrinking for at least after.
func (b *Book) overdue(a *entry, now time.Time, after time.Duration) bool {
	return a.due() > b.grace(a) && !a.since.IsZero() && now.Sub(a.since) >= after
}

// MayServe decides whether a block of blockBytes may be sent to account at
// pricePerMiB. It changes nothing; call Served once the block is sent.
//
// Serve while the account's value at risk (served, not paid, rounded up to
// a unit) is below its window and the risk of all accounts (and, for an
// account that never paid, of all such accounts) is below its cap. The test
// comes before the block, so an account may end up one block past its
// window: that guarantees every account its first block whatever the
// price, and bounds the loss to a non-payer to its window plus one block.
// Free service (price 0) needs no credit. Invalid arguments are refused.
func (b *Book) MayServe(account string, blockBytes, pricePerMiB int64, now time.Time) Decision {
	if checkAccount(account) != nil || blockBytes <= 0 || pricePerMiB < 0 {
		return Refuse
	}
	a := b.find(account)
	if a == nil {
		a = &entry{}
	}
	switch {
	case b.refuses(a, now):
		return Refuse
	case pricePerMiB == 0:
		return Serve
	case a.risk() >= b.cfg.window(a.paid):
		return Wait
	case b.exposure.atLeast(b.cfg.MaxExposure):
		return Wait
	case a.paid == 0 && b.freshExposure.atLeast(b.cfg.MaxFreshExposure):
		return Wait
	}
	return Serve
}

// Refuses reports whether MayServe refuses the account whatever the
// block: it is blocked, overdue (with a PaymentTimeout) or not a valid
// account name. It changes nothing.
func (b *Book) Refuses(account string, now time.Time) bool {
	if checkAccount(account) != nil {
		return true
	}
	a := b.find(account)
	return a != nil && b.refuses(a, now)
}

// refuses is Refuses for an account's entry.
func (b *Book) refuses(a *entry, now time.Time) bool {
	return a.blocked || (b.cfg.PaymentTimeout > 0 && b.overdue(a, now, b.cfg.PaymentTimeout))
}

// Served records that a block of blockBytes was sent to account at
// pricePerMiB. It records whatever MayServe said: the block is gone. The
// value is kept exactly (see Owed), never rounded per block.
func (b *Book) Served(account string, blockBytes, pricePerMiB int64, now time.Time) error {
	if err := checkAccount(account); err != nil {
		return err
	}
	if blockBytes < 0 || pricePerMiB < 0 {
		return fmt.Errorf("%w: served %d bytes at %d per MiB", ErrNegative, blockBytes, pricePerMiB)
	}
	a := b.get(account)
	b.detach(a)
	before, graceBefore := a.due(), b.grace(a)
	a.served.add(blockBytes, pricePerMiB)
	a.bytes = satAdd(a.bytes, blockBytes)
	a.lastPrice = pricePerMiB
	a.seen = now
	if after := a.due(); before <= graceBefore && after > b.grace(a) {
		a.since = now
	}
	b.attach(a)
	return nil
}

// Paid records a payment of units from account, already verified (hash
// chain steps). It grows the account's window and, if it shrinks the
// unpaid value, restarts the overdue clock. Paying ahead of service is
// kept as credit.
func (b *Book) Paid(account string, units int64, now time.Time) error {
	if err := checkAccount(account); err != nil {
		return err
	}
	if units < 0 {
		return fmt.Errorf("%w: payment of %d units", ErrNegative, units)
	}
	if units == 0 {
		return nil
	}
	a := b.get(account)
	if a.paid > math.MaxInt64-units {
		return fmt.Errorf("%w: account %q has paid %d, cannot add %d", ErrOverflow, account, a.paid, units)
	}
	b.detach(a)
	before := a.due()
	a.paid += units
	a.lastPayment = now
	a.seen = now
	if a.due() < before {
		a.since = now
	}
	b.attach(a)
	return nil
}

// Revoked takes back units Paid recorded for account that will never
// reach us: payments on a channel the broker closed before it redeemed
// them. The payer, told so, pays them again on another channel; a debt it
// pushes over the grace is overdue only OverdueAfter from now, as if just
// served.
func (b *Book) Revoked(account string, units int64, now time.Time) error {
	if err := checkAccount(account); err != nil {
		return err
	}
	a := b.find(account)
	if units < 0 || a == nil || units > a.paid {
		return fmt.Errorf("%w: revoking %d units of a payment record of %d", ErrNegative, units, b.Status(account).Paid)
	}
	b.detach(a)
	before, grace := a.due(), b.grace(a)
	a.paid -= units
	if before <= grace && a.due() > grace {
		a.since = now
	}
	b.attach(a)
	return nil
}

// Forgive writes off bytes served to account at pricePerMiB, for a piece
// that failed its hash in transit and will be sent again (the resend is
// then recorded by Served and paid once). It is allowed MaxResends times per
// account over the account's life, and never removes more than was served,
// so a downloader that claims failures falsely gains at most MaxResends
// pieces. It reports whether the write-off was made. It does not restart
// the overdue clock: forgiveness is not payment.
func (b *Book) Forgive(account string, bytes, pricePerMiB int64) bool {
	if checkAccount(account) != nil || bytes <= 0 || pricePerMiB < 0 {
		return false
	}
	a := b.find(account)
	if a == nil || a.resends >= b.cfg.MaxResends {
		return false
	}
	b.detach(a)
	a.served.sub(bytes, pricePerMiB)
	a.bytes -= min(bytes, a.bytes)
	a.resends++
	b.attach(a)
	return true
}

// Block makes MayServe refuse account until Unblock, typically after the
// engine filed a complaint about its overdue debt. The debt stays on the
// account (and in Snapshot) but leaves the exposure sums: it is now a loss
// (see Lost), not a risk, and leaving it in would let a swarm of fresh
// non-payers freeze the uploader for good. The price of that choice: a
// churner can take up to MaxFreshExposure per complaint cycle, not once.
func (b *Book) Block(account string) error {
	if err := checkAccount(account); err != nil {
		return err
	}
	a := b.get(account)
	b.detach(a)
	a.blocked = true
	return nil
}

// Unblock lets a blocked account be served again, its debt counting again
// toward the exposure caps.
func (b *Book) Unblock(account string) {
	a := b.find(account)
	if a == nil || !a.blocked {
		return
	}
	a.blocked = false
	b.attach(a)
}

// Unpaid is account's Status().Unpaid, without building the rest: the
// uploader asks it for every block it serves.
func (b *Book) Unpaid(account string) int64 {
	if a := b.find(account); a != nil {
		return a.due()
	}
	return 0
}

// Status reports account's state.
func (b *Book) Status(account string) AccountStatus {
	a := b.find(account)
	if a == nil {
		return AccountStatus{Window: b.cfg.window(0)}
	}
	s := AccountStatus{
		Known:       true,
		Owed:        a.served.units,
		Paid:        a.paid,
		Unpaid:      a.due(),
		AtRisk:      a.risk(),
		Window:      b.cfg.window(a.paid),
		ServedBytes: a.bytes,
		LastPayment: a.lastPayment,
		Resends:     a.resends,
		Blocked:     a.blocked,
	}
	if s.Unpaid > b.grace(a) {
		s.OverdueSince = a.since
	}
	return s
}

// Overdue lists, sorted, the unblocked accounts whose unpaid value exceeds
// their grace and has not shrunk for at least after. The engine stops
// serving them, files a complaint with the broker and calls Block.
//
// Choose after well above the time an honest downloader needs to finish a
// piece it has started, since it pays only then.
func (b *Book) Overdue(now time.Time, after time.Duration) []string {
	var out []string
	for name, a := range b.accounts {
		if !a.blocked && b.overdue(a, now, after) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// Exposure is the value at risk with all unblocked accounts (served, not
// paid, each rounded up to a unit), saturating at math.MaxInt64.
func (b *Book) Exposure() int64 { return b.exposure.int64() }

// Lost is the value at risk with blocked accounts, in units, saturating at
// math.MaxInt64: service that will most likely never be paid.
func (b *Book) Lost() int64 {
	var sum u128
	for _, a := range b.accounts {
		if a.blocked {
			sum.add(a.risk())
		}
	}
	return sum.int64()
}

// Accounts lists every account the book holds, sorted.
func (b *Book) Accounts() []string {
	out := make([]string, 0, len(b.accounts))
	for name := range b.accounts {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// Prune forgets unblocked accounts that owe nothing, not even a fraction of
// a unit, and were last served or paid at least idle before now; it returns
// how many. Such an account loses only its grown window: if it returns, it
// starts over as a fresh account. Blocked and indebted accounts are never
// forgotten, so pruning yields no free data.
func (b *Book) Prune(now time.Time, idle time.Duration) int {
	n := 0
	for name, a := range b.accounts {
		if !a.blocked && a.settled() && now.Sub(a.seen) >= idle {
			delete(b.accounts, name)
			if a == b.lastEntry {
				b.lastName, b.lastEntry = "", nil
			}
			n++
		}
	}
	return n
}

// u128 is an unsigned 128-bit accumulator of non-negative int64 amounts.
type u128 struct{ hi, lo uint64 }

func (x *u128) add(v int64) {
	var carry uint64
	x.lo, carry = bits.Add64(x.lo, uint64(v), 0)
	x.hi += carry
}

func (x *u128) sub(v int64) {
	var borrow uint64
	x.lo, borrow = bits.Sub64(x.lo, uint64(v), 0)
	x.hi -= borrow
}

// atLeast reports x >= v for a non-negative v.
func (x u128) atLeast(v int64) bool { return x.hi != 0 || x.lo >= uint64(v) }

// int64 returns x, saturating at math.MaxInt64.
func (x u128) int64() int64 {
	if x.hi != 0 || x.lo > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(x.lo)
}
