"""A patched socket nobody closed dies by reference counting, as the stdlib's does.

``scenarios/prompt_finalization.py`` leaves plain and TLS sockets (client and accepted side)
in each state a wait can leave them in, drops the last reference with the cyclic gc off and
checks that the socket is freed right there, its fd closed and its ResourceWarning emitted.
The same file run unpatched checks that these expectations are the stdlib's own.
"""

from __future__ import annotations

import pytest

from .conftest import NO_THREAD

MODES = [pytest.param((), True, id="default"), pytest.param(NO_THREAD, True, id="nothread"),
         pytest.param((), False, id="stdlib")]


@pytest.mark.parametrize(("flags", "patched"), MODES)
@pytest.mark.parametrize("kind", ["plain", "tls"])
def test_unclosed_socket_is_freed_at_its_last_reference(run_scenario, kind, flags, patched):
    proc = run_scenario("prompt_finalization", kind, *flags, patched=patched)
    assert "FAIL" not in proc.stdout, proc.stdout
