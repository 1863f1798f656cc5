package scheduler

import (
	"fmt"
	"math"
	"time"
)

// Reserve grants peer id a rate reservation of up to rate bytes/s until
// expiry, and returns the rate granted. The caller passes the cap it wants
// honoured (normally the ticket's min_rate); MaxReservation caps it further.
// A peer that already holds a reservation has it resized, keeping its
// expiry rule and usage clock.
//
// Admission keeps the sum of reservations within ReservableShare ×
// Capacity. When less than rate is left, the remainder is granted if it is
// at least MinReservation (a QoS downloader gathers its rate from several
// uploaders, so a part is useful); otherwise ErrNoCapacity. Expiries beyond
// now+MaxTerm are shortened. On error an existing reservation is unchanged.
func (s *Scheduler) Reserve(id PeerID, rate int64, now, expiry time.Time) (int64, error) {
	t := s.now(now)
	s.sweep(t)
	p := s.peers[id]
	if p == nil {
		return 0, fmt.Errorf("%w: %d", ErrUnknownPeer, id)
	}
	if rate <= 0 {
		return 0, fmt.Errorf("%w: rate %d for peer %d", ErrBadReservation, rate, id)
	}
	exp, err := s.expiry(id, now, t, expiry)
	if err != nil {
		return 0, err
	}
	if s.cfg.Capacity == 0 {
		return 0, fmt.Errorf("%w: upload capacity unknown, no guarantee possible", ErrNoCapacity)
	}
	if s.cfg.MaxReservation > 0 {
		rate = min(rate, s.cfg.MaxReservation)
	}
	avail := s.reservable - s.reserved + p.rate
	grant := min(rate, avail)
	if grant <= 0 || grant < min(rate, s.cfg.MinReservation) {
		return 0, fmt.Errorf("%w: %d bytes/s asked, %d left of %d reservable", ErrNoCapacity, rate, max(avail, 0), s.reservable)
	}
	old := p.rate
	s.reserved += grant - old
	p.rate = grant
	p.expiry = exp
	if old == 0 {
		// A fresh reservation starts owed nothing and counts as used now,
		// so the holder has IdleRelease to start drawing on it.
		p.lastUsed = t
		p.vt = t
		p.holdIdx = len(s.holders)
		s.holders = append(s.holders, p)
		if p.q.len() > 0 && p.parkIdx < 0 {
			s.res.push(p)
		}
	}
	s.nextSweep = min(s.nextSweep, p.deadline(s.cfg.IdleRelease))
	return grant, nil
}

// Renew moves the expiry of peer id's reservation to expiry (at most
// now+MaxTerm). It does not count as use: a reservation nothing is sent
// under is still released after IdleRelease, renewed or not.
func (s *Scheduler) Renew(id PeerID, now, expiry time.Time) error {
	t := s.now(now)
	s.sweep(t)
	p := s.peers[id]
	if p == nil {
		return fmt.Errorf("%w: %d", ErrUnknownPeer, id)
	}
	if p.rate == 0 {
		return fmt.Errorf("%w: peer %d", ErrNoReservation, id)
	}
	exp, err := s.expiry(id, now, t, expiry)
	if err != nil {
		return err
	}
	p.expiry = exp
	s.nextSweep = min(s.nextSweep, p.deadline(s.cfg.IdleRelease))
	return nil
}

// expiry validates a requested expiry and converts it to the scheduler's
// clock, shortened to MaxTerm. It works on durations so that absurd times
// (zero, year 9999) cannot overflow.
func (s *Scheduler) expiry(id PeerID, now time.Time, t int64, expiry time.Time) (int64, error) {
	if !expiry.After(now) {
		return 0, fmt.Errorf("%w: expiry %v not after now %v for peer %d", ErrBadReservation, expiry, now, id)
	}
	return t + int64(min(expiry.Sub(now), s.cfg.MaxTerm)), nil
}

// Release drops peer id's reservation and reports whether it held one.
func (s *Scheduler) Release(id PeerID) bool {
	p := s.peers[id]
	if p == nil || p.rate == 0 {
		return false
	}
	s.dropReservation(p)
	return true
}

// Reservation returns peer id's reserved rate and expiry; ok is false if it
// holds none.
func (s *Scheduler) Reservation(id PeerID) (rate int64, expiry time.Time, ok bool) {
	p := s.peers[id]
	if p == nil || p.rate == 0 {
		return 0, time.Time{}, false
	}
	return p.rate, time.Unix(0, p.expiry), true
}

// Reserved is the sum of granted reservations in bytes/s, as of the latest
// time passed to Next, Reserve, Renew or Expire.
func (s *Scheduler) Reserved() int64 { return s.reserved }

// Unreserved is what may still be reserved, in bytes/s: the reservable
// share of capacity minus the reservations granted. This is the figure an
// uploader announces to the tracker for admission. It is 0 when capacity
// is unknown.
func (s *Scheduler) Unreserved() int64 { return max(s.reservable-s.reserved, 0) }

// Expire releases the reservations that have lapsed at now, and appends to
// dst every peer whose reservation lapsed since the previous call to Expire
// (including lapses noticed inside Next, Reserve or Renew), so the engine
// can tell those downloaders. Released reservations through Release or
// RemovePeer are not reported.
func (s *Scheduler) Expire(now time.Time, dst []PeerID) []PeerID {
	s.sweep(s.now(now))
	dst = append(dst, s.lapsed...)
	s.lapsed = s.lapsed[:0]
	return dst
}

// deadline is when the reservation lapses unless renewed or used.
func (p *peer) deadline(idle time.Duration) int64 {
	return min(p.expiry, p.lastUsed+int64(idle))
}

// sweep releases lapsed reservations. It scans the holders only when the
// earliest deadline known at the last scan has passed; since deadlines only
// move later through use and renewal, that bound stays valid, and a scan
// costs O(holders) at most about once per IdleRelease.
func (s *Scheduler) sweep(t int64) {
	if t < s.nextSweep {
		return
	}
	next := int64(math.MaxInt64)
	for i := 0; i < len(s.holders); {
		p := s.holders[i]
		if d := p.deadline(s.cfg.IdleRelease); d <= t {
			s.lapsed = append(s.lapsed, p.id)
			s.dropReservation(p) // moves the last holder into slot i
			continue
		} else {
			next = min(next, d)
		}
		i++
	}
	s.nextSweep = next
}

// dropReservation removes p's reservation from every structure.
func (s *Scheduler) dropReservation(p *peer) {
	if p.rate == 0 {
		return
	}
	if p.resIdx >= 0 {
		s.res.remove(p)
	}
	last := len(s.holders) - 1
	moved := s.holders[last]
	s.holders[p.holdIdx] = moved
	moved.holdIdx = p.holdIdx
	s.holders[last] = nil
	s.holders = s.holders[:last]
	p.holdIdx = -1
	s.reserved -= p.rate
	p.rate = 0
}
