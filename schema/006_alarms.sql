-- 006: alarms, first-class and durable (controller/routing/alarm.h).
--
-- One row per alarm: inserted when it is raised, updated once when it is
-- acknowledged and once when it is cleared (same id). Ids are
-- epoch * 1000000 + n, made by the leader without asking the database, so
-- an alarm raised while the database is down (the journal keeps it) lands
-- with its own id and times. A new leader adopts the rows not cleared.
CREATE TABLE alarms (
    id                 bigint PRIMARY KEY,
    kind               text NOT NULL,
    subject            text NOT NULL,
    severity           text NOT NULL,
    message            text NOT NULL,      -- the words when it was raised
    last_message       text,               -- the words when it was cleared
    raised_at          timestamptz NOT NULL,
    raised_business_at timestamptz,
    cleared_at         timestamptz,
    acked_at           timestamptz,
    acked_by           text
);
CREATE INDEX alarms_active ON alarms (id) WHERE cleared_at IS NULL;
CREATE INDEX alarms_raised ON alarms (raised_at);
