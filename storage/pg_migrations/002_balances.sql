-- Running balances: per server, member and period, what was granted, spent (charged) and is
-- held (reserved, not yet charged or refunded), so a reservation checks and takes its money with
-- one conditional UPDATE of a row instead of summing the ledger. The ledger stays the record:
-- `balances_from_ledger` recomputes every row from it (the audit compares the two), and fills the
-- table here from whatever the ledger already holds.
--
-- A member's row (member_id > 0) counts that member's grants, spent and held. The server's row
-- (member_id 0) counts EVERY member's spent and held, and the grants made to the server itself.
-- The allowance is not here: it is the latest `limit` row in any period (latest wins forever).

CREATE VIEW balances_from_ledger AS
WITH counted AS (
    -- a member's own rows
    SELECT guild_id, member_id, period_key, kind, amount_micro
    FROM ledger
    WHERE member_id <> 0 AND kind IN ('reserve', 'charge', 'refund', 'grant')
    UNION ALL
    -- the server's: every member's job rows, and the grants made to the server
    SELECT guild_id, 0, period_key, kind, amount_micro
    FROM ledger
    WHERE kind IN ('reserve', 'charge', 'refund') OR (kind = 'grant' AND member_id = 0)
)
SELECT
    guild_id,
    member_id,
    period_key,
    COALESCE(SUM(amount_micro) FILTER (WHERE kind = 'grant'), 0)::BIGINT AS granted,
    COALESCE(SUM(amount_micro) FILTER (WHERE kind = 'charge'), 0)::BIGINT AS spent,
    COALESCE(SUM(CASE kind WHEN 'reserve' THEN amount_micro
                           WHEN 'charge' THEN -amount_micro
                           WHEN 'refund' THEN -amount_micro END), 0)::BIGINT AS held
FROM counted
GROUP BY guild_id, member_id, period_key;

CREATE TABLE balances (
    guild_id   BIGINT NOT NULL,
    member_id  BIGINT NOT NULL,  -- 0 = the server as a whole
    period_key TEXT   NOT NULL,
    granted    BIGINT NOT NULL DEFAULT 0,  -- a grant may be negative
    spent      BIGINT NOT NULL DEFAULT 0 CHECK (spent >= 0),
    held       BIGINT NOT NULL DEFAULT 0 CHECK (held >= 0),
    PRIMARY KEY (guild_id, member_id, period_key)
);

INSERT INTO balances (guild_id, member_id, period_key, granted, spent, held)
SELECT guild_id, member_id, period_key, granted, spent, held FROM balances_from_ledger;
