-- The interaction a job was asked for (SQLite's migration 6): its application id, its token (a
-- credential Discord accepts for 15 minutes) and when that runs out. Kept with the job so that
-- whichever process follows it (a restart, or another process taking it over) can still edit the
-- member's private status and send follow-ups. All three are set together or not at all, and a
-- job in a final state keeps none of them: the token does not linger in the database.

ALTER TABLE jobs
    ADD COLUMN interaction_app_id BIGINT,
    ADD COLUMN interaction_token TEXT,
    ADD COLUMN interaction_expires_at TIMESTAMPTZ,
    ADD CONSTRAINT jobs_interaction_whole CHECK (
        (interaction_app_id IS NULL) = (interaction_token IS NULL)
        AND (interaction_token IS NULL) = (interaction_expires_at IS NULL)),
    ADD CONSTRAINT jobs_interaction_cleared_when_final CHECK (
        interaction_token IS NULL OR state NOT IN ('delivered', 'closed'));

-- PostgreSQL expanded jobs.* when the view was made: make it again to show the new columns.
DROP VIEW job_records;

CREATE VIEW job_records AS
SELECT
    jobs.*,
    (SELECT ledger.kind FROM ledger
     WHERE ledger.job_id = jobs.id AND ledger.kind IN ('charge', 'refund')) AS settlement
FROM jobs;
