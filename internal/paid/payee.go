package paid

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/credit"
	"github.com/floodgate-p2p/floodgate/internal/engine"
	"github.com/floodgate-p2p/floodgate/internal/hashchain"
	"github.com/floodgate-p2p/floodgate/internal/identity"
)

// inChannel is a channel someone opened to pay us.
type inChannel struct {
	v             identity.Voucher
	lastIndex     int64
	lastPreimage  [32]byte
	redeemedIndex int64
	closed        bool
	redeeming     bool // a redemption is in flight
	// lateRevoked: payments arrived while our close was on its way and
	// were revoked; the payer is told "closed" again when it reconnects.
	lateRevoked bool
}

func (c *inChannel) unspent() int64 { return (c.v.Length - c.lastIndex) * c.v.Unit }

// live reports whether payments on the channel are still worth serving
// for: close to its expiry a payment might not be redeemed in time, and
// after expiry plus the broker's grace the rest goes back to the payer.
func (c *inChannel) live(now time.Time) bool { return now.Before(c.v.Expiry.Add(-expiryMargin)) }

const (
	// minVoucherLife: a voucher that expires sooner cannot be redeemed
	// safely after the payments it will carry, so it is refused.
	minVoucherLife = 5 * time.Minute
	// maxStep caps how far one payment may advance a chain, bounding the
	// hashing a stranger can make us do per message.
	maxStep = 1 << 16
	// invoiceEvery spaces out payment reminders to a held peer.
	invoiceEvery = 2 * time.Second
	// expiryMargin: payments on a channel this close to its expiry are
	// refused (payers switch to a new channel well before, see
	// payMargin), so every accepted payment can be redeemed in time.
	expiryMargin = time.Minute
)

func (s *Session) onChannel(ps *peerState, m message) error {
	var v identity.Voucher
	if err := v.UnmarshalBinary(m.Voucher); err != nil {
		return fmt.Errorf("voucher: %w", err)
	}
	if err := v.CheckFor(s.cfg.Terms.Provider, s.account, s.cfg.Now(), minVoucherLife); err != nil {
		return fmt.Errorf("voucher: %w", err)
	}
	if v.Payer != ps.account {
		return fmt.Errorf("voucher of payer %s shown by %s", v.Payer, ps.account)
	}
	if ch, known := s.in[v.Channel]; !known {
		s.addIn(&inChannel{v: v, lastPreimage: [32]byte(v.Root)})
		s.dirty = true
		delete(s.quietSince, v.Payer) // a new channel gets its rounds of grace
	} else if ch.closed {
		s.tellClosed(ps.p, ch) // a payer that missed it (it reconnected)
	}
	s.wakeHeld(ps.account)
	return nil
}

func (s *Session) onPay(ps *peerState, m message) error {
	ch := s.in[m.Channel]
	if ch == nil {
		return fmt.Errorf("payment on unknown channel %q", m.Channel)
	}
	if ch.v.Payer != ps.account {
		return fmt.Errorf("payment on a channel of %s by %s", ch.v.Payer, ps.account)
	}
	if ch.closed {
		// The broker refuses redemptions of a closed channel, so the
		// payment counts for nothing; the payer did not know (our
		// "closed" crossed its payment, or it reconnected after we
		// restarted) and pays again on another channel once it hears.
		s.tellClosed(ps.p, ch)
		return nil
	}
	if m.Index > ch.v.Length {
		return fmt.Errorf("payment index %d beyond chain length %d", m.Index, ch.v.Length)
	}
	if !ch.live(s.cfg.Now()) {
		return fmt.Errorf("payment on channel %s, which expires at %v", m.Channel, ch.v.Expiry)
	}
	pre := [32]byte(m.Preimage)
	if err := hashchain.Verify(ch.lastPreimage, ch.lastIndex, pre, m.Index, maxStep); err != nil {
		return fmt.Errorf("payment: %w", err)
	}
	units := (m.Index - ch.lastIndex) * ch.v.Unit
	ch.lastIndex, ch.lastPreimage = m.Index, pre
	s.dirty = true
	if err := s.book.Paid(ps.account, units, s.cfg.Now()); err != nil {
		return err
	}
	if s.banned[ps.account] == "" && s.refused[ps.account] != "" {
		// Paying up lifts a refusal for debt (not a ban).
		delete(s.refused, ps.account)
		s.book.Unblock(ps.account)
		ps.held = true // refused, not held: wake it all the same
	}
	s.wakeHeld(ps.account)
	s.signalAwaited()
	return nil
}

// tellClosed tells p (the payer of ch, if connected) that we closed ch and
// how far the broker redeemed it. s.mu is held.
func (s *Session) tellClosed(p engine.Peer, ch *inChannel) {
	if p != nil {
		p.SendExtension(message{Type: typeClosed, Channel: ch.v.Channel, Index: ch.redeemedIndex}.encode())
	}
}

// LostInterest implements engine.Payments: a peer that wants nothing more
// from us no longer counts in Awaited.
func (s *Session) LostInterest(p engine.Peer) { s.signalAwaited() }

// onFailed writes off bytes of ours in a piece the downloader could not
// verify, if the account still has resends left (credit.Config.MaxResends):
// a resend is honoured a bounded number of times, so false claims gain a
// downloader at most that many pieces.
func (s *Session) onFailed(ps *peerState, m message) {
	if int(m.Piece) >= s.cfg.Torrent.Info.NumPieces() || m.Bytes > s.cfg.Torrent.Info.PieceSize(int(m.Piece)) {
		return
	}
	if s.book.Forgive(ps.account, m.Bytes, ps.class.PricePerMiB) {
		s.dirty = true
		ps.p.Wake()
		s.signalAwaited()
	}
}

// Refuses implements engine.Payments: a plain peer unless in free mode,
// and an account refused, blocked or overdue. Everything else is queued,
// and Charge checks the credit window and the channels block by block, so
// asking here as well only doubled that work.
func (s *Session) Refuses(p engine.Peer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.settled(p)
	if v, decided := s.verdictWithoutCredit(ps); decided {
		return v == engine.Refuse
	}
	return s.book.Refuses(ps.account, s.cfg.Now())
}

// verdictWithoutCredit decides what needs no look at credit: a peer still
// in its handshake waits, a plain one is served only in free mode, a
// refused account never, and a free class always. decided is false for a
// paying Floodgate peer, whose credit window and channels decide. s.mu is
// held.
func (s *Session) verdictWithoutCredit(ps *peerState) (v engine.Verdict, decided bool) {
	switch {
	case ps == nil || (!ps.plain && !ps.authed):
		return engine.Hold, true // handshake not finished yet
	case ps.plain:
		if s.cfg.Free {
			return engine.Serve, true
		}
		return engine.Refuse, true
	case s.refused[ps.account] != "":
		return engine.Refuse, true
	case ps.class.PricePerMiB == 0:
		return engine.Serve, true
	}
	return 0, false
}

// Serve implements engine.Payments: plain peers are served only in free
// mode; Floodgate peers within their credit window and their channels.
func (s *Session) Serve(p engine.Peer, n int) engine.Verdict {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.serve(s.peers[p.ConnID()], n, s.cfg.Now())
}

// serve decides Serve for ps (nil if unknown) at now. s.mu is held.
func (s *Session) serve(ps *peerState, n int, now time.Time) engine.Verdict {
	if ps != nil {
		s.settle(ps)
	}
	if v, decided := s.verdictWithoutCredit(ps); decided {
		return v
	}
	// A newcomer gets its first credit window before showing a channel
	// (its downloader opens one eagerly only to a couple of uploaders that
	// have not delivered yet, so identities that never upload lock little
	// of its funds). After that, service needs channel value left beyond
	// what it owes.
	if b, shown := s.backing(ps.account, now); shown && b <= 0 {
		return s.hold(ps, "no payment channel with value left")
	}
	switch s.book.MayServe(ps.account, int64(n), ps.class.PricePerMiB, now) {
	case credit.Serve:
		return engine.Serve
	case credit.Refuse:
		return engine.Refuse
	default:
		return s.hold(ps, "credit window full")
	}
}

// inChannels lists the channels one account opened to us.
type inChannels struct{ list []*inChannel }

// addIn records a channel paid to us. s.mu is held.
func (s *Session) addIn(ch *inChannel) {
	s.in[ch.v.Channel] = ch
	ic := s.channelsOf(ch.v.Payer)
	if ic == nil {
		ic = &inChannels{}
		s.byPayer[ch.v.Payer] = ic
	}
	ic.list = append(ic.list, ch)
}

// channelsOf returns the channels account opened to us, nil if it never
// showed one. backing asks for every block served, so the entry found
// last is kept: hashing the 40-character account ID each time cost more
// than the rest of the check. (byPayer entries are never removed, so the
// kept one cannot go stale.) s.mu is held.
func (s *Session) channelsOf(account string) *inChannels {
	if s.lastPayerChannels != nil && account == s.lastPayer {
		return s.lastPayerChannels
	}
	ic := s.byPayer[account]
	if ic != nil {
		s.lastPayer, s.lastPayerChannels = account, ic
	}
	return ic
}

// backing is what the account's channels can still pay us beyond what it
// already owes: serving past it would be credit the broker does not cover.
// shown is false for an account that never showed us a channel. It runs
// for every block served, so channels that can back nothing more (spent,
// closed, near expiry) leave the account's list as they are met, and the
// list is written back only then.
func (s *Session) backing(account string, now time.Time) (value int64, shown bool) {
	ic := s.channelsOf(account)
	if ic == nil {
		return 0, false
	}
	var unspent int64
	live := ic.list[:0]
	for _, ch := range ic.list {
		if ch.closed || !ch.live(now) || ch.unspent() <= 0 {
			continue
		}
		unspent += ch.unspent()
		live = append(live, ch)
	}
	if len(live) < len(ic.list) {
		clear(ic.list[len(live):])
		ic.list = live
	}
	return unspent - s.book.Unpaid(account), true
}

// hold holds ps's requests. It sends an invoice when ps starts being held
// and every invoiceEvery while it stays held: the payer pays what is due
// on an invoice at once rather than with its next payment batch (see
// payDelay), which a held payer would otherwise wait for, up to 50 ms a
// time, while its credit window is small.
func (s *Session) hold(ps *peerState, why string) engine.Verdict {
	starts := !ps.held
	ps.held = true
	now := s.cfg.Now()
	if (starts || now.Sub(ps.lastInvoice) >= invoiceEvery) && ps.p != nil {
		ps.lastInvoice = now
		st := s.book.Status(ps.account)
		ps.p.SendExtension(message{Type: typeInvoice, Owed: st.Owed, Paid: st.Paid}.encode())
		s.log.Debug("holding peer", "account", ps.account, "why", why, "owed", st.Owed, "paid", st.Paid)
	}
	return engine.Hold
}

// Charge implements engine.Payments: the same decision as Serve, and on
// yes the block's value is booked at once (before it is written), so the
// blocks waiting in writers count against the window too.
func (s *Session) Charge(p engine.Peer, n int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.peers[p.ConnID()]
	now := s.cfg.Now()
	if s.serve(ps, n, now) != engine.Serve {
		return false
	}
	if !ps.authed || ps.class.PricePerMiB == 0 {
		return true // plain (free mode) or free class: nothing to book
	}
	if err := s.book.Served(ps.account, int64(n), ps.class.PricePerMiB, now); err != nil {
		s.log.Error("credit book", "account", ps.account, "err", err)
		return false
	}
	s.dirty = true
	return true
}

// Uploaded implements engine.Payments. Value is booked by Charge; nothing
// more to do once the bytes are on the wire.
func (s *Session) Uploaded(p engine.Peer, n int) {}

// Banned implements engine.Payments: the account behind a banned
// connection is refused from now on, whatever peer ID it comes back with.
func (s *Session) Banned(p engine.Peer, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.peers[p.ConnID()]
	if ps == nil || !ps.authed {
		return
	}
	s.banned[ps.account] = reason
	s.refused[ps.account] = "banned: " + reason
	s.signalAwaited() // refused accounts are not waited for
	if err := s.book.Block(ps.account); err != nil {
		s.log.Warn("block account", "account", ps.account, "err", err)
	}
}

// redeemLoop redeems earnings, cuts off overdue accounts and persists state.
func (s *Session) redeemLoop() {
	defer s.wg.Done()
	tick := time.NewTicker(s.cfg.RedeemEvery)
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
			s.mu.Lock()
			s.lookUpExpired(s.cfg.Now())
			s.mu.Unlock()
			// Save what was received and cut off non-payers before the
			// broker round trip, which a slow broker can stretch to its
			// timeout: a crash meanwhile must not lose the payments.
			s.cutOffOverdue()
			if err := s.persist(); err != nil {
				s.log.Error("persist payment state", "err", err)
			}
			ctx, cancel := s.redeemContext()
			s.redeemAll(ctx)
			cancel()
			if err := s.persist(); err != nil {
				s.log.Error("persist payment state", "err", err)
			}
		}
	}
}

// redeemAll claims every payment received since the last redemption, and
// closes the channels of payers that are done with us (see quietPayers).
func (s *Session) redeemAll(ctx context.Context) {
	s.mu.Lock()
	quiet := s.quietPayers(s.cfg.Now())
	s.mu.Unlock()
	s.settleChannels(ctx, func(ch *inChannel) bool {
		// A channel shown since quietPayers ran resets the payer's rounds.
		_, still := s.quietSince[ch.v.Payer]
		return still && quiet[ch.v.Payer]
	})
}

// goneGrace is how long a payer with no connection to us keeps its
// channels open: one that reconnects within it (a restart, a network
// blip) goes on paying on them instead of opening new ones. It is longer
// than the engine's 30 s redial delay, so that a payer whose first
// reconnect failed still gets its second try in.
const goneGrace = 90 * time.Second

// leechQuietAfter is how long a connected payer must want nothing from
// us, while we still download, before we close its channels (see
// quietPayers).
const leechQuietAfter = 20 * time.Second

// quietPayers lists the payers whose channels we close before we stop:
// when we have every piece, a payer not interested in us (it has every
// piece too) at two redemption rounds in a row, or gone for goneGrace, is
// done buying from us, and what it locked in channels to us goes back to
// it now, not when we stop or the channels expire (a seeder may run for
// days; channels last an hour). A finished downloader pays all it owes
// before it says so, and what it may still owe then (end-game copies,
// fractions of a unit) it never pays, so that is no reason to wait.
// Should it want more after all, it hears "closed" and opens a new
// channel.
//
// While we still download, a connected payer loses and regains interest
// as our pieces come, so it counts only once it wanted nothing from us
// at every round for leechQuietAfter: it has all we have, and what it
// locked with us may be all it has left to pay an uploader that does
// have what it lacks (a swarm of buyers holding twice the price stalled
// that way, each waiting on the origin). A payer that left counts after
// goneGrace, or it would wait for our exit (a long download may run for
// hours). s.mu is held.
func (s *Session) quietPayers(now time.Time) map[string]bool {
	quiet := make(map[string]bool)
	leeching := !s.complete && s.left > 0
	connected, interested := make(map[string]bool), make(map[string]bool)
	for _, ps := range s.peers {
		if ps.p != nil && ps.authed {
			connected[ps.account] = true
			interested[ps.account] = interested[ps.account] || ps.p.Interested()
		}
	}
	since := make(map[string]time.Time)
	for account, ic := range s.byPayer {
		if len(ic.list) == 0 || interested[account] {
			continue
		}
		first, seen := s.quietSince[account]
		if !seen {
			first = now
		}
		since[account] = first
		switch {
		case !seen:
		case !connected[account]:
			quiet[account] = now.Sub(first) >= goneGrace
		case leeching:
			quiet[account] = now.Sub(first) >= leechQuietAfter
		default:
			quiet[account] = true
		}
	}
	s.quietSince = since
	return quiet
}

// redeemContext bounds a redemption made while the session runs. It is
// not cancelled by Close, which waits for it instead: a redemption cut off
// may have been committed by the broker while we saw an error, and the
// repeat then pays nothing, so what we earned would be undercounted.
func (s *Session) redeemContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(s.ctx), 30*time.Second)
}

// settleChannels redeems what every channel paid to us received since its
// last redemption, all in one broker call (the broker takes a few dozen
// channels per round trip), and closes each channel closing says to that
// still holds the payer's money, which then returns to the payer at once;
// a payer still connected is told ("closed"). A channel spent to the end
// has nothing to give back and is left as it is.
func (s *Session) settleChannels(ctx context.Context, closing func(*inChannel) bool) {
	s.mu.Lock()
	var rs []Redemption
	for id, ch := range s.in {
		// One redemption at a time per channel: of two racing calls the
		// broker pays the first and answers the repeat with nothing, and
		// if the repeat's answer came back first the earnings would be
		// undercounted.
		if ch.closed || ch.redeeming {
			continue
		}
		r := Redemption{Channel: id, Close: ch.unspent() > 0 && closing(ch)}
		if ch.lastIndex > ch.redeemedIndex {
			r.Index, r.Preimage = ch.lastIndex, identity.Digest(ch.lastPreimage)
		}
		if r.Index > 0 || r.Close {
			ch.redeeming = true
			rs = append(rs, r)
		}
	}
	s.mu.Unlock()
	if len(rs) == 0 {
		return
	}
	results, err := s.cfg.Broker.Redeem(ctx, rs)
	if err != nil {
		s.log.Warn("redeem", "channels", len(rs), "settled", len(results), "err", err)
	}
	// A channel the broker refused to redeem may be closed already: our
	// own close whose answer was lost, or one the payer or the provider
	// closed after expiry. Ask, and take the broker's word, or we would
	// keep counting payments on it that can never be redeemed.
	for i := range results {
		if results[i].Err == nil {
			continue
		}
		if st, err := s.cfg.Broker.Channel(ctx, rs[i].Channel); err == nil && st.Closed {
			results[i] = RedemptionResult{Redeemed: st.Redeemed, Closed: true}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	earned := s.earned
	for i, r := range rs {
		ch := s.in[r.Channel]
		ch.redeeming = false
		if i >= len(results) {
			continue
		}
		res := results[i]
		if res.Err != nil {
			s.log.Warn("redeem", "channel", r.Channel, "err", res.Err)
		}
		// Earnings are counted from how far the broker says the channel
		// is redeemed, not from what this call paid: a redemption whose
		// answer was lost (or that a crash kept us from recording) is paid
		// once, and its repeat pays nothing, but both leave the channel at
		// the same index. Only we redeem our channels, one call at a
		// time, so the advance is ours (a close-only call, or a channel
		// found closed, reports it too). It counts even when a later step
		// (the close) failed.
		if at := min(res.Redeemed, max(r.Index, ch.lastIndex)); at > ch.redeemedIndex {
			s.earned += (at - ch.redeemedIndex) * ch.v.Unit
			ch.redeemedIndex = at
			s.dirty = true
		}
		if res.Closed {
			ch.closed = true
			s.dirty = true
			if late := (ch.lastIndex - ch.redeemedIndex) * ch.v.Unit; late > 0 {
				// Payments that arrived while the close was on its way
				// were not redeemed: they count for nothing, and the
				// payer, told "closed", pays them again elsewhere.
				if err := s.book.Revoked(ch.v.Payer, late, s.cfg.Now()); err != nil {
					s.log.Error("credit book", "err", err)
				}
				ch.lastIndex = ch.redeemedIndex
				ch.lateRevoked = true
			}
			if !s.closing {
				s.tellClosed(s.connFor(ch.v.Payer), ch)
			}
		}
	}
	if s.earned > earned && !s.closing {
		s.fundsBack() // earnings are spendable at once
	}
}

// cutOffOverdue stops serving accounts that stopped paying and reports
// them: the evidence is the uploader's count of what it served and the
// highest payment received.
func (s *Session) cutOffOverdue() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, account := range s.book.Overdue(s.cfg.Now(), s.cfg.OverdueAfter) {
		if s.refused[account] != "" {
			continue
		}
		st := s.book.Status(account)
		s.refused[account] = fmt.Sprintf("unpaid %d units for %s", st.Unpaid, s.cfg.OverdueAfter)
		// Blocking moves the debt out of the shared exposure caps, so
		// non-payers cannot freeze service for newcomers.
		if err := s.book.Block(account); err != nil {
			s.log.Warn("block account", "account", account, "err", err)
		}
		defer s.wakeAll()
		s.signalAwaited() // refused accounts are not waited for
		s.log.Warn("account stopped paying; service refused", "account", account, "unpaid", st.Unpaid)
		for _, ps := range s.peers {
			if ps.account == account && ps.p != nil {
				ps.p.SendExtension(message{Type: typeRefuse, Code: "unpaid", Reason: s.refused[account]}.encode())
			}
		}
		s.complain(account, st)
	}
}

// wakeHeld lets account's held connections be reconsidered: it paid or
// showed a channel. Only held ones: a wake costs the engine's upload loop
// a turn, and payments arrive hundreds of times per download.
func (s *Session) wakeHeld(account string) {
	for _, ps := range s.peers {
		if ps.held && ps.account == account && ps.p != nil {
			ps.held = false
			ps.p.Wake()
		}
	}
}

// wakeAll lets every held peer be reconsidered (credit was freed).
func (s *Session) wakeAll() {
	for _, ps := range s.peers {
		if ps.p != nil {
			ps.p.Wake()
		}
	}
}

// complain files a complaint with the broker (when it takes them) and
// keeps a local record next to the payment state. s.mu is held; the broker
// call runs on its own goroutine.
func (s *Session) complain(account string, st credit.AccountStatus) {
	if s.reported[account] {
		return
	}
	s.reported[account] = true
	c := Complaint{Account: account, InfoHash: s.cfg.Torrent.InfoHash, Owed: st.Owed, Paid: st.Paid, Channels: map[string]int64{}}
	for id, ch := range s.in {
		if ch.v.Payer == account && len(c.Channels) < maxComplaintChannels {
			c.Channels[id] = ch.lastIndex
		}
	}
	if s.cfg.StatePath != "" {
		line, _ := json.Marshal(struct {
			Complaint
			At time.Time `json:"at"`
		}{c, s.cfg.Now().UTC()})
		if f, err := os.OpenFile(s.cfg.StatePath+".complaints", os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600); err == nil {
			f.Write(append(line, '\n'))
			f.Close()
		}
	}
	cb, ok := s.cfg.Broker.(Complainer)
	if !ok || c.Paid >= c.Owed {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
		defer cancel()
		if err := cb.Complain(ctx, c); err != nil {
			s.log.Warn("file complaint", "account", account, "err", err)
		}
	}()
}

// maxComplaintChannels is the most channels one complaint names (the
// broker's limit).
const maxComplaintChannels = 16

// persistedState is what survives a crash.
type persistedState struct {
	Channels []persistedChannel `json:"channels"`
	Book     json.RawMessage    `json:"book"`
	Earned   int64              `json:"earned"`
}

type persistedChannel struct {
	Voucher       []byte          `json:"voucher"`
	LastIndex     int64           `json:"last_index"`
	LastPreimage  identity.Digest `json:"last_preimage"`
	RedeemedIndex int64           `json:"redeemed_index"`
	Closed        bool            `json:"closed"`
	LateRevoked   bool            `json:"late_revoked,omitempty"`
}

// persist writes the state atomically if it changed.
func (s *Session) persist() error {
	if s.cfg.StatePath == "" {
		return nil
	}
	s.mu.Lock()
	if !s.dirty {
		s.mu.Unlock()
		return nil
	}
	st := persistedState{Earned: s.earned}
	for _, ch := range s.in {
		vb, err := ch.v.MarshalBinary()
		if err != nil {
			s.mu.Unlock()
			return err
		}
		st.Channels = append(st.Channels, persistedChannel{vb, ch.lastIndex, identity.Digest(ch.lastPreimage), ch.redeemedIndex, ch.closed, ch.lateRevoked})
	}
	book, err := s.book.Snapshot()
	s.dirty = false
	s.mu.Unlock()
	if err != nil {
		return err
	}
	st.Book = book
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.cfg.StatePath), 0o700); err != nil {
		return err
	}
	tmp := s.cfg.StatePath + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, s.cfg.StatePath)
}

// restore loads persisted state: unredeemed payments are redeemed on the
// next tick, and credit windows and debts carry over.
func (s *Session) restore() (*credit.Book, error) {
	if s.cfg.StatePath == "" {
		return credit.NewBook(s.cfg.Credit)
	}
	data, err := os.ReadFile(s.cfg.StatePath)
	if errors.Is(err, os.ErrNotExist) {
		return credit.NewBook(s.cfg.Credit)
	}
	if err != nil {
		return nil, fmt.Errorf("paid: state: %w", err)
	}
	var st persistedState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("paid: state %s: %w", s.cfg.StatePath, err)
	}
	for _, pc := range st.Channels {
		var v identity.Voucher
		if err := v.UnmarshalBinary(pc.Voucher); err != nil || v.Verify(s.cfg.Terms.Provider) != nil || v.Payee != s.account {
			continue // not ours or not the provider's: nothing to redeem
		}
		s.addIn(&inChannel{v: v, lastIndex: pc.LastIndex, lastPreimage: [32]byte(pc.LastPreimage), redeemedIndex: pc.RedeemedIndex, closed: pc.Closed, lateRevoked: pc.LateRevoked})
	}
	s.earned = st.Earned
	if len(st.Book) == 0 {
		return credit.NewBook(s.cfg.Credit)
	}
	return credit.Restore(s.cfg.Credit, st.Book, s.cfg.Now())
}

// Close redeems everything received, closes the channels paid to us (the
// payer gets the rest back at once), persists, and stops the session.
func (s *Session) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true // no new channel opens or deferred payments from here
		s.mu.Unlock()
		s.cancel()
		s.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		// A channel is closed only once all it carried is redeemed (the
		// broker redeems before it closes, and does not close what it
		// could not redeem), or the payments not yet claimed would go
		// back to the payer.
		s.settleChannels(ctx, func(*inChannel) bool { return true })
		err = s.persist()
	})
	return err
}
