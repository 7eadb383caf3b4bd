-- The local queue and learned timing (bot.domain.queue, bot.domain.timing): the `queued` state,
-- when a job first joined the queue (a requeue keeps its place), how many submits it began (a
-- task that failed with a temporary code is submitted once more) and the task that failed then,
-- a log of submits (the account's per-minute limit is counted from it, in the same transaction
-- that admits a job) and each finished job's timings per shape.
--
-- SQLite cannot change a CHECK constraint in place, so the jobs table is rebuilt the way
-- 003_job_lifecycle.sql explains (same name, foreign keys deferred, the ledger untouched).

PRAGMA defer_foreign_keys = ON;

DROP VIEW job_records;

CREATE TEMP TABLE jobs_v6 AS SELECT * FROM jobs;

DROP TABLE jobs;

CREATE TABLE jobs (
    id                     INTEGER PRIMARY KEY,
    guild_id               INTEGER NOT NULL,
    channel_id             INTEGER NOT NULL,
    member_id              INTEGER NOT NULL,
    request_json           TEXT    NOT NULL,
    price_micro            INTEGER NOT NULL CHECK (price_micro >= 0),
    period_key             TEXT    NOT NULL,
    state                  TEXT    NOT NULL CHECK (state IN (
        'reserved', 'queued', 'submitting', 'uncertain', 'submitted', 'ready', 'posting',
        'delivered', 'failed', 'closed'
    )),
    failure_kind           TEXT,
    prediction_id          TEXT,
    wavespeed_status       TEXT,
    output_url             TEXT,
    has_nsfw               INTEGER NOT NULL DEFAULT 0 CHECK (has_nsfw IN (0, 1)),
    inference_ms           INTEGER,
    error_code             INTEGER,
    error_message          TEXT,
    result_channel_id      INTEGER,
    result_message_id      INTEGER,
    post_attempts          INTEGER NOT NULL DEFAULT 0 CHECK (post_attempts >= 0),
    created_at             TEXT    NOT NULL,
    submit_started_at      TEXT,
    submit_ended_at        TEXT,
    hold_until             TEXT,
    submitted_at           TEXT,
    finished_at            TEXT,
    delivered_at           TEXT,
    queued_at              TEXT,
    attempts               INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    retried_prediction_id  TEXT,
    lease_owner            TEXT,
    lease_until            TEXT,
    interaction_app_id     INTEGER,
    interaction_token      TEXT,
    interaction_expires_at TEXT,
    CHECK ((lease_owner IS NULL) = (lease_until IS NULL)),
    CHECK ((interaction_app_id IS NULL) = (interaction_token IS NULL)
           AND (interaction_token IS NULL) = (interaction_expires_at IS NULL)
           AND (interaction_token IS NULL OR state NOT IN ('delivered', 'closed'))),
    -- a job that ended without a video says why; no other job has a failure kind
    CHECK ((failure_kind IS NOT NULL) = (state IN ('failed', 'closed'))),
    -- an uncertain submit is always held with a deadline
    CHECK (state != 'uncertain' OR hold_until IS NOT NULL),
    -- a queued job has its place in the queue
    CHECK (state != 'queued' OR queued_at IS NOT NULL)
) STRICT;

-- Jobs already past `reserved` were submitted once (the version before counted nothing).
INSERT INTO jobs (
    id, guild_id, channel_id, member_id, request_json, price_micro, period_key, state,
    failure_kind, prediction_id, wavespeed_status, output_url, has_nsfw, inference_ms,
    error_code, error_message, result_channel_id, result_message_id, post_attempts, created_at,
    submit_started_at, submit_ended_at, hold_until, submitted_at, finished_at, delivered_at,
    attempts, lease_owner, lease_until, interaction_app_id, interaction_token,
    interaction_expires_at
)
SELECT
    id, guild_id, channel_id, member_id, request_json, price_micro, period_key, state,
    failure_kind, prediction_id, wavespeed_status, output_url, has_nsfw, inference_ms,
    error_code, error_message, result_channel_id, result_message_id, post_attempts, created_at,
    submit_started_at, submit_ended_at, hold_until, submitted_at, finished_at, delivered_at,
    CASE WHEN submit_started_at IS NOT NULL THEN 1 ELSE 0 END,
    lease_owner, lease_until, interaction_app_id, interaction_token, interaction_expires_at
FROM temp.jobs_v6;

DROP TABLE temp.jobs_v6;

CREATE INDEX jobs_by_member ON jobs (guild_id, member_id, state);
CREATE INDEX jobs_unfinished ON jobs (id) WHERE state NOT IN ('delivered', 'closed');
CREATE UNIQUE INDEX jobs_by_prediction ON jobs (prediction_id) WHERE prediction_id IS NOT NULL;
-- the queue and what is at WaveSpeed, read every second while jobs wait
CREATE INDEX jobs_waiting ON jobs (state) WHERE state IN ('queued', 'submitting', 'uncertain', 'submitted');
CREATE INDEX jobs_by_retried_prediction ON jobs (retried_prediction_id)
    WHERE retried_prediction_id IS NOT NULL;

CREATE VIEW job_records AS
SELECT
    jobs.*,
    (SELECT ledger.kind FROM ledger
     WHERE ledger.job_id = jobs.id AND ledger.kind IN ('charge', 'refund')) AS settlement
FROM jobs;

-- One row per submit begun (written in the transaction that admits the job): the per-minute
-- limit counts these, and a server's or member's latest turn is read from them.
-- Who asked is copied in, so that a server's latest turn is read without a join.
CREATE TABLE submits (
    id        INTEGER PRIMARY KEY,
    job_id    INTEGER NOT NULL REFERENCES jobs (id),
    guild_id  INTEGER NOT NULL,
    member_id INTEGER NOT NULL,
    at        TEXT    NOT NULL
) STRICT;

CREATE INDEX submits_by_time ON submits (at);
CREATE INDEX submits_by_guild ON submits (guild_id, at);

-- Each job's timings once its video is ready, for ETAs and polling (bot.domain.timing).
CREATE TABLE job_timings (
    job_id        INTEGER PRIMARY KEY REFERENCES jobs (id),
    shape         TEXT    NOT NULL,
    local_wait_s  REAL    NOT NULL CHECK (local_wait_s >= 0),
    queue_s       REAL    NOT NULL CHECK (queue_s >= 0),
    generation_s  REAL    NOT NULL CHECK (generation_s >= 0),
    recorded_at   TEXT    NOT NULL
) STRICT;

CREATE INDEX job_timings_by_shape ON job_timings (shape, job_id);
