"""CPython's own networking tests (the interpreter's ``test`` package) as matrix suites.

Each module is a suite of its own, named ``cpython/<module>``: its results, counts and run time
get their own table, and its expectations live in ``expectations/cpython/<module>.toml``.
``--suite cpython`` selects all of them. Test ids are unittest ids
(``test.test_socket.GeneralModuleTests.testCrucialConstants``).
"""

from __future__ import annotations

import platform

PREFIX = "cpython/"
GROUP = "cpython"

MODULES: tuple[str, ...] = (
    "test_socket", "test_ssl", "test_selectors", "test_httplib", "test_socketserver",
    "test_urllib2_localnet", "test_asyncore", "test_asynchat", "test_smtpd", "test_poplib",
    "test_smtplib", "test_ftplib", "test_imaplib", "test_telnetlib",
)

# Tests left out in every mode (plain included), as fnmatch-style patterns over test ids.
EXCLUDED: dict[str, str] = {
    "test.test_socket.ThreadedVSOCKSocketStreamTest.*":
        "hangs unpatched on these machines (AF_VSOCK loopback connect never completes)",
}

# regrtest's -u: every resource except those that reach beyond this host.
NO_RESOURCES = ("network", "urlfetch")
# Modules that gate themselves on "network" although they only use loopback and unix sockets
# (the loopback guard would refuse anything else): the resource is enabled for them alone.
NETWORK_BUT_LOCAL: dict[str, str] = {
    "test_socketserver": "requires('network') at import, yet serves and connects on "
                         "localhost and unix paths only",
}

NOTES: tuple[str, ...] = (
    f"CPython {platform.python_version()}'s own test module, run in-process with unittest "
    "after the mode's patch (cpython_entry.py); resources: all but "
    + ", ".join(NO_RESOURCES),
    "a test that runs longer than the per-test budget is recorded as `hang`; the module's "
    "process is killed and restarted past it",
)


def resources_denied(module: str) -> tuple[str, ...]:
    """The regrtest resources left disabled for ``module``."""
    return tuple(r for r in NO_RESOURCES if not (r == "network" and module in NETWORK_BUT_LOCAL))


def notes_for(module: str) -> list[str]:
    """The exclusions and resource exceptions that concern ``module``, as report notes."""
    notes = [f"excluded in every mode: `{p}` — {why}" for p, why in EXCLUDED.items()
             if p.startswith(f"test.{module}.")]
    if module in NETWORK_BUT_LOCAL:
        notes.append(f"resource `network` enabled: {NETWORK_BUT_LOCAL[module]}")
    return notes


def suite_names() -> list[str]:
    """Every CPython suite name, in run order."""
    return [PREFIX + m for m in MODULES]


def is_cpython(suite: str) -> bool:
    """Whether a suite name is one of the CPython modules."""
    return suite.startswith(PREFIX)


def module_of(suite: str) -> str:
    """``cpython/test_ssl`` -> ``test_ssl``."""
    return suite[len(PREFIX):]
