"""TLS settings: :class:`TlsContextOptions` builds an ``ssl.SSLContext``;
:class:`TlsConnectionOptions` adds what varies per connection (server name, ALPN
override, handshake timeout) and also accepts a caller's ready ``ssl.SSLContext``,
which is used **unchanged** — that is how the patch layer keeps a program's exact TLS
settings (design brief §7.1).

Defaults are the safe ones: a client verifies the peer's chain *and* hostname, the
minimum version is TLS 1.2. A server verifies client certificates (mTLS) only when
``verify_peer=True``. Turning verification off (``ssl_insecure=True`` on the Sockets
surface, ``verify_peer=False`` here) is allowed but never silent: each context built so
emits an :class:`InsecureTlsWarning` and a WARNING log record, both naming ``ssl_insecure``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import ssl
import sys
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_TLS_TIMEOUT",
    "InsecureTlsWarning",
    "TlsConnectionOptions",
    "TlsContextOptions",
    "normalize_alpn",
]

#: Handshake timeout in seconds (aws-c-io's ``TLS_DEFAULT_TIMEOUT_MS``).
DEFAULT_TLS_TIMEOUT = 10.0

PathLike = str | os.PathLike[str]

log = logging.getLogger(__name__)


class InsecureTlsWarning(UserWarning):
    """TLS peer verification was turned off (``ssl_insecure=True``)."""


def _warn_insecure(server: bool) -> None:
    who = "client certificates are" if server else "the server's certificate and hostname are"
    msg = (f"ssl_insecure=True (verify_peer=False): {who} not verified, so anyone on the "
           "network path can impersonate the peer")
    warnings.warn(msg, InsecureTlsWarning, stacklevel=_caller_level())
    log.warning(msg)


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _caller_level() -> int:
    """The stacklevel of the first frame outside reseau_patch: the warning names the
    user's line that asked for an insecure connection, not ours."""
    frame, level = sys._getframe(2), 2  # skip this helper and _warn_insecure
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    return level


def normalize_alpn(alpn: str | Sequence[str] | None) -> list[str] | None:
    """ALPN ids as a list; a string may hold several separated by ``;`` (aws-c-io style).

    ``ValueError`` names an empty or over-long (> 255 bytes, RFC 7301 §3.1) id.
    """
    if alpn is None:
        return None
    items = alpn.split(";") if isinstance(alpn, str) else list(alpn)
    out = []
    for p in items:
        if not isinstance(p, str):
            raise TypeError(f"ALPN protocol ids must be str, got {p!r}")
        if not p or len(p.encode()) > 255:
            raise ValueError(f"invalid ALPN protocol id {p!r} (1 to 255 bytes)")
        out.append(p)
    if not out:
        raise ValueError(f"empty ALPN list {alpn!r}")
    return out


def _load_chain_from_memory(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """``load_cert_chain`` wants files: write the key *encrypted* with a one-off password
    into a private temporary directory, load, and remove it at once."""
    from cryptography.hazmat.primitives import serialization

    password = secrets.token_bytes(24)
    key = serialization.load_pem_private_key(key_pem, None)
    enc_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.BestAvailableEncryption(password))
    with tempfile.TemporaryDirectory(prefix="reseau-tls-") as d:
        cert_path, key_path = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        with open(cert_path, "wb") as f:
            f.write(cert_pem)
        with open(key_path, "wb") as f:
            f.write(enc_key)
        ctx.load_cert_chain(cert_path, key_path, password=password)


def _load_pkcs12(ctx: ssl.SSLContext, data: bytes, password: str | bytes | None) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    pw = password.encode() if isinstance(password, str) else password
    key, cert, extra = pkcs12.load_key_and_certificates(data, pw)
    if key is None or cert is None:
        raise ValueError("PKCS#12 bundle holds no private key and certificate")
    pem = serialization.Encoding.PEM
    chain = cert.public_bytes(pem) + b"".join(c.public_bytes(pem) for c in extra or [])
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    _load_chain_from_memory(ctx, chain, key_pem)


def _sni_lookup(table: Mapping[str, ssl.SSLContext], name: str) -> ssl.SSLContext | None:
    name = name.lower().rstrip(".")
    if name in table:
        return table[name]
    head, _, parent = name.partition(".")
    return table.get(f"*.{parent}") if parent else None


@dataclass
class TlsContextOptions:
    """What to build an ``ssl.SSLContext`` from (see :meth:`build`).

    ``ca_file``/``ca_path``/``ca_data`` replace the system trust store (they are the only
    roots trusted); without them a verifying client loads the system store. For a server,
    ``cert_file``/``key_file`` (or ``cert_data``/``key_data``, or a PKCS#12 bundle) is the
    default certificate and ``sni`` maps server names (``"*.example.com"`` wildcards
    allowed) to other contexts or options, chosen during the handshake.
    """

    server_side: bool = False
    ca_file: PathLike | None = None
    ca_path: PathLike | None = None
    ca_data: str | bytes | None = None
    cert_file: PathLike | None = None
    key_file: PathLike | None = None
    key_password: str | bytes | None = None
    cert_data: bytes | None = None
    key_data: bytes | None = None
    pkcs12_file: PathLike | None = None
    pkcs12_data: bytes | None = None
    pkcs12_password: str | bytes | None = None
    #: Verify the peer's certificate: default True for clients, False for servers (a
    #: verifying server requires a client certificate).
    verify_peer: bool | None = None
    #: Check the server name against the certificate (clients; default = ``verify_peer``).
    check_hostname: bool | None = None
    minimum_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    maximum_version: ssl.TLSVersion | None = None
    alpn_list: str | Sequence[str] | None = None
    ciphers: str | None = None
    sni: Mapping[str, ssl.SSLContext | TlsContextOptions] | None = None

    def build(self) -> ssl.SSLContext:
        """A new ``ssl.SSLContext``; errors are the stdlib's (``FileNotFoundError``,
        ``ssl.SSLError``) or ``ValueError`` naming the inconsistent option."""
        server = self.server_side
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
        verify = (not server) if self.verify_peer is None else self.verify_peer
        if server:
            ctx.verify_mode = ssl.CERT_REQUIRED if verify else ssl.CERT_NONE
            if self.verify_peer is False and (self.ca_file is not None or self.ca_path
                                              is not None or self.ca_data is not None):
                _warn_insecure(server=True)  # CAs to check clients with, and told not to
        elif verify:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.check_hostname = True if self.check_hostname is None else self.check_hostname
        else:
            if self.check_hostname:
                raise ValueError("check_hostname=True needs verify_peer=True")
            ctx.check_hostname = False  # must precede CERT_NONE (stdlib rule)
            ctx.verify_mode = ssl.CERT_NONE
            _warn_insecure(server=False)
        ctx.minimum_version = self.minimum_version
        if self.maximum_version is not None:
            ctx.maximum_version = self.maximum_version
        if self.ciphers is not None:
            ctx.set_ciphers(self.ciphers)
        if self.ca_file is not None or self.ca_path is not None or self.ca_data is not None:
            ctx.load_verify_locations(
                cafile=os.fspath(self.ca_file) if self.ca_file is not None else None,
                capath=os.fspath(self.ca_path) if self.ca_path is not None else None,
                cadata=self.ca_data)
        elif verify:
            ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH if server
                                   else ssl.Purpose.SERVER_AUTH)
        self._load_identity(ctx)
        alpn = normalize_alpn(self.alpn_list)
        if alpn:
            ctx.set_alpn_protocols(alpn)
        if self.sni:
            if not server:
                raise ValueError("sni= selects server certificates; it needs server_side=True")
            table = {name.lower().rstrip("."): (c if isinstance(c, ssl.SSLContext)
                                                else dataclasses.replace(c, server_side=True)
                                                .build())
                     for name, c in self.sni.items()}

            def choose(sslobj: Any, server_name: str | None, _ctx: ssl.SSLContext) -> None:
                chosen = _sni_lookup(table, server_name) if server_name else None
                if chosen is not None:
                    sslobj.context = chosen

            ctx.sni_callback = choose
        return ctx

    def _load_identity(self, ctx: ssl.SSLContext) -> None:
        sources = [self.cert_file is not None, self.cert_data is not None,
                   self.pkcs12_file is not None or self.pkcs12_data is not None]
        if sum(sources) > 1:
            raise ValueError("give one of cert_file/key_file, cert_data/key_data or pkcs12_*")
        if self.cert_file is not None:
            ctx.load_cert_chain(os.fspath(self.cert_file),
                                os.fspath(self.key_file) if self.key_file is not None else None,
                                password=self.key_password)
        elif self.key_file is not None:
            raise ValueError(f"key_file={os.fspath(self.key_file)!r} given without cert_file")
        elif self.cert_data is not None:
            if self.key_data is None:
                raise ValueError("cert_data needs key_data")
            _load_chain_from_memory(ctx, self.cert_data, self.key_data)
        elif self.pkcs12_file is not None or self.pkcs12_data is not None:
            data = self.pkcs12_data
            if data is None:
                with open(os.fspath(self.pkcs12_file), "rb") as f:  # type: ignore[arg-type]
                    data = f.read()
            _load_pkcs12(ctx, data, self.pkcs12_password)
        elif self.server_side and not self.sni:
            raise ValueError("a TLS server needs a certificate: set cert_file and key_file, "
                             "cert_data and key_data, or pkcs12_file")


@dataclass
class TlsConnectionOptions:
    """Per-connection TLS settings for a bootstrap, ``connect``/``listen`` or
    ``tlsupgrade``.

    ``context`` is either options (built once and shared with every connection whose
    options are equal and whose certificate/CA files are unchanged) or a ready
    ``ssl.SSLContext`` used as is. ``server_name`` is the SNI name and the name checked
    against the certificate (the bootstraps default it to the host connected to).
    ``alpn_handlers`` is the bootstrap hook that installs a protocol-specific application
    handler once ALPN has chosen: a mapping ``protocol -> factory(channel)`` (key ``None``
    for "no protocol negotiated") or a callable ``(protocol, channel) -> handler | None``.
    """

    context: ssl.SSLContext | TlsContextOptions = field(default_factory=TlsContextOptions)
    server_name: str | None = None
    alpn_list: str | Sequence[str] | None = None
    timeout: float | None = DEFAULT_TLS_TIMEOUT
    alpn_handlers: Mapping[str | None, Callable[..., Any]] | Callable[..., Any] | None = None
    _built: ssl.SSLContext | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"TLS handshake timeout must be > 0 or None, got {self.timeout}")
        if isinstance(self.context, ssl.SSLContext) and self.alpn_list is not None:
            raise ValueError("alpn_list cannot override a ready ssl.SSLContext (it would be "
                             "modified); call set_alpn_protocols() on it instead")

    def ssl_context(self) -> ssl.SSLContext:
        """The context to wrap connections with (built on first use)."""
        if isinstance(self.context, ssl.SSLContext):
            return self.context
        if self._built is None:
            opts = self.context
            if self.alpn_list is not None:
                opts = dataclasses.replace(opts, alpn_list=self.alpn_list)
            self._built = shared_context(opts)
        return self._built


#: Contexts built from equal options (and unchanged files), newest last. An SSL_CTX with
#: its trust store costs tens of KiB of C memory and a CA file parse: ``connect(tls=True,
#: ssl_cacert=...)`` per connection must not pay that each time.
_CONTEXTS: dict[tuple[Any, ...], ssl.SSLContext] = {}
_CONTEXTS_MAX = 32
_PATH_FIELDS = ("ca_file", "ca_path", "cert_file", "key_file", "pkcs12_file")


def _cache_key(opts: TlsContextOptions) -> tuple[Any, ...] | None:
    """What a built context depends on, or None when it must not be shared: SNI tables
    (mutable mappings of contexts) and verification turned off (each build warns)."""
    if opts.sni is not None or opts.verify_peer is False:
        return None
    key: list[Any] = []
    for f in dataclasses.fields(opts):
        value = getattr(opts, f.name)
        if f.name in _PATH_FIELDS and value is not None:
            try:
                st = os.stat(value)
            except (OSError, TypeError, ValueError):
                return None  # build() raises the stdlib's error
            value = (os.fspath(value), st.st_ino, st.st_size, st.st_mtime_ns)
        elif f.name == "alpn_list" and value is not None and not isinstance(value, str):
            value = tuple(value)
        key.append(value)
    try:
        hash(tuple(key))
    except TypeError:
        return None
    return tuple(key)


def shared_context(opts: TlsContextOptions) -> ssl.SSLContext:
    """``opts.build()``, shared with earlier calls for equal options whose files have not
    changed (path, inode, size, mtime). Callers must not modify the context they get."""
    key = _cache_key(opts)
    if key is None:
        return opts.build()
    ctx = _CONTEXTS.get(key)
    if ctx is None:
        ctx = opts.build()
        _CONTEXTS[key] = ctx  # dict operations are atomic: threads may race, both correct
        while len(_CONTEXTS) > _CONTEXTS_MAX:
            _CONTEXTS.pop(next(iter(_CONTEXTS)), None)
    return ctx
