-- A job's priority: its weight in the share of the devices while it runs beside other
-- jobs (hasherctl jobs submit --priority, jobs set-priority). Existing jobs get the
-- default, so they keep sharing equally.
ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 10
    CHECK (priority BETWEEN 1 AND 1000);
