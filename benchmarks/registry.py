"""The workloads ``python -m benchmarks`` knows, in table order: name -> module.

Adding a workload is one line here plus a module following the contract in README.md.
"""

WORKLOADS: dict[str, str] = {
    "hub_micro": "benchmarks.hub_micro",
    "patched_socket": "benchmarks.patched_socket",
    "requests_get": "benchmarks.requests_get",
    "idle_memory": "benchmarks.idle_memory",
    "dns": "benchmarks.dns",
    "happy_eyeballs": "benchmarks.happy_eyeballs",
    "io_echo": "benchmarks.io_echo",
    "sockets_echo": "benchmarks.sockets_api",
    "tls": "benchmarks.tls_bench",
    "wsgi": "benchmarks.wsgi_bench",
    "instructions": "benchmarks.instructions",
}
#: Workloads whose run() patches by itself (or drives servers in other processes): the
#: child starts them with the implementation's environment but patches nothing first.
PATCHES_ITSELF: set[str] = {"tls", "wsgi", "instructions"}
