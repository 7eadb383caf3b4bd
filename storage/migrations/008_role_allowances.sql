-- Role tiers: members holding a role get that role's allowance per period (the highest of their
-- roles' tiers), unless an admin set their own (a `limit` ledger row), which always wins.
-- Append-only like the ledger: every change is a row with who made it and when, the latest row
-- of a (server, role) is its tier, and a row with no amount clears it. Role ids are Discord's,
-- a column of their own: never a member_id.

CREATE TABLE role_allowances (
    id           INTEGER PRIMARY KEY,
    guild_id     INTEGER NOT NULL,
    role_id      INTEGER NOT NULL CHECK (role_id > 0),
    amount_micro INTEGER CHECK (amount_micro >= 0),  -- NULL: the tier was cleared
    actor_id     INTEGER NOT NULL,
    created_at   TEXT    NOT NULL
) STRICT;

-- the latest row of a role, and of every role of a server
CREATE INDEX role_allowances_latest ON role_allowances (guild_id, role_id, id);

CREATE TRIGGER role_allowances_no_update BEFORE UPDATE ON role_allowances
BEGIN
    SELECT RAISE(ABORT, 'role_allowances rows are append-only');
END;

CREATE TRIGGER role_allowances_no_delete BEFORE DELETE ON role_allowances
BEGIN
    SELECT RAISE(ABORT, 'role_allowances rows are append-only');
END;
