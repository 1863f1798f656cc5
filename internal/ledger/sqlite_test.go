package ledger_test

import (
	"context"
	"path/filepath"
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
