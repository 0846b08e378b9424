"""io/tls_options: contexts built from equal options are shared while their files hold."""

from __future__ import annotations

import os
import warnings

import pytest

from reseau_patch import pki
from reseau_patch.io.tls_options import (
    InsecureTlsWarning,
    TlsConnectionOptions,
    TlsContextOptions,
)


@pytest.fixture()
def ca_file(tmp_path) -> str:
    path = tmp_path / "ca.pem"
    path.write_bytes(pki.make_ca("reseau cache test CA").cert_pem())
    return str(path)


def _ctx(**kw):
    return TlsConnectionOptions(TlsContextOptions(**kw)).ssl_context()


def test_equal_options_share_one_context(ca_file):
    first = _ctx(ca_file=ca_file, alpn_list=["h2", "http/1.1"])
    assert _ctx(ca_file=ca_file, alpn_list=("h2", "http/1.1")) is first
    assert _ctx(ca_file=ca_file) is not first  # other ALPN: another context
    assert first.cert_store_stats()["x509_ca"] == 1


def test_a_changed_file_builds_a_new_context(ca_file):
    first = _ctx(ca_file=ca_file)
    with open(ca_file, "ab") as f:
        f.write(pki.make_ca("second CA").cert_pem())
    st = os.stat(ca_file)
    os.utime(ca_file, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    second = _ctx(ca_file=ca_file)
    assert second is not first
    assert second.cert_store_stats()["x509_ca"] == 2


def test_a_missing_file_is_the_stdlib_error_each_time(tmp_path):
    for _ in range(2):
        with pytest.raises(FileNotFoundError):
            _ctx(ca_file=str(tmp_path / "nope.pem"))


def test_insecure_contexts_are_never_shared_and_always_warn():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        a = _ctx(verify_peer=False)
        b = _ctx(verify_peer=False)
    assert a is not b
    assert sum(issubclass(w.category, InsecureTlsWarning) for w in seen) == 2
