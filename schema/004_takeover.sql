-- 004: what a new leader needs to route exactly as the old one did.

-- A rule's name is unique among the rules in force; a removed rule keeps
-- its row for the history, and its name may be used again. (With the
-- plain UNIQUE of 002, a schedule removed and added again under the same
-- name was refused by the database after the operator had been told it
-- was added, and a new leader did not know it.)
ALTER TABLE schedules DROP CONSTRAINT schedules_name_key;
CREATE UNIQUE INDEX schedules_name_live ON schedules (name) WHERE removed_at IS NULL;
ALTER TABLE overflow_rules DROP CONSTRAINT overflow_rules_name_key;
CREATE UNIQUE INDEX overflow_rules_name_live ON overflow_rules (name) WHERE removed_at IS NULL;

-- Sites kept out of the rules after a move failed at their PBX and was
-- rolled back. One live row per site; readmission (an operator naming the
-- site again, or the end of the rule) sets cleared_at.
CREATE TABLE route_exclusions (
    id          bigserial PRIMARY KEY,
    site        text NOT NULL REFERENCES sites(slug),
    rule_kind   text NOT NULL,
    rule_id     bigint NOT NULL,
    reason      text NOT NULL DEFAULT '',
    excluded_at timestamptz NOT NULL,
    cleared_at  timestamptz,
    cleared_by  text
);
CREATE UNIQUE INDEX route_exclusions_live ON route_exclusions (site) WHERE cleared_at IS NULL;

-- Rows carry the time their event happened, passed by the controller, not
-- the time the row reached the database (which, for a write replayed from
-- the outage journal, can be much later). business_at is the same moment
-- on the business clock, which the demo accelerates.
ALTER TABLE audit_log ADD COLUMN business_at timestamptz;
ALTER TABLE directives ADD COLUMN business_at timestamptz;
ALTER TABLE directive_acks ADD COLUMN business_at timestamptz;

-- An overflow rule's engagement (planner state with hysteresis): a new
-- leader must not release a spill the old one held, nor start one anew.
ALTER TABLE overflow_rules ADD COLUMN engaged boolean NOT NULL DEFAULT false;
ALTER TABLE overflow_rules ADD COLUMN engaged_since timestamptz;
ALTER TABLE overflow_rules ADD COLUMN engaged_permille int NOT NULL DEFAULT 0;
