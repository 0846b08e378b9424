"""The resolver's worker pool: every job runs, idle threads go away promptly."""

from __future__ import annotations

import _thread
import threading
import time

from reseau_patch.io.resolver.system import WorkerPool

WAIT_S = 30.0


def _wait_until(cond, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


def test_every_job_runs_while_workers_come_and_go() -> None:
    # A tiny idle timeout makes workers exit between bursts, racing new submissions: a job
    # must never be left queued with no worker to run it.
    pool = WorkerPool(max_workers=2, idle_timeout=0.001)
    done: list[int] = []
    lock = threading.Lock()

    def job(i: int) -> None:
        with lock:
            done.append(i)

    def submitter(base: int) -> None:
        for i in range(100):
            pool.submit(lambda i=base + i: job(i))
            if i % 10 == 0:
                time.sleep(0.002)  # let the workers go idle and exit

    threads = [threading.Thread(target=submitter, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    _wait_until(lambda: len(done) == 400, f"only {len(done)} of 400 jobs ran")
    assert sorted(done) == sorted(k * 1000 + i for k in range(4) for i in range(100))
    pool.close()
    assert pool.threads == 0


def test_idle_workers_exit_promptly_and_are_not_threading_threads() -> None:
    before = _thread._count()
    pool = WorkerPool(max_workers=3, idle_timeout=0.05)
    seen: list[int] = []
    for _ in range(3):
        pool.submit(lambda: seen.append(_thread.get_ident()))
    _wait_until(lambda: len(seen) == 3, "jobs did not run")
    assert _thread.get_ident() not in seen
    names = {t.name for t in threading.enumerate()}
    assert not any(n.startswith("reseau-resolver") for n in names), names
    _wait_until(lambda: pool.threads == 0 and _thread._count() <= before,
                "idle resolver threads did not exit")
    pool.submit(lambda: seen.append(0))  # a fresh worker starts after all had exited
    _wait_until(lambda: len(seen) == 4, "no worker after the pool went idle")
    pool.close()


def test_a_failing_job_does_not_kill_its_worker(capsys) -> None:
    pool = WorkerPool(max_workers=1, idle_timeout=5.0)
    ran: list[int] = []

    def bad() -> None:
        raise RuntimeError("job failed")

    pool.submit(bad)
    pool.submit(lambda: ran.append(1))
    _wait_until(lambda: ran == [1], "the job after a failing one did not run")
    assert pool.threads == 1
    pool.close()
    assert pool.threads == 0
    assert "job failed" in capsys.readouterr().err
