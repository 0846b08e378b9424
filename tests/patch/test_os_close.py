"""``os.close`` after ``patch_all()`` (``scenarios/os_close.py``)."""

from __future__ import annotations

import pytest

from .conftest import NO_THREAD


@pytest.mark.parametrize("flags", [(), NO_THREAD], ids=["threads-green", "threads-real"])
@pytest.mark.parametrize("case", ["pipe_eof", "thread_exit", "watched", "bad_input"])
def test_os_close(run_scenario, case, flags):
    run_scenario("os_close", case, *flags)
