package ledger_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

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
