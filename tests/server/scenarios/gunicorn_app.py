"""The WSGI app the gunicorn tests run (loaded by gunicorn in each worker).

/            -> this worker's pid
/slow?t=S    -> sleeps S seconds (green), then the pid; reports the peak of concurrent
                requests in this worker in X-Peak
/block?t=S   -> blocks the whole worker (the real time.sleep) for S seconds
/echo        -> the request body
"""

import os

import gevent
from gevent.monkey import get_original

_real_sleep = get_original("time", "sleep")
_state = {"now": 0, "peak": 0}


def app(environ, start_response):
    path = environ["PATH_INFO"]
    query = dict(p.split("=", 1) for p in environ["QUERY_STRING"].split("&") if "=" in p)
    body = str(os.getpid()).encode()
    _state["now"] += 1
    _state["peak"] = max(_state["peak"], _state["now"])
    try:
        if path == "/slow":
            gevent.sleep(float(query.get("t", "0.5")))
        elif path == "/block":
            _real_sleep(float(query.get("t", "10")))
        elif path == "/echo":
            body = environ["wsgi.input"].read()
        peak = _state["peak"]
    finally:
        _state["now"] -= 1
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Peak", str(peak)),
                              ("X-Pid", str(os.getpid()))])
    return [body]
