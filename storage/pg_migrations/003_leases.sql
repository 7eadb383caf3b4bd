-- Job leases (SQLite's migration 5): each unfinished job is followed by one process at a time.
-- The process named in lease_owner follows it and renews lease_until while it does; once that
-- moment has passed the process is taken for dead and another may claim the job.

ALTER TABLE jobs
    ADD COLUMN lease_owner TEXT,
    ADD COLUMN lease_until TIMESTAMPTZ,
    ADD CONSTRAINT jobs_lease_whole CHECK ((lease_owner IS NULL) = (lease_until IS NULL));

-- PostgreSQL expanded jobs.* when the view was made: make it again to show the new columns.
DROP VIEW job_records;

CREATE VIEW job_records AS
SELECT
    jobs.*,
    (SELECT ledger.kind FROM ledger
     WHERE ledger.job_id = jobs.id AND ledger.kind IN ('charge', 'refund')) AS settlement
FROM jobs;
