-- Vehicles: procrastinate's index on queue_name serves no read of a table that holds only
-- live vehicles (its fetch walks the priority index); dropping it spares two index entries per job.
DROP INDEX procrastinate.procrastinate_jobs_queue_name_idx_v1;
