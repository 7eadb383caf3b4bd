-- The job lifecycle of bot/domain/lifecycle.py: its states, the failure kind in a column of its
-- own, the submit window and hold deadline that reconcile an unanswered submit, where the video
-- was posted, and a bot-wide settings table (bot-wide values no longer borrow guild 0).
--
-- SQLite cannot change a CHECK constraint in place, so the jobs table is rebuilt. The ledger's
-- rows keep pointing at the same job ids. Foreign keys stay on (the migration runs inside a
-- transaction, where they cannot be switched off), so the rebuild keeps the parent's name:
-- dropping `jobs` counts every ledger row that points at it as a deferred violation, and only
-- inserting the rows back into a table named `jobs` counts them resolved before the commit checks.
-- (Building `jobs_v3` and renaming it into place would leave the count up: the commit would fail.)

PRAGMA defer_foreign_keys = ON;

DROP VIEW job_records;

CREATE TEMP TABLE jobs_v2 AS SELECT * FROM jobs;

DROP TABLE jobs;

CREATE TABLE jobs (
    id                INTEGER PRIMARY KEY,
    guild_id          INTEGER NOT NULL,
    channel_id        INTEGER NOT NULL,
    member_id         INTEGER NOT NULL,
    request_json      TEXT    NOT NULL,
    price_micro       INTEGER NOT NULL CHECK (price_micro >= 0),
    period_key        TEXT    NOT NULL,
    state             TEXT    NOT NULL CHECK (state IN (
        'reserved', 'submitting', 'uncertain', 'submitted', 'ready', 'posting',
        'delivered', 'failed', 'closed'
    )),
    failure_kind      TEXT,
    prediction_id     TEXT,
    wavespeed_status  TEXT,
    output_url        TEXT,
    has_nsfw          INTEGER NOT NULL DEFAULT 0 CHECK (has_nsfw IN (0, 1)),
    inference_ms      INTEGER,
    error_code        INTEGER,
    error_message     TEXT,
    result_channel_id INTEGER,
    result_message_id INTEGER,
    post_attempts     INTEGER NOT NULL DEFAULT 0 CHECK (post_attempts >= 0),
    created_at        TEXT    NOT NULL,
    submit_started_at TEXT,
    submit_ended_at   TEXT,
    hold_until        TEXT,
    submitted_at      TEXT,
    finished_at       TEXT,
    delivered_at      TEXT,
    -- a job that ended without a video says why; no other job has a failure kind
    CHECK ((failure_kind IS NOT NULL) = (state IN ('failed', 'closed'))),
    -- an uncertain submit is always held with a deadline
    CHECK (state != 'uncertain' OR hold_until IS NOT NULL)
) STRICT;

-- Rows written before this migration: `completed` was charged before delivery and is now `ready`
-- (its charge row stays; it is not written twice). A `delivered` row carried a video exactly when
-- it has no error message: every failure stored one, a video never did. (Its result message id
-- cannot tell: the command-line tool posts no message, so its videos have none.) The failure kind
-- is recovered once, here, from the fixed texts that version used; from now on it is stored,
-- never parsed.
INSERT INTO jobs (
    id, guild_id, channel_id, member_id, request_json, price_micro, period_key, state,
    failure_kind, prediction_id, wavespeed_status, output_url, has_nsfw, inference_ms,
    error_code, error_message, result_message_id, created_at, submit_started_at, submitted_at,
    finished_at, delivered_at
)
SELECT
    id, guild_id, channel_id, member_id, request_json, price_micro, period_key,
    CASE
        WHEN status = 'completed' THEN 'ready'
        WHEN status = 'delivered' AND error_message IS NULL THEN 'delivered'
        WHEN status = 'delivered' THEN 'closed'
        ELSE status
    END,
    CASE
        WHEN status = 'failed' OR (status = 'delivered' AND error_message IS NOT NULL) THEN
            CASE
                WHEN error_code = 1200 THEN 'moderation'
                WHEN error_code IN (1400, 1401, 1402)
                    OR error_message LIKE 'WaveSpeed rejected the request:%' THEN 'bad_input'
                WHEN error_message LIKE 'The bot restarted before%' THEN 'interrupted'
                WHEN error_message LIKE 'WaveSpeed did not confirm%' THEN 'hold_expired'
                WHEN error_message LIKE '%out of credit%' THEN 'out_of_credit'
                WHEN error_message LIKE '%API key was refused%' THEN 'bad_api_key'
                WHEN error_message LIKE 'WaveSpeed took too long%' THEN 'timed_out'
                WHEN error_message LIKE 'WaveSpeed is not answering%' THEN 'wavespeed_down'
                ELSE 'generation_failed'
            END
    END,
    prediction_id, wavespeed_status, output_url, has_nsfw, inference_ms, error_code,
    error_message, result_message_id, created_at,
    CASE WHEN status != 'reserved' THEN created_at END,
    submitted_at, finished_at, delivered_at
FROM temp.jobs_v2;

DROP TABLE temp.jobs_v2;

-- in-progress count per member, recent jobs per member
CREATE INDEX jobs_by_member ON jobs (guild_id, member_id, state);
-- resume at start-up (the query must spell the predicate exactly like this to use it)
CREATE INDEX jobs_unfinished ON jobs (id) WHERE state NOT IN ('delivered', 'closed');
-- a WaveSpeed task belongs to one job at most: reconciliation can never adopt it twice
CREATE UNIQUE INDEX jobs_by_prediction ON jobs (prediction_id) WHERE prediction_id IS NOT NULL;

CREATE VIEW job_records AS
SELECT
    jobs.*,
    (SELECT ledger.kind FROM ledger
     WHERE ledger.job_id = jobs.id AND ledger.kind IN ('charge', 'refund')) AS settlement
FROM jobs;

CREATE TABLE bot_settings (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
) STRICT, WITHOUT ROWID;

-- the command digest was the only bot-wide value kept under guild 0
INSERT INTO bot_settings (key, value)
SELECT key, value FROM guild_settings WHERE guild_id = 0 AND key = 'synced_command_digest';
DELETE FROM guild_settings WHERE guild_id = 0 AND key = 'synced_command_digest';
