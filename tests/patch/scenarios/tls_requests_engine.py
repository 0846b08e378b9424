"""requests over HTTPS under patch_all(): the socket is ours, its _sslobj the C object."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ssl  # noqa: E402

import requests  # noqa: E402
import urllib3.connection  # noqa: E402
from tls_common import ca_path, https_server  # noqa: E402

from reseau_patch.patch.green_ssl import ReseauSSLSocket  # noqa: E402

server, port = https_server()
seen = {}
orig_connect = urllib3.connection.HTTPSConnection.connect


def spy(self):
    orig_connect(self)
    sock = self.sock
    seen["sock"] = sock
    seen["sslobj"] = type(sock._sslobj).__name__
    seen["chain"] = len(sock._sslobj.get_verified_chain())
    seen["version"] = sock.version()


urllib3.connection.HTTPSConnection.connect = spy
r = requests.get(f"https://localhost:{port}/path", verify=ca_path, timeout=10)
assert r.status_code == 200 and r.text == "secret /path", r.text
assert isinstance(seen["sock"], ReseauSSLSocket)
assert isinstance(seen["sock"], ssl.SSLSocket)
print("sslobj", seen["sslobj"], "chain", seen["chain"], "version", seen["version"])
server.shutdown()
server.server_close()
