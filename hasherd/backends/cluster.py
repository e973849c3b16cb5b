"""Evaluators on the nodes of a Ray cluster, behind the same ``Backend`` seam as local ones.

With ``[cluster] address`` set, the daemon is a Ray driver (docs/scale-out.md). Each
remote actor of the pool is an ``EvaluatorActor`` like any other whose backend is a
:class:`RayBackend`: ``start`` places a Ray actor (``cluster_node.NodeEvaluator``) on its
node and waits until its device is open, ``evaluate_many`` calls it and awaits the object
reference, ``close`` kills it. So the pool's states, mailbox bounds, rate-aware sizing,
straggler copies, re-dispatch and restarts, and the metrics, are the production code:
a node that dies fails its actors' calls (``ActorDiedError``), their pieces go to the
other actors, and each restart places the actor again, which waits (``start_timeout``)
until its node is back.

A node is named by a custom resource, ``hasherd_node:NAME``, that its ``ray start``
advertises; an actor asks for a sliver of it, so it can only run there. A job's jitter
memory goes into the object store once (``RayCluster.memory_ref``) and each call carries
the reference only; a node fetches it once (``cluster_node``).

``ray`` is an optional dependency (``hasherd[ray]``): it is imported when a cluster is
first used, and its absence is a ``ConfigError`` naming ``cluster.address``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from hasherd.backends.cluster_wire import (
    MEMORIES_KEPT,
    missing_of,
    pack_requests,
    unpack_results,
)
from hasherd.config import ChipDeviceConfig, ClusterConfig, Config
from hasherd.errors import ConfigError, EvaluatorError
from hasherd.kernel.evaluators.base import EvalRequest, EvalResult
from hasherd.kernel.memory import JitterMemory

T = TypeVar("T")

RESOURCE = "hasherd_node:"  # + the node's name: the custom resource that places an actor
SLIVER = 0.001  # of that resource per actor: any number of actors fit on their node
PROBE_TIMEOUT = 10.0  # seconds an idle node actor has to answer the pool's probe
MEMORY_REFS_KEPT = 16  # jitter memories whose object-store reference the head keeps
NODES_SECONDS = 10.0  # ``nodes.list`` waits this long for the cluster's answer
CLOSE_SECONDS = 5.0  # a node actor that does not close its device within this is killed
# Calls and answers up to this size travel inline, worker to worker: past Ray's default
# (100 KiB) each would go through the object store, a put and a get that cost more than
# the batch's kernel on a small machine (docs/scale-out.md, "The remote path's overhead").
INLINE = {"RAY_max_direct_call_object_size": str(16 << 20)}


def node_resource(node: str) -> str:
    """The custom resource a node named ``node`` advertises (``ray start --resources``)."""
    return f"{RESOURCE}{node}"


def check_ray() -> None:
    """``ConfigError`` naming ``cluster.address`` when ray is not installed: the daemon
    refuses to start rather than retry actors that can never start."""
    if importlib.util.find_spec("ray") is None:
        raise ConfigError("cluster.address", "needs the ray package: pip install 'hasherd[ray]'")


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "cluster.address", "needs the ray package: pip install 'hasherd[ray]'"
        ) from None
    return ray


class RayCluster:
    """The daemon's connection to a Ray cluster: one per daemon, shared by its remote
    actors. Connects on first use (off the event loop); never before."""

    def __init__(self, cfg: ClusterConfig) -> None:
        self.cfg = cfg
        self._lock = threading.Lock()
        self._connected = False
        self._remote_class: Any = None
        self._refs: OrderedDict[str, Any] = OrderedDict()  # memory_id -> ObjectRef

    # -- connection -----------------------------------------------------------------------

    async def connect(self) -> None:
        if not self._connected:
            await anyio.to_thread.run_sync(self._connect)

    def _connect(self) -> None:
        with self._lock:
            if self._connected:
                return
            ray = _ray()
            for key, value in INLINE.items():  # read by the driver's core worker at init
                os.environ.setdefault(key, value)
            if not ray.is_initialized():
                ray.init(
                    address=self.cfg.address,
                    namespace=self.cfg.namespace,
                    log_to_driver=False,
                    configure_logging=False,
                )
            from hasherd.backends.cluster_node import NodeEvaluator

            self._remote_class = ray.remote(NodeEvaluator)
            self._connected = True

    def place(self, name: str, node: str, args: tuple[Any, ...], gpus: float) -> Any:
        """The Ray actor ``name`` on ``node`` (a live one of that name from an earlier
        head is taken over); blocking: call it on a worker thread."""
        self._connect()
        return self._remote_class.options(
            name=name,
            namespace=self.cfg.namespace,
            lifetime="detached",
            get_if_exists=True,
            num_cpus=0,
            num_gpus=gpus,
            resources={node_resource(node): SLIVER},
            max_restarts=0,
            max_concurrency=4,  # two batches (pipeline_depth), an abort and a stats read
            runtime_env={"env_vars": INLINE},
        ).remote(*args)

    @staticmethod
    def kill(handle: Any) -> None:
        with contextlib.suppress(Exception):  # already dead, or the cluster is gone
            _ray().kill(handle, no_restart=True)

    # -- memories -------------------------------------------------------------------------

    def memory_ref(self, memory: JitterMemory) -> Any:
        """The object-store reference of ``memory``'s frames, put there once."""
        key = memory.memory_id
        with self._lock:
            ref = self._refs.get(key)
            if ref is None:
                ref = _ray().put(memory.frames)
                self._refs[key] = ref
                while len(self._refs) > MEMORY_REFS_KEPT:
                    self._refs.popitem(last=False)
            self._refs.move_to_end(key)
            return ref

    def pack(self, reqs: Sequence[EvalRequest]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The requests without their memories (``cluster_wire``), and each memory's
        reference by id."""
        refs = {r.memory.memory_id: self.memory_ref(r.memory) for r in reqs}
        return pack_requests(reqs), refs

    # -- nodes ----------------------------------------------------------------------------

    def nodes(self) -> list[dict[str, Any]]:
        """Every node Ray knows (blocking: call it on a worker thread): its name (from its
        ``hasherd_node:`` resource, else its host), whether it is alive, its address and
        its CPUs and GPUs."""
        self._connect()
        out = []
        for n in _ray().nodes():
            res = n.get("Resources", {})
            names = [k[len(RESOURCE) :] for k in res if k.startswith(RESOURCE)]
            out.append(
                {
                    "name": names[0] if names else str(n.get("NodeManagerHostname", "")),
                    "node_id": str(n.get("NodeID", "")),
                    "alive": bool(n.get("Alive", False)),
                    "address": str(n.get("NodeManagerAddress", "")),
                    "cpus": float(res.get("CPU", 0)),
                    "gpus": float(res.get("GPU", 0)),
                }
            )
        return out

    async def list_nodes(self) -> list[dict[str, Any]]:
        """``nodes``, off the event loop, within ``NODES_SECONDS`` (an unreachable head
        of the cluster must not hang the control method)."""
        with anyio.fail_after(NODES_SECONDS):
            return await anyio.to_thread.run_sync(self.nodes, abandon_on_cancel=True)


def node_rows(
    actors: Sequence[dict[str, Any]],
    cluster: Sequence[dict[str, Any]] | None,
    configured: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """One row per node (``hasherctl nodes``): ``local`` (the daemon's process), each
    node of ``configured`` (``cluster.nodes``) and each node the cluster knows, with the
    actors that run there and how many of them work. ``alive`` is the cluster's word
    (None for ``local``, or when the cluster did not answer)."""
    rows: dict[str, dict[str, Any]] = {}

    def row(name: str) -> dict[str, Any]:
        blank = {"alive": None, "address": "", "cpus": None, "gpus": None}
        return rows.setdefault(name, {"name": name, **blank, "actors": [], "working": 0})

    for name in configured:
        row(name)
    for n in cluster or ():
        found = rows.get(n["name"])
        if found is not None and found["alive"] and not n["alive"]:
            continue  # a dead earlier incarnation of a node that is back
        r = row(n["name"])
        r.update({k: n[k] for k in ("alive", "address", "cpus", "gpus")})
    for a in actors:
        r = row(str(a.get("node", "local")))
        r["actors"].append(a["name"])
        r["working"] += str(a["state"]).lower() in ("ready", "busy")
    return sorted(rows.values(), key=lambda r: (r["name"] != "local", r["name"]))


class RayBackend:
    """One evaluator on a Ray node (see the module docstring): a simulator ``spec``
    (``numba:N``, ``reference``, ``cuda:0``) or a chip chain's table, on ``node``."""

    def __init__(
        self,
        cluster: RayCluster,
        name: str,
        node: str,
        *,
        spec: str | None = None,
        chip: ChipDeviceConfig | None = None,
        gpus: float = 0,
        share: int = 1,
    ) -> None:
        self.cluster, self.name, self.node = cluster, name, node
        self.spec, self.chip, self.gpus = spec, chip, gpus
        self.share = share  # CPU actors sharing the node's cores (``cluster.cpu_threads`` 0)
        self._handle: Any = None
        self.info: dict[str, Any] = {}  # where it runs: node, host, pid, threads
        self._device: dict[str, Any] | None = None
        self._kept: OrderedDict[str, None] = OrderedDict()  # memories the node keeps
        self._given = 0  # batches sent: each one's ticket
        self._tickets: dict[int, int] = {}  # id() of a batch's request list -> its ticket

    @property
    def threads(self) -> int:
        return int(self.info.get("threads", 0))

    async def start(self) -> None:
        """Place the Ray actor and open its device, within ``cluster.start_timeout``: a
        node that is down leaves the actor unplaced, and it is killed and the start
        fails (the pool retries after its backoff)."""
        await self.cluster.connect()
        args = (self.spec, self.chip, self.node, self.share)
        timeout = self.cluster.cfg.start_timeout
        place = self.cluster.place
        handle = await anyio.to_thread.run_sync(place, self.name, self.node, args, self.gpus)
        try:
            with anyio.fail_after(timeout):
                info = await handle.start.remote()
        except TimeoutError:
            self.cluster.kill(handle)
            raise EvaluatorError(
                self.name, f"not started on node {self.node} within {timeout:g} s (is it up?)"
            ) from None
        except BaseException as exc:
            self.cluster.kill(handle)
            if isinstance(exc, Exception):
                raise EvaluatorError(self.name, f"node {self.node}: {exc}") from exc
            raise
        self._handle, self.info = handle, dict(info)

    async def evaluate_many(self, reqs: list[EvalRequest]) -> list[EvalResult]:
        handle = self._handle
        if handle is None:
            raise EvaluatorError(self.name, "not started")
        packed, refs = self.cluster.pack(reqs)
        self._given += 1
        ticket = self._tickets[id(reqs)] = self._given
        try:
            answer = await handle.evaluate.remote(packed, self._unkept(refs), ticket)
            if missing_of(answer) is not None:  # it let one go: once more, with them all
                answer = await handle.evaluate.remote(packed, refs, ticket)
            results = unpack_results(answer)
            if self.chip is not None:
                self._device = await handle.device_stats.remote()
        except Exception as exc:  # the node died, or the evaluator raised there
            raise EvaluatorError(self.name, f"node {self.node}: {_short(exc)}") from exc
        finally:
            del self._tickets[id(reqs)]
        return results

    async def probe(self) -> None:
        """The node actor answers within ``PROBE_TIMEOUT`` (``start`` again is a no-op
        there), or the node is taken for dead or cut off."""
        handle = self._handle
        if handle is None:
            raise EvaluatorError(self.name, "not started")
        try:
            with anyio.fail_after(PROBE_TIMEOUT):
                await handle.start.remote()
        except TimeoutError:
            raise EvaluatorError(
                self.name, f"node {self.node} did not answer within {PROBE_TIMEOUT:g} s"
            ) from None
        except Exception as exc:
            raise EvaluatorError(self.name, f"node {self.node}: {_short(exc)}") from exc

    def _unkept(self, refs: dict[str, Any]) -> dict[str, Any]:
        """The references of the memories the node does not keep, as far as the head
        knows: it keeps the last ``MEMORIES_KEPT`` it was sent or used, in call order."""
        send = {m: ref for m, ref in refs.items() if m not in self._kept}
        for m in refs:
            self._kept[m] = None
            self._kept.move_to_end(m)
        while len(self._kept) > MEMORIES_KEPT:
            self._kept.popitem(last=False)
        return send

    @property
    def pipeline_depth(self) -> int:
        """Two batches in flight for a simulator: the next one waits on the node while
        one runs, so the node does not idle for a round trip between them. A chip chain
        takes one at a time."""
        return 1 if self.chip is not None else 2

    def abort_call(self, reqs: list[EvalRequest]) -> None:
        """Ask the node to stop the batch ``reqs`` (its answer is dropped anyway)."""
        ticket = self._tickets.get(id(reqs))
        if self._handle is not None and ticket is not None:
            with contextlib.suppress(Exception):
                self._handle.abort.remote(ticket)

    async def run_post(self, fn: Callable[[list[EvalResult]], T], results: list[EvalResult]) -> T:
        """``fn(results)`` on a worker thread of the head: the job's state lives here."""
        return await anyio.to_thread.run_sync(fn, results)

    @property
    def post_apart(self) -> bool:
        return True  # on a worker thread of the daemon

    def supports(self, zero_bits: int) -> bool:
        return self.chip is None or zero_bits == self.chip.zero_bits

    def device_stats(self) -> dict[str, Any] | None:
        """A chip's counters as of its last batch; None for a simulator."""
        return self._device

    async def close(self) -> None:
        """Close the device on its node, then kill the Ray actor; never raises."""
        handle, self._handle = self._handle, None
        if handle is None:
            return
        with anyio.move_on_after(CLOSE_SECONDS, shield=True), contextlib.suppress(Exception):
            await handle.close.remote()
        self.cluster.kill(handle)


def _short(exc: BaseException) -> str:
    """The first line of a Ray error (its full text carries the remote traceback)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def cluster_nodes(
    cfg: Config,
) -> tuple[Callable[[], Awaitable[list[dict[str, Any]]]] | None, tuple[str, ...]]:
    """What ``nodes.list`` asks: the cluster's nodes (None without ``cluster.address``)
    and the configured ones."""
    if not cfg.cluster.address:
        return None, cfg.cluster.nodes
    return RayCluster(cfg.cluster).list_nodes, cfg.cluster.nodes
