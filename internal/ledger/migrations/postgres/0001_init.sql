-- Accounts with cached balances. Only the issuance account may go
-- negative; the CHECK is the last line of defence behind the ledger code.
CREATE TABLE accounts (
	id      TEXT PRIMARY KEY,
	kind    TEXT NOT NULL CHECK (kind IN ('issuance', 'provider', 'customer', 'escrow', 'fees')),
	pubkey  BYTEA UNIQUE,
	balance BIGINT NOT NULL DEFAULT 0,
	created BIGINT NOT NULL,
	CHECK (kind = 'issuance' OR balance >= 0)
);

INSERT INTO accounts (id, kind, balance, created) VALUES ('issuance', 'issuance', 0, 0);

-- The journal: every movement of money. ref is unique so the same thing
-- (a mint key, a channel step, a refund) can never be paid twice.
CREATE TABLE transfers (
	id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	from_acct TEXT NOT NULL REFERENCES accounts (id),
	to_acct   TEXT NOT NULL REFERENCES accounts (id),
	amount    BIGINT NOT NULL CHECK (amount > 0),
	ref       TEXT NOT NULL UNIQUE,
	created   BIGINT NOT NULL,
	CHECK (from_acct <> to_acct)
);

-- Payment channels; times are nanoseconds since the Unix epoch.
CREATE TABLE channels (
	id        TEXT PRIMARY KEY,
	payer     TEXT NOT NULL REFERENCES accounts (id),
	payee     TEXT NOT NULL REFERENCES accounts (id),
	root      BYTEA NOT NULL CHECK (octet_length(root) = 32),
	chain_len BIGINT NOT NULL CHECK (chain_len > 0),
	unit      BIGINT NOT NULL CHECK (unit > 0),
	expiry    BIGINT NOT NULL,
	redeemed  BIGINT NOT NULL CHECK (redeemed >= 0 AND redeemed <= chain_len),
	last_pre  BYTEA NOT NULL CHECK (octet_length(last_pre) = 32),
	state     TEXT NOT NULL CHECK (state IN ('open', 'closed')),
	created   BIGINT NOT NULL
);

CREATE INDEX channels_open_by_expiry ON channels (expiry) WHERE state = 'open';

-- Completed idempotent calls.
CREATE TABLE idempotency (
	idem_key    TEXT PRIMARY KEY,
	fingerprint BYTEA NOT NULL,
	result      TEXT NOT NULL,
	created     BIGINT NOT NULL
);
