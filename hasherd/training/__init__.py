"""Training, the pure part: the per-record evolutionary search (no asyncio, no storage)."""

from hasherd.training.search import Generation, Member, RecordSearch, SearchParams, record_key

__all__ = ["Generation", "Member", "RecordSearch", "SearchParams", "record_key"]
