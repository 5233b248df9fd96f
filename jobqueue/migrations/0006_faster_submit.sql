-- 0006: one NOTIFY per queue for a statement's vehicles, instead of one per vehicle.
--
-- procrastinate's AFTER INSERT row trigger sends two NOTIFYs for every job inserted (its
-- queue's channel and the any-queue channel), each with the job's id. Its worker only reads
-- the payload's type ("job_inserted") to wake its fetch loop, and the notifications of a
-- transaction are delivered together at commit, so a batch of a thousand vehicles woke each
-- worker once at the price of two thousand NOTIFYs and a thousand trigger calls.
-- jobqueue._defer_vehicles, the only writer of vehicles, now sends one per queue and
-- statement on the same channels with the same payload. procrastinate's other tasks keep the
-- trigger as it was.

DROP TRIGGER procrastinate_jobs_notify_queue_job_inserted_v1 ON procrastinate.procrastinate_jobs;
CREATE TRIGGER procrastinate_jobs_notify_queue_job_inserted_v1
    AFTER INSERT ON procrastinate.procrastinate_jobs
    FOR EACH ROW
    WHEN (NEW.status = 'todo' AND NEW.task_name <> 'jobqueue.run')
    EXECUTE FUNCTION procrastinate.procrastinate_notify_queue_job_inserted_v1();
