"""A small PKI on ``cryptography``: test CAs, leaf certificates, PEM files, PKCS#12.

Meant for tests and local setups: :func:`make_ca` creates a self-signed CA, and
:meth:`CertificateAuthority.issue` signs leaf certificates for DNS names and IP addresses
with an explicit validity window (so a test can make an expired or not-yet-valid
certificate). Keys are ECDSA P-256 by default because they are generated in
microseconds; pass ``key_type="rsa"`` for RSA-2048.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CertificateAuthority",
    "KeyPair",
    "describe_certificate",
    "load_pkcs12",
    "make_ca",
]

_UTC = _dt.UTC
_PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _new_key(key_type: str) -> _PrivateKey:
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"key_type must be 'ec' or 'rsa', got {key_type!r}")


def _window(not_before: _dt.datetime | None, not_after: _dt.datetime | None,
            days: float) -> tuple[_dt.datetime, _dt.datetime]:
    now = _dt.datetime.now(_UTC)
    start = not_before or now - _dt.timedelta(hours=1)  # tolerate small clock skew
    end = not_after or now + _dt.timedelta(days=days)
    if end <= start:
        raise ValueError(f"not_after ({end.isoformat()}) must be after not_before "
                         f"({start.isoformat()})")
    return start, end


def _password(password: str | bytes | None) -> bytes | None:
    return password.encode() if isinstance(password, str) else password


@dataclass
class KeyPair:
    """A certificate and its private key, plus the chain above it (issuer first)."""

    cert: x509.Certificate
    key: _PrivateKey
    chain: list[x509.Certificate] = field(default_factory=list)

    def cert_pem(self, *, with_chain: bool = False) -> bytes:
        certs = [self.cert, *(self.chain if with_chain else [])]
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)

    def key_pem(self, password: str | bytes | None = None) -> bytes:
        pw = _password(password)
        enc = (serialization.BestAvailableEncryption(pw) if pw
               else serialization.NoEncryption())
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8, enc)

    def write_pem(self, directory: str | os.PathLike[str], name: str, *,
                  with_chain: bool = False, password: str | bytes | None = None
                  ) -> tuple[str, str]:
        """Write ``<name>.crt`` and ``<name>.key`` (mode 0600) into ``directory``;
        returns their paths."""
        cert_path = os.path.join(os.fspath(directory), f"{name}.crt")
        key_path = os.path.join(os.fspath(directory), f"{name}.key")
        with open(cert_path, "wb") as f:
            f.write(self.cert_pem(with_chain=with_chain))
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(self.key_pem(password))
        return cert_path, key_path

    def to_pkcs12(self, password: str | bytes | None = None,
                  friendly_name: str = "reseau") -> bytes:
        """The key, certificate and chain as a PKCS#12 bundle."""
        pw = _password(password)
        enc = (serialization.BestAvailableEncryption(pw) if pw
               else serialization.NoEncryption())
        return pkcs12.serialize_key_and_certificates(
            friendly_name.encode(), self.key, self.cert, self.chain or None, enc)


@dataclass
class CertificateAuthority(KeyPair):
    """A CA that signs leaf certificates."""

    def issue(self, names: Iterable[str] = ("localhost",),
              ips: Iterable[str | ipaddress.IPv4Address | ipaddress.IPv6Address] = (),
              *, common_name: str | None = None, not_before: _dt.datetime | None = None,
              not_after: _dt.datetime | None = None, days: float = 30,
              client: bool = False, server: bool = True, key_type: str = "ec") -> KeyPair:
        """Sign a leaf certificate whose SubjectAltName lists ``names`` and ``ips``.

        ``not_before``/``not_after`` (timezone-aware) override the default window of one
        hour ago to ``days`` from now; ``client``/``server`` set the extended key usages.
        """
        names = list(names)
        addrs = [ipaddress.ip_address(str(a)) for a in ips]
        if not names and not addrs:
            raise ValueError("a leaf certificate needs at least one name or IP address")
        cn = common_name or (names[0] if names else str(addrs[0]))
        key = _new_key(key_type)
        start, end = _window(not_before, not_after, days)
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
            [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(n) for n in names] + [x509.IPAddress(a) for a in addrs]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_encipherment=isinstance(key, rsa.RSAPrivateKey),
                content_commitment=False, data_encipherment=False, key_agreement=False,
                key_cert_sign=False, crl_sign=False, encipher_only=False,
                decipher_only=False), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False)
        )
        if usages:
            builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return KeyPair(cert, key, [self.cert, *self.chain])


def make_ca(common_name: str = "reseau test CA", *, not_before: _dt.datetime | None = None,
            not_after: _dt.datetime | None = None, days: float = 365,
            key_type: str = "ec") -> CertificateAuthority:
    """A self-signed CA certificate valid from one hour ago for ``days`` days."""
    key = _new_key(key_type)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start, end = _window(not_before, not_after, days)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_encipherment=False, content_commitment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(cert, key)


def load_pkcs12(data: bytes, password: str | bytes | None = None) -> KeyPair:
    """Parse a PKCS#12 bundle; ``ValueError`` if it is malformed, the password is wrong, or
    it holds no key and certificate."""
    key, cert, extra = pkcs12.load_key_and_certificates(data, _password(password))
    if key is None or cert is None:
        raise ValueError("PKCS#12 bundle holds no private key and certificate")
    return KeyPair(cert, key, list(extra or []))  # type: ignore[arg-type]


def _name_tuples(name: x509.Name) -> tuple:
    # The shape ssl.SSLSocket.getpeercert() uses: one tuple of (field, value) pairs per RDN.
    short = {NameOID.COMMON_NAME: "commonName", NameOID.ORGANIZATION_NAME: "organizationName",
             NameOID.ORGANIZATIONAL_UNIT_NAME: "organizationalUnitName",
             NameOID.COUNTRY_NAME: "countryName", NameOID.LOCALITY_NAME: "localityName",
             NameOID.STATE_OR_PROVINCE_NAME: "stateOrProvinceName"}
    return tuple(tuple((short.get(a.oid, a.oid.dotted_string), a.value) for a in rdn)
                 for rdn in name.rdns)


def describe_certificate(cert: x509.Certificate | bytes) -> dict[str, Any]:
    """A ``getpeercert()``-shaped dict for a certificate (DER bytes or an ``x509`` object).

    Works on certificates the stdlib would not describe (``getpeercert()`` is empty when
    verification is off), which is what a diagnostic wants.
    """
    if isinstance(cert, (bytes, bytearray, memoryview)):
        cert = x509.load_der_x509_certificate(bytes(cert))
    fmt = "%b %d %H:%M:%S %Y GMT"
    out: dict[str, Any] = {
        "subject": _name_tuples(cert.subject),
        "issuer": _name_tuples(cert.issuer),
        "version": cert.version.value + 1,
        "serialNumber": format(cert.serial_number, "X"),
        "notBefore": cert.not_valid_before_utc.strftime(fmt),
        "notAfter": cert.not_valid_after_utc.strftime(fmt),
    }
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return out
    alt: list[tuple[str, str]] = [("DNS", n) for n in san.get_values_for_type(x509.DNSName)]
    alt += [("IP Address", str(a)) for a in san.get_values_for_type(x509.IPAddress)]
    out["subjectAltName"] = tuple(alt)
    return out
