-- 0004: a lighter hot path. Vehicles (procrastinate jobs of the task jobqueue.run) skip
-- procrastinate's history; two writes per job that nothing reads go.
--
-- procrastinate records every status change of its jobs in procrastinate_events, and unlinks
-- periodic defers before deleting one. For a vehicle that history duplicates jobqueue's own
-- (jobqueue.attempt and jobqueue.event), lives only as long as the vehicle (the rows cascade
-- away when finish_attempts deletes it), and costs a trigger call and a row written and
-- deleted at each of defer, fetch and finish. Vehicles never belong to a periodic defer.
-- procrastinate's other tasks (the maintenance ticks) keep all of it.
--
-- The cleanup of old events walks the primary key (ids follow time), so the index on
-- created_at, written three times per job, goes.

DROP TRIGGER procrastinate_trigger_status_events_insert_v1 ON procrastinate.procrastinate_jobs;
CREATE TRIGGER procrastinate_trigger_status_events_insert_v1
    AFTER INSERT ON procrastinate.procrastinate_jobs
    FOR EACH ROW
    WHEN (NEW.status = 'todo' AND NEW.task_name <> 'jobqueue.run')
    EXECUTE FUNCTION procrastinate.procrastinate_trigger_function_status_events_insert_v1();

DROP TRIGGER procrastinate_trigger_status_events_update_v1 ON procrastinate.procrastinate_jobs;
CREATE TRIGGER procrastinate_trigger_status_events_update_v1
    AFTER UPDATE OF status ON procrastinate.procrastinate_jobs
    FOR EACH ROW
    WHEN (NEW.task_name <> 'jobqueue.run')
    EXECUTE FUNCTION procrastinate.procrastinate_trigger_function_status_events_update_v1();

DROP TRIGGER procrastinate_trigger_scheduled_events_v1 ON procrastinate.procrastinate_jobs;
CREATE TRIGGER procrastinate_trigger_scheduled_events_v1
    AFTER INSERT OR UPDATE ON procrastinate.procrastinate_jobs
    FOR EACH ROW
    WHEN (NEW.scheduled_at IS NOT NULL AND NEW.status = 'todo'
          AND NEW.task_name <> 'jobqueue.run')
    EXECUTE FUNCTION procrastinate.procrastinate_trigger_function_scheduled_events_v1();

DROP TRIGGER procrastinate_trigger_delete_jobs_v1 ON procrastinate.procrastinate_jobs;
CREATE TRIGGER procrastinate_trigger_delete_jobs_v1
    BEFORE DELETE ON procrastinate.procrastinate_jobs
    FOR EACH ROW
    WHEN (OLD.task_name <> 'jobqueue.run')
    EXECUTE FUNCTION procrastinate.procrastinate_unlink_periodic_defers_v1();

DROP INDEX jobqueue.event_created_at_idx;

-- An attempt's organization is copied from its job, whose own foreign key already holds it;
-- checking it again costs a lookup for every attempt started.
ALTER TABLE jobqueue.attempt DROP CONSTRAINT attempt_organization_id_fkey;
