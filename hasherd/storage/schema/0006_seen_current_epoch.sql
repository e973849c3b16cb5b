-- The seen table keeps a record's history for its current epoch only (docs/training.md):
-- a seed is never evaluated twice for a record within one epoch, and the generation that
-- ends the record's epoch deletes its history. This drops what databases written before
-- kept beyond that: the history of every record whose epoch is over (it won: the best
-- prefix of its checkpoint reached the checkpoint's difficulty; or it spent the run's
-- max_generations), of failed runs (never resumed), and of earlier epochs (generations
-- up to the checkpoint's epoch_start). What a resume of an unfinished epoch reads stays.
--
-- The file only shrinks once its free pages are handed back: the migration code switches
-- the database to auto_vacuum = INCREMENTAL with one VACUUM after this transaction
-- (VACUUM cannot run inside one), and the trainer runs incremental_vacuum after each epoch.
DELETE FROM seen WHERE NOT EXISTS (
    SELECT 1
    FROM checkpoints c JOIN runs r ON r.id = c.run_id
    WHERE c.run_id = seen.run_id
      AND c.record_id = seen.record_id
      AND r.status <> 'failed'
      AND c.best_prefix < c.difficulty
      AND c.generation - coalesce(json_extract(c.rng_state, '$.epoch_start'), 0)
          < coalesce(json_extract(r.config_json, '$.training.max_generations'), 1 << 62)
      AND seen.generation > coalesce(json_extract(c.rng_state, '$.epoch_start'), 0)
);
