package credit

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestBookSnapshotRoundTrip(t *testing.T) {
	cfg := testConfig()
	b := newBook(t, cfg)
	serve(t, b, "payer", 100, t0)
	pay(t, b, "payer", 20, t0.Add(time.Second))
	serve(t, b, "leech", 33, t0)
	serve(t, b, "resent", perPiece, t0)
	b.Forgive("resent", piece, price)
	if err := b.Block("banned"); err != nil {
		t.Fatal(err)
	}
	data, err := b.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r, err := Restore(cfg, data, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for _, acct := range b.Accounts() {
		got, want := r.Status(acct), b.Status(acct)
		want.OverdueSince = got.OverdueSince // restarted by design
		if !got.LastPayment.Equal(want.LastPayment) {
			t.Errorf("%s: last payment %v, was %v", acct, got.LastPayment, want.LastPayment)
		}
		got.LastPayment, want.LastPayment = time.Time{}, time.Time{}
		if got != want {
			t.Errorf("%s: restored %+v, was %+v", acct, got, want)
		}
		if !got.OverdueSince.IsZero() && !got.OverdueSince.Equal(t0.Add(time.Hour)) {
			t.Errorf("%s: overdue clock %v, want the restore time", acct, got.OverdueSince)
		}
	}
	if r.Exposure() != b.Exposure() || r.Lost() != b.Lost() {
		t.Fatalf("exposure %d lost %d, was %d %d", r.Exposure(), r.Lost(), b.Exposure(), b.Lost())
	}
	again, err := r.Snapshot()
	if err != nil || !bytes.Equal(again, data) {
		t.Fatalf("snapshot not stable:\n%s\n%s", data, again)
	}

	// Windows follow the config the book is restored with.
	smaller := cfg
	smaller.MaxWindow = 20
	r, err = Restore(smaller, data, t0)
	if err != nil {
		t.Fatal(err)
	}
	if w := r.Status("payer").Window; w != 20 {
		t.Fatalf("window %d under a new MaxWindow of 20", w)
	}
}

func TestTabSnapshotRoundTrip(t *testing.T) {
	tab := NewTab()
	received(t, tab, "a", 10*block, price)
	received(t, tab, "b", MiB, 7)
	if err := tab.Paid("b", 3); err != nil {
		t.Fatal(err)
	}
	data, err := tab.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r, err := RestoreTab(data)
	if err != nil {
		t.Fatal(err)
	}
	// The half-unit fraction of a survives: the rest of the piece tips it.
	received(t, r, "a", 6*block, price)
	if r.Due("a") != 7 || r.Due("b") != 4 || r.Spent() != 3 {
		t.Fatalf("due a=%d b=%d spent %d", r.Due("a"), r.Due("b"), r.Spent())
	}
}

func TestRestoreRejectsMalformedSnapshots(t *testing.T) {
	const ok = `{"account":"a","owed":1,"bytes":1,"paid":0}`
	tests := []struct{ name, data string }{
		{"not JSON", `accounts`},
		{"empty", ``},
		{"wrong version", `{"version":2,"accounts":[]}`},
		{"no version", `{"accounts":[]}`},
		{"unknown field", `{"version":1,"accounts":[],"extra":1}`},
		{"trailing data", `{"version":1,"accounts":[]} {}`},
		{"trailing bracket", `{"version":1,"accounts":[]}]`},
		{"duplicate account", `{"version":1,"accounts":[` + ok + `,` + ok + `]}`},
		{"empty account name", `{"version":1,"accounts":[{"account":"","owed":1}]}`},
		{"negative owed", `{"version":1,"accounts":[{"account":"a","owed":-1}]}`},
		{"negative paid", `{"version":1,"accounts":[{"account":"a","paid":-1}]}`},
		{"negative bytes", `{"version":1,"accounts":[{"account":"a","bytes":-1}]}`},
		{"fraction of a whole unit", fmt.Sprintf(`{"version":1,"accounts":[{"account":"a","frac":%d}]}`, MiB)},
		{"fraction beyond saturation", `{"version":1,"accounts":[{"account":"a","owed":9223372036854775807,"frac":1}]}`},
		{"number too large", `{"version":1,"accounts":[{"account":"a","owed":9223372036854775808}]}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Restore(testConfig(), []byte(tc.data), t0); !errors.Is(err, ErrSnapshot) {
				t.Errorf("Restore: %v, want ErrSnapshot", err)
			}
			if _, err := RestoreTab([]byte(tc.data)); !errors.Is(err, ErrSnapshot) {
				t.Errorf("RestoreTab: %v, want ErrSnapshot", err)
			}
		})
	}
	// Fields only a Book has are rejected in a Tab's snapshot, and fields
	// only a Book checks are refused there.
	for _, data := range []string{
		`{"version":1,"accounts":[{"account":"a","resends":-1}]}`,
		`{"version":1,"accounts":[{"account":"a","last_price":-1}]}`,
		`{"version":1,"accounts":[{"account":"a","seen":-1}]}`,
	} {
		if _, err := Restore(testConfig(), []byte(data), t0); !errors.Is(err, ErrSnapshot) {
			t.Errorf("Restore(%s): %v", data, err)
		}
		if _, err := RestoreTab([]byte(data)); !errors.Is(err, ErrSnapshot) {
			t.Errorf("RestoreTab(%s): %v", data, err)
		}
	}
}

// FuzzRestore feeds arbitrary bytes to the Book's snapshot decoder. It
// must never panic, and what it accepts must behave: a consistent exposure,
// a stable re-encoding, and decisions for every account.
func FuzzRestore(f *testing.F) {
	b := newBook(f, testConfig())
	serve(f, b, "payer", 100, t0)
	pay(f, b, "payer", 20, t0)
	serve(f, b, "leech", 33, t0)
	_ = b.Block("banned")
	seed, err := b.Snapshot()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(`{"version":1,"accounts":[]}`))
	f.Add([]byte(`{"version":1,"accounts":[{"account":"a","owed":9223372036854775807,"paid":0}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := testConfig()
		b, err := Restore(cfg, data, t0)
		if err != nil {
			if !errors.Is(err, ErrSnapshot) {
				t.Fatalf("error %v is not ErrSnapshot", err)
			}
			return
		}
		var sum u128
		for _, acct := range b.Accounts() {
			s := b.Status(acct)
			if s.Owed < 0 || s.Paid < 0 || s.Unpaid < 0 || s.AtRisk < s.Unpaid || s.Window < cfg.InitialWindow || s.Window > cfg.MaxWindow {
				t.Fatalf("%s: %+v", acct, s)
			}
			if !s.Blocked {
				sum.add(s.AtRisk)
			}
			d := b.MayServe(acct, block, price, t0)
			if s.Blocked && d != Refuse {
				t.Fatalf("%s: blocked but %v", acct, d)
			}
		}
		if sum.int64() != b.Exposure() {
			t.Fatalf("exposure %d, accounts sum to %d", b.Exposure(), sum.int64())
		}
		again, err := b.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		b2, err := Restore(cfg, again, t0)
		if err != nil {
			t.Fatalf("re-encoding is not accepted: %v\n%s", err, again)
		}
		third, err := b2.Snapshot()
		if err != nil || !bytes.Equal(again, third) {
			t.Fatalf("re-encoding not stable:\n%s\n%s", again, third)
		}
	})
}

// FuzzRestoreTab does the same for the Tab's decoder.
func FuzzRestoreTab(f *testing.F) {
	tab := NewTab()
	_ = tab.Received("a", 10*block, price)
	_ = tab.Paid("a", 3)
	seed, err := tab.Snapshot()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(`{"version":1,"accounts":[{"account":"a","paid":9223372036854775807},{"account":"b","paid":1}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tab, err := RestoreTab(data)
		if err != nil {
			if !errors.Is(err, ErrSnapshot) {
				t.Fatalf("error %v is not ErrSnapshot", err)
			}
			return
		}
		var spent int64
		for _, acct := range tab.Accounts() {
			if tab.Due(acct) < 0 || tab.Owed(acct) < 0 {
				t.Fatalf("%s: due %d owed %d", acct, tab.Due(acct), tab.Owed(acct))
			}
			spent += tab.PaidTo(acct)
		}
		if spent != tab.Spent() {
			t.Fatalf("spent %d, accounts sum to %d", tab.Spent(), spent)
		}
		again, err := tab.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := RestoreTab(again); err != nil {
			t.Fatalf("re-encoding is not accepted: %v", err)
		}
	})
}
