"""The Ray driver loop on fake actors (no Ray): it always ends, and a lost pool is one error.

A fake actor has Ray's restart accounting: it has ``max_restarts + 1`` lives, each crash spends
one, and once they are spent every call raises (as Ray's ``ActorDiedError`` does for an actor
that cannot be restarted); while it restarts, calls raise ``ActorUnavailableError`` (Ray 2.58's
answer to a call on a restarting actor with ``max_task_retries=0``). Time is a fake clock.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from neuron_signatures.scale import pool
from neuron_signatures.scale.pool import WorkersLostError, id_ranges, resume_command, run_pool


class Died(Exception):
    """Stands for ``ray.exceptions.RayActorError`` (``ActorDiedError``)."""


class Unavailable(Died):
    """Stands for ``ray.exceptions.ActorUnavailableError`` (a subclass, as in Ray)."""


class Spinning(Exception):
    """The driver kept waiting long after every actor was gone."""


class Ref:
    def __init__(self, fn: Callable[[], Any], method: str) -> None:
        self.fn, self.method = fn, method


class FakeRay:
    """``wait`` (every call is finished at once) and ``get``; counts the waits."""

    exceptions = SimpleNamespace(
        RayActorError=Died, ActorUnavailableError=Unavailable, RayTaskError=RuntimeError
    )

    def __init__(self, max_waits: int = 10_000) -> None:
        self.waits, self.max_waits = 0, max_waits

    def wait(self, refs: list[Ref], num_returns: int = 1, timeout: Any = None) -> Any:
        self.waits += 1
        if self.waits > self.max_waits:
            raise Spinning(f"{self.waits} waits")
        return refs[:1], refs[1:]

    def get(self, ref: Ref) -> Any:
        return ref.fn()


class Method:
    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def remote(self, *args: Any) -> Ref:
        return Ref(lambda: self.fn(*args), self.fn.__name__)


class FakeActor:
    """``crashes[t]``: how many runs of task ``t`` kill the actor; after each crash the next
    ``restarting`` calls find it restarting."""

    def __init__(
        self, lives: int, crashes: dict[int, int] | None = None, restarting: int = 0
    ) -> None:
        self.lives, self.crashes = lives, collections.Counter(crashes or {})
        self.restarting, self.busy_restarting = restarting, 0
        self.probes = 0
        self.pid, self.run = Method(self._pid), Method(self._run)

    def _alive(self) -> None:
        if self.lives <= 0:
            raise Died("the actor is dead and cannot be restarted")
        if self.busy_restarting:
            self.busy_restarting -= 1
            raise Unavailable("restarting")

    def _pid(self) -> int:
        self.probes += 1
        self._alive()
        return 1

    def _run(self, t: int) -> int:
        self._alive()
        if self.crashes[t]:
            self.crashes[t] -= 1
            self.lives -= 1
            self.busy_restarting = self.restarting
            raise Unavailable("killed")  # what Ray 2.58 raised for a SIGKILLed actor's task
        return t


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A fake clock: ``time.sleep`` advances it at once."""
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    monkeypatch.setattr(pool.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(pool.time, "sleep", sleep)
    return now


def submit(actor: FakeActor, t: int) -> Ref:
    return actor.run.remote(t)


def test_one_worker_exhausted_before_any_unit_hits_its_limit() -> None:
    """The issue's case: ``--workers 1``, max 3 retries; units 0 and 1 each lose the worker twice
    (each below its limit), which spends the actor's 4 lives. The loop used to probe the dead
    actor forever; now it stops at once with one error naming the units not built."""
    ray, actor, done = FakeRay(), FakeActor(lives=4, crashes={0: 2, 1: 2}), []
    with pytest.raises(WorkersLostError) as e:
        run_pool(ray, [actor], [0, 1, 2], submit, lambda t, r: done.append(t), 3)
    msg = str(e.value)
    assert "\n" not in msg
    assert "every Ray worker is lost (1 of 1" in msg
    assert "not finished: tasks 1-2;" in msg and msg.endswith("with --resume")
    assert done == [0]
    assert actor.probes == 3  # one per restart, none once the actor is dead for good
    assert ray.waits == 4 + 1 + 3  # 4 lost runs, 1 finished run, 3 answered probes


def test_lost_error_names_units_and_the_resume_command() -> None:
    ray = FakeRay()
    crash_every_task = {t: 1 for t in range(6)}
    actors = [FakeActor(lives=2, crashes=crash_every_task) for _ in range(2)]
    cmd = resume_command(["atlas", "--out_dir", "my atlas", "--overwrite"])
    assert cmd is not None
    with pytest.raises(WorkersLostError) as e:
        run_pool(
            ray, actors, range(6), submit, lambda t, r: None, 5, max_restarts=1,
            describe=lambda ts: f"units {id_ranges(ts)}", resume=cmd,
        )  # fmt: skip
    msg = str(e.value)
    assert "(2 of 2, each beyond its 1 restarts" in msg
    assert "not finished: units 0-5;" in msg
    assert msg.endswith("then run: neuron-signatures atlas --out_dir 'my atlas' --resume")
    assert ray.waits < 50


def test_dead_actor_is_retired_and_the_others_finish() -> None:
    """One actor is dead for good from its first task; the other one does every task."""
    ray, done = FakeRay(), []
    dead, alive = FakeActor(lives=0), FakeActor(lives=4)
    lost = run_pool(ray, [dead, alive], range(5), submit, lambda t, r: done.append(r), 3)
    assert sorted(done) == [0, 1, 2, 3, 4]
    assert lost == 1  # task 0 resubmitted once
    assert dead.probes <= 3  # at most one per restart it might still have


def test_a_task_lost_too_often_stops_with_the_resume_command() -> None:
    ray = FakeRay()
    actors = [FakeActor(lives=10, crashes={3: 10})]
    with pytest.raises(
        WorkersLostError, match=r"^shard 3 failed 3 times \(last: Unavailable\).*run: R$"
    ):
        run_pool(
            ray, actors, [3], submit, lambda t, r: None, 2, max_restarts=9,
            describe=lambda ts: f"shard {id_ranges(ts)}", resume="R",
        )  # fmt: skip


def test_probe_that_never_answers_retires_the_actor(clock: list[float]) -> None:
    """A restart that never comes (no node left for the actor): probes are never answered, so
    after ``probe_timeout_s`` the actor is retired and the run stops."""

    class ProbesHang(FakeRay):
        def wait(self, refs: list[Ref], num_returns: int = 1, timeout: Any = None) -> Any:
            if all(r.method == "_pid" for r in refs):
                assert timeout is not None  # a probe always has a deadline
                clock[0] += timeout
                return [], refs
            return super().wait(refs, num_returns, timeout)

    actor = FakeActor(lives=4, crashes={0: 1})
    with pytest.raises(WorkersLostError, match="not finished: tasks 0-1;"):
        run_pool(ProbesHang(), [actor], [0, 1], submit, lambda t, r: None, 3, probe_timeout_s=60)
    assert clock[0] == 60
    assert actor.probes == 0  # the probe was sent but never ran


def test_restarting_actor_is_waited_for_not_counted_dead(clock: list[float]) -> None:
    """Ray 2.58 refuses calls to a restarting actor (``ActorUnavailableError``): those probes
    are retried with a doubling back-off and cost no restart, so one crash with one restart
    allowed still finishes every task."""
    actor, done = FakeActor(lives=2, crashes={1: 1}, restarting=5), []
    lost = run_pool(
        FakeRay(), [actor], range(4), submit, lambda t, r: done.append(r), 3, max_restarts=1
    )
    assert done == [0, 1, 2, 3] and lost == 1
    assert actor.probes == 6  # 5 refused while restarting, the 6th answered
    assert clock[0] == 0.5 + 1 + 2 + 4 + 8 + 8  # back-off doubles, capped at 8 s


def test_actor_unavailable_for_ever_is_retired_in_time(clock: list[float]) -> None:
    actor = FakeActor(lives=2, crashes={0: 1}, restarting=10**9)
    with pytest.raises(WorkersLostError, match="unanswered for 60 s"):
        run_pool(FakeRay(), [actor], [0], submit, lambda t, r: None, 3, probe_timeout_s=60)
    assert clock[0] == 60 and actor.probes == 11  # at 0.5, 1.5, 3.5, 7.5, 15.5, ..., 55.5, 60


def test_id_ranges_and_resume_command() -> None:
    assert id_ranges([7, 0, 1, 2, 5, 8]) == "0-2, 5, 7-8"
    assert id_ranges([4]) == "4"
    argv = ["dump", "--single_prompt", "a b", "--resume", "--engine", "ray"]
    assert resume_command(argv) == (
        "neuron-signatures dump --single_prompt 'a b' --engine ray --resume"
    )
    assert resume_command(None) is None


def test_lost_head_stops_at_once_with_the_resume_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """A task lost while the cluster's GCS no longer answers (every node gone): nothing can come
    back, so the run stops at once, naming the head and every unfinished task."""
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setattr(pool, "GCS_WAIT_S", 0.2)
    ray = FakeRay()
    ray.get_runtime_context = lambda: SimpleNamespace(gcs_address=dead)  # type: ignore[attr-defined]
    actor = FakeActor(lives=4, crashes={0: 1})
    with pytest.raises(pool.ClusterLostError) as e:
        run_pool(ray, [actor], [0, 1, 2], submit, lambda t, r: None, 3, resume="RESUME")
    msg = str(e.value)
    assert "\n" not in msg and f"GCS {dead}, stopped answering" in msg
    assert "not finished: tasks 0-2;" in msg and msg.endswith("then run: RESUME")
    assert ray.waits == 1  # no probe, no resubmission


def test_lost_task_with_the_head_alive_is_resubmitted() -> None:
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        ray = FakeRay()
        alive = f"127.0.0.1:{server.getsockname()[1]}"
        ray.get_runtime_context = lambda: SimpleNamespace(gcs_address=alive)  # type: ignore[attr-defined]
        actor = FakeActor(lives=4, crashes={0: 1})
        done: list[int] = []
        assert run_pool(ray, [actor], [0, 1], submit, lambda t, r: done.append(t), 3) == 1
    assert sorted(done) == [0, 1]
