-- 001_foundation: the tables every other part of NIRC builds on.
--
-- Applied by db_admin_migrate() (`nircd -c FILE migrate`) inside one
-- transaction together with its schema_version row, so this file must not
-- contain BEGIN or COMMIT itself.

-- Which migrations have been applied; nircd refuses to start unless the
-- highest version here equals the version it was built for.
create table schema_version (
  version    int primary key,
  name       text not null,
  applied_at timestamptz not null default now()
);

-- The call-centre sites (and hubs that can absorb their traffic); the slug
-- is the stable identity used in certificates, links, directives and logs.
create table sites (
  slug       text primary key check (slug ~ '^[a-z][a-z0-9-]{0,30}$'),
  name_en    text not null,
  name_zh    text not null,
  city_en    text not null default '',
  lat        double precision,
  lon        double precision,
  is_hub     boolean not null default false,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

-- Keeps sites.updated_at truthful without every writer having to remember it.
create function sites_touch_updated_at() returns trigger
language plpgsql as $$
begin
  new.updated_at := now();
  return new;
end
$$;

create trigger sites_touch_updated_at
  before update on sites
  for each row execute function sites_touch_updated_at();

-- Leadership epochs: every new leader takes the next value, and agents reject
-- directives from an epoch older than the newest they have seen, so a deposed
-- leader cannot move traffic.
create sequence epoch_seq;

-- One row per leadership term, for the audit trail and post-mortems.
create table epochs (
  epoch      bigint primary key default nextval('epoch_seq'),
  node       text not null,
  started_at timestamptz not null default now()
);

alter sequence epoch_seq owned by epochs.epoch;

-- Link history (connects, refusals, staleness, TLS failures) so an operator
-- can see when and why a site or operator link came and went. `site` is
-- free text, not a foreign key, because refused and unknown peers are
-- recorded too.
create table link_events (
  id       bigserial primary key,
  at       timestamptz not null default now(),
  kind     text not null check (kind in ('site', 'operator', 'unknown')),
  identity text,
  site     text,
  peer     text not null,
  -- connected, hello, refused, closed, stale, online, offline, tls_failed, ...
  event    text not null,
  detail   text not null default ''
);

-- "What happened to this site lately" is the common question.
create index link_events_site_at on link_events (site, at);
-- Time-range scans and retention pruning.
create index link_events_at on link_events (at);

-- Per-minute load aggregates per site: the history the planner and the
-- capacity predictions are built from (raw reports are not kept).
create table load_minute (
  site               text not null references sites (slug),
  minute             timestamptz not null,
  reports            int not null,
  offered            int not null,
  answered           int not null,
  abandoned          int not null,
  answered_within    int not null,
  from_other_sites   int not null,
  max_queue          int not null,
  max_wait_ms        int not null,
  avg_logged_in      real not null,
  avg_ready          real not null,
  avg_talking        real not null,
  avg_aht_ms         real not null,
  -- Reports in which the agent said its adapter could not read the PBX;
  -- counted separately so that missing data is never mistaken for zero load.
  unreadable_reports int not null default 0,
  primary key (site, minute)
);

-- Every operator action and every automatic move, kept forever: it is the
-- evidence of who moved which calls where and why.
create table audit_log (
  id     bigserial primary key,
  at     timestamptz not null default now(),
  actor  text not null,
  action text not null,
  target text not null default '',
  detail jsonb not null default '{}'::jsonb
);

-- The audit log is evidence, so it must be append-only even for code paths
-- (or people with psql) that would rather tidy it up: rows may be inserted,
-- never changed or removed. A trigger enforces this in the database itself
-- rather than trusting every client. Removing old rows, if ever required by
-- a retention policy, is a deliberate act that drops this trigger first.
create function audit_log_append_only() returns trigger
language plpgsql as $$
begin
  raise exception 'audit_log is append-only: % is not allowed', tg_op
    using errcode = 'insufficient_privilege',
          hint = 'audit records are evidence; add a new record instead';
end
$$;

create trigger audit_log_no_update_delete
  before update or delete on audit_log
  for each row execute function audit_log_append_only();

-- Row triggers do not fire for TRUNCATE, so it needs a statement trigger.
create trigger audit_log_no_truncate
  before truncate on audit_log
  for each statement execute function audit_log_append_only();
