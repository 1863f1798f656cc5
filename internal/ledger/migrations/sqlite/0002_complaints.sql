-- Complaints: an uploader's signed claim that an account did not pay for
-- what it was served. They are evidence for the provider and never move
-- money, so nothing here references the journal. evidence is what the
-- complainant submitted (JSON); assessment is the broker's cross-check of
-- it against the channels table at filing time (JSON). Times are
-- nanoseconds since the Unix epoch.
CREATE TABLE complaints (
	id          TEXT PRIMARY KEY,
	complainant TEXT NOT NULL REFERENCES accounts (id),
	accused     TEXT NOT NULL REFERENCES accounts (id),
	info_hash   TEXT NOT NULL CHECK (length(info_hash) = 40),
	owed        INTEGER NOT NULL CHECK (owed >= 0),
	paid        INTEGER NOT NULL CHECK (paid >= 0),
	evidence    TEXT NOT NULL,
	assessment  TEXT NOT NULL,
	created     INTEGER NOT NULL,
	CHECK (complainant <> accused)
);

-- The dashboard lists complaints against an account, newest first; the
-- per-complainant quota counts a complainant's recent complaints.
CREATE INDEX complaints_by_accused ON complaints (accused, created);
CREATE INDEX complaints_by_complainant ON complaints (complainant, created);
CREATE INDEX complaints_by_created ON complaints (created);
