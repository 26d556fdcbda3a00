-- The jobs a worker was executing at its last heartbeat (issue 19), as comma-separated
-- ids. The beat renews their leases in `jobs` too, but on PostgreSQL it skips rows a
-- slow transaction holds rather than wait; the reaper treats a job listed in its
-- holder's last beat as leased until that beat + lease_seconds, so renewal never
-- queues behind the jobs' own writes.
ALTER TABLE workers ADD COLUMN executing TEXT;
