-- 012: a site held home after its agent's early returns (its clock runs
-- ahead: engine_returns_count), kept for the next leader. The hold is what
-- the controller told the operator ("held home until readmitted"); a new
-- leader that counted afresh would let the site's calls bounce three more
-- times before holding it again. A table of its own, not a column of
-- route_exclusions: a site can be both kept out of a rule after a rolled-
-- back move and held home, and the two end differently (an exclusion with
-- its rule's end; a hold only by an operator: readmit, or a cutover naming
-- the site). One live row per site; its end sets cleared_at.
CREATE TABLE route_return_holds (
    id          bigserial PRIMARY KEY,
    site        text NOT NULL REFERENCES sites(slug),
    returns     int NOT NULL,          -- early returns counted
    span_ms     bigint NOT NULL,       -- from the first counted to the last
    rule_kind   text NOT NULL,         -- the rule whose move the last left
    rule_id     bigint NOT NULL,       -- (rule_kind 'default', 0: not known)
    early_ms    bigint NOT NULL,       -- how early the last was (0: no revert_at)
    held_at     timestamptz NOT NULL,
    cleared_at  timestamptz,
    cleared_by  text,
    cleared_why text
);
CREATE UNIQUE INDEX route_return_holds_live ON route_return_holds (site) WHERE cleared_at IS NULL;
