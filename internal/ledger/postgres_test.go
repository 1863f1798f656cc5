package ledger_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/floodgate-p2p/floodgate/internal/ledger"
	"github.com/floodgate-p2p/floodgate/internal/ledger/ledgertest"
)

// postgresURL returns the test server's URL from FLOODGATE_TEST_POSTGRES.
// Without it the PostgreSQL tests skip, except in CI (CI=true), where a
// silently skipped store would hide a broken setup, so they fail.
func postgresURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv("FLOODGATE_TEST_POSTGRES")
	if u == "" {
		if os.Getenv("CI") == "true" {
			tb.Fatal("FLOODGATE_TEST_POSTGRES is unset in CI; the ledger suite must run on PostgreSQL")
		}
		tb.Skip("FLOODGATE_TEST_POSTGRES unset (e.g. postgres://postgres@127.0.0.1:55432/postgres?sslmode=disable); skipping PostgreSQL store tests")
	}
	return u
}

// openPostgres opens a store in a fresh schema with a random name and
// drops the schema when the test ends.
func openPostgres(tb testing.TB) ledger.Store {
	tb.Helper()
	base := postgresURL(tb)
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		tb.Fatal(err)
	}
	schema := "ledgertest_" + hex.EncodeToString(b[:])
	ctx := context.Background()
	s, err := ledger.OpenPostgres(ctx, base, schema)
	if err != nil {
		tb.Fatalf("open postgres store: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("close postgres store: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return s
}

func TestPostgresStore(t *testing.T) {
	postgresURL(t) // skip (or fail in CI) once, not in every subtest
	ledgertest.Run(t, openPostgres)
}

// TestPostgresURLSchema checks that OpenStore honours the schema query
// parameter and that reopening an existing schema applies no migration
// twice.
func TestPostgresURLSchema(t *testing.T) {
	base := postgresURL(t)
	ctx := context.Background()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	schema := "ledgertest_url_" + hex.EncodeToString(b[:])
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	for range 2 {
		s, err := ledger.OpenStore(ctx, base+sep+"schema="+schema)
		if err != nil {
			t.Fatalf("open with schema: %v", err)
		}
		l := ledger.New(s, ledger.Config{})
		if err := l.CreateAccount(ctx, "a", ledger.KindCustomer, nil); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	files, err := os.ReadDir(filepath.Join("migrations", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT COUNT(*) FROM "+schema+".schema_migrations").Scan(&n); err != nil || n != len(files) {
		t.Fatalf("schema_migrations rows = %d, %v; want %d, one per migration", n, err, len(files))
	}
}

func BenchmarkPostgresRedeem(b *testing.B)         { ledgertest.BenchRedeem(b, openPostgres) }
func BenchmarkPostgresRedeemParallel(b *testing.B) { ledgertest.BenchRedeemParallel(b, openPostgres) }
func BenchmarkPostgresOpen(b *testing.B)           { ledgertest.BenchOpen(b, openPostgres) }
func BenchmarkPostgresOpenParallel(b *testing.B)   { ledgertest.BenchOpenParallel(b, openPostgres) }
