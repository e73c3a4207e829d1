"""Authorization of the orchestrator's API: identities, roles and the audit trail."""

from failhook_orchestrator.security.authz import (
    ANONYMOUS,
    ANY_AUTHENTICATED,
    AUDIT_LOGGER,
    DEFAULT_EXEMPT_SERVICES,
    DEV_ROLE_GRANTS,
    INSECURE_IDENTITY,
    METHOD_ROLES,
    AuthorizationInterceptor,
    Role,
    RoleMap,
    audit_log,
    caller_identity,
)

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
