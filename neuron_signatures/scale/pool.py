"""Hand tasks to a pool of Ray actors: one task per idle actor, lost tasks resubmitted.

1. Each idle actor gets the next task; results are taken in completion order.
2. A task whose actor dies (SIGKILL, OOM, a lost node) goes back to the front of the queue, to
   any idle actor; after ``max_retries`` losses of one task the run stops.
3. The actor that lost it is probed (``pid()``), with a doubling back-off, until it answers; Ray
   restarts it up to ``max_restarts`` times and it gets work again once the probe answers. A probe
   refused with ``ActorUnavailableError`` (Ray 2.5x's answer while the actor restarts) is retried;
   a lost task or a probe refused with another actor error counts one death. Ray spends one
   restart per death, so an actor with more deaths than ``max_restarts`` is dead for good and is
   not probed again; nor is one that has not answered ``probe_timeout_s`` after its loss.
4. When no actor is left and work remains, the run stops with :class:`WorkersLostError`, naming
   the unfinished tasks and the command that resumes them. So the loop always ends.
5. A lost task first checks that the cluster's head (its GCS) still answers: when the head is
   gone (every node lost), nothing can come back, so the run stops at once with
   :class:`ClusterLostError` (Ray itself would end the driver process a minute later with a
   multi-line log and no resume command).
An error raised by the task's own code stops the run (a domain error keeps its one-line message).
"""

from __future__ import annotations

import collections
import itertools
import logging
import shlex
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..errors import NeuronSignaturesError

log = logging.getLogger(__name__)
PROBE = -1
BACKOFF_CAP_S = 8.0


class WorkersLostError(NeuronSignaturesError):
    """Ray workers were lost beyond their restarts (or a task beyond its retries)."""


class ClusterLostError(WorkersLostError):
    """The Ray cluster's head (GCS) stopped answering: no worker can come back."""


GCS_WAIT_S = 10.0  # a head that has not answered this long after a loss is gone


def gcs_address(ray: Any) -> str | None:
    """The GCS ``host:port`` of the cluster this driver joined (``None``: unknown, a client)."""
    try:
        return str(ray.get_runtime_context().gcs_address) or None
    except Exception:  # a fake Ray, a Ray client, or no runtime context
        return None


def gcs_answers(address: str, wait_s: float | None = None) -> bool:
    """Whether a TCP connection to the GCS at ``address`` opens within ``wait_s`` (default
    :data:`GCS_WAIT_S`), retried each second."""
    import socket

    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + (GCS_WAIT_S if wait_s is None else wait_s)
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=2):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(1)


def resume_command(argv: Sequence[str] | None) -> str | None:
    """The shell command that resumes ``neuron-signatures <argv>`` (``--overwrite`` dropped,
    ``--resume`` added once); ``None`` when the command line is not known."""
    if not argv:
        return None
    args = [a for a in argv if a not in ("--overwrite", "--resume")]
    return shlex.join(["neuron-signatures", *args, "--resume"])


def id_ranges(ids: Iterable[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` → ``"0-2, 5, 7-8"``."""
    out = []
    for _, run in itertools.groupby(enumerate(sorted(set(ids))), lambda p: p[1] - p[0]):
        ks = [k for _, k in run]
        out.append(str(ks[0]) if len(ks) == 1 else f"{ks[0]}-{ks[-1]}")
    return ", ".join(out)


def _tasks(ids: list[int]) -> str:
    return f"tasks {id_ranges(ids)}"


def run_pool(
    ray: Any,
    actors: list[Any],
    tasks: Iterable[int] | collections.deque[int],
    submit: Callable[[Any, int], Any],
    done: Callable[[int, Any], None],
    max_retries: int,
    *,
    max_restarts: int | None = None,
    describe: Callable[[list[int]], str] = _tasks,
    resume: str = "re-run the same command with --resume",
    backoff_s: float = 0.5,
    probe_timeout_s: float = 600.0,
) -> int:
    """Run every task (``submit(actor, task) -> ObjectRef``), calling ``done(task, result)`` as
    each finishes, in completion order; returns how many times a task was resubmitted.

    Given a deque, ``done`` may add tasks to it (the atlas driver adds merges as spans finish).

    Args:
        max_retries: losses of one task before the run stops.
        max_restarts: the actors' ``max_restarts`` (default ``max_retries``).
        describe: names unfinished tasks for the error (``[3, 4] -> "units 3-4"``).
        resume: the command that resumes the run, quoted in the errors.
        backoff_s: wait before the first probe of a lost actor, doubled for each later probe.
        probe_timeout_s: an actor that has not answered a probe this long after its loss is
            not used again.

    Raises:
        WorkersLostError: a task lost more than ``max_retries`` times, or no actor left.
    """
    pool = _Pool(ray, actors, submit, max_retries, max_restarts, backoff_s, probe_timeout_s)
    todo = tasks if isinstance(tasks, collections.deque) else collections.deque(tasks)
    while todo or pool.running():
        while todo and pool.idle:
            pool.start(todo.popleft())
        if not pool.pending and not pool.probe_at:
            n = len(actors)
            raise WorkersLostError(
                f"every Ray worker is lost ({n} of {n}, each beyond its {pool.max_restarts} "
                f"restarts or unanswered for {probe_timeout_s:.0f} s); not finished: "
                f"{describe(list(todo))}; check the workers' logs (out of memory? a lost node?), "
                f"then run: {resume}"
            )
        got = pool.next()
        if got is None:
            continue
        t, i, result = got
        if isinstance(result, _Lost):
            if pool.gcs and not gcs_answers(pool.gcs):
                left = [*todo, *([t] if t != PROBE else []), *pool.tasks()]
                raise ClusterLostError(
                    f"the Ray cluster is gone (its head, GCS {pool.gcs}, stopped answering, and "
                    f"the workers of all {len(actors)} actors with it); not finished: "
                    f"{describe(sorted(left))}; restart the cluster, then run: {resume}"
                )
            if t != PROBE:
                pool.attempts[t] += 1
                if pool.attempts[t] > max_retries:
                    raise WorkersLostError(
                        f"{describe([t])} failed {pool.attempts[t]} times (last: "
                        f"{result}): check the workers' logs, then run: {resume}"
                    )
                log.warning("%s lost with its worker (%s): resubmitting", describe([t]), result)
                todo.appendleft(t)
            pool.lost(i, died=t != PROBE or result.died)
            continue
        pool.answered(i)
        if t != PROBE:
            done(t, result)
    return int(sum(pool.attempts.values()))


class _Lost:
    """A call that failed because its actor died (``died``) or was unavailable."""

    def __init__(self, e: BaseException, died: bool) -> None:
        self.name, self.died = type(e).__name__, died

    def __str__(self) -> str:
        return self.name


class _Pool:
    """The actors: idle, busy (``pending``), waiting for a probe (``probe_at``), or retired."""

    def __init__(
        self,
        ray: Any,
        actors: list[Any],
        submit: Callable[[Any, int], Any],
        max_retries: int,
        max_restarts: int | None,
        backoff_s: float,
        probe_timeout_s: float,
    ) -> None:
        self.ray, self.actors, self.submit = ray, actors, submit
        self.max_restarts = max_retries if max_restarts is None else max_restarts
        self.backoff_s, self.probe_timeout_s = backoff_s, probe_timeout_s
        self.idle = list(range(len(actors)))[::-1]
        self.pending: dict[Any, tuple[int, int]] = {}  # ref → (task, or PROBE; actor)
        self.probe_at: dict[int, float] = {}  # actor → when to probe it (monotonic s)
        self.give_up_at: dict[int, float] = {}  # actor → end of its recovery
        self.probes: collections.Counter[int] = collections.Counter()  # in this recovery
        self.deaths = [0] * len(actors)
        self.attempts: collections.Counter[int] = collections.Counter()
        self.lost_types = lost_errors(ray)
        self.unavailable = getattr(ray.exceptions, "ActorUnavailableError", ())
        self.gcs = gcs_address(ray)

    def running(self) -> bool:
        return any(t != PROBE for t, _ in self.pending.values())

    def tasks(self) -> list[int]:
        """The tasks handed out and not finished."""
        return [t for t, _ in self.pending.values() if t != PROBE]

    def start(self, t: int) -> None:
        i = self.idle.pop()
        self.pending[self.submit(self.actors[i], t)] = (t, i)

    def next(self) -> tuple[int, int, Any] | None:
        """The next finished call ``(task, actor, result or _Lost)``, or ``None`` when only
        time passed (probes sent, recoveries given up)."""
        now = time.monotonic()
        for i, at in sorted(self.probe_at.items()):
            if at <= now:
                del self.probe_at[i]
                self.pending[self.actors[i].pid.remote()] = (PROBE, i)
        if not self.pending:  # only actors to probe later: nothing else can happen before
            time.sleep(max(0.0, min(self.probe_at.values()) - now))
            return None
        wake = min([*self.probe_at.values(), *self.give_up_at.values()], default=None)
        timeout = None if wake is None else max(0.0, wake - now)
        ready, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=timeout)
        if not ready:
            self._give_up(time.monotonic())
            return None
        t, i = self.pending.pop(ready[0])
        try:
            return t, i, self.ray.get(ready[0])
        except self.lost_types as e:
            return t, i, _Lost(e, died=not isinstance(e, self.unavailable))
        except self.ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            raise (cause if isinstance(cause, NeuronSignaturesError) else e) from None

    def answered(self, i: int) -> None:
        self.give_up_at.pop(i, None)
        self.probes[i] = 0
        self.idle.append(i)

    def lost(self, i: int, died: bool) -> None:
        """Actor ``i`` lost a call: probe it after a back-off, or retire it."""
        self.deaths[i] += died
        now = time.monotonic()
        give_up = self.give_up_at.setdefault(i, now + self.probe_timeout_s)
        if self.deaths[i] > self.max_restarts or now >= give_up:
            self._retire(i)
            return
        backoff = min(self.backoff_s * 2 ** self.probes[i], BACKOFF_CAP_S)
        self.probe_at[i] = min(now + backoff, give_up)  # the last probe at the deadline
        self.probes[i] += 1

    def _give_up(self, now: float) -> None:
        """Retire the actors whose probe is still unanswered at the end of their recovery."""
        for ref, (_, i) in list(self.pending.items()):
            if self.give_up_at.get(i, float("inf")) <= now:
                del self.pending[ref]
                self._retire(i)

    def _retire(self, i: int) -> None:
        log.warning(
            "Ray worker %d is not used again (%d deaths, %d restarts allowed, %d probes)",
            i, self.deaths[i], self.max_restarts, self.probes[i],
        )  # fmt: skip
        self.give_up_at.pop(i, None)
        self.probe_at.pop(i, None)


def lost_errors(ray: Any) -> tuple[type[BaseException], ...]:
    """Ray's errors for a worker that died or became unreachable (the task is resubmitted)."""
    names = ("RayActorError", "ActorUnavailableError", "WorkerCrashedError", "ObjectLostError")
    return tuple(getattr(ray.exceptions, n) for n in names if hasattr(ray.exceptions, n))


def start_actors(
    ray: Any,
    cls: type,
    workers: int | None,
    max_restarts: int,
    model_name: str,
    device: str | None,
    model_dtype: str,
    *extra: Any,
) -> list[Any]:
    """One ``cls(model_name, device, model_dtype, *extra)`` actor per worker, one GPU each when
    the cluster has GPUs and ``device`` is not a CPU (default: one worker per GPU, else 2)."""
    from ..errors import BadArgumentError

    gpus = int(ray.cluster_resources().get("GPU", 0))
    gpu = gpus > 0 and not (device or "").startswith("cpu")
    n = workers or (gpus if gpu else 2)
    if n < 1:
        raise BadArgumentError(f"--workers must be at least 1, got {n}")
    actor = ray.remote(cls).options(
        num_cpus=1,
        num_gpus=1 if gpu else 0,
        max_restarts=max_restarts,
        max_task_retries=0,  # the driver resubmits a lost task (to any idle worker)
    )
    device = (device or "cuda") if gpu else device
    log.info("starting %d Ray workers (%s)", n, "1 GPU each" if gpu else device or "auto")
    return [actor.remote(model_name, device, model_dtype, *extra) for _ in range(n)]


def nodes_used(ray: Any, per_worker: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The Ray nodes that ran work: node id → address, custom resources and units run.

    A node that left the cluster is still named (its resources as Ray last knew them)."""
    known = {n["NodeID"]: n for n in ray.nodes()}
    out: dict[str, dict[str, Any]] = {}
    for w in per_worker.values():
        node = w.get("node")
        if not node:
            continue
        n = known.get(node, {})
        custom = [k for k in n.get("Resources", {}) if _custom(k)]
        entry = out.setdefault(
            node,
            {
                "address": n.get("NodeManagerAddress"),
                "alive": bool(n.get("Alive", False)),
                "resources": sorted(custom),
                "units": 0,
            },
        )
        entry["units"] += int(w.get("units", 0))
    return out


def _custom(resource: str) -> bool:
    """A resource the cluster's owner named (not CPU, GPU, memory, node:<ip>, ...)."""
    standard = ("CPU", "GPU", "memory", "object_store_memory")
    return resource not in standard and not resource.startswith(("node:", "accelerator_type"))
