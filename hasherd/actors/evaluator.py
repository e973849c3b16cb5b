"""An evaluator behind an actor: a CPU simulator, a GPU, a chip chain, later a remote peer.

The actor owns one ``Backend`` (``hasherd.actors.backend``) at a time: an in-process
evaluator on its own thread, off the event loop, so the loop stays responsive while every
core hashes, or a chip chain driven by coroutines on the loop. A job that raises, or runs
past ``timeout``, fails the actor: the job goes back to the pool to be re-dispatched, and
the pool restarts the actor after a backoff. A fresh backend is built at each (re)start,
so a restart really reopens the device.

The pool talks to an actor through its methods only: ``give`` and ``withdraw`` fill and
empty the mailbox, ``next_job``/``run_job``/``run_post`` serve it, ``abort`` gives up the
running job, ``idle`` waits for it, and ``start``, ``fail`` and ``stop`` move it between
states. Each finished job updates the actor's measured rates (``actors/rates.py``), by
which the pool sizes the work it gives it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio

from hasherd.actors.backend import Abortable, Backend, Pipelined, ThreadBackend
from hasherd.actors.base import ActorError, ActorState, ActorStats, ActorTimeout, EvalJob
from hasherd.actors.rates import CostModel, RateBook
from hasherd.kernel.evaluators.base import EvalRequest, EvalResult, Evaluator

DEFAULT_MAILBOX = 2
# A simulator's first estimate: 1 M double SHA-256 a second, a tenth or less of what one
# numba thread does (docs/perf.md), so an unmeasured actor is given too little, not too
# much, until its first batch is measured.
DEFAULT_COST = CostModel(hashes_per_second=1e6)


class EvaluatorActor:
    """One evaluator device (see the module docstring).

    ``factory`` builds an in-process ``Evaluator`` (on the actor's thread); ``backend``
    builds any other ``Backend``. Exactly one of them is given.
    """

    def __init__(
        self,
        name: str,
        kind: str,
        factory: Callable[[], Evaluator] | None = None,
        *,
        backend: Callable[[], Backend] | None = None,
        timeout: float = 30.0,
        mailbox: int = DEFAULT_MAILBOX,
        zero_bits: int | None = None,
        max_zero_bits: int = 32,
        cost: CostModel = DEFAULT_COST,
        node: str = "",
    ) -> None:
        self.name = name
        self.node = node  # the cluster node it runs on; "" = the daemon's own process
        self.zero_bits = zero_bits  # the only zero bits it serves (a chip); None = any
        self.max_zero_bits = max_zero_bits  # and none above this (a simulator's limit)
        self.kind = kind
        self._make = _backend_factory(name, factory, backend)
        self.timeout = timeout
        self.capacity = max(1, mailbox)
        self.state = ActorState.STOPPED
        self.stats = ActorStats()
        self.queued: list[EvalJob] = []  # the mailbox: jobs given, not yet started
        self.running: list[EvalJob] = []  # given to the device, in the order given
        self._backend: Backend | None = None
        self._wake = anyio.Event()  # set when the mailbox or the incarnation changes
        self._finished = anyio.Event()  # set when no job is running any more
        self._busy_since = 0.0  # when the device last went from idle to busy
        self.incarnation = 0  # counts starts: a work loop serves one incarnation only
        self._device_past: dict[str, Any] | None = None  # counters of earlier incarnations
        self.rates = RateBook(cost)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Build the backend and open it; on failure undo and raise ``ActorError``. Every
        start after the first counts as a restart."""
        self.incarnation += 1
        if self.incarnation > 1:
            self.stats.restarts += 1
        self._wake.set()  # a loop of the previous incarnation ends
        self.state = ActorState.STARTING
        try:
            backend = self._make()
            await backend.start()
        except BaseException as exc:
            self.state = ActorState.FAILED
            self.stats.failed(exc)
            if isinstance(exc, Exception):
                raise ActorError(self.name, f"cannot start: {exc}") from exc
            raise
        self._backend = backend
        self.state = ActorState.READY

    async def stop(self, *, restarting: bool = False) -> list[EvalJob]:
        """Stop; returns the jobs it had not started (to re-dispatch). Never raises.
        ``restarting`` leaves it STARTING rather than STOPPED while its device closes, so
        that work waits for it instead of being refused."""
        return await self._shut(ActorState.STARTING if restarting else ActorState.STOPPED)

    async def fail(self, exc: ActorError) -> list[EvalJob]:
        """Count ``exc`` and stop, FAILED until the next start; returns the jobs it had not
        started. Never raises."""
        self.stats.failed(exc)
        return await self._shut(ActorState.FAILED)

    async def _shut(self, state: ActorState) -> list[EvalJob]:
        """Leave ``state`` and empty the mailbox at once (the work loop ends), then close
        the backend."""
        self._device_past = self.device_stats()
        backend, self._backend = self._backend, None
        self.state = state
        left, self.queued = self.queued, []
        self._wake.set()
        if backend is not None:
            await backend.close()
        return left

    # -- work -----------------------------------------------------------------------------

    @property
    def load(self) -> int:
        return len(self.queued) + len(self.running)

    @property
    def current(self) -> EvalJob | None:
        """The job the device computes now (the first given of those running)."""
        return self.running[0] if self.running else None

    @property
    def depth(self) -> int:
        """Jobs its device may hold at once (``Pipelined``); 1 for most."""
        backend: object = self._backend
        return max(1, backend.pipeline_depth) if isinstance(backend, Pipelined) else 1

    def serves_bits(self, zero_bits: int) -> bool:
        """Whether it serves requests at ``zero_bits``: a chip its own only, a simulator any
        up to ``max_zero_bits`` (``devices.simulator_max_zero_bits``), and never what its
        running backend refuses."""
        if self.zero_bits is not None and zero_bits != self.zero_bits:
            return False
        if self._backend is not None and not self._backend.supports(zero_bits):
            return False
        return zero_bits <= self.max_zero_bits

    def serves(self, job: EvalJob) -> bool:
        """Whether every request of ``job`` is at zero bits this actor serves."""
        return self.serves_all(job.reqs)

    def serves_all(self, reqs: Sequence[EvalRequest]) -> bool:
        return all(self.serves_bits(r.zero_bits) for r in reqs)

    @property
    def working(self) -> bool:
        return self.state in (ActorState.READY, ActorState.BUSY)

    def estimate(self, reqs: Sequence[EvalRequest]) -> list[float]:
        """The estimated seconds of each request on this actor (``actors/rates.py``)."""
        return self.rates.seconds(reqs)

    def can_take(self) -> bool:
        return self.state in (ActorState.READY, ActorState.BUSY) and self.load < self.capacity

    def give(self, job: EvalJob) -> None:
        self.queued.append(job)
        self._wake.set()

    def withdraw(self, job: EvalJob) -> bool:
        """Take ``job`` back from the mailbox if it has not started; whether it was there."""
        left = [j for j in self.queued if j is not job]  # identity: jobs hold arrays
        taken = len(left) != len(self.queued)
        self.queued = left
        return taken

    async def next_job(self, incarnation: int) -> EvalJob | None:
        """The next job in the mailbox; None once this incarnation is over."""
        while True:
            if incarnation != self.incarnation or self.state in (
                ActorState.STOPPED,
                ActorState.FAILED,
                ActorState.STARTING,
            ):
                return None
            if self.queued:
                return self.queued.pop(0)
            if self._wake.is_set():  # one event shared by every waiter until it fires
                self._wake = anyio.Event()
            await self._wake.wait()

    async def idle(self) -> None:
        """Return once no job is running (the running one finishes first)."""
        while self.running:
            await self._finished.wait()

    async def run_job(self, job: EvalJob) -> list[EvalResult]:
        """Evaluate one job on the backend; ActorTimeout past ``timeout``, ActorError on
        any other failure (an aborted job's included)."""
        backend = self._backend
        if backend is None:
            raise ActorError(self.name, "not started")
        if not self.running:
            self._finished, self._busy_since = anyio.Event(), time.monotonic()
        self.running.append(job)
        self.state = ActorState.BUSY
        job.started = time.monotonic()
        try:
            # A job given behind others waits for them on the device: its time limit
            # counts from when it was given, so it has theirs as well.
            with anyio.fail_after(self.timeout * len(self.running)):
                results = await backend.evaluate_many(job.reqs)
        except TimeoutError as exc:
            self._abandon(job)
            raise ActorTimeout(self.name, f"a batch took longer than {self.timeout:g} s") from exc
        except Exception as exc:
            raise ActorError(self.name, str(exc)) from exc
        finally:
            self._ended(job)
        self._count(job, results)
        return results

    def _ended(self, job: EvalJob) -> None:
        """``job`` left the device: the next one given starts computing now (its time,
        rates and lateness count from here), and the busy time closes when none is left."""
        now = time.monotonic()
        self.running = [j for j in self.running if j is not job]  # identity: jobs hold arrays
        for waiting in self.running:
            waiting.started = max(waiting.started, now)
        if not self.running:
            self._finished.set()
            self.stats.busy_seconds += now - self._busy_since
            if self.state == ActorState.BUSY:
                self.state = ActorState.READY

    def _count(self, job: EvalJob, results: list[EvalResult]) -> None:
        s = self.stats
        s.jobs += 1
        s.failing = 0
        s.candidates += sum(len(r) for r in results)
        s.dsha += sum(r.dsha for r in results)
        self.rates.record(job.reqs, time.monotonic() - job.started)

    def abort(self, job: EvalJob) -> None:
        """Give up ``job`` if it is running (or given to the device and waiting there):
        its outcome is dropped, and a backend that can (``Pipelined``, ``Abortable``)
        stops its kernel early; never blocks."""
        if any(j is job for j in self.running) and not job.withdrawn:
            self._abandon(job)

    def _abandon(self, job: EvalJob) -> None:
        job.withdrawn = True
        self.stats.abandoned += 1
        backend: object = self._backend  # any backend; some can also abort
        if isinstance(backend, Pipelined):
            backend.abort_call(job.reqs)
        elif isinstance(backend, Abortable):
            backend.abort()

    @property
    def post_apart(self) -> bool:
        """Whether its post steps run apart from its device (``Backend.post_apart``)."""
        return self._backend is not None and self._backend.post_apart

    async def probe(self) -> None:
        """``Backend.probe``; ActorError when the device is gone."""
        backend = self._backend
        if backend is None:
            return
        try:
            await backend.probe()
        except Exception as exc:
            raise ActorError(self.name, str(exc)) from exc

    async def run_post(self, job: EvalJob, results: list[EvalResult]) -> Any:
        """The job's ``post`` step off the event loop, on the backend (an in-process
        evaluator's own thread); None without one."""
        if job.post is None:
            return None
        backend = self._backend
        if backend is None:
            raise ActorError(self.name, "stopped before the post step")
        return await backend.run_post(job.post, results)

    def device_stats(self) -> dict[str, Any] | None:
        """The hardware counters (``Backend.device_stats``), summed over every start of
        the actor, so a reconnect does not reset them; None for a simulator."""
        current = self._backend.device_stats() if self._backend is not None else None
        return _fold(self._device_past, current)

    def snapshot(self) -> dict[str, Any]:
        device = self.device_stats()
        extra = {} if device is None else {"device": device}
        return {
            "name": self.name,
            "kind": self.kind,
            "node": self.node or "local",
            "state": str(self.state),
            "mailbox": len(self.queued),
            "mailbox_capacity": self.capacity,
            "in_flight": self.load,
            "threads": self._backend.threads if self._backend is not None else 0,
            **self.stats.snapshot(),
            "rates": self.rates.snapshot(),
            **({"zero_bits": self.zero_bits} if self.zero_bits is not None else {}),
            **extra,
        }


def _backend_factory(
    name: str, factory: Callable[[], Evaluator] | None, backend: Callable[[], Backend] | None
) -> Callable[[], Backend]:
    """What builds the actor's backend: ``backend`` itself, or an in-process evaluator
    from ``factory`` on a thread named after the actor."""
    if backend is not None and factory is None:
        return backend
    if factory is None or backend is not None:
        raise ValueError("an evaluator actor needs exactly one of factory and backend")
    make = factory

    def threaded() -> Backend:
        return ThreadBackend(f"hasherd-{name}", make)

    return threaded


def _fold(past: dict[str, Any] | None, now: dict[str, Any] | None) -> dict[str, Any] | None:
    """Counters of two device snapshots added (``chips`` and strings: the newer ones)."""
    if past is None or now is None:
        return now if now is not None else past
    device = {
        k: v if isinstance(v, str) or k == "chips" else v + past["device"].get(k, 0)
        for k, v in now["device"].items()
    }
    before = {c["chip"]: c for c in past["chips"]}
    chips = [
        {
            k: v if k in ("chip", "address") else v + before.get(c["chip"], {}).get(k, 0)
            for k, v in c.items()
        }
        for c in now["chips"]
    ]
    return {"device": device, "chips": chips}
