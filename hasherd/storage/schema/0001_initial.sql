-- hasherd schema version 1. Applied by hasherd.storage.migrations inside one transaction
-- (BEGIN IMMEDIATE ... PRAGMA user_version = N; COMMIT), so this file holds no
-- transaction statements. Times are Unix seconds (REAL). JSON columns are checked with
-- json_valid. 64-bit hashes and keys are stored as signed INTEGER.

CREATE TABLE datasets (
    id             INTEGER PRIMARY KEY,
    name           TEXT    NOT NULL,
    source         TEXT    NOT NULL,
    memory_id      TEXT    NOT NULL,
    token_bits     INTEGER NOT NULL CHECK (token_bits BETWEEN 1 AND 32),
    records_digest TEXT    NOT NULL UNIQUE,
    record_count   INTEGER NOT NULL CHECK (record_count >= 0),
    created_at     REAL    NOT NULL
);

CREATE TABLE records (
    id          INTEGER PRIMARY KEY,
    dataset_id  INTEGER NOT NULL REFERENCES datasets (id),
    idx         INTEGER NOT NULL CHECK (idx >= 0),
    token_id    INTEGER NOT NULL,
    context_key INTEGER NOT NULL,
    slots       BLOB    NOT NULL CHECK (length(slots) = 48),
    UNIQUE (dataset_id, idx)
);

CREATE TABLE runs (
    id            INTEGER PRIMARY KEY,
    dataset_id    INTEGER NOT NULL REFERENCES datasets (id),
    status        TEXT    NOT NULL DEFAULT 'running'
                  CHECK (status IN ('running', 'finished', 'stopped', 'failed')),
    config_json   TEXT    NOT NULL CHECK (json_valid(config_json)),
    config_digest TEXT    NOT NULL,
    rng_seed      INTEGER NOT NULL,
    versions_json TEXT    NOT NULL CHECK (json_valid(versions_json)),
    created_at    REAL    NOT NULL,
    updated_at    REAL    NOT NULL,
    epoch         INTEGER NOT NULL DEFAULT 0 CHECK (epoch >= 0),
    difficulty    INTEGER NOT NULL DEFAULT 0 CHECK (difficulty >= 0)
);

CREATE INDEX runs_by_dataset_digest ON runs (dataset_id, config_digest);

-- The state of the search for one record in one run, as of its last whole generation.
CREATE TABLE checkpoints (
    run_id      INTEGER NOT NULL REFERENCES runs (id),
    record_id   INTEGER NOT NULL REFERENCES records (id),
    epoch       INTEGER NOT NULL CHECK (epoch >= 0),
    generation  INTEGER NOT NULL CHECK (generation >= 0),
    difficulty  INTEGER NOT NULL CHECK (difficulty >= 0),
    population  BLOB    NOT NULL CHECK (length(population) % 32 = 0),
    results     BLOB    NOT NULL,
    rng_state   TEXT    NOT NULL CHECK (json_valid(rng_state)),
    best_prefix INTEGER NOT NULL CHECK (best_prefix >= 0),
    updated_at  REAL    NOT NULL,
    PRIMARY KEY (run_id, record_id)
);

-- Hashes of every seed evaluated for a record in a run: no seed is evaluated twice. One
-- row per generation holds that generation's hashes as little-endian u64 (an append, not
-- a hundred random B-tree inserts per generation).
CREATE TABLE seen (
    run_id     INTEGER NOT NULL REFERENCES runs (id),
    record_id  INTEGER NOT NULL REFERENCES records (id),
    generation INTEGER NOT NULL CHECK (generation >= 0),
    hashes     BLOB    NOT NULL CHECK (length(hashes) % 8 = 0),
    PRIMARY KEY (run_id, record_id, generation)
) WITHOUT ROWID;

-- The best seed found so far for each record: one row per record, replaced in place
-- only by a better one (higher prefix_bits, then higher fitness), never deleted.
CREATE TABLE weights (
    id              INTEGER PRIMARY KEY,
    record_id       INTEGER NOT NULL UNIQUE REFERENCES records (id),
    run_id          INTEGER NOT NULL REFERENCES runs (id),
    token_id        INTEGER NOT NULL,
    context_key     INTEGER NOT NULL,
    slots           BLOB    NOT NULL CHECK (length(slots) = 48),
    seed            BLOB    NOT NULL CHECK (length(seed) = 32),
    output          INTEGER NOT NULL,
    golden_nonce    INTEGER NOT NULL,
    prefix_bits     INTEGER NOT NULL CHECK (prefix_bits BETWEEN 0 AND 256),
    difficulty_bits INTEGER NOT NULL CHECK (difficulty_bits >= 0),
    fitness         REAL    NOT NULL,
    generation      INTEGER NOT NULL CHECK (generation >= 0),
    epoch           INTEGER NOT NULL CHECK (epoch >= 0),
    memory_id       TEXT    NOT NULL,
    layer           INTEGER NOT NULL DEFAULT 0 CHECK (layer >= 0),
    validation      TEXT    NOT NULL DEFAULT 'unvalidated'
                    CHECK (validation IN ('unvalidated', 'validated', 'non-deterministic')),
    created_at      REAL    NOT NULL
);

CREATE INDEX weights_by_layer ON weights (layer);
CREATE INDEX weights_by_run ON weights (run_id);

CREATE TRIGGER weights_never_deleted BEFORE DELETE ON weights
BEGIN
    SELECT RAISE(ABORT, 'weights are never deleted');
END;

CREATE TABLE events (
    id           INTEGER PRIMARY KEY,
    at           REAL    NOT NULL,
    kind         TEXT    NOT NULL,
    run_id       INTEGER REFERENCES runs (id),
    record_id    INTEGER REFERENCES records (id),
    payload_json TEXT    NOT NULL CHECK (json_valid(payload_json))
);

CREATE INDEX events_by_run ON events (run_id, id);
CREATE INDEX events_by_kind ON events (kind, id);
