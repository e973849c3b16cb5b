"""Deploying trained weights into eBPF maps: flash, rollback, status (docs/bpf-abi.md).

``bpf`` speaks bpf(2) through ctypes (no libbpf, no bcc); ``abi`` packs the map entries;
``pins`` knows the pinned objects; ``engine`` builds, fills, verifies and swaps a layer;
``flash`` adds the database, the gates, retries, events and metrics.
"""

from hasherd.deploy.engine import Settings
from hasherd.deploy.errors import BpfError, DeployError
from hasherd.deploy.flash import Gates, deploy, rollback, status
from hasherd.deploy.metrics import DeployMetrics

__all__ = [
    "BpfError",
    "DeployError",
    "DeployMetrics",
    "Gates",
    "Settings",
    "deploy",
    "rollback",
    "status",
]
