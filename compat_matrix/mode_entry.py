"""Entry point executed by a suite's venv interpreter: patch, then run pytest in-process.

Usage (the runner builds this command; the order of the steps is the point)::

    python mode_entry.py STATUS_JSON EVENTS_JSONL PATCHER KWARGS_JSON MODE -- PYTEST_ARGS...

1. Patch first (``gevent.monkey.patch_all`` or ``reseau_patch.patch_all``): a conftest.py or
   ``-p`` plugin runs after pytest has imported socket/threading/ssl, too late for gevent.
2. Write STATUS_JSON (what patch is live, or the patch error) before pytest starts, so a crash
   later still leaves the mode's identity behind.
3. ``pytest.main()`` with a plugin that records the mode in the JUnit testsuite properties, tags
   each testcase with its node id, and streams test starts and per-phase outcomes to
   EVENTS_JSONL (the runner watches it for stalls and reads it back if the run dies before the
   JUnit file is written). ``$COMPAT_MATRIX_SKIP_FILE`` names tests to deselect when the runner
   resumes after a stall.
4. ``os._exit``: a leaked non-daemon thread would otherwise hang interpreter shutdown.

Before any of that, every mode installs the same loopback guard (an audit hook): a connect or
sendto to an address outside 127.0.0.0/8 and ::1 fails with ``ENETUNREACH``, as on a machine
with no route. The suites probe "tarpit" addresses (urllib3: 240.0.0.0, requests: 10.255.255.1)
that this project's tests must never send to, and whose behaviour differs per machine (this
one's network answers every connect); with the guard they fail or skip the same way everywhere.

Only the stdlib is imported before patching.
"""

import errno
import ipaddress
import json
import os
import sys

PATCH_ERROR_EXIT = 90
ENTRY_ERROR_EXIT = 91
_PROBED_MODULES = ("socket", "ssl", "select", "selectors", "thread", "threading", "time", "queue")


def _write_json(path: str, data: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)


def apply_patch(patcher: str, kwargs: dict) -> None:
    """Run the patcher; any exception propagates to the caller, which records it."""
    if patcher == "gevent":
        from gevent import monkey

        monkey.patch_all(**kwargs)
    elif patcher == "reseau":
        from reseau_patch import patch_all  # ImportError until patch/ lands: a mode error

        patch_all(**kwargs)
    elif patcher != "none":
        raise ValueError(f"unknown patcher {patcher!r}")


_GUARDED_EVENTS = frozenset({"socket.connect", "socket.sendto", "socket.sendmsg"})
_LOCAL_NAMES = frozenset({"", "localhost", "localhost.localdomain", "ip6-localhost",
                          "ip6-loopback"})


def _is_local_host(host: object) -> bool:
    """True for loopback and unspecified addresses (connecting to 0.0.0.0 or :: reaches this
    host on Linux) and for the names /etc/hosts gives to loopback."""
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    host = host.split("%", 1)[0]  # IPv6 scope id
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False  # another name: refused rather than resolved inside the hook
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    return ip.is_loopback or ip.is_unspecified


def _loopback_guard(event: str, args: tuple) -> None:
    if event not in _GUARDED_EVENTS:
        return
    sock, address = args[0], args[1]
    if getattr(sock, "family", None) not in (2, 10):  # AF_INET, AF_INET6: unix paths are local
        return
    if address is None:  # sendmsg without an address: the connected peer, already checked
        return
    host = address[0] if isinstance(address, tuple) and address else address
    if not _is_local_host(host):
        raise OSError(errno.ENETUNREACH,
                      f"compat matrix loopback guard: {event} to {address!r} refused "
                      "(tests may only reach 127.0.0.0/8 and ::1)")


def install_loopback_guard() -> None:
    """Refuse non-loopback connects and datagrams for the rest of this process."""
    sys.addaudithook(_loopback_guard)


def _qualname(obj: object) -> str:
    mod = getattr(obj, "__module__", None) or "?"
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or repr(obj)
    return f"{mod}.{name}"


def patch_info(patcher: str) -> dict[str, str]:
    """What is live after patching, read from the modules themselves (patcher-neutral)."""
    import select
    import socket
    import ssl
    import threading

    info = {
        "socket.socket": _qualname(socket.socket),
        "socket.create_connection": _qualname(socket.create_connection),
        "ssl.SSLContext.sslsocket_class": _qualname(ssl.SSLContext.sslsocket_class),
        "select.select": _qualname(select.select),
        "select.has_epoll": str(hasattr(select, "epoll")),
        "threading.Lock": _qualname(threading.Lock),
    }
    if "gevent.monkey" in sys.modules:
        monkey = sys.modules["gevent.monkey"]
        patched = [m for m in _PROBED_MODULES if monkey.is_module_patched(m)]
        info["gevent.monkey.patched"] = ",".join(patched) or "-"
    if patcher == "reseau":
        import reseau_patch

        is_patched = getattr(reseau_patch, "is_patched", None)
        if is_patched is None:
            info["reseau_patch.is_patched"] = "missing"
        else:
            try:
                info["reseau_patch.is_patched"] = str(is_patched())
            except Exception as exc:  # noqa: BLE001 - signature unknown; record, don't fail
                info["reseau_patch.is_patched"] = f"{type(exc).__name__}: {exc}"
    return info


def _skip_list() -> set[str]:
    """Node ids to deselect, from the file named by $COMPAT_MATRIX_SKIP_FILE (resume)."""
    path = os.environ.get("COMPAT_MATRIX_SKIP_FILE")
    if not path:
        return set()
    with open(path, encoding="utf-8") as f:
        return {line.rstrip("\n") for line in f if line.strip()}


def _make_plugin(mode: str, props: dict[str, str], events_path: str) -> object:
    """The in-process pytest plugin, a module object (plain functions: fixtures as instance
    methods are deprecated in pytest 9.2, and urllib3 turns warnings into errors)."""
    import types

    import pytest

    events = open(events_path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
    plugin = types.ModuleType("compat_matrix_mode_plugin", "Records the live patch mode.")

    @pytest.fixture(scope="session", autouse=True)
    def _compat_matrix_mode(record_testsuite_property):  # type: ignore[no-untyped-def]
        record_testsuite_property("compat_matrix.mode", mode)
        for key, value in props.items():
            record_testsuite_property(f"compat_matrix.{key}", value)

    def pytest_collection_modifyitems(config, items: list) -> None:  # type: ignore[no-untyped-def]
        skip = _skip_list()
        if skip:  # a resumed run: leave out what an earlier (stalled) attempt already ran
            dropped = [i for i in items if i.nodeid in skip]
            items[:] = [i for i in items if i.nodeid not in skip]
            config.hook.pytest_deselected(items=dropped)
        for item in items:
            item.user_properties.append(("nodeid", item.nodeid))

    def pytest_runtest_logstart(nodeid: str, location: object) -> None:
        events.write(json.dumps({"nodeid": nodeid, "when": "start"}) + "\n")

    def pytest_runtest_logreport(report) -> None:  # type: ignore[no-untyped-def]
        if report.passed and report.when != "call":
            return
        message = ""
        if report.failed:
            crash = getattr(report.longrepr, "reprcrash", None)
            message = crash.message if crash is not None else str(report.longrepr)[-500:]
        elif report.skipped and isinstance(report.longrepr, tuple):
            message = str(report.longrepr[2])
        line = {"nodeid": report.nodeid, "when": report.when, "outcome": report.outcome,
                "xfail": hasattr(report, "wasxfail"), "message": message[:1000]}
        events.write(json.dumps(line) + "\n")

    plugin._compat_matrix_mode = _compat_matrix_mode
    plugin.pytest_collection_modifyitems = pytest_collection_modifyitems
    plugin.pytest_runtest_logreport = pytest_runtest_logreport
    plugin.pytest_runtest_logstart = pytest_runtest_logstart
    return plugin


def main(argv: list[str]) -> int:
    """Patch, record, run pytest; return pytest's exit code (or a patch/entry error code)."""
    sep = argv.index("--")
    status_path, events_path, patcher, kwargs_json, mode = argv[:sep]
    pytest_args = argv[sep + 1 :]
    kwargs = json.loads(kwargs_json)
    status: dict = {"mode": mode, "patcher": patcher, "kwargs": kwargs, "python": sys.version,
                    "loopback_guard": True}
    install_loopback_guard()
    try:
        apply_patch(patcher, kwargs)
    except BaseException as exc:  # noqa: BLE001 - any failure to patch is a mode-level error
        import traceback

        status["patch_error"] = f"{type(exc).__name__}: {exc}"
        status["traceback"] = traceback.format_exc()[-4000:]
        _write_json(status_path, status)
        return PATCH_ERROR_EXIT
    status["patch_info"] = patch_info(patcher)
    _write_json(status_path, status)

    import pytest

    plugin = _make_plugin(mode, status["patch_info"], events_path)
    code = int(pytest.main(pytest_args, plugins=[plugin]))
    status["pytest_exit"] = code
    _write_json(status_path, status)
    return code


if __name__ == "__main__":
    # Behave like `python -m pytest`: the suite's checkout (cwd) first on sys.path, and this
    # file's directory (compat_matrix/) off it, so none of our modules shadow the suite's.
    sys.path[0] = os.getcwd()
    try:
        rc = main(sys.argv[1:])
    except BaseException:  # noqa: BLE001 - report and hard-exit, never hang in shutdown
        import traceback

        traceback.print_exc()
        rc = ENTRY_ERROR_EXIT
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)
