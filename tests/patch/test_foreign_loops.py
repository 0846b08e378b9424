"""asyncio, trio and anyio loops under patch_all(): in green threads (default) and across
real threads (thread=False); Happy Eyeballs for urllib3/requests. Each scenario is a file
under scenarios/ run in a fresh interpreter (patching is process-wide)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCENARIOS = Path(__file__).parent / "scenarios"
NOTHREAD = ("--no-thread", "--no-aggressive", "--no-queue")


def run_scenario(name: str, *flags: str, timeout: float = 100.0) -> str:
    proc = subprocess.run([sys.executable, "-m", "reseau_patch", "run", *flags,
                           str(SCENARIOS / name)], capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{name} failed ({proc.returncode}):\n{proc.stdout}\n" \
                                 f"{proc.stderr[-4000:]}"
    assert proc.stdout.rstrip().endswith("done"), proc.stdout
    return proc.stdout


def test_asyncio_loop_in_green_thread_while_main_runs_asyncio_run():
    out = run_scenario("foreign_asyncio_green.py")
    assert "asyncio.run (b'echo:from-main\\n', True)" in out
    assert "sync b'echo:sync\\n'" in out
    assert "run_coroutine_threadsafe threadsafe" in out
    assert "thread's current loop kept True" in out


def test_trio_server_in_green_thread_answers_patched_client():
    out = run_scenario("foreign_trio_green.py")
    assert out.count("b'trio:ping") == 3
    assert "signal in thread: signal only works in main thread" in out


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_anyio_blocking_portal(backend):
    out = run_scenario("foreign_anyio_portal.py")
    assert f"{backend} 3 42" in out


def test_nothread_loop_made_in_main_runs_in_real_thread_and_poll_is_shared():
    out = run_scenario("foreign_nothread_asyncio.py", *NOTHREAD)
    assert "coroutine ran in the loop's thread" in out
    assert "poll from another thread True" in out


def test_requests_skips_a_black_holed_first_address():
    out = run_scenario("foreign_he_requests.py")
    assert "attempts ['127.0.0.2', '127.0.0.1'] winner 127.0.0.1" in out


def test_redis_and_websocket_client_skip_a_black_holed_first_address():
    out = run_scenario("foreign_he_clients.py")
    assert "redis ['127.0.0.2', '127.0.0.1'] 127.0.0.1 7.0 True True" in out
    assert "websocket ['127.0.0.2', '127.0.0.1'] 127.0.0.1 3.0" in out
    assert "cancelled race leaves nothing" in out


def test_urllib3_imported_before_patch_all_is_adapted():
    proc = subprocess.run([sys.executable, str(SCENARIOS / "foreign_he_import_order.py")],
                          capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr[-4000:]}"
    assert "tried ['127.0.0.3', '127.0.0.1'] 127.0.0.1 True 5.0" in proc.stdout


def test_pure_python_asyncio_imported_before_patch_all():
    proc = subprocess.run([sys.executable, str(SCENARIOS / "foreign_asyncio_green_pure.py")],
                          capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr[-4000:]}"
    assert "pure-Python asyncio, imported before patch_all()" in proc.stdout
    assert "asyncio.run (b'echo:from-main\\n', True)" in proc.stdout
    assert "thread's current loop kept True" in proc.stdout


def test_trio_imported_before_patch_all():
    proc = subprocess.run([sys.executable,
                           str(SCENARIOS / "foreign_trio_green_imported_first.py")],
                          capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr[-4000:]}"
    assert "trio imported before patch_all()" in proc.stdout
    assert proc.stdout.count("b'trio:ping") == 3 and proc.stdout.rstrip().endswith("done")
