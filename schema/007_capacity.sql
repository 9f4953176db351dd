-- 007: a site's configured capacity (controller/routing/capacity.h) and
-- load figures that were not measured.
--
-- seats and roster are what the planner uses when a site does not measure
-- its agents (a Kamailio proxy knows calls, not people), and the bound its
-- reports are checked against. NULL seats and roster: not configured.
-- roster is the canonical text "08:00-22:00=72,22:00-08:00=28" in the
-- site's local time at capacity_utc_offset_min. Written by
-- `nircd import-sites` and, exactly once with its audit entry, by
-- `nircctl capacity`.
ALTER TABLE sites
    ADD COLUMN seats int CHECK (seats >= 0),
    ADD COLUMN roster text,
    ADD COLUMN capacity_utc_offset_min int NOT NULL DEFAULT 0
        CHECK (capacity_utc_offset_min BETWEEN -840 AND 840);

-- A minute whose agents, queue or handle time were not measured stores
-- NULL there, not a zero that reads as an empty call centre.
ALTER TABLE load_minute
    ALTER COLUMN avg_logged_in DROP NOT NULL,
    ALTER COLUMN avg_ready DROP NOT NULL,
    ALTER COLUMN avg_talking DROP NOT NULL,
    ALTER COLUMN avg_aht_ms DROP NOT NULL,
    ALTER COLUMN max_queue DROP NOT NULL,
    ALTER COLUMN max_wait_ms DROP NOT NULL;
