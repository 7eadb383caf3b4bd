-- What the bot says to whoever asked for a job (SQLite's migration 9) depends on two things
-- Discord tells it only with the interaction: the member's locale (their private messages are in
-- their language) and the roles they held (those roles' tiers count for the balance their status
-- shows). Kept with the job, so that a process following it after a restart, or taking it over,
-- still speaks the member's language and shows the balance their reservation was checked
-- against. member_roles is a JSON array of role ids, as SQLite keeps it (so `wanbot migrate-db`
-- copies it as it is); a job asked for before this migration has none.

ALTER TABLE jobs
    ADD COLUMN member_locale TEXT,
    ADD COLUMN member_roles TEXT NOT NULL DEFAULT '[]'
        CONSTRAINT jobs_member_roles_is_a_list CHECK (json_typeof(member_roles::json) = 'array');

-- PostgreSQL expanded jobs.* when the view was made: make it again to show the new columns.
DROP VIEW job_records;

CREATE VIEW job_records AS
SELECT
    jobs.*,
    (SELECT ledger.kind FROM ledger
     WHERE ledger.job_id = jobs.id AND ledger.kind IN ('charge', 'refund')) AS settlement
FROM jobs;
