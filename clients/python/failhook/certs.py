"""Development certificates made with ``cryptography`` alone (no ``openssl`` command).

:func:`init_dev_certs` writes a throw-away certificate authority and one certificate per dev
identity (orchestrator, worker, operator) into a directory, laid out as :class:`TLSFiles`
expects. :func:`make_ca` and :func:`issue_certificate` are the building blocks, public so tests
can mint expired certificates or certificates from another authority.

These certificates are for development and tests: the CA key sits next to the certificates.
"""

from __future__ import annotations

import ipaddress
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from failhook.tls import TLSFiles

__all__ = [
    "DEV_NAMES",
    "OPERATOR_IDENTITY",
    "ORCHESTRATOR_IDENTITY",
    "SPIFFE_TRUST_DOMAIN",
    "WORKER_IDENTITY",
    "DevCerts",
    "init_dev_certs",
    "issue_certificate",
    "make_ca",
    "spiffe_id",
]

SPIFFE_TRUST_DOMAIN = "failhook.dev"
"""The trust domain of the dev identities' SPIFFE URIs."""


def spiffe_id(name: str) -> str:
    """Return the dev SPIFFE identity of a name.

    Args:
        name: The workload name, e.g. ``"worker"``.

    Returns:
        ``spiffe://failhook.dev/<name>``.
    """
    return f"spiffe://{SPIFFE_TRUST_DOMAIN}/{name}"


ORCHESTRATOR_IDENTITY = spiffe_id("orchestrator")
"""The orchestrator's dev identity (server and client of endpoints and hooks)."""
WORKER_IDENTITY = spiffe_id("worker")
"""The worker's dev identity (serves endpoints and hooks, submits runs)."""
OPERATOR_IDENTITY = spiffe_id("operator")
"""The operator's dev identity (reads runs, operates the dead-letter queue)."""

DEV_NAMES: tuple[str, ...] = ("orchestrator", "worker", "operator")
"""The dev identities :func:`init_dev_certs` issues certificates for."""

_SERVER_NAMES = frozenset({"orchestrator", "worker"})
_DEFAULT_DNS = ("localhost",)
_DEFAULT_IPS = ("127.0.0.1", "::1")
# Tolerate small clock differences between the machine that mints and the one that verifies.
_BACKDATE = timedelta(minutes=5)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _validity(
    not_before: datetime | None, not_after: datetime | None, valid_days: int
) -> tuple[datetime, datetime]:
    start = not_before if not_before is not None else datetime.now(UTC) - _BACKDATE
    end = not_after if not_after is not None else start + _BACKDATE + timedelta(days=valid_days)
    if end <= start:
        raise ValueError(f"not_after ({end.isoformat()}) must be after not_before ({start.isoformat()})")
    return start, end


def make_ca(
    common_name: str,
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    valid_days: int = 365,
) -> tuple[bytes, bytes]:
    """Create a self-signed certificate authority.

    Args:
        common_name: The CA's subject common name.
        not_before: Start of validity; defaults to five minutes ago.
        not_after: End of validity; defaults to ``valid_days`` after now.
        valid_days: Validity length used when ``not_after`` is not given.

    Returns:
        The CA certificate and its EC P-256 private key, both PEM encoded.

    Raises:
        ValueError: If the validity window is empty.
    """
    start, end = _validity(not_before, not_after, valid_days)
    key = _new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    public_key = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def issue_certificate(
    ca_cert: bytes,
    ca_key: bytes,
    name: str,
    *,
    server: bool,
    client: bool,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    valid_days: int = 365,
    dns_names: Sequence[str] = _DEFAULT_DNS,
    ip_addresses: Sequence[str] = _DEFAULT_IPS,
    uris: Sequence[str] | None = None,
) -> tuple[bytes, bytes]:
    """Issue a leaf certificate signed by a CA.

    Args:
        ca_cert: The issuing CA's certificate, PEM.
        ca_key: The issuing CA's private key, PEM, unencrypted.
        name: The subject common name, also used for the default SPIFFE URI.
        server: Whether to include the serverAuth extended key usage.
        client: Whether to include the clientAuth extended key usage.
        not_before: Start of validity; defaults to five minutes ago.
        not_after: End of validity; defaults to ``valid_days`` after now. A past value mints an
            expired certificate.
        valid_days: Validity length used when ``not_after`` is not given.
        dns_names: DNS subject alternative names.
        ip_addresses: IP subject alternative names (IPv4 or IPv6 text).
        uris: URI subject alternative names; defaults to ``[spiffe_id(name)]``.

    Returns:
        The certificate and its new EC P-256 private key, both PEM encoded.

    Raises:
        ValueError: If neither usage is requested, the validity window is empty, or the CA key is
            not an EC key.
    """
    if not (server or client):
        raise ValueError("a certificate needs server and/or client usage")
    issuer = x509.load_pem_x509_certificate(ca_cert)
    issuer_key = serialization.load_pem_private_key(ca_key, password=None)
    if not isinstance(issuer_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key must be an EC private key")
    start, end = _validity(not_before, not_after, valid_days)
    key = _new_key()
    public_key = key.public_key()
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    sans: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(uri) for uri in (uris if uris is not None else [spiffe_id(name)])
    ]
    sans += [x509.DNSName(dns) for dns in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(issuer_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


@dataclass(frozen=True)
class DevCerts:
    """The files :func:`init_dev_certs` wrote.

    Attributes:
        directory: The directory holding every file.
        ca: The CA certificate (``ca.pem``), the trust root for every party.
        ca_key: The CA private key (``ca-key.pem``); keep it private.
        names: The identities with a certificate and key in ``directory``.
    """

    directory: Path
    ca: Path
    ca_key: Path
    names: tuple[str, ...] = DEV_NAMES

    def tls_files(self, name: str) -> TLSFiles:
        """Return the CA, certificate and key files of one identity.

        Args:
            name: One of :attr:`names`, e.g. ``"orchestrator"``.

        Returns:
            The identity's files.

        Raises:
            ValueError: If ``name`` is not one of :attr:`names`.
        """
        if name not in self.names:
            raise ValueError(f"no dev certificate named {name!r}; expected one of {', '.join(self.names)}")
        return TLSFiles.from_dir(self.directory, name)

    def paths(self) -> tuple[Path, ...]:
        """Return every file, CA first, in the order they are written.

        Returns:
            The paths of all certificates and keys.
        """
        leaves = [self.tls_files(name) for name in self.names]
        return (self.ca, self.ca_key, *(p for f in leaves for p in (f.cert, f.key)))


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to a temporary sibling with ``mode`` and rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def init_dev_certs(directory: Path, *, overwrite: bool = False, valid_days: int = 365) -> DevCerts:
    """Create a dev CA and certificates for the orchestrator, a worker and an operator.

    Writes ``ca.pem``, ``ca-key.pem`` and, for each of ``orchestrator``, ``worker`` and
    ``operator``, ``<name>.pem`` and ``<name>-key.pem``. Keys are EC P-256 with mode 0600. Each
    leaf has common name ``<name>`` and the SANs DNS ``localhost``, IP ``127.0.0.1`` and ``::1``
    and URI ``spiffe://failhook.dev/<name>``; the orchestrator's and worker's certificates serve
    and authenticate clients, the operator's only authenticates a client. Files are replaced
    atomically, so a running server that reloads them never sees half a file.

    Args:
        directory: Where to write; created (mode 0700) if missing.
        overwrite: Replace existing files instead of refusing.
        valid_days: Validity of the CA and of every leaf.

    Returns:
        The written paths.

    Raises:
        FileExistsError: If any of the files exists and ``overwrite`` is false.
        ValueError: If ``valid_days`` is not positive.
    """
    if valid_days < 1:
        raise ValueError(f"valid_days must be at least 1, got {valid_days}")
    directory = Path(directory)
    made = DevCerts(directory=directory, ca=directory / "ca.pem", ca_key=directory / "ca-key.pem")
    existing = [p for p in made.paths() if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"refusing to overwrite existing certificate files in {directory}: "
            f"{', '.join(p.name for p in existing)} (pass overwrite=True, or --force on the command line, "
            "to replace them; certificates from the old CA stop being trusted)"
        )
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_cert, ca_key = make_ca("failhook dev CA", valid_days=valid_days)
    _write_atomic(made.ca_key, ca_key, 0o600)
    _write_atomic(made.ca, ca_cert, 0o644)
    for name in made.names:
        cert, key = issue_certificate(
            ca_cert, ca_key, name, server=name in _SERVER_NAMES, client=True, valid_days=valid_days
        )
        files = made.tls_files(name)
        _write_atomic(files.key, key, 0o600)
        _write_atomic(files.cert, cert, 0o644)
    return made
