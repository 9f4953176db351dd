-- 010: the leader reads the rule changes of earlier leaders that were not
-- applied ('superseded' audit entries, written when an outage journal is
-- replayed after a newer leader took over) every few seconds, to keep an
-- alarm standing for 30 minutes after the newest. The entry may have been
-- written while no controller led, or before this one's first read, so the
-- read goes by the entries' time, not by what this leader has seen. They
-- are rare: a partial index holds only them, and the read never scans the
-- audit trail.
CREATE INDEX audit_log_superseded ON audit_log (at) WHERE action = 'superseded';
