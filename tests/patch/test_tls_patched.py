"""TLS under patch_all(): the caller's SSLContext drives our sans-IO engine from the
calling thread. Each scenario is a file in scenarios/, run in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import NO_THREAD, SCENARIOS
from .conftest import run_script as run


def test_requests_https_runs_on_the_engine():
    out = run("tls_requests_engine.py")
    # _sslobj is the C object itself, so stdlib-only methods work on it.
    assert "sslobj _SSLSocket chain 2 version TLSv1.3" in out, out


def test_patch_all_after_importing_requests_no_warning():
    proc = subprocess.run([sys.executable, "-W", "error", str(SCENARIOS / "tls_late_patch.py")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Warning" not in proc.stderr, proc.stderr
    assert proc.stdout.strip().endswith("ok")


@pytest.fixture(scope="module")
def stdlib_transcript() -> str:
    return run("tls_transcript.py", patched=False)


@pytest.mark.parametrize("flags", [(), NO_THREAD], ids=["default", "nothread"])
def test_ssl_socket_transcript_matches_the_stdlib(stdlib_transcript, flags):
    """Close without close_notify, unwrap with the plain stream after it, pending(), a peer
    that resets after sending, unconnected sockets (ENOTCONN), ResourceWarning, callbacks
    that get the socket and sleep, a partial record seen through select/poll, non-blocking
    writes: the patched transcript is the stdlib's, line for line."""
    ours = run("tls_transcript.py", *flags)
    assert ours.splitlines() == stdlib_transcript.splitlines()
    assert "eof SSLEOFError errno=8" in ours and "plain True b'after tls' b''" in ours
    assert "partial: recv SSLWantReadError errno=2" in ours
    assert "reset ragged True [\"b''\", \"b''\", \"b''\"]" in ours


def test_tls_sockets_cross_real_threads():
    out = run("tls_threads.py", *NO_THREAD)
    assert "one connection, five threads True" in out
    assert "handshake in another thread b'PING'" in out
    assert "blocked reader ended" in out and "full duplex ok" in out
    assert "client verification failed unable to get local issuer certificate" in out
    assert "server side of the failed handshake ['SSLError']" in out
    assert "second handshake b'AGAIN'" in out and out.rstrip().endswith("done")


def test_cancelled_tls_calls_leave_nothing_behind():
    out = run("tls_cancel.py")
    assert "handshake cancelled\nfds after cancelled handshake 0\n" in out, out
    assert "read cancelled\nafter cancel b'late'\necho b'OK'\n" in out, out
    assert "killed reader dead True\nfds at the end 0\n" in out, out


def test_random_read_and_write_sizes_both_ways():
    out = run("tls_stream.py")
    assert "all bytes once, in order [True, True, True, True]" in out, out


def test_poll_counts_tls_bytes_buffered_in_user_space():
    out = run("tls_poll_buffered.py")
    assert "poll counts buffered TLS bytes" in out
    assert out.rstrip().endswith("done"), out
