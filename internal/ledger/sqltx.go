package ledger

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// The SQL both stores share. Placeholders are written "?" and rewritten to
// "$n" for PostgreSQL; SELECTs that lock get the dialect's lock suffix.
const (
	qAccount       = `SELECT kind, pubkey, balance FROM accounts WHERE id = ?`
	qAccountByKey  = `SELECT id, kind, pubkey, balance FROM accounts WHERE pubkey = ?`
	qInsertAccount = `INSERT INTO accounts (id, kind, pubkey, balance, created) VALUES (?, ?, ?, 0, ?)`
	// qDebit takes money out only if the account stays non-negative (or,
	// for issuance, at or above -MaxInt64, so that everything minted still
	// fits in an int64): the check and the update are one statement, so
	// concurrent debits cannot both pass a stale check.
	qDebit = `UPDATE accounts SET balance = balance - ?
		WHERE id = ? AND ((kind = 'issuance' AND balance >= ?) OR (kind <> 'issuance' AND balance >= ?))`
	qCredit         = `UPDATE accounts SET balance = balance + ? WHERE id = ? AND balance <= ?`
	qInsertTransfer = `INSERT INTO transfers (from_acct, to_acct, amount, ref, created) VALUES (?, ?, ?, ?, ?)`
	qChannel        = `SELECT payer, payee, root, chain_len, unit, expiry, redeemed, last_pre, state FROM channels WHERE id = ?`
	qInsertChannel  = `INSERT INTO channels (id, payer, payee, root, chain_len, unit, expiry, redeemed, last_pre, state, created)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	qUpdateChannel   = `UPDATE channels SET redeemed = ?, last_pre = ?, state = ? WHERE id = ?`
	qExpiredChannels = `SELECT id FROM channels WHERE state = 'open' AND expiry <= ? ORDER BY expiry LIMIT ?`
	qIdem            = `SELECT fingerprint, result, created FROM idempotency WHERE idem_key = ?`
	qInsertIdem      = `INSERT INTO idempotency (idem_key, fingerprint, result, created) VALUES (?, ?, ?, ?)`

	qInsertComplaint = `INSERT INTO complaints (id, complainant, accused, info_hash, owed, paid, evidence, assessment, created)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`
	qComplaint         = `SELECT ` + complaintCols + ` FROM complaints WHERE id = ?`
	qComplaintsAgainst = `SELECT ` + complaintCols + ` FROM complaints WHERE accused = ? ORDER BY created DESC, id DESC LIMIT ?`
	qComplaintsAll     = `SELECT ` + complaintCols + ` FROM complaints ORDER BY created DESC, id DESC LIMIT ?`
	qCountComplaintsBy = `SELECT COUNT(*) FROM complaints WHERE complainant = ? AND created >= ?`

	qAuditIssuance = `SELECT balance FROM accounts WHERE id = 'issuance'`
	qAuditOthers   = `SELECT CAST(COALESCE(SUM(balance), 0) AS BIGINT) FROM accounts WHERE kind <> 'issuance'`
	qAuditMinted   = `SELECT CAST(COALESCE(SUM(CASE WHEN from_acct = 'issuance' THEN amount ELSE -amount END), 0) AS BIGINT)
		FROM transfers WHERE from_acct = 'issuance' OR to_acct = 'issuance'`
	qAuditJournal = `SELECT COUNT(*) FROM accounts a LEFT JOIN (
			SELECT acct, SUM(delta) AS net FROM (
				SELECT to_acct AS acct, amount AS delta FROM transfers
				UNION ALL
				SELECT from_acct AS acct, -amount AS delta FROM transfers
			) j GROUP BY acct
		) n ON n.acct = a.id
		WHERE a.balance <> COALESCE(n.net, 0)`
	qAuditEscrow = `SELECT COUNT(*) FROM channels c LEFT JOIN accounts a ON a.id = 'escrow:' || c.id
		WHERE COALESCE(a.balance, -1) <> CASE WHEN c.state = 'open' THEN (c.chain_len - c.redeemed) * c.unit ELSE 0 END`
	qAuditNegative = `SELECT COUNT(*) FROM accounts WHERE kind <> 'issuance' AND balance < 0`
)

// complaintCols are the complaint columns in the order scanComplaint reads.
const complaintCols = `id, complainant, accused, info_hash, owed, paid, evidence, assessment, created`

// allQueries lists every statement, so a store can prepare them up front.
var allQueries = []string{
	qAccount, qAccountByKey, qInsertAccount, qDebit, qCredit, qInsertTransfer,
	qChannel, qInsertChannel, qUpdateChannel, qExpiredChannels, qIdem, qInsertIdem,
	qInsertComplaint, qComplaint, qCountComplaintsBy,
}

// rebindDollar rewrites "?" placeholders as PostgreSQL's "$1", "$2"...
// The ledger's statements contain no "?" inside string literals.
func rebindDollar(q string) string {
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// row is a single-row query result.
type row interface {
	Scan(dest ...any) error
}

// rows is a multi-row query result.
type rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// conn is the little a store's transaction must offer sqlTx.
type conn interface {
	// exec runs a statement and returns the number of rows it affected.
	exec(ctx context.Context, q string, args ...any) (int64, error)
	// queryRow runs a query expected to return at most one row; Scan
	// reports a missing row with an error satisfying isNoRows.
	queryRow(ctx context.Context, q string, args ...any) row
	// query runs a query returning rows.
	query(ctx context.Context, q string, args ...any) (rows, error)
	// isNoRows tells whether err means "no row".
	isNoRows(err error) bool
	// lockSuffix is appended to a SELECT to lock its rows ("" when the
	// whole transaction already holds the write lock).
	lockSuffix() string
}

// sqlTx implements Tx over either store's conn.
type sqlTx struct {
	c conn
}

// nullBytes maps an empty key to SQL NULL, which both drivers then store
// as NULL rather than an empty blob (NULLs do not clash in a UNIQUE index).
func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// Account implements Tx.
func (t *sqlTx) Account(ctx context.Context, id AccountID) (Account, error) {
	a := Account{ID: id}
	var kind string
	err := t.c.queryRow(ctx, qAccount, string(id)).Scan(&kind, &a.PubKey, &a.Balance)
	if t.c.isNoRows(err) {
		return Account{}, fmt.Errorf("account %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Account{}, fmt.Errorf("read account %q: %w", id, err)
	}
	a.Kind = Kind(kind)
	return a, nil
}

// AccountByKey implements Tx.
func (t *sqlTx) AccountByKey(ctx context.Context, pubKey []byte) (Account, error) {
	var a Account
	var id, kind string
	err := t.c.queryRow(ctx, qAccountByKey, pubKey).Scan(&id, &kind, &a.PubKey, &a.Balance)
	if t.c.isNoRows(err) {
		return Account{}, fmt.Errorf("account for key: %w", ErrNotFound)
	}
	if err != nil {
		return Account{}, fmt.Errorf("read account by key: %w", err)
	}
	a.ID, a.Kind = AccountID(id), Kind(kind)
	return a, nil
}

// InsertAccount implements Tx.
func (t *sqlTx) InsertAccount(ctx context.Context, a Account, at time.Time) error {
	if _, err := t.c.exec(ctx, qInsertAccount, string(a.ID), string(a.Kind), nullBytes(a.PubKey), at.UnixNano()); err != nil {
		return fmt.Errorf("insert account %q: %w", a.ID, err)
	}
	return nil
}

// Transfer implements Tx.
func (t *sqlTx) Transfer(ctx context.Context, tr Transfer) error {
	if tr.Amount <= 0 {
		return fmt.Errorf("%w: transfer amount %d must be positive", ErrInvalid, tr.Amount)
	}
	if tr.From == tr.To {
		return fmt.Errorf("%w: transfer from %q to itself", ErrInvalid, tr.From)
	}
	n, err := t.c.exec(ctx, qDebit, tr.Amount, string(tr.From), tr.Amount-math.MaxInt64, tr.Amount)
	if err != nil {
		return fmt.Errorf("debit %q: %w", tr.From, err)
	}
	if n == 0 {
		a, err := t.Account(ctx, tr.From)
		if err != nil {
			return err
		}
		if a.Kind == KindIssuance {
			return fmt.Errorf("%w: issuing %d more", ErrOverflow, tr.Amount)
		}
		return fmt.Errorf("%w: %q holds %d, needs %d", ErrInsufficientFunds, tr.From, a.Balance, tr.Amount)
	}
	if _, err := t.c.exec(ctx, qInsertTransfer, string(tr.From), string(tr.To), tr.Amount, tr.Ref, tr.At.UnixNano()); err != nil {
		return fmt.Errorf("journal transfer %q: %w", tr.Ref, err)
	}
	// The credit comes last: in PostgreSQL it locks the payee's row until
	// commit, and shared payees (the fee account) should be held as
	// briefly as possible.
	n, err = t.c.exec(ctx, qCredit, tr.Amount, string(tr.To), math.MaxInt64-tr.Amount)
	if err != nil {
		return fmt.Errorf("credit %q: %w", tr.To, err)
	}
	if n == 0 {
		if _, err := t.Account(ctx, tr.To); err != nil {
			return err
		}
		return fmt.Errorf("%w: crediting %d to %q", ErrOverflow, tr.Amount, tr.To)
	}
	return nil
}

// Channel implements Tx.
func (t *sqlTx) Channel(ctx context.Context, id string, forUpdate bool) (Channel, error) {
	q := qChannel
	if forUpdate {
		q += t.c.lockSuffix()
	}
	ch := Channel{ID: id}
	var payer, payee string
	var root, last []byte
	var expiry int64
	err := t.c.queryRow(ctx, q, id).Scan(&payer, &payee, &root, &ch.Length, &ch.Unit, &expiry, &ch.Redeemed, &last, &ch.State)
	if t.c.isNoRows(err) {
		return Channel{}, fmt.Errorf("channel %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Channel{}, fmt.Errorf("read channel %s: %w", id, err)
	}
	if len(root) != 32 || len(last) != 32 {
		return Channel{}, fmt.Errorf("channel %s: %w: hash column not 32 bytes", id, ErrCorrupt)
	}
	ch.Payer, ch.Payee = AccountID(payer), AccountID(payee)
	copy(ch.Root[:], root)
	copy(ch.Last[:], last)
	ch.Expiry = time.Unix(0, expiry).UTC()
	return ch, nil
}

// InsertChannel implements Tx.
func (t *sqlTx) InsertChannel(ctx context.Context, c Channel, at time.Time) error {
	_, err := t.c.exec(ctx, qInsertChannel, c.ID, string(c.Payer), string(c.Payee), c.Root[:], c.Length, c.Unit,
		c.Expiry.UnixNano(), c.Redeemed, c.Last[:], c.State, at.UnixNano())
	if err != nil {
		return fmt.Errorf("insert channel %s: %w", c.ID, err)
	}
	return nil
}

// UpdateChannel implements Tx.
func (t *sqlTx) UpdateChannel(ctx context.Context, c Channel) error {
	n, err := t.c.exec(ctx, qUpdateChannel, c.Redeemed, c.Last[:], c.State, c.ID)
	if err != nil {
		return fmt.Errorf("update channel %s: %w", c.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("update channel %s: %w", c.ID, ErrNotFound)
	}
	return nil
}

// ExpiredChannels implements Tx.
func (t *sqlTx) ExpiredChannels(ctx context.Context, before time.Time, limit int) ([]string, error) {
	rs, err := t.c.query(ctx, qExpiredChannels, before.UnixNano(), int64(limit))
	if err != nil {
		return nil, fmt.Errorf("list expired channels: %w", err)
	}
	defer rs.Close()
	var ids []string
	for rs.Next() {
		var id string
		if err := rs.Scan(&id); err != nil {
			return nil, fmt.Errorf("list expired channels: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("list expired channels: %w", err)
	}
	return ids, nil
}

// Idempotency implements Tx.
func (t *sqlTx) Idempotency(ctx context.Context, key string) (IdemRecord, error) {
	r := IdemRecord{Key: key}
	var at int64
	err := t.c.queryRow(ctx, qIdem, key).Scan(&r.Fingerprint, &r.Result, &at)
	if t.c.isNoRows(err) {
		return IdemRecord{}, fmt.Errorf("idempotency key %q: %w", key, ErrNotFound)
	}
	if err != nil {
		return IdemRecord{}, fmt.Errorf("read idempotency key %q: %w", key, err)
	}
	r.At = time.Unix(0, at).UTC()
	return r, nil
}

// PutIdempotency implements Tx.
func (t *sqlTx) PutIdempotency(ctx context.Context, r IdemRecord) error {
	if _, err := t.c.exec(ctx, qInsertIdem, r.Key, r.Fingerprint, r.Result, r.At.UnixNano()); err != nil {
		return fmt.Errorf("insert idempotency key %q: %w", r.Key, err)
	}
	return nil
}

// Audit implements Tx.
func (t *sqlTx) Audit(ctx context.Context) (AuditSums, error) {
	var s AuditSums
	for _, q := range []struct {
		sql  string
		dest *int64
	}{
		{qAuditIssuance, &s.Issuance},
		{qAuditOthers, &s.Others},
		{qAuditMinted, &s.JournalMinted},
		{qAuditJournal, &s.JournalMismatches},
		{qAuditEscrow, &s.EscrowMismatches},
		{qAuditNegative, &s.Negative},
	} {
		err := t.c.queryRow(ctx, q.sql).Scan(q.dest)
		if t.c.isNoRows(err) {
			return AuditSums{}, fmt.Errorf("audit: %w: issuance account missing", ErrCorrupt)
		}
		if err != nil {
			return AuditSums{}, fmt.Errorf("audit: %w", err)
		}
	}
	return s, nil
}

// InsertComplaint implements Tx.
func (t *sqlTx) InsertComplaint(ctx context.Context, c Complaint) error {
	_, err := t.c.exec(ctx, qInsertComplaint, c.ID, string(c.Complainant), string(c.Accused), c.InfoHash,
		c.Owed, c.Paid, string(c.Evidence), string(c.Assessment), c.Created.UnixNano())
	if err != nil {
		return fmt.Errorf("insert complaint %s: %w", c.ID, err)
	}
	return nil
}

// scanComplaint reads one row of complaintCols.
func scanComplaint(r row) (Complaint, error) {
	var c Complaint
	var complainant, accused, evidence, assessment string
	var created int64
	if err := r.Scan(&c.ID, &complainant, &accused, &c.InfoHash, &c.Owed, &c.Paid, &evidence, &assessment, &created); err != nil {
		return Complaint{}, err
	}
	c.Complainant, c.Accused = AccountID(complainant), AccountID(accused)
	c.Evidence, c.Assessment = []byte(evidence), []byte(assessment)
	c.Created = time.Unix(0, created).UTC()
	return c, nil
}

// Complaint implements Tx.
func (t *sqlTx) Complaint(ctx context.Context, id string) (Complaint, error) {
	c, err := scanComplaint(t.c.queryRow(ctx, qComplaint, id))
	if t.c.isNoRows(err) {
		return Complaint{}, fmt.Errorf("complaint %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Complaint{}, fmt.Errorf("read complaint %s: %w", id, err)
	}
	return c, nil
}

// Complaints implements Tx.
func (t *sqlTx) Complaints(ctx context.Context, accused AccountID, limit int) ([]Complaint, error) {
	var rs rows
	var err error
	if accused == "" {
		rs, err = t.c.query(ctx, qComplaintsAll, int64(limit))
	} else {
		rs, err = t.c.query(ctx, qComplaintsAgainst, string(accused), int64(limit))
	}
	if err != nil {
		return nil, fmt.Errorf("list complaints: %w", err)
	}
	defer rs.Close()
	out := []Complaint{}
	for rs.Next() {
		c, err := scanComplaint(rs)
		if err != nil {
			return nil, fmt.Errorf("list complaints: %w", err)
		}
		out = append(out, c)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("list complaints: %w", err)
	}
	return out, nil
}

// CountComplaintsBy implements Tx.
func (t *sqlTx) CountComplaintsBy(ctx context.Context, complainant AccountID, since time.Time) (int64, error) {
	var n int64
	if err := t.c.queryRow(ctx, qCountComplaintsBy, string(complainant), since.UnixNano()).Scan(&n); err != nil {
		return 0, fmt.Errorf("count complaints by %q: %w", complainant, err)
	}
	return n, nil
}

// retryable classifies errors a store retries the whole transaction on;
// stores supply the driver-specific test.
type retryable func(error) bool

// maxAttempts bounds how often a store runs one transaction.
const maxAttempts = 12

// runRetrying runs attempt until it succeeds, fails with an error that is
// not retryable, or maxAttempts is reached, sleeping a short, growing,
// jittered pause between attempts. A unique-key violation that is left at
// the end (a race that kept recurring, or one a retry cannot cure) is
// reported as ErrConflict.
func runRetrying(ctx context.Context, isRetryable retryable, isUnique func(error) bool, attempt func() error) error {
	var err error
	for i := 0; ; i++ {
		err = attempt()
		if err == nil {
			return nil
		}
		if !isRetryable(err) || ctx.Err() != nil {
			break
		}
		if i == maxAttempts-1 {
			err = fmt.Errorf("gave up after %d attempts: %w", maxAttempts, err)
			break
		}
		if werr := backoff(ctx, i); werr != nil {
			return errors.Join(err, werr)
		}
	}
	if isUnique(err) && !errors.Is(err, ErrConflict) {
		return fmt.Errorf("%w: %w", ErrConflict, err)
	}
	return err
}
