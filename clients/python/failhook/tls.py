"""The one place that builds gRPC TLS credentials for the SDK, the CLI and the orchestrator.

Every hop is mutual TLS: servers require a client certificate signed by the configured CA and
clients verify the server's certificate against it. The minimum protocol version is TLS 1.2,
gRPC's default for its SSL credentials (it negotiates TLS 1.3 when both sides can).

Server credentials reload their files on new handshakes when the files change, so certificates
rotate without a restart and without dropping calls. Replace files atomically (write a sibling,
then rename) or write the certificate and key in any order: a certificate whose key does not
match, or a file that does not parse, is ignored until the files are consistent again.

A peer's identities (:func:`peer_identities`) are typed by the certificate field they come from
(:class:`IdentityKind`): a URI SAN is only ever compared with a URI identity, a DNS SAN with a
DNS name, and the subject common name only with an identity written ``CN=<name>``. So a
certificate whose CN or DNS SAN spells ``spiffe://failhook.dev/orchestrator`` is not the
orchestrator: only a URI SAN with that value is.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, cast

import grpc
import grpc.aio
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

__all__ = [
    "KEEPALIVE_OPTIONS",
    "SERVER_KEEPALIVE_OPTIONS",
    "Identity",
    "IdentityKind",
    "TLSFiles",
    "channel_credentials",
    "channel_options",
    "peer_identities",
    "server_credentials",
    "server_options",
]

_LOG = logging.getLogger(__name__)

KEEPALIVE_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.keepalive_permit_without_calls", 1),
)
"""Client keepalive: ping an idle connection every 30 s and drop it after 10 s without answer."""

SERVER_KEEPALIVE_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 20_000),
)
"""Server side of :data:`KEEPALIVE_OPTIONS`: without them a gRPC server answers the clients' idle
pings with GOAWAY ``too_many_pings`` and closes the connection."""

# Auth-context keys of gRPC's SSL transport security (checked against grpcio 1.85); values are
# lists of bytes. ``x509_subject_alternative_name`` mixes all SAN kinds, so the per-kind keys are used.
_SAN_URI_KEY = "peer_uri"
_SAN_DNS_KEY = "peer_dns"
_CN_KEY = "x509_common_name"


@dataclass(frozen=True)
class TLSFiles:
    """The PEM files of one TLS identity.

    Attributes:
        ca: The CA certificate(s) to trust for the peer.
        cert: This party's certificate chain, leaf first.
        key: This party's private key, unencrypted.
    """

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def from_dir(cls, directory: Path, name: str) -> TLSFiles:
        """Return the files of ``name`` in the layout ``failhook certs init`` writes.

        Args:
            directory: The directory holding ``ca.pem``, ``<name>.pem`` and ``<name>-key.pem``.
            name: The identity, e.g. ``"orchestrator"``.

        Returns:
            The three paths; their existence is not checked.
        """
        directory = Path(directory)
        return cls(ca=directory / "ca.pem", cert=directory / f"{name}.pem", key=directory / f"{name}-key.pem")

    def read(self) -> tuple[bytes, bytes, bytes]:
        """Read the files.

        Returns:
            The CA, certificate and key contents.

        Raises:
            OSError: If a file cannot be read.
        """
        return self.ca.read_bytes(), self.cert.read_bytes(), self.key.read_bytes()


def _check_material(ca: bytes, cert: bytes, key: bytes) -> None:
    """Raise ``ValueError`` unless the PEM material parses and the key belongs to the certificate."""
    try:
        x509.load_pem_x509_certificates(ca)
        chain = x509.load_pem_x509_certificates(cert)
        private_key = serialization.load_pem_private_key(key, password=None)
    except (TypeError, UnsupportedAlgorithm) as err:  # e.g. an encrypted key
        raise ValueError(str(err)) from err
    if chain[0].public_key() != private_key.public_key():
        raise ValueError("the private key does not match the certificate")


_Signature = tuple[tuple[int, int, int, int], ...]
_MISSING: _Signature = ()  # stands for "a file could not be read"


def _stat_signature(files: TLSFiles) -> _Signature:
    stats = (path.stat() for path in (files.ca, files.cert, files.key))
    return tuple((s.st_dev, s.st_ino, s.st_mtime_ns, s.st_size) for s in stats)


class _ReloadingConfig:
    """A certificate-config fetcher for ``grpc.dynamic_ssl_server_credentials``.

    gRPC calls it (from its own threads) before each new handshake: it returns ``None`` while the
    files are unchanged, or a new configuration once they have changed and are consistent.
    Established connections keep the configuration they were made with.
    """

    def __init__(self, files: TLSFiles) -> None:
        self._files = files
        self._lock = threading.Lock()
        self._signature = _stat_signature(files)
        material = files.read()
        _check_material(*material)
        self._digest = self._hash(material)
        self.initial = self._config(material)
        # The signature of files found unusable, not looked at again until they change.
        self._rejected: _Signature | None = None

    @staticmethod
    def _hash(material: tuple[bytes, bytes, bytes]) -> bytes:
        return hashlib.sha256(b"\0".join(material)).digest()

    @staticmethod
    def _config(material: tuple[bytes, bytes, bytes]) -> grpc.ServerCertificateConfiguration:
        ca, cert, key = material
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            try:
                signature = _stat_signature(self._files)
                if signature in (self._signature, self._rejected):
                    return None
                material = self._files.read()
                digest = self._hash(material)
                if digest == self._digest:
                    self._signature, self._rejected = signature, None
                    return None
                _check_material(*material)
            except (OSError, ValueError) as err:
                # Most likely caught mid-rotation: keep serving the loaded certificate.
                rejected = _MISSING if isinstance(err, OSError) else signature
                if rejected != self._rejected:
                    _LOG.warning("not reloading TLS files, keeping the loaded certificate: %s", err)
                self._rejected = rejected
                return None
            self._signature, self._digest, self._rejected = signature, digest, None
            _LOG.info("reloaded TLS certificate %s", self._files.cert)
            return self._config(material)


def server_credentials(files: TLSFiles, *, require_client_auth: bool = True) -> grpc.ServerCredentials:
    """Build server credentials that pick up rotated certificate files.

    The files are read now (and must be valid), then checked again, cheaply by ``stat``, before
    every new handshake; when they changed and are consistent the new certificate, key and CA are
    used for new connections. Existing connections and calls are not affected. TLS 1.2 is the
    minimum version (gRPC's default).

    Args:
        files: The server's CA, certificate and key. The CA verifies client certificates.
        require_client_auth: Require and verify a client certificate (mutual TLS). When false the
            server does not even ask for one, so no call has a peer identity; turn it off only for
            servers whose callers cannot present a certificate.

    Returns:
        Credentials for ``server.add_secure_port``.

    Raises:
        OSError: If a file cannot be read.
        ValueError: If the PEM material is invalid or the key does not match the certificate.
    """
    reloader = _ReloadingConfig(files)
    # gRPC accepts None from the fetcher ("unchanged"); the stubs do not say so.
    fetcher = cast(Callable[[], grpc.ServerCertificateConfiguration], reloader)
    return grpc.dynamic_ssl_server_credentials(
        reloader.initial, fetcher, require_client_authentication=require_client_auth
    )


def channel_credentials(files: TLSFiles) -> grpc.ChannelCredentials:
    """Build client credentials: trust ``files.ca``, present ``files.cert``.

    The files are read once; a client picks up a rotated certificate with a new channel. TLS 1.2
    is the minimum version (gRPC's default).

    Args:
        files: The client's CA (to verify the server), certificate and key.

    Returns:
        Credentials for ``grpc.aio.secure_channel``.

    Raises:
        OSError: If a file cannot be read.
        ValueError: If the PEM material is invalid or the key does not match the certificate.
    """
    ca, cert, key = files.read()
    _check_material(ca, cert, key)
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def channel_options(server_name_override: str | None = None) -> list[tuple[str, str | int]]:
    """Return the channel options every failhook client uses.

    Args:
        server_name_override: The name to verify the server certificate against instead of the
            target's host (``grpc.ssl_target_name_override``), e.g. ``"localhost"`` when dialling
            an IP address whose certificate names a host.

    Returns:
        Keepalive options, plus the override when given.
    """
    options: list[tuple[str, str | int]] = list(KEEPALIVE_OPTIONS)
    if server_name_override:
        options.append(("grpc.ssl_target_name_override", server_name_override))
    return options


def server_options() -> list[tuple[str, str | int]]:
    """Return the server options matching :func:`channel_options`.

    Returns:
        Options for ``grpc.aio.server(options=...)`` that accept the clients' keepalive pings.
    """
    return list(SERVER_KEEPALIVE_OPTIONS)


class IdentityKind(StrEnum):
    """The certificate field an :class:`Identity` names. Identities of different kinds never match."""

    URI = "uri"
    """A URI subject alternative name, e.g. a SPIFFE id ``spiffe://failhook.dev/worker``."""
    DNS = "dns"
    """A DNS subject alternative name, e.g. ``worker.internal``."""
    COMMON_NAME = "cn"
    """The subject common name; it names nobody unless an allow-list or role map says ``CN=...``."""


# RFC 3986: a URI starts with its scheme and a colon. DNS names (RFC 1123 labels, underscores
# tolerated, an optional leading wildcard label) contain neither ":" nor "/" nor "=", and the
# common name is written with a "CN=" prefix, so the three written forms never collide.
_URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_DNS_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_DNS_NAME = re.compile(rf"(?:\*\.)?{_DNS_LABEL}(?:\.{_DNS_LABEL})*")
_DNS_MAX = 253
_CN_PREFIX = "CN="


def _checked_uri(value: str) -> str:
    if not (value.isprintable() and not any(c.isspace() for c in value) and _URI_SCHEME.match(value)):
        raise ValueError(f"{value!r} is not a URI identity: expected scheme:rest, e.g. spiffe://domain/name")
    return value


def _checked_dns(value: str) -> str:
    name = value.removesuffix(".").lower()
    if len(name) > _DNS_MAX or not _DNS_NAME.fullmatch(name):
        raise ValueError(f"{value!r} is not a DNS name identity")
    return name


def _checked_common_name(value: str) -> str:
    if not value or not value.isprintable():
        raise ValueError(f"{value!r} is not a common name identity")
    return value


_CHECKED = {
    IdentityKind.URI: _checked_uri,
    IdentityKind.DNS: _checked_dns,
    IdentityKind.COMMON_NAME: _checked_common_name,
}


@dataclass(frozen=True, order=True)
class Identity:
    """One name of a certificate, typed by the field it comes from.

    Two identities are equal only if both kind and value are, so a URI SAN never matches a DNS
    name or a common name with the same text. DNS names compare case-insensitively (they are
    stored lower-case, without a trailing dot); URIs and common names compare exactly. Nothing is
    expanded: a wildcard DNS SAN ``*.example.com`` matches only the identity ``*.example.com``.

    Written forms (:meth:`parse` and ``str()``): a URI as is (``spiffe://failhook.dev/worker``),
    a DNS name as is (``worker.internal``), a common name as ``CN=worker``.

    Attributes:
        kind: The certificate field.
        value: The name, normalised (DNS names lower-case, without a trailing dot).

    Raises:
        ValueError: If ``value`` is malformed for its kind: a URI without a scheme or with
            spaces, a DNS name that is no host name, an empty common name, control characters.
    """

    kind: IdentityKind
    value: str

    def __post_init__(self) -> None:
        """Check the value for its kind and normalise it."""
        object.__setattr__(self, "value", _CHECKED[self.kind](self.value))

    @classmethod
    def uri(cls, value: str) -> Identity:
        """Return the identity of a URI SAN, e.g. ``spiffe://failhook.dev/orchestrator``."""
        return cls(IdentityKind.URI, value)

    @classmethod
    def dns(cls, value: str) -> Identity:
        """Return the identity of a DNS SAN, e.g. ``worker.internal`` (case and a trailing dot
        are ignored)."""
        return cls(IdentityKind.DNS, value)

    @classmethod
    def common_name(cls, value: str) -> Identity:
        """Return the identity of a subject common name, e.g. ``worker``."""
        return cls(IdentityKind.COMMON_NAME, value)

    @classmethod
    def parse(cls, text: str) -> Identity:
        """Read an identity as written in an allow-list or a role map.

        ``CN=<name>`` is a common name (the only way to trust one); text that starts with a URI
        scheme (``spiffe:``, ``https:`` ...) is a URI; anything else must be a DNS name.

        Args:
            text: E.g. ``"spiffe://failhook.dev/orchestrator"``, ``"orchestrator.internal"`` or
                ``"CN=orchestrator"``.

        Returns:
            The typed identity.

        Raises:
            ValueError: If the text is none of the three forms.
        """
        if text[: len(_CN_PREFIX)].upper() == _CN_PREFIX:
            return cls.common_name(text[len(_CN_PREFIX) :])
        if _URI_SCHEME.match(text):
            return cls.uri(text)
        try:
            return cls.dns(text)
        except ValueError:
            raise ValueError(
                f"{text!r} is not a certificate identity: write a URI (e.g. spiffe://failhook.dev/worker), "
                "a DNS name (e.g. worker.internal) or a common name as CN=<name>"
            ) from None

    def __str__(self) -> str:
        """The written form, which :meth:`parse` reads back to an equal identity."""
        return f"{_CN_PREFIX}{self.value}" if self.kind is IdentityKind.COMMON_NAME else self.value


def _decoded(values: Iterable[bytes] | bytes | None) -> list[str]:
    if isinstance(values, bytes):
        values = [values]
    return [v.decode("utf-8", "replace") for v in values or ()]


def _typed(make: Callable[[str], Identity], values: Iterable[str]) -> list[Identity]:
    """The values that are well formed for their kind; others name nobody and are left out."""
    typed = []
    for value in values:
        try:
            typed.append(make(value))
        except ValueError:
            _LOG.debug("ignoring a malformed certificate name %r", value)
    return typed


def peer_identities(
    context: grpc.aio.ServicerContext[Any, Any] | grpc.ServicerContext,
) -> tuple[Identity, ...]:
    """Return the identities of a call's authenticated peer, each typed by its certificate field.

    The URI SANs (e.g. ``spiffe://failhook.dev/worker``) come first, then the DNS SANs, then the
    subject common name, without duplicates. IP address and e-mail SANs are left out, as are
    names malformed for their field (a DNS SAN holding a URI names nobody). Only certificates the
    server verified against its CA reach this point, so every entry is vouched for by that CA;
    allow-list the SPIFFE URIs rather than shared names such as ``localhost``.

    Args:
        context: The servicer context of the call (``grpc.aio`` or synchronous).

    Returns:
        The identities; empty for plaintext or when the client presented no certificate.
    """
    auth = context.auth_context()
    return _identities(
        _names(auth.get(_SAN_URI_KEY)), _names(auth.get(_SAN_DNS_KEY)), _names(auth.get(_CN_KEY))
    )


def _names(values: Iterable[bytes] | bytes | None) -> tuple[bytes, ...]:
    if isinstance(values, bytes):
        return (values,)
    return tuple(values or ())


@functools.lru_cache(maxsize=1024)
def _identities(
    uris: tuple[bytes, ...], dns: tuple[bytes, ...], cns: tuple[bytes, ...]
) -> tuple[Identity, ...]:
    """The typed identities of a certificate's names, cached by those names.

    A connection's every call presents the same certificate, so its identities are parsed and
    validated once, not per call; the names are those gRPC verified, so equal names mean the
    same identities whatever the connection.
    """
    ordered = [
        *_typed(Identity.uri, _decoded(uris)),
        *_typed(Identity.dns, _decoded(dns)),
        *_typed(Identity.common_name, _decoded(cns)),
    ]
    return tuple(dict.fromkeys(ordered))
