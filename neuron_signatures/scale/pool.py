"""Hand tasks to a pool of Ray actors: one task per idle actor, lost tasks resubmitted.

A task whose actor dies (SIGKILL, OOM, a lost node) goes back to the front of the queue; the
actor, restarted by Ray (``max_restarts``), is given work again once it answers a probe. An
error raised by the task's own code stops the run (a domain error keeps its one-line message).
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import NeuronSignaturesError

log = logging.getLogger(__name__)
PROBE = -1


def run_pool(
    ray: Any,
    actors: list[Any],
    tasks: Iterable[int] | collections.deque[int],
    submit: Callable[[Any, int], Any],
    done: Callable[[int, Any], None],
    max_retries: int,
) -> int:
    """Run every task (``submit(actor, task) -> ObjectRef``), calling ``done(task, result)`` as
    each finishes, in completion order; returns how many times a task was resubmitted.

    Given a deque, ``done`` may add tasks to it (the atlas driver adds merges as spans finish).
    """
    todo = tasks if isinstance(tasks, collections.deque) else collections.deque(tasks)
    pending: dict[Any, tuple[int, int]] = {}  # ref → (task, or PROBE; actor)
    idle = list(range(len(actors)))[::-1]
    attempts: collections.Counter[int] = collections.Counter()
    lost = lost_errors(ray)
    while todo or any(t != PROBE for t, _ in pending.values()):
        while todo and idle:
            t, i = todo.popleft(), idle.pop()
            pending[submit(actors[i], t)] = (t, i)
        (ref,), _ = ray.wait(list(pending), num_returns=1)
        t, i = pending.pop(ref)
        try:
            result = ray.get(ref)
        except lost as e:
            time.sleep(0.5)
            pending[actors[i].pid.remote()] = (PROBE, i)
            if t == PROBE:
                continue
            attempts[t] += 1
            if attempts[t] > max_retries:
                raise NeuronSignaturesError(
                    f"task {t} failed {attempts[t]} times (last: {type(e).__name__}): check the "
                    "workers' logs, then re-run with --resume"
                ) from None
            log.warning("task %d lost with its worker (%s): resubmitting", t, type(e).__name__)
            todo.appendleft(t)
            continue
        except ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            raise (cause if isinstance(cause, NeuronSignaturesError) else e) from None
        idle.append(i)
        if t != PROBE:
            done(t, result)
    return int(sum(attempts.values()))


def lost_errors(ray: Any) -> tuple[type[BaseException], ...]:
    """Ray's errors for a worker that died or became unreachable (the task is resubmitted)."""
    names = ("RayActorError", "ActorUnavailableError", "WorkerCrashedError", "ObjectLostError")
    return tuple(getattr(ray.exceptions, n) for n in names if hasattr(ray.exceptions, n))


def init_ray(ray: Any, address: str | None, workers: int | None) -> bool:
    """Join ``address`` or start a quiet local Ray; ``True`` if this call started it."""
    if ray.is_initialized():
        return False
    quiet = dict(logging_level=logging.WARNING, log_to_driver=False)
    if address:
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as e:
            from ..errors import BadArgumentError

            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BadArgumentError(
                f"cannot join the Ray cluster at {address} ({reason}): start it with "
                "`ray start --head`, or drop --ray_address to run a local Ray"
            ) from None
    else:
        ray.init(
            num_cpus=workers or 2,
            include_dashboard=False,
            object_store_memory=128 * 2**20,
            **quiet,
        )
    return True


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
