"""patch_all() after `import requests, urllib3, ssl`: contexts made before the patch use
our SSL socket, 20 concurrent greenlets fetch over HTTPS, a hostname mismatch fails."""

import os
import ssl  # noqa: F401
import sys

import requests
import urllib3  # noqa: F401

import reseau_patch

reseau_patch.patch_all()

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gevent  # noqa: E402
from tls_common import ca_path, https_server  # noqa: E402

server, port = https_server()


def get(i):
    return requests.get(f"https://localhost:{port}/{i}", verify=ca_path, timeout=10).text


jobs = [gevent.spawn(get, i) for i in range(20)]
gevent.joinall(jobs, timeout=30, raise_error=True)
assert [j.value for j in jobs] == [f"secret /{i}" for i in range(20)]
try:
    requests.get(f"https://127.0.0.1:{port}/", verify=ca_path, timeout=5)
except requests.exceptions.SSLError as e:
    assert "certificate" in str(e).lower() or "hostname" in str(e).lower(), e
else:
    raise AssertionError("a hostname mismatch was accepted")
server.shutdown()
server.server_close()
print("ok")
