-- A tenant's candidate policy version, shared by every router of a fleet:
-- a shadow (decides copies of requests, compared with the serving version) or
-- a canary (serves `share` of new calls). A router that rolls a canary back
-- writes `state = 'rolled_back'` and the reason here, and every router follows.
-- Changes notify `exum_policy` with the tenant id.

CREATE TABLE exum.policy_candidates (
    tenant_id text PRIMARY KEY REFERENCES exum.tenants ON DELETE CASCADE,
    version_id bigint NOT NULL REFERENCES exum.policy_versions ON DELETE CASCADE,
    mode text NOT NULL CHECK (mode IN ('shadow', 'canary')),
    share double precision NOT NULL DEFAULT 0 CHECK (share >= 0 AND share <= 1),
    min_calls bigint CHECK (min_calls > 0),
    fault_margin double precision CHECK (fault_margin >= 0 AND fault_margin <= 1),
    failure_margin double precision CHECK (failure_margin >= 0 AND failure_margin <= 1),
    state text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'rolled_back')),
    reason text,
    started_at timestamptz NOT NULL DEFAULT now(),
    started_by text NOT NULL DEFAULT current_user
);

CREATE FUNCTION exum.candidate_checking() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM exum.policy_versions v WHERE v.version_id = NEW.version_id AND v.tenant_id = NEW.tenant_id
    ) THEN
        RAISE EXCEPTION 'policy version % is not a version of tenant %', NEW.version_id, NEW.tenant_id;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER candidate_checking BEFORE INSERT OR UPDATE ON exum.policy_candidates
    FOR EACH ROW EXECUTE FUNCTION exum.candidate_checking();

CREATE FUNCTION exum.candidate_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('exum_policy', OLD.tenant_id);
    ELSE
        PERFORM pg_notify('exum_policy', NEW.tenant_id);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER candidate_changed AFTER INSERT OR UPDATE OR DELETE ON exum.policy_candidates
    FOR EACH ROW EXECUTE FUNCTION exum.candidate_changed();
