-- Jobs, the append-only budget ledger and per-server settings.
-- Money is integer micro-dollars; datetimes are ISO-8601 UTC text. STRICT tables refuse floats.

CREATE TABLE jobs (
    id                INTEGER PRIMARY KEY,
    guild_id          INTEGER NOT NULL,
    channel_id        INTEGER NOT NULL,
    member_id         INTEGER NOT NULL,
    request_json      TEXT    NOT NULL,
    price_micro       INTEGER NOT NULL CHECK (price_micro >= 0),
    period_key        TEXT    NOT NULL,
    status            TEXT    NOT NULL CHECK (
        status IN ('reserved', 'submitting', 'submitted', 'completed', 'failed', 'delivered')
    ),
    prediction_id     TEXT,
    wavespeed_status  TEXT,
    output_url        TEXT,
    has_nsfw          INTEGER NOT NULL DEFAULT 0 CHECK (has_nsfw IN (0, 1)),
    inference_ms      INTEGER,
    error_code        INTEGER,
    error_message     TEXT,
    result_message_id INTEGER,
    created_at        TEXT    NOT NULL,
    submitted_at      TEXT,
    finished_at       TEXT,
    delivered_at      TEXT
) STRICT;

-- in-flight count per member, recent jobs per member
CREATE INDEX jobs_by_member ON jobs (guild_id, member_id, status);
-- resume at start-up (the query must spell the predicate exactly like this to use it)
CREATE INDEX jobs_unfinished ON jobs (id) WHERE status != 'delivered';

CREATE TABLE ledger (
    id           INTEGER PRIMARY KEY,
    guild_id     INTEGER NOT NULL,
    member_id    INTEGER NOT NULL,  -- 0 = the server as a whole
    kind         TEXT    NOT NULL CHECK (kind IN ('reserve', 'charge', 'refund', 'grant', 'limit')),
    amount_micro INTEGER NOT NULL,
    period_key   TEXT    NOT NULL,
    job_id       INTEGER REFERENCES jobs (id),
    actor_id     INTEGER,
    note         TEXT,
    created_at   TEXT    NOT NULL,
    -- only a grant may be negative (it removes money)
    CHECK (kind = 'grant' OR amount_micro >= 0),
    -- reserve/charge/refund rows belong to a job; grant/limit rows never do
    CHECK ((kind IN ('reserve', 'charge', 'refund')) = (job_id IS NOT NULL))
) STRICT;

-- a job has at most one reservation and at most one settlement (a charge OR a refund)
CREATE UNIQUE INDEX ledger_one_reserve ON ledger (job_id) WHERE kind = 'reserve';
CREATE UNIQUE INDEX ledger_one_settlement ON ledger (job_id) WHERE kind IN ('charge', 'refund');
-- balances, usage and the CSV export
CREATE INDEX ledger_by_period ON ledger (guild_id, period_key, member_id);
-- the latest allowance of a member or server
CREATE INDEX ledger_limits ON ledger (guild_id, member_id, id) WHERE kind = 'limit';

CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'ledger rows are append-only');
END;

CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'ledger rows are append-only');
END;

CREATE TABLE guild_settings (
    guild_id INTEGER NOT NULL,
    key      TEXT    NOT NULL,
    value    TEXT    NOT NULL,
    PRIMARY KEY (guild_id, key)
) STRICT, WITHOUT ROWID;
