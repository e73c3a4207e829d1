"""Typed configuration, from defaults, a TOML file, ``FAILHOOK_*`` variables and flags.

Precedence: flag > environment variable > config file > default. The defaults run locally on
SQLite. Every setting is documented in ``docs/runbook.md``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .engine.limits import PolicyViolation, check_policy
from .engine.policy import DEFAULT_HOOK_POLICY, DEFAULT_STEP_POLICY, RetryPolicy

__all__ = ["ConfigError", "Settings", "TargetOverride", "load_settings"]

ENV_PREFIX = "FAILHOOK_"
#: Headers that carry credentials by convention: redacted in every read unless configured otherwise.
DEFAULT_SENSITIVE_HEADERS = (
    "authorization",
    "cookie",
    "proxy-authorization",
    "set-cookie",
    "x-api-key",
    "x-auth-token",
)


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names it."""


@dataclass(frozen=True, slots=True)
class TargetOverride:
    """TLS overrides for outbound calls to one target (an endpoint or hook ``host:port``)."""

    server_name: str | None = None
    ca: Path | None = None


@dataclass(frozen=True)
class Settings:
    """Everything the orchestrator can be told.

    Attributes:
        listen: Address of the gRPC server (``HOST:PORT``; port 0 picks a free one).
        database: SQLAlchemy URL: ``sqlite+aiosqlite:///path`` or ``postgresql+asyncpg://…``.
        tls_ca: CA bundle that signs the clients' (and the user servers') certificates.
        tls_cert: The orchestrator's certificate, used as server and as client.
        tls_key: Its private key.
        insecure: Plaintext everywhere (development only; logged loudly).
        grace_period: Seconds in-flight calls and steps get at shutdown.
        max_payload_bytes: Largest run payload accepted by StartRun.
        max_concurrent_dispatches: Outbound step calls in flight at once.
        lease_seconds: Lease of a run held by this process.
        heartbeat_seconds: How often leases are renewed.
        claim_interval_seconds: How often orphaned runs are looked for.
        dlq_retention_days: DLQ entries older than this are purged (0 keeps them forever).
        step_policy: Default retry policy of steps.
        hook_policy: Retry policy of failure-hook deliveries.
        roles: Identity -> roles (``submit``, ``read``, ``operate``, ``admin``); empty = dev defaults.
        targets: Outbound TLS overrides by target.
        log_format: ``text`` or ``json``.
        log_level: Logging level name.
        page_token_secret: Key of the page tokens' HMAC (the same on every replica); empty: a
            random key made once and kept in the database.
        sensitive_headers: Run header names whose values every read shows as ``[redacted]``
            (they are still forwarded to endpoints and hooks as given).
    """

    listen: str = "127.0.0.1:50051"
    database: str = "sqlite+aiosqlite:///var/failhook.db"
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    insecure: bool = False
    grace_period: float = 10.0
    max_payload_bytes: int = 1024 * 1024
    max_concurrent_dispatches: int = 256
    lease_seconds: float = 30.0
    heartbeat_seconds: float = 10.0
    claim_interval_seconds: float = 5.0
    dlq_retention_days: float = 30.0
    step_policy: RetryPolicy = DEFAULT_STEP_POLICY
    hook_policy: RetryPolicy = DEFAULT_HOOK_POLICY
    roles: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    targets: Mapping[str, TargetOverride] = field(default_factory=dict)
    log_format: str = "text"
    log_level: str = "INFO"
    page_token_secret: str = ""
    sensitive_headers: tuple[str, ...] = DEFAULT_SENSITIVE_HEADERS

    def check(self) -> None:
        """Refuse unusable combinations with a message naming the setting."""
        tls = (self.tls_ca, self.tls_cert, self.tls_key)
        if self.insecure and any(tls):
            raise ConfigError("--insecure and --tls-* are exclusive: choose plaintext or mTLS")
        if not self.insecure and not all(tls):
            missing = [n for n, v in zip(("--tls-ca", "--tls-cert", "--tls-key"), tls, strict=True) if not v]
            raise ConfigError(
                f"mTLS needs {', '.join(missing)} (make development certificates: `failhook certs init DIR`),"
                " or pass --insecure for plaintext development"
            )
        for name, path in zip(("tls_ca", "tls_cert", "tls_key"), tls, strict=True):
            if path is not None and not path.is_file():
                raise ConfigError(f"{name}: {path} is not a readable file")
        if self.max_concurrent_dispatches < 1:
            raise ConfigError("max_concurrent_dispatches must be at least 1")
        if self.heartbeat_seconds >= self.lease_seconds:
            raise ConfigError("heartbeat_seconds must be shorter than lease_seconds")
        if self.log_format not in ("text", "json"):
            raise ConfigError("log_format must be 'text' or 'json'")


_SCALARS = {
    f.name: f for f in fields(Settings) if f.name not in ("step_policy", "hook_policy", "roles", "targets")
}


def _coerce(name: str, value: Any) -> Any:
    kind = _SCALARS[name].type
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            lowered = str(value).strip().lower()
            if lowered not in ("1", "true", "yes", "on", "0", "false", "no", "off", ""):
                raise ValueError(value)
            return lowered in ("1", "true", "yes", "on")
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "tuple[str, ...]":
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
                raise ValueError(value)
            return tuple(sorted({i.strip().lower() for i in items if i.strip()}))
        if kind == "Path | None":
            return Path(value) if value not in (None, "") else None
        return str(value)
    except ValueError:
        raise ConfigError(f"{name}: {value!r} is not a valid {kind}") from None


def _policy(name: str, data: Mapping[str, Any], base: RetryPolicy) -> RetryPolicy:
    known = {f.name for f in fields(RetryPolicy)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"{name}: unknown keys {sorted(unknown)}")
    values = {**{f.name: getattr(base, f.name) for f in fields(RetryPolicy)}, **data}
    try:
        values["non_retryable_codes"] = frozenset(values["non_retryable_codes"])
        return check_policy(RetryPolicy(**values))
    except PolicyViolation as violation:
        raise ConfigError(f"{name}.{violation.field}: {violation.message}") from None
    except TypeError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def load_settings(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Settings:
    """Merge the sources into checked settings."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    path = config_file or (Path(env[f"{ENV_PREFIX}CONFIG"]) if env.get(f"{ENV_PREFIX}CONFIG") else None)
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        for key, value in data.items():
            if key in _SCALARS:
                values[key] = _coerce(key, value)
            elif key in ("step_policy", "hook_policy", "roles", "targets"):
                extra[key] = value
            else:
                raise ConfigError(f"config file {path}: unknown setting {key!r}")
    for name in _SCALARS:
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None:
            values[name] = _coerce(name, raw)
    for name, value in (flags or {}).items():
        if value is not None and name in _SCALARS:
            values[name] = _coerce(name, value)
    settings = Settings(
        **values,
        step_policy=_policy("step_policy", extra.get("step_policy", {}), DEFAULT_STEP_POLICY),
        hook_policy=_policy("hook_policy", extra.get("hook_policy", {}), DEFAULT_HOOK_POLICY),
        roles={str(k): tuple(str(r) for r in v) for k, v in extra.get("roles", {}).items()},
        targets={
            str(k): TargetOverride(
                server_name=v.get("server_name"), ca=Path(v["ca"]) if v.get("ca") else None
            )
            for k, v in extra.get("targets", {}).items()
        },
    )
    settings.check()
    return settings
