-- The directory and the policy versions of a fleet of exum-router instances.
-- Every instance reads these tables at start and follows their changes through
-- LISTEN/NOTIFY: a change to a tenant's rows bumps that tenant's version in
-- exum.tenant_changes and notifies `exum_directory` with the tenant id; a change
-- of a tenant's active policy notifies `exum_policy`.

CREATE SCHEMA IF NOT EXISTS exum;

-- A tenant. `settings` holds what [[tenant]] in router.toml holds (domains,
-- peers, next hops, hosting_provider, rerouting, limits ...), as JSON with the
-- same keys; `{}` for a tenant defined in router.toml whose data lives here.
CREATE TABLE exum.tenants (
    tenant_id text PRIMARY KEY CHECK (tenant_id <> ''),
    settings jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(settings) = 'object')
);

CREATE TABLE exum.users (
    tenant_id text NOT NULL REFERENCES exum.tenants ON DELETE CASCADE,
    sip text NOT NULL,
    line text,
    site text,
    hosted_voicemail boolean NOT NULL DEFAULT false,
    hosted_voicemail_policy text,
    eum text,
    PRIMARY KEY (tenant_id, sip)
);

CREATE TABLE exum.contacts (
    tenant_id text NOT NULL REFERENCES exum.tenants ON DELETE CASCADE,
    sip text NOT NULL,
    number text NOT NULL,
    kind text NOT NULL,
    site text,
    hosted_voicemail_policy text,
    dial_plan text,
    PRIMARY KEY (tenant_id, sip)
);

-- scope: 'global', 'site:NAME' or 'user:NAME'.
CREATE TABLE exum.hosted_voicemail_policies (
    tenant_id text NOT NULL REFERENCES exum.tenants ON DELETE CASCADE,
    scope text NOT NULL,
    destination text,
    organizations text[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, scope)
);

-- servers: [{"uri": "sip:um1.contoso.com;transport=tls", "timeout_ms": 3000}, ...]
CREATE TABLE exum.dial_plans (
    tenant_id text NOT NULL REFERENCES exum.tenants ON DELETE CASCADE,
    name text NOT NULL,
    phone_context text NOT NULL,
    servers jsonb NOT NULL DEFAULT '[]'::jsonb,
    PRIMARY KEY (tenant_id, name)
);

-- The version of each tenant's data: bumped (from one sequence) by every
-- statement that changes the tenant's rows, kept when the tenant is deleted.
-- An instance that reconnects compares these with the versions it applied.
CREATE SEQUENCE exum.change_seq;
CREATE TABLE exum.tenant_changes (
    tenant_id text PRIMARY KEY,
    version bigint NOT NULL
);

CREATE FUNCTION exum.tenant_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ids text[];
    t text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(DISTINCT tenant_id) INTO ids FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(DISTINCT tenant_id) INTO ids FROM old_rows;
    ELSE
        SELECT array_agg(DISTINCT tenant_id) INTO ids
          FROM (SELECT tenant_id FROM new_rows UNION SELECT tenant_id FROM old_rows) changed;
    END IF;
    IF ids IS NULL THEN
        RETURN NULL;
    END IF;
    FOREACH t IN ARRAY ids LOOP
        INSERT INTO exum.tenant_changes AS c (tenant_id, version)
             VALUES (t, nextval('exum.change_seq'))
        ON CONFLICT (tenant_id) DO UPDATE SET version = EXCLUDED.version;
        PERFORM pg_notify('exum_directory', t);
    END LOOP;
    RETURN NULL;
END $$;

DO $$
DECLARE
    tbl text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['tenants', 'users', 'contacts', 'hosted_voicemail_policies', 'dial_plans'] LOOP
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON exum.%I REFERENCING NEW TABLE AS new_rows
                        FOR EACH STATEMENT EXECUTE FUNCTION exum.tenant_changed()', tbl || '_inserted', tbl);
        EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON exum.%I REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
                        FOR EACH STATEMENT EXECUTE FUNCTION exum.tenant_changed()', tbl || '_updated', tbl);
        EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON exum.%I REFERENCING OLD TABLE AS old_rows
                        FOR EACH STATEMENT EXECUTE FUNCTION exum.tenant_changed()', tbl || '_deleted', tbl);
    END LOOP;
END $$;

-- Policy versions per tenant, and the active one. Activating a version is one
-- UPDATE of exum.policy_active (version_id); the previous one is remembered for
-- a rollback. version_id NULL: the tenant's configured policy serves.
CREATE TABLE exum.policy_versions (
    version_id bigserial PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES exum.tenants ON DELETE CASCADE,
    bytes bytea NOT NULL,
    sha256 text NOT NULL,
    uploaded_at timestamptz NOT NULL DEFAULT now(),
    uploaded_by text NOT NULL DEFAULT current_user,
    UNIQUE (tenant_id, sha256)
);

CREATE TABLE exum.policy_active (
    tenant_id text PRIMARY KEY REFERENCES exum.tenants ON DELETE CASCADE,
    version_id bigint REFERENCES exum.policy_versions,
    previous_version_id bigint REFERENCES exum.policy_versions ON DELETE SET NULL,
    activated_at timestamptz NOT NULL DEFAULT now(),
    activated_by text NOT NULL DEFAULT current_user
);

CREATE FUNCTION exum.policy_activating() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.version_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM exum.policy_versions v WHERE v.version_id = NEW.version_id AND v.tenant_id = NEW.tenant_id
    ) THEN
        RAISE EXCEPTION 'policy version % is not a version of tenant %', NEW.version_id, NEW.tenant_id;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.version_id IS DISTINCT FROM OLD.version_id THEN
        NEW.previous_version_id := OLD.version_id;
        NEW.activated_at := now();
        IF NEW.activated_by IS NOT DISTINCT FROM OLD.activated_by THEN
            NEW.activated_by := current_user;
        END IF;
    END IF;
    RETURN NEW;
END $$;

CREATE FUNCTION exum.policy_activated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('exum_policy', OLD.tenant_id);
    ELSIF TG_OP = 'INSERT' AND NEW.version_id IS NOT NULL THEN
        PERFORM pg_notify('exum_policy', NEW.tenant_id);
    ELSIF TG_OP = 'UPDATE' AND NEW.version_id IS DISTINCT FROM OLD.version_id THEN
        PERFORM pg_notify('exum_policy', NEW.tenant_id);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER policy_activating BEFORE INSERT OR UPDATE ON exum.policy_active
    FOR EACH ROW EXECUTE FUNCTION exum.policy_activating();
CREATE TRIGGER policy_activated AFTER INSERT OR UPDATE OR DELETE ON exum.policy_active
    FOR EACH ROW EXECUTE FUNCTION exum.policy_activated();

-- Every tenant has its row, so that activating is always one UPDATE.
CREATE FUNCTION exum.tenant_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO exum.policy_active (tenant_id) SELECT tenant_id FROM new_rows ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;

CREATE TRIGGER tenants_policy_row AFTER INSERT ON exum.tenants REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION exum.tenant_added();
