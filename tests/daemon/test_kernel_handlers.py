"""The daemon's ``weights.list``, ``validate.start`` and ``flash.deploy`` on a database
where two jobs trained the same data under different kernels (zero_bits 4, then 0):
each job keeps its weights, a selection that holds none says why, and a layer that mixes
the kernels is not deployed. Real database, handlers without a socket (as
test_handlers.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from hasherd.actors.evaluator import EvaluatorActor
from hasherd.actors.pool import ActorPool
from hasherd.backends import create
from hasherd.config import Config
from hasherd.control.params import Handler
from hasherd.daemon import handlers
from hasherd.deploy import handlers as deploy_handlers
from hasherd.errors import InputError
from hasherd.storage import Store
from hasherd.validation.service import ValidationService
from tests.storage.test_weight_kernel import _two_kernels

pytestmark = pytest.mark.anyio


class Methods(dict[str, Handler]):
    def register(self, method: str, handler: Handler) -> None:
        self[method] = handler

    async def call(self, method: str, **params: Any) -> Any:
        return await self[method](params)


@pytest.fixture
async def methods(tmp_path: Path) -> AsyncIterator[Methods]:
    cfg = Config()
    pool = ActorPool([EvaluatorActor("ref0", "reference", lambda: create("reference"))])
    found = Methods()
    async with await Store.open(tmp_path / "h.db") as store, anyio.create_task_group() as tg:
        await _two_kernels(store)
        handlers.register_weights(found, store)
        handlers.register_validation(found, ValidationService(store, pool, lambda: cfg, tg))
        deploy_handlers.register(found, store, lambda: cfg)
        yield found


async def test_each_job_keeps_its_kernel_and_an_empty_selection_says_why(
    methods: Methods,
) -> None:
    one = await methods.call("weights.list", job=1)
    assert one["total"] == 2 and {w["zero_bits"] for w in one["weights"]} == {4}
    two = await methods.call("weights.list", kernel="zb=0/p=21")
    assert {(w["run_id"], w["passes"], w["token_bits"]) for w in two["weights"]} == {(2, 21, 8)}
    assert (await methods.call("weights.list"))["total"] == 4
    with pytest.raises(InputError, match=r"job 1 \(run 1\) trains kernel zb=4/p=21/tb=8"):
        await methods.call("weights.list", job=1, kernel="zb=0")
    with pytest.raises(InputError, match="kernel: 'zb=x': 'x' is not a whole number"):
        await methods.call("weights.list", kernel="zb=x")


async def _validation(methods: Methods, **params: Any) -> dict[str, Any]:
    started = (await methods.call("validate.start", **params))["validation"]
    with anyio.fail_after(30):
        while True:
            shown = (await methods.call("validate.show", id=started["id"]))["validation"]
            if shown["state"] != "running":
                return dict(shown)
            await anyio.sleep(0.02)


async def test_validate_a_job_checks_its_own_weights_never_zero(methods: Methods) -> None:
    v = await _validation(methods, job=1, evaluator="reference", against="reference")
    assert v["state"] == "finished" and v["report"]["selected"] == 2, v
    assert v["report"]["checked"] == 2
    v = await _validation(methods, job=2, kernel="zb=4", evaluator="reference", against="reference")
    assert v["state"] == "failed" and v["report"] is None
    assert "job 2 (run 2) trains kernel zb=0/p=21/tb=8" in v["error"]
    with pytest.raises(InputError, match="kernel"):
        await methods.call("validate.start", kernel="zz=1")


async def test_flash_refuses_a_layer_of_two_kernels(methods: Methods) -> None:
    with pytest.raises(InputError, match="layer 0 holds weights of 2 kernels"):
        await methods.call("flash.deploy", layer=0, dry_run=True, validation_mode="lenient")
