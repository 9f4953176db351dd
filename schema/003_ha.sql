-- 003: high availability. Exactly-once writes across database outages, and
-- the lease a leader renews.

-- Idempotency keys of the controller's once-writes (db_exec_once). Every
-- such write inserts its key in the same statement as the row it writes,
-- so a write replayed from the controller's on-disk journal after an
-- outage, or re-sent after the connection broke with the outcome unknown,
-- fails on this primary key instead of being applied twice. The
-- controller deletes keys older than seven days once an hour; created_at
-- is indexed for that.
CREATE TABLE journal_keys (key text PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX journal_keys_created_at ON journal_keys (created_at);

-- Leader election: the one row names the controller that holds the lease.
CREATE TABLE leader_lease (id int PRIMARY KEY CHECK (id = 1), node text NOT NULL, addr text NOT NULL, epoch bigint NOT NULL, renewed_at timestamptz NOT NULL DEFAULT now());
