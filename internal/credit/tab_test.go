package credit

import (
	"errors"
	"math"
	"slices"
	"testing"
)

func received(t testing.TB, tab *Tab, acct string, bytes, price int64) {
	t.Helper()
	if err := tab.Received(acct, bytes, price); err != nil {
		t.Fatal(err)
	}
}

func TestTabCreditsEachContributor(t *testing.T) {
	// A 256 KiB piece assembled from 10 blocks of "a" and 6 of "b" at 30
	// units/MiB: a is owed 4.6875 units, b 2.8125; each is due the floor.
	tab := NewTab()
	received(t, tab, "a", 10*block, price)
	received(t, tab, "b", 6*block, price)
	if tab.Due("a") != 4 || tab.Due("b") != 2 || tab.Due("nobody") != 0 {
		t.Fatalf("due a=%d b=%d", tab.Due("a"), tab.Due("b"))
	}
	if err := tab.Paid("a", 4); err != nil {
		t.Fatal(err)
	}
	// The next piece, all from a: the fractions carry over, so a is now
	// owed 12.1875 units in all, 8 more than paid.
	received(t, tab, "a", piece, price)
	if tab.Owed("a") != 12 || tab.Due("a") != 8 || tab.PaidTo("a") != 4 || tab.ReceivedBytes("a") != 26*block {
		t.Fatalf("owed %d due %d paid %d bytes %d", tab.Owed("a"), tab.Due("a"), tab.PaidTo("a"), tab.ReceivedBytes("a"))
	}
	if err := tab.Paid("b", 2); err != nil {
		t.Fatal(err)
	}
	if tab.Spent() != 6 || !slices.Equal(tab.Accounts(), []string{"a", "b"}) {
		t.Fatalf("spent %d, accounts %v", tab.Spent(), tab.Accounts())
	}
}

func TestTabOwesTheFloorOfTheTotalWhateverTheSplit(t *testing.T) {
	tests := []struct {
		name  string
		parts []struct{ bytes, price int64 }
		want  int64
	}{
		{"one byte at 30", []struct{ bytes, price int64 }{{1, 30}}, 0},
		{"one MiB at 30", []struct{ bytes, price int64 }{{MiB, 30}}, 30},
		{"one byte short of a MiB at 30", []struct{ bytes, price int64 }{{MiB - 1, 30}}, 29},
		{"a MiB in two odd parts", []struct{ bytes, price int64 }{{MiB - 12345, 30}, {12345, 30}}, 30},
		{"a class change halfway: 1.5 + 2.5", []struct{ bytes, price int64 }{{MiB / 2, 3}, {MiB / 2, 5}}, 4},
		{"a free stretch costs nothing", []struct{ bytes, price int64 }{{MiB, 0}, {MiB, 30}}, 30},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tab := NewTab()
			for _, p := range tc.parts {
				received(t, tab, "u", p.bytes, p.price)
			}
			if got := tab.Due("u"); got != tc.want {
				t.Fatalf("due %d, want %d", got, tc.want)
			}
		})
	}
}

func TestTabOverpaymentIsCredit(t *testing.T) {
	tab := NewTab()
	received(t, tab, "u", MiB, price)
	if err := tab.Paid("u", 40); err != nil {
		t.Fatal(err)
	}
	if tab.Due("u") != 0 {
		t.Fatalf("due %d after overpaying", tab.Due("u"))
	}
	received(t, tab, "u", MiB, price)
	if tab.Due("u") != 20 {
		t.Fatalf("due %d, want 60 - 40", tab.Due("u"))
	}
}

func TestTabRejectsBadInputAndNeverWraps(t *testing.T) {
	tab := NewTab()
	for _, err := range []error{tab.Received("u", -1, 1), tab.Received("u", 1, -1), tab.Paid("u", -1)} {
		if !errors.Is(err, ErrNegative) {
			t.Fatalf("negative input: %v", err)
		}
	}
	for _, err := range []error{tab.Received("", 1, 1), tab.Paid("", 1)} {
		if !errors.Is(err, ErrAccount) {
			t.Fatalf("empty account: %v", err)
		}
	}
	received(t, tab, "u", math.MaxInt64, math.MaxInt64)
	received(t, tab, "u", math.MaxInt64, math.MaxInt64)
	if tab.Owed("u") != math.MaxInt64 || tab.ReceivedBytes("u") != math.MaxInt64 {
		t.Fatalf("owed %d bytes %d, want saturation", tab.Owed("u"), tab.ReceivedBytes("u"))
	}
	if err := tab.Paid("u", math.MaxInt64); err != nil {
		t.Fatal(err)
	}
	if err := tab.Paid("v", 1); !errors.Is(err, ErrOverflow) {
		t.Fatalf("total spend past int64: %v", err)
	}
	if tab.Spent() != math.MaxInt64 || tab.PaidTo("v") != 0 {
		t.Fatalf("a refused payment was recorded: spent %d", tab.Spent())
	}
}

// Units paid on a channel the payee had closed come back as due, and no
// more than was paid can come back.
func TestTabRefundedIsDueAgain(t *testing.T) {
	tab := NewTab()
	if err := tab.Received("up", 1<<20, 100); err != nil {
		t.Fatal(err)
	}
	if err := tab.Paid("up", 100); err != nil {
		t.Fatal(err)
	}
	if err := tab.Refunded("up", 30); err != nil {
		t.Fatal(err)
	}
	if due, spent := tab.Due("up"), tab.Spent(); due != 30 || spent != 70 {
		t.Fatalf("after a refund of 30: due %d, spent %d; want 30 and 70", due, spent)
	}
	for _, bad := range []int64{71, -1} {
		if err := tab.Refunded("up", bad); !errors.Is(err, ErrNegative) {
			t.Fatalf("refund of %d: %v", bad, err)
		}
	}
	if err := tab.Refunded("stranger", 1); err == nil {
		t.Fatal("a refund from an account never paid was accepted")
	}
	if tab.PaidTo("up") != 70 {
		t.Fatalf("a refused refund changed the tab: paid %d", tab.PaidTo("up"))
	}
}
