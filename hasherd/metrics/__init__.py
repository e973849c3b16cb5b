"""Prometheus metrics: a collector over actor, job and store snapshots, and its endpoint.

See ``docs/metrics.md`` for every metric and example queries.
"""

from hasherd.metrics.collector import ACTOR_STATES, HasherCollector, MetricsSource
from hasherd.metrics.server import (
    DEFAULT_ADDRESS,
    GENERATION_BUCKETS,
    AddressInUseError,
    Metrics,
    MetricsServerError,
    parse_address,
)

__all__ = [
    "ACTOR_STATES",
    "DEFAULT_ADDRESS",
    "GENERATION_BUCKETS",
    "AddressInUseError",
    "HasherCollector",
    "Metrics",
    "MetricsServerError",
    "MetricsSource",
    "parse_address",
]
