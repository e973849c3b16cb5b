-- Cross-hardware validation (hasherd validate, docs/validation.md): one row per check of
-- one weight on two evaluators. The row keeps what was checked (the seed and the stored
-- output and golden nonce) and what each evaluator gave, so a disagreement can be
-- studied later. weights.validation stays the summary state of the weight's newest
-- check. agree is NULL when an evaluator could not be run (error says why); the other
-- way round, a check that ran has no error. attempts counts the runs of the evaluator that
-- needed most (0: the check failed before any, say on a changed dataset memory).
CREATE TABLE validations (
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

CREATE INDEX validations_by_weight ON validations (weight_id, id);
