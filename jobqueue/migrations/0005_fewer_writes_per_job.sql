-- 0005: fewer WAL records per job run. Each change removes a write that every job paid for
-- and nothing read.
--
-- job_finished_at_idx: one more index entry at every job's end. The cleanup now walks
-- job_org_finished_idx one organization at a time (maintenance.sql). job_active_idx: see
-- below.
--
-- The vehicle's BEFORE DELETE trigger: a row trigger makes PostgreSQL lock each row before
-- deleting it (one WAL record per vehicle), even when its WHEN clause then skips the call.
-- It only unlinks periodic_defers from the deleted job, which ON DELETE SET NULL on that
-- foreign key does the same way, for every task.
--
-- fillfactor on jobqueue.job: a job row is updated twice in its life (started, ended). On a
-- full page the new version moves to another page, which costs a lock record and a whole
-- new tuple in the WAL; with room left on the page it stays there, and the WAL carries only
-- the bytes that changed.

DROP INDEX jobqueue.job_finished_at_idx;

-- job_active_idx (organization, status, priority) of live jobs: an entry at submit and
-- another at every start, for reads that job_org_status_id_idx answers as well (live jobs of
-- an organization by status; the priority comes from the row).
DROP INDEX jobqueue.job_active_idx;

-- job_completed_hash_idx serves the dedup window only. A job of a type without a window
-- drops its hash when it completes (worker.sql) and so takes no entry here.
DROP INDEX jobqueue.job_completed_hash_idx;
CREATE INDEX job_completed_hash_idx ON jobqueue.job (job_hash, finished_at DESC)
    WHERE status = 'completed' AND job_hash IS NOT NULL;

DROP TRIGGER procrastinate_trigger_delete_jobs_v1 ON procrastinate.procrastinate_jobs;
ALTER TABLE procrastinate.procrastinate_periodic_defers
    DROP CONSTRAINT procrastinate_periodic_defers_job_id_fkey,
    ADD CONSTRAINT procrastinate_periodic_defers_job_id_fkey
        FOREIGN KEY (job_id) REFERENCES procrastinate.procrastinate_jobs (id)
        ON DELETE SET NULL;

ALTER TABLE jobqueue.job SET (fillfactor = 70);

-- The same for the other rows updated in place while a job runs: its attempt (ended) and its
-- vehicle (claimed).
-- A vehicle is claimed within moments of its insert, so its page has no time to be pruned in
-- between: it gets more room.
ALTER TABLE jobqueue.attempt SET (fillfactor = 80);
ALTER TABLE procrastinate.procrastinate_jobs SET (fillfactor = 50);

-- attempt -> job: the claim inserts each attempt in the statement that updates its job, and
-- the foreign key's check then takes a key-share lock on the job's new version, which a
-- multixact records in the WAL: one more record per job. Attempts are written only by the
-- engine's functions, from the job row itself, and the cleanup deletes a job's attempts
-- with the job (maintenance.sql), as the cascade did.
ALTER TABLE jobqueue.attempt DROP CONSTRAINT attempt_job_id_fkey;

-- procrastinate's lock indexes, narrowed to the rows their queries can match. A vehicle has
-- no lock, and a vehicle's claim (todo -> doing) is an update that touches an indexed
-- column, so it writes a new entry into every index whose predicate it meets. NULL locks
-- never collide in a unique index and never match "lock = x". Names stay procrastinate's.
-- (The queue-name index keeps every row: narrowed to waiting jobs it would match the
-- fetch's "status = 'todo'" as well as the priority index, and with the vehicle table's
-- stale statistics procrastinate's own fetch would sort every waiting job through it.)
DROP INDEX procrastinate.procrastinate_jobs_lock_idx_v1;
CREATE UNIQUE INDEX procrastinate_jobs_lock_idx_v1 ON procrastinate.procrastinate_jobs (lock)
    WHERE status = 'doing' AND lock IS NOT NULL;
DROP INDEX procrastinate.procrastinate_jobs_id_lock_idx_v1;
CREATE INDEX procrastinate_jobs_id_lock_idx_v1 ON procrastinate.procrastinate_jobs (id, lock)
    WHERE status IN ('todo', 'doing') AND lock IS NOT NULL;

-- job -> organization and job -> job_type: each check locks the referenced row for every
-- transaction that inserts a job (a WAL record on rows all submitters share). Triggers in
-- integrity.sql keep both from being deleted (or a type renamed) while jobs name them.
ALTER TABLE jobqueue.job DROP CONSTRAINT job_organization_id_fkey;
ALTER TABLE jobqueue.job DROP CONSTRAINT job_job_type_fkey;
