-- Training jobs of the daemon (hasherctl jobs submit). A job names its data and its
-- training options; the scheduler trains one job at a time, in id order, through the
-- same runs/checkpoints/weights tables as `hasherd train`.
CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL,
    data_path   TEXT    NOT NULL,
    options     TEXT    NOT NULL CHECK (json_valid(options)),
    status      TEXT    NOT NULL CHECK (
                    status IN ('queued', 'running', 'paused', 'cancelled', 'finished', 'failed')
                ),
    run_id      INTEGER REFERENCES runs (id),
    dataset_id  INTEGER REFERENCES datasets (id),
    error       TEXT,
    created_at  REAL    NOT NULL,
    updated_at  REAL    NOT NULL
);
CREATE INDEX jobs_by_status ON jobs (status, id);
