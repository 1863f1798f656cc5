package scheduler

import (
	"errors"
	"slices"
	"testing"
	"time"
)

// Admission: reservations are granted while their sum stays within the
// reservable share of capacity; the last one that does not fit gets what
// is left if that is worth having, and the rest are refused.
func TestReservationAdmission(t *testing.T) {
	s := mustNew(t, Config{Capacity: 10 * MiB, ReservableShare: 0.8, MaxReservation: 3 * MiB, MinReservation: 512 * KiB})
	for id := PeerID(1); id <= 6; id++ {
		_ = s.SetPeer(id, Terms{Weight: 1})
	}
	exp := t0.Add(time.Minute)
	tests := []struct {
		name       string
		id         PeerID
		rate       int64
		granted    int64
		err        error
		unreserved int64
	}{
		{"fits", 1, 3 * MiB, 3 * MiB, nil, 5 * MiB},
		{"capped at MaxReservation", 2, 5 * MiB, 3 * MiB, nil, 2 * MiB},
		{"partial grant of what is left", 3, 3 * MiB, 2 * MiB, nil, 0},
		{"share used up", 4, 1 * MiB, 0, ErrNoCapacity, 0},
		{"resizing down frees capacity", 1, 1 * MiB, 1 * MiB, nil, 2 * MiB},
		{"remainder below MinReservation refused", 5, 4 * MiB, 2 * MiB, nil, 0},
		{"non-positive rate", 6, 0, 0, ErrBadReservation, 0},
		{"unknown peer", 99, MiB, 0, ErrUnknownPeer, 0},
	}
	for _, tc := range tests {
		got, err := s.Reserve(tc.id, tc.rate, t0, exp)
		if got != tc.granted || !errors.Is(err, tc.err) {
			t.Errorf("%s: Reserve = %d, %v; want %d, %v", tc.name, got, err, tc.granted, tc.err)
		}
		if u := s.Unreserved(); u != tc.unreserved {
			t.Errorf("%s: Unreserved = %d, want %d", tc.name, u, tc.unreserved)
		}
		if s.Reserved()+s.Unreserved() != 8*MiB {
			t.Errorf("%s: Reserved %d + Unreserved %d != reservable", tc.name, s.Reserved(), s.Unreserved())
		}
	}
	// Release returns the capacity; a small remainder below the minimum is
	// refused, not granted.
	if !s.Release(5) || s.Release(5) {
		t.Fatal("Release")
	}
	_, _ = s.Reserve(5, 1*MiB+768*KiB, t0, exp)
	if _, err := s.Reserve(6, MiB, t0, exp); !errors.Is(err, ErrNoCapacity) {
		t.Errorf("256 KiB/s left, 1 MiB/s asked, min 512 KiB/s: %v", err)
	}
	if got, err := s.Reserve(6, 200*KiB, t0, exp); err != nil || got != 200*KiB {
		t.Errorf("asking for less than the minimum when it fits: %d, %v", got, err)
	}
}

func TestReservationExpiry(t *testing.T) {
	cfg := Config{Capacity: 10 * MiB, IdleRelease: 5 * time.Second, MaxTerm: 30 * time.Second}
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	tests := []struct {
		name string
		// steps run in order; each either renews, uses (sends one block),
		// or checks that the reservation is (or is not) held at that time.
		steps []step
	}{
		{"lapses at expiry without renewal", []step{
			{at: 3 * time.Second, use: true},
			{at: 6 * time.Second, use: true},
			{at: 9 * time.Second, held: true},
			{at: 10 * time.Second, held: false, lapsed: true},
		}},
		{"renewal keeps a used reservation", []step{
			{at: 4 * time.Second, use: true},
			{at: 8 * time.Second, use: true, renew: 20 * time.Second},
			{at: 12 * time.Second, use: true},
			{at: 16 * time.Second, use: true, held: true},
			{at: 20 * time.Second, held: false, lapsed: true},
		}},
		{"unused reservation is released although renewed", []step{
			{at: 2 * time.Second, renew: 20 * time.Second},
			{at: 4 * time.Second, renew: 20 * time.Second, held: true},
			{at: 5 * time.Second, held: false, lapsed: true},
		}},
		{"released when use stops", []step{
			{at: 1 * time.Second, use: true},
			{at: 5 * time.Second, held: true},
			{at: 6 * time.Second, held: false, lapsed: true},
		}},
		{"expiry capped at MaxTerm", []step{
			{at: 0, renew: time.Hour},
			{at: 4 * time.Second, use: true},
			{at: 8 * time.Second, use: true},
			{at: 12 * time.Second, use: true},
			{at: 16 * time.Second, use: true},
			{at: 20 * time.Second, use: true},
			{at: 24 * time.Second, use: true},
			{at: 28 * time.Second, use: true, held: true},
			{at: 30 * time.Second, held: false, lapsed: true},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := mustNew(t, cfg)
			_ = s.SetPeer(1, Terms{})
			if _, err := s.Reserve(1, MiB, t0, at(10*time.Second)); err != nil {
				t.Fatal(err)
			}
			for i, st := range tc.steps {
				now := at(st.at)
				if st.renew > 0 {
					if err := s.Renew(1, now, at(st.renew)); err != nil {
						t.Fatalf("step %d: Renew: %v", i, err)
					}
				}
				if st.use {
					_ = s.Enqueue(1, Request{Piece: uint32(i), Length: 16 * KiB})
					if _, _, ok := s.Next(now, always); !ok {
						t.Fatalf("step %d: nothing sent", i)
					}
				}
				lapsed := s.Expire(now, nil)
				if _, _, held := s.Reservation(1); held != st.held && (st.held || st.lapsed) {
					t.Fatalf("step %d at %v: held = %v, want %v", i, st.at, held, st.held)
				}
				if st.lapsed != slices.Contains(lapsed, 1) {
					t.Fatalf("step %d at %v: lapsed = %v", i, st.at, lapsed)
				}
				if st.lapsed && (s.Reserved() != 0 || s.Unreserved() != 8*MiB) {
					t.Fatalf("step %d: lapsed reservation still counted: %d", i, s.Reserved())
				}
			}
		})
	}
}

type step struct {
	at, renew    time.Duration
	use          bool
	held, lapsed bool
}

func TestRenewAndReserveValidation(t *testing.T) {
	s := mustNew(t, Config{Capacity: 10 * MiB})
	_ = s.SetPeer(1, Terms{})
	if err := s.Renew(1, t0, t0.Add(time.Second)); !errors.Is(err, ErrNoReservation) {
		t.Errorf("Renew without reservation: %v", err)
	}
	if err := s.Renew(2, t0, t0.Add(time.Second)); !errors.Is(err, ErrUnknownPeer) {
		t.Errorf("Renew for unknown peer: %v", err)
	}
	for _, exp := range []time.Time{t0, t0.Add(-time.Second), {}} {
		if _, err := s.Reserve(1, MiB, t0, exp); !errors.Is(err, ErrBadReservation) {
			t.Errorf("Reserve expiring at %v: %v", exp, err)
		}
	}
	// Absurdly distant expiries are shortened, not overflowed.
	if _, err := s.Reserve(1, MiB, t0, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	if _, exp, _ := s.Reservation(1); !exp.Equal(t0.Add(DefaultMaxTerm)) {
		t.Errorf("expiry = %v, want now + MaxTerm", exp)
	}
	if err := s.Renew(1, t0, t0); !errors.Is(err, ErrBadReservation) {
		t.Errorf("Renew to now: %v", err)
	}
}

// Lapses noticed inside Next are still reported by the next Expire.
func TestLapseNoticedInNextIsReported(t *testing.T) {
	s := mustNew(t, Config{Capacity: 10 * MiB})
	_ = s.SetPeer(1, Terms{})
	_ = s.SetPeer(2, Terms{})
	_, _ = s.Reserve(1, MiB, t0, t0.Add(2*time.Second))
	_ = s.Enqueue(2, Request{Length: 1})
	s.Next(t0.Add(3*time.Second), always)
	if s.Reserved() != 0 {
		t.Fatal("lapsed reservation kept")
	}
	if got := s.Expire(t0.Add(3*time.Second), nil); !slices.Equal(got, []PeerID{1}) {
		t.Fatalf("Expire = %v, want [1]", got)
	}
	if got := s.Expire(t0.Add(3*time.Second), nil); len(got) != 0 {
		t.Fatalf("lapse reported twice: %v", got)
	}
}
