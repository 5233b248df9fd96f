-- integrity.sql: what a job refers to stays there while jobs refer to it.
--
-- Owns:      the references from jobqueue.job to organization and job_type.
-- Internal:  _tg_organization__before_delete, _tg_job_type__before_change
-- Rule:      an organization or a job type that jobs name cannot be deleted, nor a type
--            renamed. Jobs are only written by the engine's functions, which check both
--            references at submit.
-- Why not foreign keys: a foreign key's check locks the referenced row in KEY SHARE mode
--            for every transaction that inserts a job, and that lock is a WAL record on the
--            organization's and the type's row: two records per single submit, on two rows
--            every submitter shares. The engine never deletes or renames either; these
--            triggers keep a hand-typed DELETE from orphaning jobs, with the foreign key's
--            own SQLSTATE (23503).
-- Raises:    23503 foreign_key_violation.
-- Events:    none.

CREATE OR REPLACE FUNCTION jobqueue._tg_organization__before_delete() RETURNS trigger
LANGUAGE plpgsql
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT FROM jobqueue.job WHERE organization_id = OLD.id) THEN
        RAISE EXCEPTION 'organization "%" still has jobs', OLD.name
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN OLD;
END
$$;

DROP TRIGGER IF EXISTS tg_organization__before_delete ON jobqueue.organization;
CREATE TRIGGER tg_organization__before_delete
    BEFORE DELETE ON jobqueue.organization
    FOR EACH ROW EXECUTE FUNCTION jobqueue._tg_organization__before_delete();

CREATE OR REPLACE FUNCTION jobqueue._tg_job_type__before_change() RETURNS trigger
LANGUAGE plpgsql
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
BEGIN
    IF (TG_OP = 'DELETE' OR NEW.name IS DISTINCT FROM OLD.name)
       AND EXISTS (SELECT FROM jobqueue.job WHERE job_type = OLD.name) THEN
        RAISE EXCEPTION 'job type "%" still has jobs', OLD.name
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END
$$;

DROP TRIGGER IF EXISTS tg_job_type__before_change ON jobqueue.job_type;
CREATE TRIGGER tg_job_type__before_change
    BEFORE DELETE OR UPDATE OF name ON jobqueue.job_type
    FOR EACH ROW EXECUTE FUNCTION jobqueue._tg_job_type__before_change();
