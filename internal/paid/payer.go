package paid

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/engine"
	"github.com/floodgate-p2p/floodgate/internal/hashchain"
	"github.com/floodgate-p2p/floodgate/internal/identity"
	"github.com/floodgate-p2p/floodgate/internal/ledger"
	"github.com/floodgate-p2p/floodgate/internal/terms"
)

// outChannel is a channel we opened to pay one uploader.
type outChannel struct {
	id           string
	chain        *hashchain.Chain // nil once kept in payeeState.old
	length       int64
	voucherBytes []byte
	unit         int64
	used         int64 // highest index revealed
	expiry       time.Time
	closed       bool // the broker has it closed, and we settled up (lookUp)
	// lookAgain: when to ask the broker next whether the channel, past
	// its expiry, was closed by the broker's sweep (see lookUpExpired).
	lookAgain time.Time
	// byInvoice: opened on a payee's invoice alone (payeeState.short).
	byInvoice bool
}

func (c *outChannel) remaining() int64 { return c.length - c.used }

// payMargin: we stop paying on a channel this long before it expires and
// use a new one, so the payee (which refuses payments within
// expiryMargin of expiry) always has time to redeem.
const payMargin = 10 * time.Minute

// usable reports whether the channel can still carry payments at now.
func (c *outChannel) usable(now time.Time) bool {
	return c != nil && !c.closed && c.remaining() > 0 && now.Before(c.expiry.Add(-payMargin))
}

// payeeState is everything we do to pay one uploader account.
type payeeState struct {
	current *outChannel
	next    *outChannel // opened ahead so payments never wait for the broker
	opening bool
	failed  int       // consecutive failures to open a channel
	retryAt time.Time // no new attempt before this
	shrink  uint      // halvings of the channel value after "insufficient funds"
	// starved: the last open failed for want of funds even at the
	// smallest size; it is tried again as soon as money comes back
	// (fundsBack), not after its back-off.
	starved bool
	grant   int64 // size of the next channel before other limits
	// payQueued: a deferred payment (see payVerified) is scheduled.
	payQueued bool
	// invoiced: the payee holds us and sent an invoice when we owed it
	// nothing; it waits for blocks of ours still unverified, so what comes
	// due next is paid at once rather than batched (see onInvoice).
	invoiced bool
	// short: the payee's last invoice counted at least as much unpaid as
	// our channels to it have left (blocks in flight and pieces not yet
	// verified count for it as soon as it sends them), so it holds us
	// for channel value: a refill is needed now, not headroom, even if a
	// next channel is there already (see ensureChannel).
	short bool
	// wanted: we asked for blocks from this uploader (see MayRequest).
	wanted bool
	// undelivered: our channel was opened before it delivered anything;
	// it holds one of maxUndelivered places until it delivers.
	undelivered bool
	// checking: channels being looked up at the broker (the payee says
	// it closed them, or we ask on our own).
	checking map[string]bool
	// closedHeard: channels the payee said it closed while our own
	// lookup of them was on its way; if that lookup finds them open,
	// they are looked up again (see lookUp).
	closedHeard map[string]bool
	// old: the last channels we stopped paying on (spent, or near
	// expiry), newest last: a payee may close one before our last
	// payments on it arrive, and tell us so afterwards.
	old []*outChannel
}

// maxOldChannels bounds payeeState.old.
const maxOldChannels = 8

// channels lists all our channels to the payee: the current one, the
// next one (either may be nil) and the old ones.
func (po *payeeState) channels() []*outChannel {
	return append([]*outChannel{po.current, po.next}, po.old...)
}

// unspent is what our channels to the payee that still back us there
// (not closed, not near expiry) have left.
func (po *payeeState) unspent(now time.Time) int64 {
	var v int64
	for _, ch := range po.channels() {
		if ch.usable(now) {
			v += ch.remaining() * ch.unit
		}
	}
	return v
}

// invoiceLocked is what the channels opened on invoices alone (see
// payeeState.short), to every payee, have left or are being opened
// with: until the broker has them closed, expired or not, since their
// rest stays locked until then (review: counting only channels we still
// pay on let lying payees lock the bound again 50 minutes on). s.mu is
// held.
func (s *Session) invoiceLocked() int64 {
	v := s.invoiceOpening
	for _, po := range s.out {
		for _, ch := range po.channels() {
			if ch != nil && ch.byInvoice && !ch.closed {
				v += ch.remaining() * ch.unit
			}
		}
	}
	return v
}

// shortResiduePieces is how many pieces' worth beyond what is left to buy
// an uploader may count as unpaid that we never pay it (end-game copies
// we got from others): what its credit window lets stand as residue (see
// defaultCredit). Channels opened on an invoice's word alone (see
// payeeState.short) keep what we lock with that uploader within it.
const shortResiduePieces = 4

// retire moves po's current channel to old and the next one up.
func (po *payeeState) retire() {
	po.keep(po.current)
	po.current, po.next = po.next, nil
}

// keep remembers c, a channel we stop paying on, in po.old. Past
// maxOldChannels the oldest one that is closed (settled) or spent to the
// end (nothing of ours left in it) is forgotten. One with value left is
// never forgotten: what it has left counts in locked until a lookup
// (lookUpExpired, lookUpGone) or the payee's "closed" settles it, and a
// forgotten one would count until the session ends (review). Such
// channels are few: each is a refill or an invoiced open, and with its
// chain dropped it costs a few dozen bytes.
func (po *payeeState) keep(c *outChannel) {
	if c == nil {
		return
	}
	c.chain = nil // never paid on again: only its length matters
	po.old = append(po.old, c)
	if len(po.old) <= maxOldChannels {
		return
	}
	if drop := slices.IndexFunc(po.old, func(o *outChannel) bool { return o.closed || o.remaining() == 0 }); drop >= 0 {
		po.old = slices.Delete(po.old, drop, drop+1)
	}
}

// Payments for verified pieces are batched: every payment message costs
// the payer a write and the uploader a wake-up, a read and a hash check,
// in the middle of a transfer that otherwise needs only a few syscalls per
// megabyte: at a payment per megabyte, a 256 MiB download over loopback
// cost its uploader 300 reads and 900 context switches more than a plain
// one (perf stat); at one per four megabytes, about 100 reads. With four
// leechers trading, each uploader sends a few dozen megabytes a second to
// each downloader, so a 10 ms delay still meant a payment per half
// megabyte (212 per download); 50 ms cut that to 148.
//
// What is due is sent once payDelay after the first unpaid piece, or at
// once when it reaches payBatchBytes' worth or a quarter of what we ever
// paid that uploader, whichever is less, and always right before we say
// "not interested" (NotInterested) or when the download completes. The
// quarter keeps the deferred value well inside the uploader's credit
// window (twice what was paid, see internal/credit), so early payments,
// while the window is small, still go out piece by piece; the full window
// (32 MiB and four pieces) holds a deep request pipeline plus a batch.
const (
	payDelay      = 50 * time.Millisecond
	payBatchBytes = 4 << 20
)

// firstChannelBytes is what the first channel to a new uploader buys.
// It stays small although every channel costs a broker round trip at both
// ends: 16 MiB first channels (with early refills only for uploaders that
// delivered 4 MiB) cut a 256 MiB download from four uploaders from 15
// opens to 11, but in the demo's swarm of eight uploaders a buyer holding
// twice the price locked its whole balance in first channels to six of
// them, and stalled for 20 s unable to pay the origin one unit.
const firstChannelBytes = 4 << 20

// A buyer whose balance and --max-spend cover the whole purchase
// richBuyerFactor times ("rich") sizes its channels by what is left to
// buy instead of growing them from firstChannelBytes. Every open costs a
// broker round trip and about 0.9 ms of CPU at the two ends and the
// broker, and a refill comes due once a channel is down to
// refillHeadroomBytes, so an uploader serving more than a channel's worth
// less that headroom costs another open. A rich buyer's first channel to
// an uploader buys half of what is left (at most
// richUndeliveredBytes' worth while the uploader has not delivered), and
// a refill whatever the current channel does not cover of what is left
// (at least half of it): a 256 MiB download from four uploaders (1 -> 4
// benchmark) opens about four channels instead of ten, from one uploader
// two instead of six.
//
// Such a channel is opened only while the unspent locks, with it, stay
// within richLockFactor times what is left to buy (plus what is due): one
// that would go beyond is trimmed to fit, and one trimmed below the
// ordinary size gets the ordinary size instead, as if the buyer were not
// rich. So when it opens, at least half its balance is left to that
// ordinary policy, which is what keeps it from the stall above (first
// channels to every uploader locking the whole balance). Uploaders that
// have not delivered get big channels only within what is left to buy,
// all together, as with the ordinary policy. (Locks do not shrink with
// what is left, only as channels close: uploaders that delivered and then
// stopped can hold up to twice what was left until they close them.)
//
// A rich channel is at most richMaxChannels times Config.ChannelValue
// (256 MiB's worth by default): a 10 GiB download from one uploader then
// opens 40 channels rather than 160, and none of them a chain the broker
// refuses (maxChannelLength).
const (
	richBuyerFactor      = 4
	richLockFactor       = 2
	richUndeliveredBytes = 128 << 20
	richMaxChannels      = 4
)

// maxChannelLength is the longest chain (in units: every chain step is one
// unit) the broker accepts; a channel is never asked for longer, whatever
// the price per MiB makes of Config.ChannelValue or of a rich buyer's
// sizes. (The broker answers a longer one with "invalid argument", which
// the payer would retry unchanged.)
const maxChannelLength = ledger.DefaultMaxChainLength

// coverSlack is the units a refill adds beyond what is left to buy and
// what is due: the near-end rule in ensureChannel asks for one unit more
// than that (the fractions of a unit received but not yet due add up to
// one more step) and, once that unit is paid, for one more. A refill of
// just one more would then cost a last open of a few units; two units
// more never do (1 -> 1 benchmark: three opens, then two). A rich
// buyer's early refills, bounded by what is left to buy, get the same
// slack; first channels to uploaders that have not delivered need none,
// and an ordinary buyer's early refills get none: in a swarm of three
// buying 4 MiB at 10 units per MiB with twice the price, a few such
// slacks locked the last of a buyer's balance, and it stalled owing the
// origin one unit (emulate; 6 runs in 32 under load).
const coverSlack = 2

// minChannelValue is the smallest channel worth a broker round trip.
const minChannelValue = 16

// Once a quarter of the current channel is spent, the next one is opened
// in the background, so a fast download never stalls on the broker. Half
// was too late: the uploader counts blocks as owed as soon as it sends
// them, so its view of what the channel still backs runs ahead of ours by
// everything in flight (socket buffers, pieces not yet verified), and on
// a fast link that plus a broker round trip is more than half a channel.
// Small channels (the first ones to an uploader we have paid) are
// refilled while refillHeadroomBytes' worth is left, since a quarter of
// them is less than what is in flight during a broker round trip: up to
// a full request pipeline (1024 blocks, 16 MiB), the pieces waiting for
// their hash check and a deferred payment batch. With 8 MiB of headroom
// uploaders held a 1 -> 4 benchmark's downloaders 25 times per run for
// want of channel value; with 24 MiB, twice.
const (
	refillNum           = 3 // refill when remaining < refillNum/refillDen of the value
	refillDen           = 4
	refillHeadroomBytes = 24 << 20
)

// MayRequest implements engine.Payments: any peer that finished
// authenticating (or is plain). A paid uploader serves a newcomer its
// first credit window without a channel; the first time we want blocks
// from one, we open its first channel at once, so the channel is there
// when the first piece verifies, but to at most maxUndelivered uploaders
// that have not delivered yet: identities that never upload can lock
// little of our money. Any other uploader gets its first channel once it
// delivered (payOut after the first verified piece, or its invoice).
func (s *Session) MayRequest(p engine.Peer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.settled(p)
	if ps == nil {
		return false
	}
	if ps.authed && !ps.wanted && s.cfg.Class.PricePerMiB > 0 {
		ps.wanted = true
		if po := s.payee(ps.account); !po.wanted {
			po.wanted = true
			if !s.gateOpen {
				s.wantedEarly = append(s.wantedEarly, ps.account)
			}
			s.ensureChannel(ps.account)
		}
	}
	return ps.plain || ps.authed
}

// NotInterested implements engine.Payments: what is due to the uploader
// goes out now, not with a deferred batch (see payDelay), since after
// "not interested" it no longer waits for our payments and may be gone
// when the batch is sent.
func (s *Session) NotInterested(p engine.Peer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ps := s.peers[p.ConnID()]; ps != nil && ps.authed && s.tab.Due(ps.account) > 0 {
		s.payOut(ps.account)
	}
}

// maxUndelivered bounds the channels open (or opening) to uploaders that
// have not delivered a verified byte yet. Each is a first channel (4 MiB
// worth; for a rich buyer up to half of what is left to buy, see
// richValue) that only its payee can close before it expires.
const maxUndelivered = 2

// Settle gives payments in flight a chance to land before we disconnect:
// it waits (until ctx ends) while a channel is being opened or we still owe
// a connected uploader, paying as channels arrive. Call it before closing
// the connections; pay-after-verify means the last pieces are paid for
// only after they verified, possibly through a channel still opening.
func (s *Session) Settle(ctx context.Context) {
	for {
		s.mu.Lock()
		pending := false
		for account, po := range s.out {
			// A channel the payee says it closed, still being looked
			// up, may make payments due again.
			if po.opening || len(po.checking) > 0 || (s.tab.Due(account) > 0 && s.connFor(account) != nil && !s.cfg.Now().Before(po.retryAt)) {
				pending = true
				s.payOut(account)
			}
		}
		s.mu.Unlock()
		if !pending {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ErrInsufficientFunds is what a Broker's Open returns (wrapped) when the
// payer's balance cannot cover the channel; the session then tries a
// smaller one.
var ErrInsufficientFunds = errors.New("paid: insufficient funds")

// Verified implements engine.Payments: pay each contributor of a verified
// piece for its bytes (pay after verify).
func (s *Session) Verified(piece int, from []engine.Contribution) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.left = max(0, s.left-s.cfg.Torrent.Info.PieceSize(piece))
	price := s.cfg.Class.PricePerMiB
	for _, c := range from {
		ps := s.peers[c.Peer.ConnID()]
		if ps == nil || !ps.authed {
			continue // a plain peer serves for free
		}
		s.tab.Received(ps.account, int64(c.Bytes), price)
		if po := s.out[ps.account]; po != nil && po.undelivered {
			po.undelivered = false
			s.undelivered--
		}
		s.payVerified(ps.account)
	}
	if s.left == 0 {
		// Done: pay every uploader what is due before the engine says
		// "not interested", after which they stop waiting for us.
		for account := range s.out {
			s.payOut(account)
		}
	}
}

// payVerified pays account for verified pieces now or soon (see
// payDelay). s.mu is held.
func (s *Session) payVerified(account string) {
	po := s.out[account]
	if po == nil || s.left == 0 || po.invoiced || s.tab.Due(account) >= s.payBatch(account) {
		if po != nil {
			po.invoiced = false
		}
		s.payOut(account) // the first payment opens a channel: no delay
		return
	}
	if po.payQueued {
		return
	}
	po.payQueued = true
	time.AfterFunc(payDelay, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		po.payQueued = false
		if !s.closing {
			s.payOut(account)
		}
	})
}

// onInvoice answers a payee that holds us: what is due goes at once. If
// nothing is (it holds us for blocks whose pieces have not verified yet),
// the next payment to it goes at once too, not up to payDelay later: the
// payee invoices again only every invoiceEvery, and holds us meanwhile.
// We never pay what the invoice claims, only what our own count says;
// but when what it counts as unpaid reaches what our channels to it have
// left, it holds us for channel value, and a refill is no longer early
// (payeeState.short): near the end of a purchase the early limit kept a
// buyer whose pieces were in flight from refilling the origin's channel,
// and the origin from sending them (emulate). Believing the claim risks
// only a lock, and within a bound (shortResiduePieces). s.mu is held.
func (s *Session) onInvoice(ps *peerState, m message) {
	if po := s.out[ps.account]; po != nil {
		if s.tab.Due(ps.account) == 0 {
			po.invoiced = true
		}
		var left int64
		for _, ch := range []*outChannel{po.current, po.next} {
			if ch.usable(s.cfg.Now()) {
				left += ch.remaining() * ch.unit
			}
		}
		po.short = m.Owed-m.Paid >= left
	}
	s.payOut(ps.account)
}

// payBatch is how much may be due to account before we pay at once.
func (s *Session) payBatch(account string) int64 {
	batch, err := terms.PriceFor(payBatchBytes, s.cfg.Class.PricePerMiB)
	if err != nil {
		batch = 0
	}
	return min(batch, s.tab.PaidTo(account)/4)
}

// Failed implements engine.Payments: tell each authenticated contributor of
// a piece that failed its hash how many of its bytes will not be paid, so
// an honest uploader (whose data was damaged in transit, or mixed with a
// liar's) can write them off instead of counting them as debt. Uploaders
// forgive a bounded number of times per account.
func (s *Session) Failed(piece int, from []engine.Contribution) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range from {
		ps := s.peers[c.Peer.ConnID()]
		if ps == nil || !ps.authed || ps.p == nil {
			continue
		}
		ps.p.SendExtension(message{Type: typeFailed, Piece: int64(piece), Bytes: int64(c.Bytes)}.encode())
	}
}

// payOut sends the account what we owe it, as far as our channels reach,
// and opens more channel value when needed. s.mu is held.
func (s *Session) payOut(account string) {
	due := s.tab.Due(account)
	po := s.out[account]
	p := s.connFor(account)
	for due > 0 && po != nil && p != nil {
		ch := po.current
		if !ch.usable(s.cfg.Now()) {
			if po.next == nil {
				break
			}
			po.retire()
			continue
		}
		steps := min(ch.remaining(), due/ch.unit)
		if steps == 0 {
			break // less than one chain step owed
		}
		idx := ch.used + steps
		pre, err := ch.chain.Preimage(idx)
		if err != nil {
			s.log.Error("hash chain", "err", err)
			return
		}
		p.SendExtension(message{Type: typePay, Channel: ch.id, Index: idx, Preimage: pre[:]}.encode())
		ch.used = idx
		s.tab.Paid(account, steps*ch.unit)
		due -= steps * ch.unit
	}
	s.ensureChannel(account)
}

// ensureChannel opens a channel to account in the background unless one
// with enough value left (or an opening) exists. s.mu is held.
func (s *Session) ensureChannel(account string) {
	if s.cfg.Class.PricePerMiB == 0 {
		return // a free class pays nothing
	}
	po := s.payee(account)
	now := s.cfg.Now()
	if s.closing || !s.gateOpen || po.opening || (po.next != nil && !po.short) || now.Before(po.retryAt) {
		return // (awaitGate asks again once the gate opens)
	}
	// byInvoice: only the payee's invoice (po.short) has us open this
	// channel; the ordinary rules would not.
	byInvoice := po.next != nil
	price := s.cfg.Class.PricePerMiB
	due := s.tab.Due(account)
	leftValue, leftErr := terms.PriceFor(s.left, price) // what is left to buy
	forHeadroom := false                                // a refill only to keep the headroom
	if po.current.usable(now) {
		// The headroom is for uploaders that delivered: one that never
		// did must not make us lock more than its first channel. (Its
		// refills go through the purchase guard below, so they never
		// lock more than is left to buy.)
		headroom, err := terms.PriceFor(refillHeadroomBytes, price)
		if err != nil || s.tab.PaidTo(account) == 0 {
			headroom = 0
		}
		rem := po.current.remaining()
		quarterSpent := rem*refillDen < po.current.length*refillNum
		switch {
		case !quarterSpent && rem >= headroom:
			return
		case !quarterSpent && po.short:
			byInvoice = true
		case !quarterSpent:
			forHeadroom = true
		case headroom > 0 && rem >= headroom:
			// A full-size channel a quarter spent still holds the
			// headroom: refilling it now would lock a channel the
			// payee may never reach.
			return
		}
		// Near the end of the purchase: no new lock if the current
		// channel covers all that is left to buy from anyone. One unit
		// more than the price of what is left: the fractions of a unit
		// already received but not yet due can add up to one more step,
		// and an uploader whose channel is one unit short holds the last
		// piece, which then never verifies and is never paid for. Unless
		// the payee says it is short (an invoice, see payeeState.short):
		// it counts end-game copies we got from others too, which we
		// never pay it, and they eat into what our channel backs (in
		// emulate a buyer whose other uploaders had left stalled so,
		// held by the origin with its rest exactly what it counted as
		// unpaid).
		if leftErr == nil && po.current.remaining() >= leftValue+1+due {
			if !po.short {
				return
			}
			byInvoice = true
		}
	}
	if (s.complete || s.left == 0) && due == 0 {
		return // nothing more to buy: a seeder only earns
	}
	undelivered := s.tab.ReceivedBytes(account) == 0
	if undelivered && (!po.wanted || s.undelivered >= maxUndelivered) {
		return // see MayRequest
	}
	// Lock no more than what is left to buy (at most ChannelValue), so a
	// buyer with many uploaders does not tie up its balance in channels
	// it will never use.
	// Half of what is left per uploader: with several uploaders the locks
	// stay within the purchase, and the channel is topped up as it runs
	// low anyway.
	value := s.cfg.ChannelValue
	if leftErr == nil && !s.complete {
		value = min(value, max(leftValue/2+1, minChannelValue))
	}
	if s.complete || s.left == 0 {
		// Only what is due (payments a payee's close sent back): a
		// finished download buys nothing more.
		value = max(due, 1)
	}
	// Start small with an uploader we have not paid yet and grow fourfold
	// with each channel: an identity that never delivers ties up little,
	// a good uploader soon gets full-size channels (4, 16, then 64 MiB
	// worth). A rich buyer's channels may be larger (see richValue).
	value = min(value, max(minChannelValue, po.grant))
	// Headroom and channels to uploaders that have not delivered yet are
	// conveniences for speed: they may not push what is locked and not
	// yet paid over what is left to buy (plus what is due, and for a
	// refill coverSlack), or a buyer whose balance just covers the
	// purchase would find its money in channels to uploaders that have
	// nothing (more) for it, and could not pay the ones that do.
	early, rich := forHeadroom || undelivered, s.rich()
	earlyLimit := int64(math.MaxInt64) // on unspent locks, this channel's included
	if early && leftErr == nil {
		earlyLimit = leftValue + s.dueTotal()
		if !undelivered && rich {
			// Only a rich buyer's refills (see coverSlack): a buyer
			// whose balance is twice a small price had its last units
			// locked by a few such slacks, and stalled.
			earlyLimit += coverSlack
		}
	}
	if rich && leftErr == nil {
		value = max(value, s.richValue(account, po, leftValue, due, earlyLimit))
	}
	if po.shrink > 0 {
		// Short of funds (the rest is locked in other channels): below
		// the usual smallest channel, down to what is due, so what we
		// owe this uploader can still be paid.
		value = max(value>>po.shrink, 1)
	}
	value = max(value, due)
	if early && (leftErr != nil || s.locked-s.tab.Spent()+value > earlyLimit) {
		return
	}
	if byInvoice {
		// Believe the invoice only so far: what we leave unspent with
		// the payee stays within what is left to buy (plus one unit of
		// fractions and what is due) and the residue the payee may
		// count but we never pay (see shortResiduePieces). Otherwise a
		// payee could have us lock our balance with invoices.
		// What all payees' invoices had us open stays within the same
		// bound: a few lying uploaders must not lock a small balance.
		// (Not all our locks: a small balance is mostly locked in first
		// channels to other uploaders, and the buyer stalled.)
		residue, err := terms.PriceFor(shortResiduePieces*s.cfg.Torrent.Info.PieceLength, price)
		room := min(leftValue+1+due+residue-po.unspent(now), leftValue+1+s.dueTotal()+residue-s.invoiceLocked())
		if leftErr != nil || err != nil || room < 1 {
			return
		}
		value = min(value, room)
	}
	if s.cfg.MaxSpend > 0 {
		left := s.cfg.MaxSpend - s.locked
		if left <= 0 {
			s.payErr = fmt.Errorf("paid: --max-spend %d reached", s.cfg.MaxSpend)
			return
		}
		value = min(value, left)
	}
	value = min(value, maxChannelLength)
	po.opening = true
	if undelivered && !po.undelivered {
		po.undelivered = true
		s.undelivered++
	}
	s.locked += value
	if byInvoice {
		s.invoiceOpening += value
	}
	s.wg.Add(1)
	go s.open(account, po, value, byInvoice)
}

// payee returns what we know of paying account, new if need be. s.mu is
// held.
func (s *Session) payee(account string) *payeeState {
	po := s.out[account]
	if po == nil {
		po = &payeeState{grant: s.firstGrant()}
		s.out[account] = po
	}
	return po
}

// firstGrant sizes the first channel to an uploader: firstChannelBytes'
// worth (a rich buyer's may be larger, see richValue). s.mu is held.
func (s *Session) firstGrant() int64 {
	v, _ := terms.PriceFor(firstChannelBytes, s.cfg.Class.PricePerMiB)
	return max(v, minChannelValue)
}

// rich reports whether the buyer's balance (once the broker told it, see
// Config.Balance) and --max-spend cover the whole purchase
// richBuyerFactor times. s.mu is held.
func (s *Session) rich() bool {
	if s.cfg.Balance == nil {
		return false
	}
	price, err := terms.PriceFor(s.cfg.Torrent.Info.TotalLength(), s.cfg.Class.PricePerMiB)
	b, ok := s.cfg.Balance()
	// --max-spend caps what we ever lock, so it must leave room too.
	return ok && err == nil && price <= b/richBuyerFactor && (s.cfg.MaxSpend == 0 || price <= s.cfg.MaxSpend/richBuyerFactor)
}

// richValue is the size of a rich buyer's next channel to account (see
// richBuyerFactor), or 0 when the download is finished. leftValue is the price of what is left to buy, due what we
// owe account; the budget counts what we owe everyone. earlyLimit is the
// tighter bound on unspent locks (this channel's included) of channels to
// uploaders that have not delivered and of headroom refills, or
// math.MaxInt64. The caller takes the ordinary size when it is larger.
// s.mu is held.
func (s *Session) richValue(account string, po *payeeState, leftValue, due, earlyLimit int64) int64 {
	if s.complete || s.left == 0 {
		return 0
	}
	v := leftValue / 2
	if po.current.usable(s.cfg.Now()) {
		v = max(v, leftValue+coverSlack+due-po.current.remaining())
	}
	v = min(v, richMaxChannels*s.cfg.ChannelValue)
	if s.tab.ReceivedBytes(account) == 0 {
		most, err := terms.PriceFor(richUndeliveredBytes, s.cfg.Class.PricePerMiB)
		if err != nil {
			return 0
		}
		v = min(v, most)
	}
	unspent, dueTotal := s.locked-s.tab.Spent(), s.dueTotal()
	room := richLockFactor*(leftValue+dueTotal) - unspent
	if earlyLimit < math.MaxInt64 {
		room = min(room, earlyLimit-unspent)
	}
	return max(0, min(v, room))
}

// dueTotal is what we owe all uploaders together. s.mu is held.
func (s *Session) dueTotal() int64 {
	var due int64
	for account := range s.out {
		due += s.tab.Due(account)
	}
	return due
}

// open asks the broker for a channel; it runs without s.mu.
func (s *Session) open(account string, po *payeeState, length int64, byInvoice bool) {
	defer s.wg.Done()
	var seed [32]byte
	if _, err := rand.Read(seed[:]); err != nil {
		panic(err)
	}
	chain := hashchain.New(seed, length)
	var idem [16]byte
	rand.Read(idem[:])
	expiry := s.cfg.Now().Add(s.cfg.ChannelTTL)
	began := time.Now()
	v, err := s.cfg.Broker.Open(s.ctx, "open-"+hex.EncodeToString(idem[:]), account, identity.Digest(chain.Root()), length, 1, expiry)
	var vb []byte
	if err == nil {
		if err = s.checkOwnVoucher(v, account, chain, length); err == nil {
			vb, err = v.MarshalBinary()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	po.opening = false
	if byInvoice {
		s.invoiceOpening -= length
	}
	if err != nil && po.undelivered {
		// Nothing was locked: the place is free for another uploader
		// (or this one, when it is tried again).
		po.undelivered = false
		s.undelivered--
	}
	if errors.Is(err, ErrInsufficientFunds) && length > max(s.tab.Due(account), 1) {
		// Other channels hold the rest of the balance: try half as much,
		// down to what is due.
		s.locked -= length
		po.shrink++
		s.payErr = fmt.Errorf("paid: open channel to %s: %w", account, err)
		s.ensureChannel(account) // (short still stands for the smaller try)
		return
	}
	po.short = false // a payee still short invoices us again
	if err != nil {
		s.locked -= length
		po.failed++
		po.starved = errors.Is(err, ErrInsufficientFunds)
		// Back off (1 s, 2 s, 4 s … 1 min) rather than hammer the broker;
		// a payee waiting for a channel just holds our requests meanwhile.
		po.retryAt = s.cfg.Now().Add(min(time.Minute, time.Second<<min(po.failed-1, 6)))
		s.payErr = fmt.Errorf("paid: open channel to %s: %w", account, err)
		s.log.Warn("open channel", "payee", account, "err", err)
		return
	}
	s.log.Debug("channel opened", "payee", account, "value", length, "took", time.Since(began))
	po.failed, po.starved = 0, false
	if po.shrink > 0 {
		po.shrink-- // funds may have come back (closed channels, earnings)
	}
	po.grant = min(s.cfg.ChannelValue, 4*max(po.grant, length))
	ch := &outChannel{id: v.Channel, chain: chain, length: chain.Length(), voucherBytes: vb, unit: v.Unit, expiry: v.Expiry, byInvoice: byInvoice}
	switch {
	case !po.current.usable(s.cfg.Now()):
		po.keep(po.current)
		po.current = ch
	case po.next == nil:
		po.next = ch
	default:
		// A third channel, for a payee short of channel value (see
		// payeeState.short; the next one was small, opened while funds
		// were short). We stop paying on whichever of the two has less
		// left: its rest still backs us at the payee, which closes it
		// when it stops, and counts in what an invoice may have us lock
		// with it.
		if po.next.remaining() < po.current.remaining() {
			po.keep(po.next)
		} else {
			po.retire()
		}
		po.next = ch
	}
	// Show every voucher at once: the payee counts all our channels as
	// backing, and closes each one when it stops, so nothing we lock
	// stays locked until expiry.
	if p := s.connFor(account); p != nil {
		p.SendExtension(message{Type: typeChannel, Voucher: vb}.encode())
	}
	s.payOut(account)
}

// onClosed hears that the uploader closed one of our channels to it. We
// ask the broker rather than take its word: a payee claiming a channel
// closed at a lower index than it will redeem would have us pay twice.
// s.mu is held.
func (s *Session) onClosed(ps *peerState, m message) {
	po := s.out[ps.account]
	if s.closing || po == nil {
		return
	}
	var ch *outChannel
	for _, c := range po.channels() {
		if c != nil && c.id == m.Channel {
			ch = c
		}
	}
	if ch == nil || ch.closed {
		return // not ours (or long gone), or settled already
	}
	if po.checking[ch.id] {
		// Our own lookup may have been answered before the close: if
		// it finds the channel open, it asks again.
		if po.closedHeard == nil {
			po.closedHeard = make(map[string]bool)
		}
		po.closedHeard[ch.id] = true
		return
	}
	s.startLookUp(ps.account, po, ch, false)
}

// startLookUp marks ch as being looked up and runs lookUp in the
// background. s.mu is held.
func (s *Session) startLookUp(account string, po *payeeState, ch *outChannel, unprompted bool) {
	if po.checking == nil {
		po.checking = make(map[string]bool)
	}
	po.checking[ch.id] = true
	s.wg.Add(1)
	go s.lookUp(account, po, ch, unprompted)
}

// lookUp asks the broker about ch and, if it is closed, stops using it:
// what the broker gave back is no longer locked, and what we paid on it
// beyond the index it was redeemed to (payments that crossed the payee's
// close, or reached a payee that had restarted) is due again, on another
// channel. With unprompted false the payee told us it closed
// ch, and a claim the broker contradicts drops the payee; with unprompted
// true we ask on our own, about a channel long past its expiry (see
// lookUpExpired), which the broker's sweep may not have closed yet, or
// one to a payee that left (lookUpGone), which may not have closed it.
// It runs without s.mu.
func (s *Session) lookUp(account string, po *payeeState, ch *outChannel, unprompted bool) {
	defer s.wg.Done()
	st, err := s.cfg.Broker.Channel(s.ctx, ch.id)
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(po.checking, ch.id)
	heard := po.closedHeard[ch.id]
	delete(po.closedHeard, ch.id)
	inconsistent := st.Payer != s.account || st.Payee != account || st.Redeemed > ch.used
	switch {
	case err != nil:
		s.log.Warn("look up a channel", "payee", account, "channel", ch.id, "unprompted", unprompted, "err", err)
		return
	case unprompted && (!st.Closed || inconsistent):
		if inconsistent {
			s.log.Warn("the broker's answer about our channel does not match it", "payee", account, "channel", ch.id)
		}
		if heard && !s.closing {
			// The payee said "closed" meanwhile: ask again, on its word.
			s.startLookUp(account, po, ch, false)
		}
		return // not closed yet
	case !st.Closed || inconsistent:
		// A false claim: each would cost us a broker round trip, so the
		// payee is dropped (it may reconnect, and authenticate, again).
		s.log.Warn("payee says it closed a channel the broker has open", "payee", account, "channel", ch.id)
		if p := s.connFor(account); p != nil {
			p.Close()
		}
		return
	}
	if ch.closed {
		return
	}
	ch.closed = true
	switch ch {
	case po.current:
		po.retire()
	case po.next:
		po.next = nil
	}
	s.locked -= (ch.length - st.Redeemed) * ch.unit
	if back := (ch.used - st.Redeemed) * ch.unit; back > 0 {
		if err := s.tab.Refunded(account, back); err != nil {
			s.log.Error("credit tab", "err", err)
		}
	}
	s.log.Debug("channel closed", "payee", account, "channel", ch.id, "unprompted", unprompted, "redeemed", st.Redeemed, "paid", ch.used)
	// What is due again goes on a new channel at once. A payee owed
	// nothing gets one when it delivers again (payVerified) or invoices
	// us: a leecher closes the channels of payers that want nothing from
	// it (see quietPayers), and opening another at once would lock the
	// money again where it is not needed. A gone payee is paid when it
	// authenticates again.
	if s.tab.Due(account) > 0 && (!unprompted || s.connFor(account) != nil) {
		s.payOut(account)
	}
	if st.Redeemed < ch.length {
		s.fundsBack()
	}
}

// fundsBack pays what we owe now that money came back (a channel closed
// with value left, or earnings): a buyer whose balance was all locked in
// channels to uploaders with nothing more for it may owe another one that
// holds it until paid, and would otherwise wait out a back-off of up to a
// minute if an open had failed for want of funds. (An uploader holding us
// for blocks not yet verified invoices us, and then we open a channel.)
// s.mu is held.
func (s *Session) fundsBack() {
	for account, po := range s.out {
		starved := po.starved
		if starved {
			// Without the back-off a gone one gets its channel as soon
			// as it authenticates again.
			po.starved = false
			po.retryAt = time.Time{}
		}
		if s.connFor(account) == nil {
			continue // a gone payee is paid when it authenticates again
		}
		if starved {
			s.ensureChannel(account)
		}
		if s.tab.Due(account) > 0 {
			s.payOut(account)
		}
	}
}

// goneLookAfter is how long after the last connection to a payee ended
// we ask the broker whether it closed our channels, and the second time
// (it may have been slow). An uploader that stops closes the channels
// paid to it once its connections are gone (so that it redeems every
// payment that arrived), and so cannot tell us. Until we know, their
// rest counts as locked: a buyer whose balance was locked that way in
// channels to peers that finished and left could not pay the origin,
// which held it (emulate, 4 runs in 80 under load). A payee that did not
// close them gets its channels looked up again once they expire
// (lookUpExpired).
var goneLookAfter = [...]time.Duration{2 * time.Second, 20 * time.Second}

// payeeGone schedules lookUpGone for a payee whose last connection just
// ended. s.mu is held.
func (s *Session) payeeGone(account string) {
	if po := s.out[account]; po == nil || po.unspent(s.cfg.Now()) == 0 || s.complete || s.left == 0 {
		return // nothing locked with it, or nothing more to buy
	}
	for _, after := range goneLookAfter {
		time.AfterFunc(after, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.lookUpGone(account)
		})
	}
}

// lookUpGone asks the broker about our channels with value left to
// account, if it is still gone and we still buy. s.mu is held.
func (s *Session) lookUpGone(account string) {
	po := s.out[account]
	if s.closing || s.complete || s.left == 0 || po == nil || s.connFor(account) != nil {
		return
	}
	for _, ch := range po.channels() {
		if ch == nil || ch.closed || ch.remaining() == 0 || po.checking[ch.id] {
			continue
		}
		s.startLookUp(account, po, ch, true)
	}
}

// expiredLookAfter is how long after a channel's expiry we start asking
// the broker whether it was closed, and then the time between asks. The
// broker refunds an expired channel's rest once the payee's grace to
// redeem is over (ledger Config.ExpiryGrace, 10 minutes by default) and
// its sweep comes by; until we know, the rest counts as locked, and
// --max-spend stops a long download early.
const expiredLookAfter = 11 * time.Minute

// lookUpExpired asks the broker about our channels that expired long
// enough ago (see expiredLookAfter), at most one lookup per channel per
// expiredLookAfter. It is called periodically (redeemLoop). s.mu is held.
func (s *Session) lookUpExpired(now time.Time) {
	if s.closing {
		return
	}
	for account, po := range s.out {
		for _, ch := range po.channels() {
			if ch == nil || ch.closed || po.checking[ch.id] || now.Before(ch.expiry.Add(expiredLookAfter)) || now.Before(ch.lookAgain) {
				continue
			}
			ch.lookAgain = now.Add(expiredLookAfter)
			s.startLookUp(account, po, ch, true)
		}
	}
}

// checkOwnVoucher makes sure the broker's voucher says what we asked for.
// Its signature is the Broker's to check (see Broker.Open): checking it
// twice cost a downloader an Ed25519 verification per channel.
func (s *Session) checkOwnVoucher(v identity.Voucher, payee string, chain *hashchain.Chain, length int64) error {
	if v.Payer != s.account || v.Payee != payee || v.Root != identity.Digest(chain.Root()) || v.Length != length || v.Unit != 1 {
		return errors.New("broker returned a voucher for a different channel")
	}
	return nil
}
