package main

import (
	"context"
	"sync"
	"testing"
	"time"
)

// debtors is a fake paid session: a peer still downloading from us whose
// debt rises as we serve it and falls as it pays.
type debtors struct {
	mu      sync.Mutex
	owed    int64
	changed chan struct{}
}

func (d *debtors) Awaited() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.owed
}

func (d *debtors) AwaitedChanged() <-chan struct{} { return d.changed }

func (d *debtors) set(owed int64) {
	d.mu.Lock()
	d.owed = owed
	d.mu.Unlock()
	select {
	case d.changed <- struct{}{}:
	default:
	}
}

// A finished download keeps serving a peer that keeps paying, even when
// what it owes never drops below the first reading (it is served more
// between payments), and leaves as soon as nothing is owed.
func TestWaitForPaymentsWhileDebtRisesAndFalls(t *testing.T) {
	d := &debtors{owed: 100, changed: make(chan struct{}, 1)}
	stop := make(chan struct{})
	paying := 4 * settleStall
	go func() {
		end := time.Now().Add(paying)
		for time.Now().Before(end) {
			for _, owed := range []int64{150, 100} { // served, then paid
				select {
				case <-stop:
					return
				case <-time.After(settleStall / 10):
				}
				d.set(owed)
			}
		}
		d.set(0)
	}()
	defer close(stop)
	began := time.Now()
	waitForPayments(context.Background(), d, func() {})
	if owed := d.Awaited(); owed != 0 {
		t.Fatalf("left after %v with %d units still owed by a peer that kept paying", time.Since(began), owed)
	}
}

// A peer whose debt stops shrinking is not waited for beyond settleStall.
func TestWaitForPaymentsGivesUpOnAStalledPeer(t *testing.T) {
	d := &debtors{owed: 100, changed: make(chan struct{}, 1)}
	began := time.Now()
	waitForPayments(context.Background(), d, func() {})
	if waited := time.Since(began); waited >= settleTime {
		t.Fatalf("waited %v for a peer that pays nothing", waited)
	}
}
