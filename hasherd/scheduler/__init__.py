"""The GRPO scheduler: turns a dataset's records into populations and dispatches batches."""
