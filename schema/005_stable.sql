-- 005: what keeps automatic routing stable, kept for the next leader.

-- A source's capacity damping (the planner's planner_hold_t): since when
-- its placement has been held below the keep floor, and its re-entry wait
-- after a capacity withdrawal. Times are business-clock milliseconds, as
-- the planner keeps them; 0 means "not". One row per site, replaced.
CREATE TABLE route_holds (
    site              text PRIMARY KEY REFERENCES sites(slug),
    strain_since_ms   bigint NOT NULL DEFAULT 0,
    withdrawn_ms      bigint NOT NULL DEFAULT 0,
    last_withdrawn_ms bigint NOT NULL DEFAULT 0,
    withdrawals       int NOT NULL DEFAULT 0,
    updated_at        timestamptz NOT NULL
);

-- Hub losses and verifications are link_events ('hub_lost',
-- 'hub_verified'); a new leader reads the latest of each per hub.
CREATE INDEX link_events_hub_gate ON link_events (site, at)
    WHERE event IN ('hub_lost', 'hub_verified');
