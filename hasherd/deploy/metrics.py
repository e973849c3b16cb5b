"""Counters of deployments and rollbacks, read by the Prometheus collector at scrape time.

Updated on the event loop; ``snapshot()`` copies plain numbers, so the metrics server's
thread may call it at any time. NaN means "not known yet" (no status read or deployment
since the daemon started) and gives no sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hasherd.deploy.engine import LayerInfo


@dataclass
class DeployMetrics:
    deployments: int = 0
    rollbacks: int = 0
    failures: int = 0
    last_deploy_unix: float = math.nan  # when the live layer went live (deploy or rollback)
    live_layer: float = math.nan
    live_count: float = math.nan

    def observe(self, live: LayerInfo | None) -> None:
        """What is live now (None: nothing)."""
        if live is None:
            self.live_layer = self.live_count = self.last_deploy_unix = math.nan
            return
        self.live_layer, self.live_count = float(live.layer), float(live.count)
        self.last_deploy_unix = float(live.deployed_at)

    def deployed(self, live: LayerInfo) -> None:
        self.deployments += 1
        self.observe(live)

    def rolled_back(self, live: LayerInfo) -> None:
        self.rollbacks += 1
        self.observe(live)

    def failed(self) -> None:
        self.failures += 1

    def snapshot(self) -> dict[str, float | int]:
        return {
            "deployments": self.deployments,
            "rollbacks": self.rollbacks,
            "failures": self.failures,
            "last_deploy_unix": self.last_deploy_unix,
            "live_layer": self.live_layer,
            "live_count": self.live_count,
        }
