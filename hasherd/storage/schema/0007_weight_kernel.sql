-- A weight belongs to its record AND its kernel (docs/kernel.md: passes, zero bits, token
-- bits, jitter memory): a seed is only meaningful with the kernel it was found with. A
-- record keeps one best weight per kernel; seeds for different kernels never replace each
-- other (before, a seed with more prefix bits replaced the record's weight whatever the
-- run's zero_bits or passes).
--
-- Existing weights get the kernel of the run that stored them: passes and zero_bits from
-- the run's config (training.passes, training.zero_bits), token_bits from it too, else
-- from the weight's dataset (the token bits its records were loaded with), memory_id as
-- stored. hasherd writes every run's whole config, so these are always there; a run whose
-- config lacks passes or zero_bits (a hand-edited database) fails this migration on the
-- NOT NULL constraint, and the database stays at schema 6, unchanged: no kernel is
-- guessed for a seed.
--
-- The table is rebuilt (SQLite cannot drop the old UNIQUE (record_id)) keeping every row
-- and its id. The old table is renamed first, which points the validations' foreign key
-- at it; validations is then rebuilt onto the new table, so that the old one can go
-- without a foreign-key violation (foreign keys stay on during migrations).
ALTER TABLE weights RENAME TO weights_v6;

CREATE TABLE weights (
    id              INTEGER PRIMARY KEY,
    record_id       INTEGER NOT NULL REFERENCES records (id),
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
    passes          INTEGER NOT NULL CHECK (passes >= 1),
    zero_bits       INTEGER NOT NULL CHECK (zero_bits BETWEEN 0 AND 32),
    token_bits      INTEGER NOT NULL CHECK (token_bits BETWEEN 1 AND 32),
    layer           INTEGER NOT NULL DEFAULT 0 CHECK (layer >= 0),
    validation      TEXT    NOT NULL DEFAULT 'unvalidated'
                    CHECK (validation IN ('unvalidated', 'validated', 'non-deterministic')),
    created_at      REAL    NOT NULL,
    UNIQUE (record_id, passes, zero_bits, token_bits, memory_id)
);

INSERT INTO weights (
    id, record_id, run_id, token_id, context_key, slots, seed, output, golden_nonce,
    prefix_bits, difficulty_bits, fitness, generation, epoch, memory_id,
    passes, zero_bits, token_bits, layer, validation, created_at
)
SELECT
    w.id, w.record_id, w.run_id, w.token_id, w.context_key, w.slots, w.seed, w.output,
    w.golden_nonce, w.prefix_bits, w.difficulty_bits, w.fitness, w.generation, w.epoch,
    w.memory_id,
    json_extract(r.config_json, '$.training.passes'),
    json_extract(r.config_json, '$.training.zero_bits'),
    coalesce(json_extract(r.config_json, '$.training.token_bits'), d.token_bits),
    w.layer, w.validation, w.created_at
FROM weights_v6 w
JOIN runs r ON r.id = w.run_id
JOIN records rec ON rec.id = w.record_id
JOIN datasets d ON d.id = rec.dataset_id;

CREATE TABLE validations_v7 (
    id                  INTEGER PRIMARY KEY,
    weight_id           INTEGER NOT NULL REFERENCES weights (id),
    seed                BLOB    NOT NULL CHECK (length(seed) = 32),
    stored_output       INTEGER NOT NULL,
    stored_golden_nonce INTEGER NOT NULL,
    evaluator_a         TEXT    NOT NULL,
    output_a            INTEGER,
    golden_nonce_a      INTEGER,
    evaluator_b         TEXT    NOT NULL,
    output_b            INTEGER,
    golden_nonce_b      INTEGER,
    agree               INTEGER CHECK (agree IN (0, 1)),
    attempts            INTEGER NOT NULL CHECK (attempts >= 0),
    error               TEXT,
    created_at          REAL    NOT NULL,
    CHECK ((agree IS NULL) = (error IS NOT NULL))
);
INSERT INTO validations_v7 SELECT * FROM validations;
DROP TABLE validations;
ALTER TABLE validations_v7 RENAME TO validations;
CREATE INDEX validations_by_weight ON validations (weight_id, id);

DROP TABLE weights_v6;

CREATE INDEX weights_by_layer ON weights (layer);
CREATE INDEX weights_by_run ON weights (run_id);

CREATE TRIGGER weights_never_deleted BEFORE DELETE ON weights
BEGIN
    SELECT RAISE(ABORT, 'weights are never deleted');
END;
