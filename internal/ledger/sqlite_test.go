package ledger_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/ledger"
	"github.com/floodgate-p2p/floodgate/internal/ledger/ledgertest"
)

// openSQLite opens a fresh SQLite store in the test's temporary directory.
func openSQLite(tb testing.TB) ledger.Store {
	tb.Helper()
	s, err := ledger.OpenStore(context.Background(), "sqlite:"+filepath.Join(tb.TempDir(), "ledger.db"))
	if err != nil {
		tb.Fatalf("open sqlite store: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("close sqlite store: %v", err)
		}
	})
	return s
}

func TestSQLiteStore(t *testing.T) {
	ledgertest.Run(t, openSQLite)
}

func BenchmarkSQLiteRedeem(b *testing.B)         { ledgertest.BenchRedeem(b, openSQLite) }
func BenchmarkSQLiteRedeemParallel(b *testing.B) { ledgertest.BenchRedeemParallel(b, openSQLite) }
func BenchmarkSQLiteOpen(b *testing.B)           { ledgertest.BenchOpen(b, openSQLite) }
func BenchmarkSQLiteOpenParallel(b *testing.B)   { ledgertest.BenchOpenParallel(b, openSQLite) }

// TestSQLiteReopen checks that data survives a reopen and that migrations
// are recorded once.
func TestSQLiteReopen(t *testing.T) {
	ctx := context.Background()
	url := "sqlite:" + filepath.Join(t.TempDir(), "ledger.db")
	for i := range 3 {
		s, err := ledger.OpenStore(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		l := ledger.New(s, ledger.Config{})
		if i == 0 {
			if err := l.CreateAccount(ctx, "a", ledger.KindCustomer, nil); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Mint(ctx, fmt.Sprint("m", i), "a", 10); err != nil {
			t.Fatal(err)
		}
		minted, sum, err := l.Audit(ctx)
		if err != nil || minted != int64(10*(i+1)) || sum != minted {
			t.Fatalf("reopen %d: audit %d, %d, %v", i, minted, sum, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSQLiteTwoProcesses opens the same file twice, as two broker
// processes would (one starting while the other is still shutting down),
// and writes through both at once: busy handling must serialise them
// without errors or lost updates.
func TestSQLiteTwoProcesses(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ledger.db")
	var ls []*ledger.Ledger
	for range 2 {
		s, err := ledger.OpenSQLite(ctx, path, ledger.SQLiteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ls = append(ls, ledger.New(s, ledger.Config{}))
	}
	if err := ls[0].CreateAccount(ctx, "a", ledger.KindCustomer, nil); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Go(func() { errs <- ls[i%2].Mint(ctx, fmt.Sprint("m", i), "a", 1) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if bal, err := ls[1].Balance(ctx, "a"); err != nil || bal != 200 {
		t.Fatalf("balance %d, %v; want 200", bal, err)
	}
}

func TestOpenStoreURLs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, bad := range []string{
		"", "mysql://x", "sqlite:", "sqlite:" + dir + "/x.db?synchronous=SOMETIMES",
		"sqlite:" + dir + "/x.db?journal=off", "sqlite:" + dir + "/no/such/dir/x.db",
		"postgres://%zz", "postgres://u@127.0.0.1:1/db?schema=bad-name",
	} {
		s, err := ledger.OpenStore(ctx, bad)
		if err == nil {
			s.Close()
			t.Errorf("OpenStore(%q) succeeded", bad)
		}
	}
	s, err := ledger.OpenStore(ctx, "sqlite:"+dir+"/full.db?synchronous=FULL")
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

// TestAuditDetectsTampering edits the database behind the ledger's back
// and expects Audit to notice each kind of damage.
func TestAuditDetectsTampering(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, sql string
	}{
		{"balance raised", `UPDATE accounts SET balance = balance + 1 WHERE id = 'payer'`},
		{"money moved without a journal row", `UPDATE accounts SET balance = balance + 5 - 10 * (id = 'payer')
			WHERE id = 'payer' OR id = 'payee'`},
		{"escrow drained to the payee", `UPDATE accounts SET balance = CASE WHEN kind = 'escrow' THEN 0 ELSE balance + 100 END
			WHERE kind = 'escrow' OR id = 'payee'`},
		{"journal row deleted", `DELETE FROM transfers WHERE ref LIKE 'open:%'`},
		{"channel marked redeemed", `UPDATE channels SET redeemed = 5`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ledger.db")
			s, err := ledger.OpenSQLite(ctx, path, ledger.SQLiteOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			l := ledger.New(s, ledger.Config{})
			for _, id := range []ledger.AccountID{"payer", "payee"} {
				if err := l.CreateAccount(ctx, id, ledger.KindCustomer, nil); err != nil {
					t.Fatal(err)
				}
			}
			if err := l.Mint(ctx, "m", "payer", 1000); err != nil {
				t.Fatal(err)
			}
			now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
			if _, err := l.OpenChannel(ctx, "o", ledger.Channel{Payer: "payer", Payee: "payee", Length: 10, Unit: 10, Expiry: now.Add(time.Hour)}, now); err != nil {
				t.Fatal(err)
			}
			if _, _, err := l.Audit(ctx); err != nil {
				t.Fatalf("audit before tampering: %v", err)
			}
			db, err := sql.Open("sqlite", path)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.ExecContext(ctx, tc.sql); err != nil {
				t.Fatal(err)
			}
			if _, _, err := l.Audit(ctx); !errors.Is(err, ledger.ErrCorrupt) {
				t.Fatalf("audit after tampering: %v, want ErrCorrupt", err)
			}
		})
	}
}

// TestSQLiteUpgradeAddsComplaints opens a ledger as it was before the
// complaints migration (0002 rolled back by hand) and checks that reopening
// applies it without touching the money already there.
func TestSQLiteUpgradeAddsComplaints(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ledger.db")
	s, err := ledger.OpenSQLite(ctx, path, ledger.SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l := ledger.New(s, ledger.Config{})
	for _, id := range []ledger.AccountID{"a", "b"} {
		if err := l.CreateAccount(ctx, id, ledger.KindCustomer, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Mint(ctx, "m", "a", 42); err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `DROP TABLE complaints; DELETE FROM schema_migrations WHERE version = 2`); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err = ledger.OpenSQLite(ctx, path, ledger.SQLiteOptions{})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	l = ledger.New(s, ledger.Config{})
	if minted, sum, err := l.Audit(ctx); err != nil || minted != 42 || sum != 42 {
		t.Fatalf("audit after upgrade: %d, %d, %v", minted, sum, err)
	}
	c := ledger.Complaint{Complainant: "b", Accused: "a", InfoHash: "0123456789abcdef0123456789abcdef01234567",
		Owed: 5, Paid: 1, Evidence: []byte(`{}`), Assessment: []byte(`{}`)}
	if _, err := l.FileComplaint(ctx, "k", c, time.Now()); err != nil {
		t.Fatalf("complaint after upgrade: %v", err)
	}
}
