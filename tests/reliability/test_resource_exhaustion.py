"""Running out of fds: a server logs, backs off, keeps serving and recovers; a connect
fails with a clear ``OSError(EMFILE)``. In a subprocess with RLIMIT_NOFILE 128."""

from __future__ import annotations

import json


def test_accept_loop_survives_emfile_and_recovers(tools):
    # Found: the accept(server, cb) loop died on OSError(24) and accepted nothing after
    # (0/10 served once fds were free again).
    proc = tools.run_scenario("accept_emfile.py", patched=False, timeout=120)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["acceptor_alive"]
    assert out["echoed"] == out["served"] == 10
    assert out["fds_over_baseline"] <= 0
    assert "Too many open files" in out["log"][0] and "retrying" in out["log"][0]
    assert out["emfile_logs"] <= 50  # backed off: not one record per loop tick
    assert out["connect_error"][0] == 24


def test_patched_socketserver_recovers_from_emfile(tools):
    """The stdlib's socketserver on the patched socket: clean before this work; kept so."""
    proc = tools.run_scenario("patched_accept_emfile.py", timeout=120)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["accepted_while_out_of_fds"] < 10  # the probe did run out of fds
    assert out["echoed"] == 10 and out["fds_over_baseline"] <= 0
