-- A job as the code sees it (JobRecord): the jobs row plus how it was settled, from the ledger.

CREATE VIEW job_records AS
SELECT
    jobs.*,
    (SELECT ledger.kind FROM ledger
     WHERE ledger.job_id = jobs.id AND ledger.kind IN ('charge', 'refund')) AS settlement
FROM jobs;
