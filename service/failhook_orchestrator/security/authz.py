"""Role-based authorization of the orchestrator's API by certificate identity.

Identities (see :func:`failhook.tls.peer_identities`) map to roles in a :class:`RoleMap`; every
method needs one role (:data:`METHOD_ROLES`); :class:`AuthorizationInterceptor` enforces it
before the servicer runs. ``admin`` implies every role. Denials and privileged actions go to the
``failhook.audit`` logger, one JSON object per line (:func:`audit_log`).

Grants are keyed by typed identities (:class:`failhook.tls.Identity`): a key
``spiffe://failhook.dev/operator`` grants its roles to a certificate with that URI SAN only, a
key ``ops.internal`` to that DNS SAN only, and a common name gets roles only from a key written
``CN=<name>``. A certificate whose CN or DNS SAN spells a granted URI gets nothing from it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterable, Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import grpc

from failhook.certs import OPERATOR_IDENTITY, ORCHESTRATOR_IDENTITY, WORKER_IDENTITY
from failhook.identity import Denial, GuardInterceptor, current_caller, service_name
from failhook.tls import Identity, peer_identities

__all__ = [
    "ANONYMOUS",
    "ANY_AUTHENTICATED",
    "AUDIT_LOGGER",
    "DEFAULT_EXEMPT_SERVICES",
    "DEV_ROLE_GRANTS",
    "INSECURE_IDENTITY",
    "METHOD_ROLES",
    "AuthorizationInterceptor",
    "Role",
    "RoleMap",
    "audit_log",
    "caller_identity",
]

_LOG = logging.getLogger(__name__)
AUDIT_LOGGER = logging.getLogger("failhook.audit")
"""The audit trail: one JSON object per line at INFO."""

ANY_AUTHENTICATED = "*"
"""The :class:`RoleMap` key whose roles every authenticated identity gets."""
INSECURE_IDENTITY = "insecure-dev"
"""The identity every call runs as on an ``--insecure`` (plaintext) server."""
ANONYMOUS = "anonymous"
"""What :func:`caller_identity` returns for a call without identity."""


class Role(StrEnum):
    """What an identity may do. ``admin`` implies the others."""

    SUBMIT = "submit"
    """Start and cancel runs."""
    READ = "read"
    """Read runs and dead letters."""
    OPERATE = "operate"
    """Act on the dead-letter queue (restart, resume, retry hooks, delete); pause and resume targets."""
    ADMIN = "admin"
    """Everything, including methods not listed in :data:`METHOD_ROLES`."""


_WORKFLOW = "/failhook.v1.WorkflowService/"
_DLQ = "/failhook.v1.DeadLetterService/"
_TARGETS = "/failhook.v1.TargetService/"

METHOD_ROLES: Mapping[str, Role] = MappingProxyType(
    {
        f"{_WORKFLOW}StartRun": Role.SUBMIT,
        f"{_WORKFLOW}CancelRun": Role.SUBMIT,
        f"{_WORKFLOW}GetRun": Role.READ,
        f"{_WORKFLOW}ListRuns": Role.READ,
        f"{_DLQ}ListDeadLetters": Role.READ,
        f"{_DLQ}GetDeadLetter": Role.READ,
        f"{_DLQ}RestartRun": Role.OPERATE,
        f"{_DLQ}ResumeRun": Role.OPERATE,
        f"{_DLQ}RetryFailureHook": Role.OPERATE,
        f"{_DLQ}DeleteDeadLetter": Role.OPERATE,
        f"{_DLQ}BulkRestartRuns": Role.OPERATE,
        f"{_DLQ}BulkResumeRuns": Role.OPERATE,
        f"{_DLQ}BulkDeleteDeadLetters": Role.OPERATE,
        f"{_DLQ}StartBulkOperation": Role.OPERATE,
        f"{_DLQ}CancelBulkOperation": Role.OPERATE,
        f"{_DLQ}GetBulkOperation": Role.READ,
        f"{_DLQ}ListBulkOperations": Role.READ,
        f"{_TARGETS}ListTargets": Role.READ,
        f"{_TARGETS}GetTarget": Role.READ,
        f"{_TARGETS}PauseTarget": Role.OPERATE,
        f"{_TARGETS}ResumeTarget": Role.OPERATE,
    }
)
"""The role each orchestrator method needs, by full method name. Any other method needs admin."""

DEV_ROLE_GRANTS: Mapping[str, frozenset[Role]] = MappingProxyType(
    {
        ORCHESTRATOR_IDENTITY: frozenset({Role.ADMIN}),
        WORKER_IDENTITY: frozenset({Role.SUBMIT, Role.READ}),
        OPERATOR_IDENTITY: frozenset({Role.READ, Role.OPERATE}),
    }
)
"""The grants of the identities ``failhook certs init`` issues."""

DEFAULT_EXEMPT_SERVICES: tuple[str, ...] = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
)
"""Services callable by any peer the transport admits: health checks and reflection."""


def _grant_key(key: str | Identity) -> Identity | str:
    """A grant's key: the ``"*"`` wildcard, or a typed identity."""
    if isinstance(key, Identity) or key == ANY_AUTHENTICATED:
        return key
    try:
        return Identity.parse(key)
    except ValueError as err:
        raise ValueError(f"role grant for {key!r}: {err}") from None


class RoleMap:
    """Which roles each identity has.

    Keys are identities as :meth:`failhook.tls.Identity.parse` reads them, matched by kind: a
    URI (``spiffe://...``) against URI SANs only, a DNS name against DNS SANs only, ``CN=<name>``
    against the subject common name only (the one way to grant a common name any role).

    Args:
        grants: Identity to role names, e.g. ``{"spiffe://failhook.dev/operator": ["read",
            "operate"]}``; the key ``"*"`` grants roles to every authenticated identity.

    Raises:
        ValueError: If a key is not an identity, a role name is unknown, or roles are given as
            one string.
    """

    def __init__(self, grants: Mapping[str, Iterable[str]] | Mapping[Identity, Iterable[str]]) -> None:
        parsed: dict[Identity | str, frozenset[Role]] = {}
        for identity, roles in grants.items():
            if isinstance(roles, str):
                raise ValueError(f"roles of {str(identity)!r} must be a list, got the string {roles!r}")
            try:
                granted = frozenset(Role(role) for role in roles)
            except ValueError as err:
                known = ", ".join(r.value for r in Role)
                raise ValueError(
                    f"unknown role for {str(identity)!r}: {err} (known roles: {known})"
                ) from None
            key = _grant_key(identity)
            parsed[key] = parsed.get(key, frozenset()) | granted
        self._grants = MappingProxyType(parsed)

    @classmethod
    def dev_default(cls) -> RoleMap:
        """Return the grants of the dev identities (:data:`DEV_ROLE_GRANTS`).

        Returns:
            orchestrator: admin; worker: submit and read; operator: read and operate.
        """
        return cls(DEV_ROLE_GRANTS)

    @property
    def grants(self) -> Mapping[Identity | str, frozenset[Role]]:
        """The parsed grants by typed identity (and ``"*"``), read-only."""
        return self._grants

    def roles_for(self, identities: Iterable[Identity | str]) -> frozenset[Role]:
        """Return the roles of a caller with these identities.

        Args:
            identities: All identities of one caller (see :func:`failhook.tls.peer_identities`);
                written forms are parsed.

        Returns:
            The union of their grants, plus the ``"*"`` grants if there is any identity.

        Raises:
            ValueError: If a written form is not an identity.
        """
        ids = [i if isinstance(i, Identity) else Identity.parse(i) for i in identities]
        roles: set[Role] = set()
        for identity in ids:
            roles |= self._grants.get(identity, frozenset())
        if ids:
            roles |= self._grants.get(ANY_AUTHENTICATED, frozenset())
        return frozenset(roles)

    def allows(self, identities: Iterable[Identity | str], role: Role) -> bool:
        """Return whether a caller with these identities has ``role`` (admin has every role).

        Args:
            identities: All identities of one caller.
            role: The role needed.

        Returns:
            Whether the role is granted.
        """
        roles = self.roles_for(identities)
        return role in roles or Role.ADMIN in roles


def _short_method(method: str) -> str:
    """``/failhook.v1.DeadLetterService/RestartRun`` -> ``DeadLetterService.RestartRun``."""
    name = method.rpartition("/")[2]
    return f"{service_name(method).rpartition('.')[2]}.{name}"


def audit_log(action: str, identity: str, **fields: str) -> None:
    """Write one audit record to the ``failhook.audit`` logger.

    The message is a single JSON object line, e.g.
    ``{"action": "dlq.restart", "identity": "spiffe://failhook.dev/operator", "run_id": "r1"}``;
    the same dict is attached to the log record as ``audit``.

    Args:
        action: What happened, dotted, e.g. ``"run.start"`` or ``"authz.denied"``.
        identity: Who did it (see :func:`caller_identity`).
        **fields: More string fields, e.g. ``run_id``.
    """
    record = {"action": action, "identity": identity, **fields}
    AUDIT_LOGGER.info("%s", json.dumps(record, ensure_ascii=False), extra={"audit": record})


def caller_identity(context: Any) -> str:
    """Return who makes the current call, for audit logs.

    Args:
        context: The call's servicer context.

    Returns:
        The identity the authorization interceptor admitted (``"insecure-dev"`` on an insecure
        server), else the peer's first identity, else ``"anonymous"``.
    """
    admitted = current_caller()
    if admitted:
        return admitted
    identities = peer_identities(context)
    return str(identities[0]) if identities else ANONYMOUS


class AuthorizationInterceptor(GuardInterceptor):
    """Refuse calls whose caller lacks the role the method needs, before the servicer runs.

    No identity: UNAUTHENTICATED. Missing role: PERMISSION_DENIED with a message such as
    ``identity 'spiffe://failhook.dev/worker' lacks role 'operate' for
    DeadLetterService.RestartRun``. Methods absent from ``method_roles`` need admin.

    Args:
        roles: The grants.
        insecure: The server is plaintext (``--insecure``): admit every call as
            ``"insecure-dev"``. For development only.
        method_roles: Role needed per full method name.
        exempt_services: Services not checked (health and reflection by default).
    """

    def __init__(
        self,
        roles: RoleMap,
        *,
        insecure: bool = False,
        method_roles: Mapping[str, Role | str] = METHOD_ROLES,
        exempt_services: Collection[str] = DEFAULT_EXEMPT_SERVICES,
    ) -> None:
        super().__init__(exempt_services=exempt_services)
        self._roles = roles
        self._insecure = insecure
        self._method_roles = {method: Role(role) for method, role in method_roles.items()}
        if insecure:
            _LOG.warning("INSECURE: authorization is off, every call is admitted as %r", INSECURE_IDENTITY)

    def required_role(self, method: str) -> Role:
        """Return the role a method needs.

        Args:
            method: The full method name.

        Returns:
            Its role in ``method_roles``, else admin.
        """
        return self._method_roles.get(method, Role.ADMIN)

    def check(self, method: str, context: Any) -> Denial | str:
        """Admit the call if the caller has the method's role.

        Args:
            method: The full method name.
            context: The call's servicer context.

        Returns:
            The caller's identity, or the denial.
        """
        if self._insecure:
            return INSECURE_IDENTITY
        identities = peer_identities(context)
        short = _short_method(method)
        if not identities:
            return Denial(grpc.StatusCode.UNAUTHENTICATED, f"{short} requires a client certificate")
        role = self.required_role(method)
        first = str(identities[0])
        if not self._roles.allows(identities, role):
            audit_log("authz.denied", first, method=method, role=role.value)
            return Denial(
                grpc.StatusCode.PERMISSION_DENIED, f"identity {first!r} lacks role {role.value!r} for {short}"
            )
        return first
