-- 002: the routing engine. Rules are written only through the controller
-- (nircctl), which validates them; the database keeps them and the record
-- of every directive and acknowledgement.

-- Emergency cutovers: who moved which sources to which hubs, why, until when.
CREATE TABLE cutovers (
    id          bigint PRIMARY KEY,          -- assigned by the controller (epoch-scoped)
    sources     text[] NOT NULL CHECK (cardinality(sources) > 0),
    hubs        text[] NOT NULL CHECK (cardinality(hubs) > 0),
    reason      text NOT NULL CHECK (reason <> ''),
    operator    text NOT NULL,               -- from the operator's certificate
    force       boolean NOT NULL DEFAULT false,
    share_permille int NOT NULL DEFAULT 1000 CHECK (share_permille BETWEEN 1 AND 1000),
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz,                 -- NULL: open-ended
    state       text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'restored', 'expired')),
    ended_at    timestamptz,
    ended_by    text
);
CREATE INDEX cutovers_active ON cutovers (state) WHERE state = 'active';

-- Recurring time-of-day moves (night consolidation).
CREATE TABLE schedules (
    id          bigint PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    sources     text[] NOT NULL CHECK (cardinality(sources) > 0),
    hubs        text[] NOT NULL CHECK (cardinality(hubs) > 0),
    start_min   int NOT NULL CHECK (start_min BETWEEN 0 AND 1439),
    end_min     int NOT NULL CHECK (end_min BETWEEN 0 AND 1439),
    days        int NOT NULL CHECK (days BETWEEN 1 AND 127),  -- bit 0 = Monday
    tz          text NOT NULL,
    exceptions  date[] NOT NULL DEFAULT '{}',
    wave_size   int NOT NULL DEFAULT 5 CHECK (wave_size BETWEEN 1 AND 100),
    enabled     boolean NOT NULL DEFAULT true,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    removed_at  timestamptz                  -- soft delete: history keeps its rules
);

-- Automatic partial moves on overload, with hysteresis.
CREATE TABLE overflow_rules (
    id                 bigint PRIMARY KEY,
    name               text NOT NULL UNIQUE,
    source             text NOT NULL,
    hubs               text[] NOT NULL CHECK (cardinality(hubs) > 0),
    trigger_wait_s     int NOT NULL DEFAULT 0,
    release_wait_s     int NOT NULL DEFAULT 0,
    trigger_queue      int NOT NULL DEFAULT 0,
    release_queue      int NOT NULL DEFAULT 0,
    trigger_sl         double precision NOT NULL DEFAULT 0,
    release_sl         double precision NOT NULL DEFAULT 0,
    share_cap_permille int NOT NULL CHECK (share_cap_permille BETWEEN 1 AND 1000),
    min_hold_s         int NOT NULL DEFAULT 300,
    margin_s           int NOT NULL DEFAULT 0,
    enabled            boolean NOT NULL DEFAULT true,
    created_by         text NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    removed_at         timestamptz
);

-- Calls originating at a site but answered elsewhere, per minute: with
-- offered and from_other_sites this gives each site's own demand even while
-- it is moved away (the demo's staffing report, forecasts from history).
ALTER TABLE load_minute ADD COLUMN routed_away int NOT NULL DEFAULT 0;

-- Every directive sent: the full route of one site at (epoch, version).
CREATE TABLE directives (
    site        text NOT NULL REFERENCES sites(slug),
    epoch       bigint NOT NULL,
    version     bigint NOT NULL,
    route       jsonb NOT NULL,              -- [{"site": "shaanxi", "permille": 1000}]
    inbound     jsonb NOT NULL DEFAULT '[]', -- hub side
    revert_at   timestamptz,
    reason      text NOT NULL,
    rule_kind   text NOT NULL,
    rule_id     bigint,
    sent_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site, epoch, version)
);

-- Every acknowledgement (or the controller's verdict when none came).
CREATE TABLE directive_acks (
    id          bigserial PRIMARY KEY,
    site        text NOT NULL,
    epoch       bigint NOT NULL,
    version     bigint NOT NULL,
    result      text NOT NULL CHECK (result IN ('applied', 'rejected', 'failed', 'timeout')),
    detail      text NOT NULL DEFAULT '',
    latency_ms  int,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX directive_acks_site ON directive_acks (site, epoch, version);
