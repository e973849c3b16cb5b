"""Training data: frame files (JSON, JSON Lines, Arrow, Parquet, CSV), raw text, Markdown
and PDF, read into a ``Dataset`` whose feature vectors are also the jitter memory.

The upstream encoder's output (``asic_slot_N`` int32 fields, ``DATA/frames``, the Go
trainer's ``_with_seeds`` files) loads as written: ``upstream`` and ``layout``.
See docs/data.md for the formats, the feature words of text records and error handling.
"""

from hasherd.data.dataset import Dataset, load_dataset
from hasherd.data.report import DataError, IngestReport, RowError

__all__ = ["DataError", "Dataset", "IngestReport", "RowError", "load_dataset"]
