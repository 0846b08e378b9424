"""Default patch: requests to a name whose first address black-holes connects to the second
address after one attempt delay, not after the connect timeout.

"he.reseau.test" resolves (static resolver layer on the hub's resolver) to 127.0.0.2, where a
listen(0) socket with its one queue slot taken drops SYNs, then 127.0.0.1, where an HTTP
server answers. Asserts on the path taken. ``--timing N`` also prints the mean seconds of N
requests with Happy Eyeballs and with urllib3's own sequential loop (benchmark, not a test).
"""

import http.server
import socket
import sys
import threading
import time

import gevent
import requests
import urllib3.util.connection as u3conn

from reseau_patch.io.resolver import StaticResolver
from reseau_patch.patch.clients import RaceStats

NAME = "he.reseau.test"
CONNECT_TIMEOUT = 3.0


def black_hole_and_server():
    for _ in range(50):
        hole = socket.socket()
        hole.bind(("127.0.0.2", 0))
        hole.listen(0)
        port = hole.getsockname()[1]
        filler = socket.socket()
        filler.connect(("127.0.0.2", port))  # takes the one queue slot: later SYNs drop
        try:
            server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        except OSError:
            filler.close()
            hole.close()
            continue
        return hole, filler, server, port
    raise RuntimeError("no port free on both 127.0.0.1 and 127.0.0.2")


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = b"live"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


hole, filler, server, port = black_hole_and_server()
thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
thread.start()
hub_resolver = gevent.get_hub().resolver
hub_resolver.resolver = StaticResolver({NAME: ["127.0.0.2", "127.0.0.1"]},
                                       fallback=hub_resolver.resolver)
url = f"http://{NAME}:{port}/"
try:
    with requests.Session() as session:
        reply = session.get(url, timeout=(CONNECT_TIMEOUT, 30))
    assert reply.status_code == 200 and reply.content == b"live", reply
    tried = [sa[0] for *_, sa in RaceStats.started]
    print("attempts", tried, "winner", RaceStats.winner[4][0])
    assert tried == ["127.0.0.2", "127.0.0.1"], tried
    assert RaceStats.winner[4] == ("127.0.0.1", port), RaceStats.winner

    if "--timing" in sys.argv:
        rounds = int(sys.argv[sys.argv.index("--timing") + 1])
        racing = u3conn.create_connection
        for label, fn in (("happy-eyeballs", racing), ("sequential", racing.__wrapped__)):
            u3conn.create_connection = fn
            spent = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                requests.get(url, timeout=(CONNECT_TIMEOUT, 30)).raise_for_status()
                spent.append(time.perf_counter() - t0)
            print(f"{label}: mean {sum(spent) / len(spent):.3f} s, "
                  f"min {min(spent):.3f} s, max {max(spent):.3f} s over {rounds} requests")
        u3conn.create_connection = racing
finally:
    server.shutdown()
    server.server_close()
    thread.join(30)
    filler.close()
    hole.close()
print("done")
