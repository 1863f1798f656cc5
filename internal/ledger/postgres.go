package ledger

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PostgresStore keeps the ledger in PostgreSQL through a pgx pool.
//
// Transactions run at READ COMMITTED with explicit row locks rather than
// SERIALIZABLE. Every invariant is enforced on rows the transaction locks:
// a channel is read with SELECT ... FOR UPDATE before it is redeemed or
// closed, and balances change only through a single conditional UPDATE
// ("balance >= amount"), which PostgreSQL re-evaluates on the newest row
// version after waiting for a concurrent writer. So concurrent redemptions
// of one channel queue on its row, and concurrent opens by one payer queue
// on the payer's row, each seeing the previous one's result. SERIALIZABLE
// would give the same guarantees but abort and retry transactions that
// merely touch the shared fee account or neighbouring index pages, which
// costs throughput on exactly the hot paths. Deadlocks (40P01),
// serialisation failures (40001) and unique-key races (23505, e.g. two
// requests with one new idempotency key) are retried a bounded number of
// times; after a unique-key race the retry finds the winner's row.
//
// Audit and other reads (View) run at REPEATABLE READ, READ ONLY, so the
// several sums Audit compares come from one snapshot.
type PostgresStore struct {
	pool  *pgxpool.Pool
	stmts map[string]string // see pgStatements
	once  sync.Once
}

// schemaName restricts schema names to plain identifiers, so one can be
// placed in SQL without quoting games.
var schemaName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// OpenPostgres connects to the database at dsn (a postgres:// URL or pgx
// keyword string), creates schema if it is not empty and does not exist,
// puts it first on every connection's search_path, and applies pending
// migrations. Tests give each run its own schema.
func OpenPostgres(ctx context.Context, dsn, schema string) (*PostgresStore, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgconn's parse errors already redact the password.
		return nil, fmt.Errorf("%w: postgres url: %w", ErrInvalid, err)
	}
	if schema != "" {
		if !schemaName.MatchString(schema) {
			return nil, fmt.Errorf("%w: schema name %q", ErrInvalid, schema)
		}
		cfg.ConnConfig.RuntimeParams["search_path"] = schema
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect postgres: %w", err)
	}
	s := &PostgresStore{pool: pool, stmts: pgStatements()}
	if schema != "" {
		// IF NOT EXISTS can still race with another process creating
		// the schema; the retry then sees it.
		err := runRetrying(ctx, pgRetryable, pgUnique, func() error {
			_, err := pool.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+schema)
			return err
		})
		if err != nil && !pgUnique(err) {
			pool.Close()
			return nil, fmt.Errorf("create schema %s: %w", schema, err)
		}
	}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// migrationLock is the advisory lock key that serialises migrators, so
// several brokers starting together apply each migration once.
const migrationLock = 0x466c6f6f64676174 // "Floodgat"

// migrate applies pending migrations, each in its own transaction under
// a transaction-scoped advisory lock.
func (s *PostgresStore) migrate(ctx context.Context) error {
	ms, err := loadMigrations("postgres")
	if err != nil {
		return err
	}
	for _, m := range ms {
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrationLock)); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
				version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied TIMESTAMPTZ NOT NULL DEFAULT now())`); err != nil {
				return err
			}
			var n int
			if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = $1`, m.version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			// The simple protocol runs a multi-statement script.
			if _, err := tx.Exec(ctx, m.sql, pgx.QueryExecModeSimpleProtocol); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name)
			return err
		})
		if err != nil {
			return fmt.Errorf("apply migration %s: %w", m.name, err)
		}
	}
	return nil
}

// InTx runs fn in a READ COMMITTED transaction, retrying on deadlocks,
// serialisation failures and unique-key races (see Store and the type
// comment for why row locks suffice).
func (s *PostgresStore) InTx(ctx context.Context, fn func(Tx) error) error {
	return s.run(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, fn)
}

// View runs fn in a REPEATABLE READ, READ ONLY transaction.
func (s *PostgresStore) View(ctx context.Context, fn func(Tx) error) error {
	return s.run(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, fn)
}

func (s *PostgresStore) run(ctx context.Context, opts pgx.TxOptions, fn func(Tx) error) error {
	return runRetrying(ctx, pgRetryable, pgUnique, func() error {
		return pgx.BeginTxFunc(ctx, s.pool, opts, func(tx pgx.Tx) error {
			return fn(&sqlTx{c: pgConn{tx: tx, stmts: s.stmts}})
		})
	})
}

// Close closes the pool.
func (s *PostgresStore) Close() error {
	s.once.Do(s.pool.Close)
	return nil
}

// pgConn adapts a pgx transaction to conn. pgx caches each statement's
// preparation per connection, so the statements are parsed once.
type pgConn struct {
	tx    pgx.Tx
	stmts map[string]string
}

// rebind returns q with PostgreSQL placeholders.
func (c pgConn) rebind(q string) string {
	if r, ok := c.stmts[q]; ok {
		return r
	}
	return rebindDollar(q)
}

func (c pgConn) exec(ctx context.Context, q string, args ...any) (int64, error) {
	tag, err := c.tx.Exec(ctx, c.rebind(q), args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

func (c pgConn) queryRow(ctx context.Context, q string, args ...any) row {
	return c.tx.QueryRow(ctx, c.rebind(q), args...)
}

func (c pgConn) query(ctx context.Context, q string, args ...any) (rows, error) {
	rs, err := c.tx.Query(ctx, c.rebind(q), args...)
	if err != nil {
		return nil, err
	}
	return rs, nil
}

func (c pgConn) isNoRows(err error) bool { return errors.Is(err, pgx.ErrNoRows) }

func (c pgConn) lockSuffix() string { return " FOR UPDATE" }

// pgStatements maps each of the ledger's statements to its "$n" form,
// computed once per store.
func pgStatements() map[string]string {
	m := map[string]string{}
	for _, q := range append(allQueries, qChannel+" FOR UPDATE", qAuditIssuance, qAuditOthers,
		qAuditMinted, qAuditJournal, qAuditEscrow, qAuditNegative) {
		m[q] = rebindDollar(q)
	}
	return m
}

// pgCode returns the SQLSTATE of a server error, or "".
func pgCode(err error) string {
	var e *pgconn.PgError
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// pgRetryable reports errors worth running the transaction again for.
func pgRetryable(err error) bool {
	switch pgCode(err) {
	case "40001", "40P01", "23505":
		return true
	}
	return false
}

// pgUnique reports a unique-key violation.
func pgUnique(err error) bool { return pgCode(err) == "23505" }

// postgresURL splits an optional "schema" query parameter (ours, not
// libpq's) off a postgres:// URL.
func postgresURL(raw string) (dsn, schema string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		// The parse error quotes the URL, password included; keep it out.
		return "", "", fmt.Errorf("%w: malformed postgres url", ErrInvalid)
	}
	q := u.Query()
	schema = q.Get("schema")
	q.Del("schema")
	u.RawQuery = q.Encode()
	return u.String(), schema, nil
}
