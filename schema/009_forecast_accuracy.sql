-- 009: how far to trust tonight's plan (issue 18). The forecast a
-- schedule's window was planned on, recorded by the leader when the window
-- starts, and, after it ends, each site's accuracy against the load it
-- measured.

-- One row per (schedule, window, site): calls forecast per 30-minute
-- interval from first_interval (NULL element: not forecast then). A
-- leader taking over within the window records nothing twice.
CREATE TABLE forecast_used (
    schedule_id    bigint NOT NULL,
    window_start   timestamptz NOT NULL,
    window_end     timestamptz NOT NULL,
    site           text NOT NULL REFERENCES sites (slug),
    first_interval timestamptz NOT NULL,
    interval_s     int NOT NULL CHECK (interval_s > 0),
    calls          double precision[] NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule_id, window_start, site)
);

-- A site's forecast against what it measured over one ended window, over
-- the intervals that were both forecast and measured (a minute without a
-- load row is not measured; an interval with no such minute is left out).
-- actual = offered - from_other_sites + routed_away: the site's own calls
-- wherever they were answered. wape = abs_error / actual; NULL when no
-- calls were measured (undefined, not zero: the report says "no calls").
CREATE TABLE forecast_accuracy (
    schedule_id     bigint NOT NULL,
    window_start    timestamptz NOT NULL,
    window_end      timestamptz NOT NULL,
    site            text NOT NULL REFERENCES sites (slug),
    forecast_calls  double precision NOT NULL,
    actual_calls    bigint NOT NULL,
    abs_error_calls double precision NOT NULL,
    wape            double precision,
    intervals       int NOT NULL,
    computed_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule_id, window_start, site)
);
CREATE INDEX forecast_accuracy_site_end ON forecast_accuracy (site, window_end DESC);

-- Retention ([database] history_days): the leader deletes load minutes
-- older than the limit in batches. A BRIN index finds them without a scan
-- of the whole table; rows arrive in time order, so it stays small (a few
-- pages for years of history) where a b-tree would add a third to the
-- table's size.
CREATE INDEX load_minute_minute_brin ON load_minute USING brin (minute);
