"""A real thread's hub and loop end with the thread (``scenarios/thread_exit.py``)."""

from __future__ import annotations

import pytest

from .conftest import NO_THREAD


@pytest.mark.parametrize("case", ["sockets", "http_server", "parked_greenlet",
                                  "hub_never_ran", "gevent_threadpool"])
def test_finished_threads_leave_no_fd_or_hub(run_scenario, case):
    run_scenario("thread_exit", case, *NO_THREAD)
