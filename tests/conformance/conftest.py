"""Conformance tests run TCPSocket kinds in greenlets of this thread's hub (Reseau loop)."""

from __future__ import annotations

import os
import sys

import pytest

import reseau_patch.sockets  # noqa: F401 - selects the Reseau loop for this thread's hub

sys.path.insert(0, os.path.dirname(__file__))  # stream_suite, also for the scenarios


@pytest.fixture(scope="session", autouse=True)
def _hub(green_hub):
    """The hub, made before the first leak-check snapshot (tests/conftest.py)."""
    return green_hub


@pytest.fixture(autouse=True)
def _let_hub_finish(hub_settles):
    """The hub finishes the closes a test started, before the leak check runs."""


