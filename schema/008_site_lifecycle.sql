-- 008: sites added, changed and removed while nircd runs (nircctl site,
-- nircd import-sites).
--
-- A removed site is not deleted: load_minute, link_events, directives and
-- audit_log keep naming it, and its foreign keys must not force deleting
-- that history. removed_at and removed_by say since when and by whom it is
-- gone; nircd refuses its agent with them ("site X was removed at ... by
-- ..."). Adding the slug again clears them.
ALTER TABLE sites
    ADD COLUMN removed_at timestamptz,
    ADD COLUMN removed_by text,
    ADD CONSTRAINT sites_removed_by_check CHECK ((removed_at IS NULL) = (removed_by IS NULL));

-- Every write to sites, by whatever writer (nircctl site through the
-- leader, nircd import-sites, an operator's psql), tells the controllers:
-- each listens on its election connection (store/leader.c) and reloads
-- the sites table. One notification per statement, and PostgreSQL folds
-- identical notifications of one transaction into one, so an import of
-- thousands of sites is one reload.
CREATE FUNCTION sites_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('nirc_sites', '');
  RETURN NULL;
END
$$;

CREATE TRIGGER sites_notify
  AFTER INSERT OR UPDATE OR DELETE ON sites
  FOR EACH STATEMENT EXECUTE FUNCTION sites_notify();
