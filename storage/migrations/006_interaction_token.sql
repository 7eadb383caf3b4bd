-- The interaction a job was asked for: its application id, its token (a credential Discord
-- accepts for 15 minutes) and when that runs out. Kept with the job so that whichever process
-- follows it (a restart, or another process taking it over) can still edit the member's private
-- status and send follow-ups. All three are set together or not at all, and a job in a final
-- state keeps none of them: the token does not linger in the database.
-- (job_records selects jobs.*, which SQLite expands when the view is used: it shows them too.)

ALTER TABLE jobs ADD COLUMN interaction_app_id INTEGER;

ALTER TABLE jobs ADD COLUMN interaction_token TEXT;

ALTER TABLE jobs ADD COLUMN interaction_expires_at TEXT
    CHECK ((interaction_app_id IS NULL) = (interaction_token IS NULL)
           AND (interaction_token IS NULL) = (interaction_expires_at IS NULL)
           AND (interaction_token IS NULL OR state NOT IN ('delivered', 'closed')));
