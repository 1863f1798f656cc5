package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// SQLiteStore keeps the ledger in one SQLite file (pure Go driver).
//
// Writes go through a single connection whose transactions start with
// BEGIN IMMEDIATE: they queue in database/sql's pool instead of racing for
// SQLite's write lock, so within one process they never see SQLITE_BUSY and
// never deadlock on a read-to-write lock upgrade. Reads (View) use a small
// separate pool; WAL mode lets them run beside the writer on a consistent
// snapshot. busy_timeout covers another process holding the file (e.g. a
// crashed broker's successor starting up); what still ends in BUSY is
// retried a bounded number of times.
type SQLiteStore struct {
	w, r *sql.DB
	// wstmts caches prepared statements on the writer connection; modernc
	// parses every unprepared statement, which costs more than executing
	// the ledger's short statements.
	wstmts map[string]*sql.Stmt
	once   sync.Once
}

// SQLiteOptions tune an SQLite store.
type SQLiteOptions struct {
	// Synchronous is SQLite's synchronous setting. The default "NORMAL" is
	// safe against a killed process (WAL commits reach the OS before
	// COMMIT returns) but may lose the last commits on power loss, though
	// never consistency; "FULL" fsyncs every commit and is far slower.
	Synchronous string
	// BusyTimeout is how long a connection waits for another process's
	// lock. Defaults to 5 s.
	BusyTimeout time.Duration
	// Readers is the number of read connections. Defaults to 4.
	Readers int
}

// OpenSQLite opens (creating if needed) the ledger database at path and
// applies pending migrations.
func OpenSQLite(ctx context.Context, path string, opts SQLiteOptions) (*SQLiteStore, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("%w: sqlite path %q must be non-empty without '?' or '#'", ErrInvalid, path)
	}
	if opts.Synchronous == "" {
		opts.Synchronous = "NORMAL"
	}
	switch strings.ToUpper(opts.Synchronous) {
	case "OFF", "NORMAL", "FULL", "EXTRA":
	default:
		return nil, fmt.Errorf("%w: sqlite synchronous %q", ErrInvalid, opts.Synchronous)
	}
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = 5 * time.Second
	}
	if opts.Readers <= 0 {
		opts.Readers = 4
	}
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", opts.BusyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous("+opts.Synchronous+")")
	q.Add("_pragma", "foreign_keys(1)")
	wq := url.Values{"_txlock": {"immediate"}}
	for k, v := range q {
		wq[k] = v
	}
	w, err := sql.Open("sqlite", path+"?"+wq.Encode())
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	s := &SQLiteStore{w: w, wstmts: map[string]*sql.Stmt{}}
	// Migrate through the writer before opening readers, so that the
	// first connection sets WAL mode while nothing else has the file open.
	if err := s.migrate(ctx); err != nil {
		w.Close()
		return nil, err
	}
	rq := url.Values{}
	for k, v := range q {
		rq[k] = v
	}
	rq.Add("_pragma", "query_only(1)")
	r, err := sql.Open("sqlite", path+"?"+rq.Encode())
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	r.SetMaxOpenConns(opts.Readers)
	r.SetMaxIdleConns(opts.Readers)
	s.r = r
	for _, q := range allQueries {
		st, err := w.PrepareContext(ctx, q)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("prepare %q: %w", q, err)
		}
		s.wstmts[q] = st
	}
	return s, nil
}

// migrate applies pending migrations, each in its own IMMEDIATE
// transaction so two processes starting at once apply each one once.
func (s *SQLiteStore) migrate(ctx context.Context) error {
	ms, err := loadMigrations("sqlite")
	if err != nil {
		return err
	}
	if _, err := s.w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	for _, m := range ms {
		err := runRetrying(ctx, sqliteRetryable, sqliteUnique, func() error {
			tx, err := s.w.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			defer tx.Rollback()
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, m.version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied) VALUES (?, ?, ?)`,
				m.version, m.name, time.Now().UnixNano()); err != nil {
				return err
			}
			return tx.Commit()
		})
		if err != nil {
			return fmt.Errorf("apply migration %s: %w", m.name, err)
		}
	}
	return nil
}

// InTx runs fn in an IMMEDIATE transaction on the writer connection,
// retrying on SQLITE_BUSY (see Store).
func (s *SQLiteStore) InTx(ctx context.Context, fn func(Tx) error) error {
	return runRetrying(ctx, sqliteRetryable, sqliteUnique, func() error {
		tx, err := s.w.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		if err := fn(&sqlTx{c: &sqliteConn{tx: tx, stmts: s.wstmts}}); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		return nil
	})
}

// View runs fn in a read transaction on a reader connection; in WAL mode
// it sees the snapshot of its first read.
func (s *SQLiteStore) View(ctx context.Context, fn func(Tx) error) error {
	return runRetrying(ctx, sqliteRetryable, sqliteUnique, func() error {
		tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
		if err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		defer tx.Rollback()
		return fn(&sqlTx{c: &sqliteConn{tx: tx}})
	})
}

// Close closes both connection pools.
func (s *SQLiteStore) Close() error {
	var err error
	s.once.Do(func() {
		for _, st := range s.wstmts {
			st.Close()
		}
		if s.r != nil {
			err = s.r.Close()
		}
		err = errors.Join(err, s.w.Close())
	})
	return err
}

// sqliteConn adapts a database/sql transaction to conn.
type sqliteConn struct {
	tx    *sql.Tx
	stmts map[string]*sql.Stmt // nil for readers
}

func (c *sqliteConn) stmt(ctx context.Context, q string) *sql.Stmt {
	if st, ok := c.stmts[q]; ok {
		return c.tx.StmtContext(ctx, st)
	}
	return nil
}

func (c *sqliteConn) exec(ctx context.Context, q string, args ...any) (int64, error) {
	var res sql.Result
	var err error
	if st := c.stmt(ctx, q); st != nil {
		res, err = st.ExecContext(ctx, args...)
	} else {
		res, err = c.tx.ExecContext(ctx, q, args...)
	}
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (c *sqliteConn) queryRow(ctx context.Context, q string, args ...any) row {
	if st := c.stmt(ctx, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return c.tx.QueryRowContext(ctx, q, args...)
}

func (c *sqliteConn) query(ctx context.Context, q string, args ...any) (rows, error) {
	var rs *sql.Rows
	var err error
	if st := c.stmt(ctx, q); st != nil {
		rs, err = st.QueryContext(ctx, args...)
	} else {
		rs, err = c.tx.QueryContext(ctx, q, args...)
	}
	if err != nil {
		return nil, err
	}
	return sqlRows{rs}, nil
}

func (c *sqliteConn) isNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }

// lockSuffix is empty: an IMMEDIATE transaction already holds SQLite's
// single write lock, which serialises everything a row lock would.
func (c *sqliteConn) lockSuffix() string { return "" }

// sqlRows adapts *sql.Rows, whose Close returns an error, to rows.
type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { r.Rows.Close() }

// sqliteCode returns the primary result code of a driver error, or 0.
func sqliteCode(err error) int {
	var e *sqlite.Error
	if errors.As(err, &e) {
		return e.Code() & 0xff
	}
	return 0
}

// sqliteRetryable reports errors worth running the transaction again for.
func sqliteRetryable(err error) bool {
	switch sqliteCode(err) {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return true
	}
	return false
}

// sqliteUnique reports a UNIQUE or PRIMARY KEY violation. With one writer
// there are no races for a retry to settle, so it is not retried; the
// ledger reads before it inserts, and a violation that still happens is
// reported as ErrConflict.
func sqliteUnique(err error) bool {
	var e *sqlite.Error
	if errors.As(err, &e) {
		switch e.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return true
		}
	}
	return false
}
