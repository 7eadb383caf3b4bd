-- Balances as running totals, updated in the same transaction as each ledger row, so that a
-- reservation is one conditional update per budget instead of a sum over the period's ledger.
-- The ledger stays the source of truth: `wanbot audit` recomputes these rows from it.
--
-- A member's row (member_id > 0) counts that member's grants, charges and held reservations; the
-- server's row (member_id 0) counts the grants made to the server and every member's charges and
-- held reservations. The allowance is not here: it is the latest `limit` row, in any period.

CREATE TABLE balances (
    guild_id   INTEGER NOT NULL,
    member_id  INTEGER NOT NULL,  -- 0 = the server as a whole
    period_key TEXT    NOT NULL,
    granted    INTEGER NOT NULL DEFAULT 0,
    spent      INTEGER NOT NULL DEFAULT 0 CHECK (spent >= 0),
    held       INTEGER NOT NULL DEFAULT 0 CHECK (held >= 0),
    PRIMARY KEY (guild_id, member_id, period_key)
) STRICT, WITHOUT ROWID;

CREATE VIEW balances_from_ledger AS
SELECT guild_id, member_id, period_key,
       SUM(CASE WHEN kind = 'grant' THEN amount_micro ELSE 0 END) AS granted,
       SUM(CASE WHEN kind = 'charge' THEN amount_micro ELSE 0 END) AS spent,
       SUM(CASE kind WHEN 'reserve' THEN amount_micro
                     WHEN 'charge' THEN -amount_micro
                     WHEN 'refund' THEN -amount_micro
                     ELSE 0 END) AS held
FROM (
    -- each member's own rows
    SELECT guild_id, member_id, period_key, kind, amount_micro FROM ledger
    WHERE member_id != 0 AND kind != 'limit'
    UNION ALL
    -- the server's: its grants, and every job's money
    SELECT guild_id, 0, period_key, kind, amount_micro FROM ledger
    WHERE (member_id = 0 AND kind = 'grant') OR kind IN ('reserve', 'charge', 'refund')
)
GROUP BY guild_id, member_id, period_key;

INSERT INTO balances (guild_id, member_id, period_key, granted, spent, held)
SELECT guild_id, member_id, period_key, granted, spent, held FROM balances_from_ledger;
