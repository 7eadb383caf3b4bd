-- What the bot says to whoever asked for a job depends on two things Discord tells it only with
-- the interaction: the member's locale (their private messages are in their language) and the
-- roles they held (those roles' tiers count for the balance their status shows). Kept with the
-- job, so that a process following it after a restart, or taking it over, still speaks the
-- member's language and shows the balance their reservation was checked against.
-- member_roles is a JSON array of role ids; a job asked for before this migration has none.
-- (job_records selects jobs.*, which SQLite expands when the view is used: it shows them too.)

ALTER TABLE jobs ADD COLUMN member_locale TEXT;

ALTER TABLE jobs ADD COLUMN member_roles TEXT NOT NULL DEFAULT '[]'
    CHECK (json_valid(member_roles) AND json_type(member_roles) = 'array');
