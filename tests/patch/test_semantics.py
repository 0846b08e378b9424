"""Patched sockets keep the stdlib's semantics, in both reseau modes (issue 11).

Each case is a function in ``scenarios/socket_semantics.py`` or ``signals_and_fork.py``,
run in a fresh interpreter under ``python -m reseau_patch run``.
"""

from __future__ import annotations

import pytest

from .conftest import NO_THREAD, run_script

MODES = [pytest.param((), id="default"), pytest.param(NO_THREAD, id="nothread")]

SOCKET_CASES = [
    "socket_type_is_the_c_type",
    "timeouts_and_fd_mode_follow_the_stdlib",
    "settimeout_reads_back_as_the_c_parser",
    "bad_timeouts_and_bad_fds_raise_like_the_stdlib",
    "sendto_argument_errors_are_the_c_ones",
    "msg_dontwait_never_waits",
    "blocking_fd_calls_still_cooperate",
    "getnameinfo_keeps_no_reference",
    "create_connection_uses_a_replaced_socket_class",
    "create_connection_to_an_ip_literal",
    "unclosed_socket_finalizer_closes_the_fd_even_if_the_warning_raises",
    "string_ports_and_service_names",
    "resolver_threads_are_real_threads",
    "iterable_arguments_survive_a_wait",
    "ssl_reimported_after_patching",
]


@pytest.mark.parametrize("flags", MODES)
@pytest.mark.parametrize("case", SOCKET_CASES)
def test_socket_semantics(run_scenario, case: str, flags: tuple[str, ...]) -> None:
    run_scenario("socket_semantics", case, *flags)


@pytest.fixture(scope="module")
def stdlib_bad_input() -> str:
    return run_script("bad_input_transcript.py", patched=False)


@pytest.mark.parametrize("flags", MODES)
def test_bad_input_transcript_matches_the_stdlib(stdlib_bad_input, flags) -> None:
    """Bad arguments and calls in the wrong state on plain and TLS sockets (bad buffers,
    sizes, timeouts, blocking flags, addresses; connecting twice; every call after close):
    the same exceptions with the same messages as the stdlib, line for line."""
    ours = run_script("bad_input_transcript.py", *flags)
    assert ours.splitlines() == stdlib_bad_input.splitlines()
    assert "plain setblocking str -> TypeError: 'str' object cannot be interpreted" in ours
    assert "timeout=None connect again -> OSError: [Errno 106]" in ours
    assert ours.rstrip().endswith("done")


@pytest.mark.parametrize("flags", MODES)
def test_signal_handler_exception_reaches_the_blocked_call(run_scenario, flags) -> None:
    run_scenario("signals_and_fork", "handler_exception_reaches_the_blocked_sendall", *flags)


def test_pthread_kill_with_a_green_thread_ident(run_scenario) -> None:
    run_scenario("signals_and_fork", "pthread_kill_with_a_green_thread_ident")


def test_fork_in_a_real_thread_then_waitpid_elsewhere(run_scenario) -> None:
    run_scenario("signals_and_fork", "fork_in_a_real_thread_then_waitpid_in_main", *NO_THREAD)
