-- Job leases: each unfinished job is followed by one process at a time. The process named in
-- lease_owner follows it and renews lease_until while it does; once that moment has passed the
-- process is taken for dead and another may claim the job. Both are set together or not at all.
-- (job_records selects jobs.*, which SQLite expands when the view is used: it shows them too.)

ALTER TABLE jobs ADD COLUMN lease_owner TEXT;

ALTER TABLE jobs ADD COLUMN lease_until TEXT
    CHECK ((lease_owner IS NULL) = (lease_until IS NULL));
