"""Typed configuration, from defaults, a TOML file, ``FAILHOOK_*`` variables and flags.

Precedence: flag > environment variable > config file > default. The defaults run locally on
SQLite. Every setting is documented in ``docs/runbook.md``.

Settings live in sections, each a dataclass that owns its defaults (the runtime's are the
engine's :class:`~failhook_orchestrator.engine.runtime.RuntimeSettings`, the pool size the
store's); a few stay at the top level. In the file a section is a TOML table (``[database]``,
``pool_size = 20``); its environment variable is ``FAILHOOK_<SECTION>_<KEY>``
(``FAILHOOK_DATABASE_POOL_SIZE``) and its flag ``--<section>-<key>``; ``database.url`` is
``FAILHOOK_DATABASE`` / ``--database``. ``[breaker]`` is read by ``breaker_config.py``.

The file is checked whole: an unknown key anywhere, or a value of the wrong type or out of its
bounds, is a :class:`ConfigError` naming the key. Retry policies obey the same rules as a
request's (``engine/limits.py``).
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .breaker_config import BreakerConfig, parse_breaker_config
from .engine import limits
from .engine.breaker import BreakerSettingsError
from .engine.policy import DEFAULT_HOOK_POLICY, DEFAULT_STEP_POLICY, RetryPolicy
from .engine.runtime import RuntimeSettings
from .flow_control_config import LIMIT_KEYS, FlowControlConfig, FlowControlConfigError, parse_flow_control
from .security.authz import RoleMap
from .store.database import DEFAULT_POOL_SIZE
from .store.dialect import SqliteSynchronous

__all__ = [
    "DEFAULT_SENSITIVE_HEADERS",
    "ApiSettings",
    "ConfigError",
    "DatabaseSettings",
    "DlqSettings",
    "LogSettings",
    "Settings",
    "TargetOverride",
    "TlsSettings",
    "load_settings",
    "replace_settings",
]

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
class DatabaseSettings:
    """``[database]``: where runs are stored.

    Attributes:
        url: SQLAlchemy URL: ``sqlite+aiosqlite:///path`` or ``postgresql+asyncpg://…``.
        pool_size: Pooled connections of a PostgreSQL replica (reads; writes use one more).
        sqlite_synchronous: ``FULL`` (a commit survives power loss) or ``NORMAL`` (faster; the
            last commits may be lost on power loss, never on a process crash).
    """

    url: str = "sqlite+aiosqlite:///var/failhook.db"
    pool_size: int = DEFAULT_POOL_SIZE
    sqlite_synchronous: str = SqliteSynchronous.FULL.value


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """``[tls]``: the orchestrator's mTLS material (required unless ``insecure``).

    Attributes:
        ca: CA bundle that signs the clients' (and the user servers') certificates.
        cert: The orchestrator's certificate, used as server and as client.
        key: Its private key.
    """

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """``[api]``: what requests may carry and how reads show it.

    Attributes:
        max_payload_bytes: Largest run payload StartRun and ResumeRun accept.
        page_token_secret: Key of the page tokens' HMAC (the same on every replica); empty: a
            random key made once and kept in the database.
        sensitive_headers: Run header names whose values every read shows as ``[redacted]``
            (they are still forwarded to endpoints and hooks as given).
        default_execution_timeout_seconds: The execution timeout of runs whose StartRun gives
            none; 0 (the default): such runs have no deadline.
    """

    max_payload_bytes: int = 1024 * 1024
    page_token_secret: str = ""
    sensitive_headers: tuple[str, ...] = DEFAULT_SENSITIVE_HEADERS
    default_execution_timeout_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class DlqSettings:
    """``[dlq]``: the dead-letter queue.

    Attributes:
        retention_days: Entries older than this are purged (0 keeps them forever).
    """

    retention_days: float = 30.0


@dataclass(frozen=True, slots=True)
class LogSettings:
    """``[log]``: the process's log.

    Attributes:
        format: ``text`` or ``json``.
        level: A logging level name (``DEBUG``, ``INFO``, ``WARNING``, ``ERROR``, ``CRITICAL``).
    """

    format: str = "text"
    level: str = "INFO"


@dataclass(frozen=True, slots=True)
class TargetOverride:
    """``[targets."host:port"]``: TLS overrides for outbound calls to one endpoint or hook target."""

    server_name: str | None = None
    ca: Path | None = None


@dataclass(frozen=True)
class Settings:
    """Everything the orchestrator can be told.

    Attributes:
        listen: Address of the gRPC server (``HOST:PORT``; port 0 picks a free one).
        insecure: Plaintext everywhere (development only; logged loudly).
        grace_period: Seconds in-flight calls and steps get at shutdown.
        database: ``[database]``.
        tls: ``[tls]``.
        runtime: ``[runtime]``: how runs are driven (its ``hook_policy`` is the ``[hook_policy]``
            table).
        api: ``[api]``.
        dlq: ``[dlq]``.
        log: ``[log]``.
        step_policy: ``[step_policy]``: the default retry policy of steps.
        roles: ``[roles]``: identity -> roles (``submit``, ``read``, ``operate``, ``admin``);
            empty = the dev identities' defaults.
        targets: ``[targets."host:port"]``: outbound TLS overrides by target.
        breaker: ``[breaker]`` and ``[targets."host:port".breaker]``: the circuit breakers
            (read by ``breaker_config.py``).
    """

    listen: str = "127.0.0.1:50051"
    insecure: bool = False
    grace_period: float = 10.0
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    tls: TlsSettings = field(default_factory=TlsSettings)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    dlq: DlqSettings = field(default_factory=DlqSettings)
    log: LogSettings = field(default_factory=LogSettings)
    step_policy: RetryPolicy = DEFAULT_STEP_POLICY
    roles: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    targets: Mapping[str, TargetOverride] = field(default_factory=dict)
    breaker: BreakerConfig = field(default_factory=BreakerConfig)

    def check(self) -> None:
        """Refuse unusable combinations with a message naming the setting."""
        tls = (self.tls.ca, self.tls.cert, self.tls.key)
        if self.insecure and any(tls):
            raise ConfigError("--insecure and --tls-* are exclusive: choose plaintext or mTLS")
        if not self.insecure and not all(tls):
            missing = [n for n, v in zip(("--tls-ca", "--tls-cert", "--tls-key"), tls, strict=True) if not v]
            raise ConfigError(
                f"mTLS needs {', '.join(missing)} (make development certificates: `failhook certs init DIR`),"
                " or pass --insecure for plaintext development"
            )
        for name, path in zip(("tls.ca", "tls.cert", "tls.key"), tls, strict=True):
            if path is not None and not path.is_file():
                raise ConfigError(f"{name}: {path} is not a readable file")
        for target, override in self.targets.items():
            if override.ca is not None and not override.ca.is_file():
                raise ConfigError(f"targets.{target!r}.ca: {override.ca} is not a readable file")
        if self.runtime.heartbeat_seconds >= self.runtime.lease_seconds:
            raise ConfigError("runtime.heartbeat_seconds must be shorter than runtime.lease_seconds")


# -- one table of settings: where each lives, its flat name, how it is parsed and checked --------

_DURATION_MAX = limits.MAX_DURATION_SECONDS
_SECTIONS: dict[str, type[Any]] = {
    "database": DatabaseSettings,
    "tls": TlsSettings,
    "runtime": RuntimeSettings,
    "api": ApiSettings,
    "dlq": DlqSettings,
    "log": LogSettings,
}
#: Fields of a section that are not settings (set by the process, or by another table).
_NOT_SETTINGS = {("runtime", "owner"), ("runtime", "hook_policy")}
_LISTEN = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]*):[0-9]{1,5}")
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

Check = Callable[[Any], str | None]


def _between(low: float, high: float, *, above: bool = False) -> Check:
    def check(value: Any) -> str | None:
        ok = math.isfinite(value) and (value > low if above else value >= low) and value <= high
        return None if ok else f"must be {'above' if above else 'at least'} {low:g} and at most {high:g}"

    return check


def _one_of(*choices: str) -> Check:
    return lambda value: None if value in choices else f"must be one of {', '.join(choices)}"


def _listen(value: Any) -> str | None:
    if _LISTEN.fullmatch(value) and int(value.rsplit(":", 1)[1]) <= 65535:
        return None
    return "must be HOST:PORT (port 0-65535; 0 picks a free one)"


def _database_url(value: Any) -> str | None:
    if value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        return None
    return "must be a sqlite+aiosqlite:///path or postgresql+asyncpg://… URL"


def _header_names(value: Any) -> str | None:
    bad = [name for name in value if not limits.HEADER_NAME.fullmatch(name)]
    return f"{bad} are not header names (lowercase letters, digits and '-_.')" if bad else None


def _secret(value: Any) -> str | None:
    return (
        None
        if value == "" or len(value) >= 16
        else "must be empty (a key kept in the database) or 16+ characters"
    )


_CHECKS: dict[tuple[str, str], Check] = {
    ("", "listen"): _listen,
    ("", "grace_period"): _between(0, _DURATION_MAX),
    ("database", "url"): _database_url,
    ("database", "pool_size"): _between(1, 1000),
    ("database", "sqlite_synchronous"): _one_of(*(mode.value for mode in SqliteSynchronous)),
    ("runtime", "max_concurrent_dispatches"): _between(1, 100_000),
    ("runtime", "lease_seconds"): _between(0, 86_400, above=True),
    ("runtime", "heartbeat_seconds"): _between(0, 86_400, above=True),
    ("runtime", "claim_interval_seconds"): _between(0, 86_400, above=True),
    ("runtime", "max_step_output_bytes"): _between(1, 64 * 1024 * 1024),
    ("runtime", "keep_in_memory_seconds"): _between(0, 86_400),
    ("api", "max_payload_bytes"): _between(1, 64 * 1024 * 1024),
    ("api", "page_token_secret"): _secret,
    ("api", "sensitive_headers"): _header_names,
    ("api", "default_execution_timeout_seconds"): _between(0, limits.MAX_EXECUTION_TIMEOUT_SECONDS),
    ("dlq", "retention_days"): _between(0, 36_500),
    ("log", "format"): _one_of("text", "json"),
    ("log", "level"): _one_of(*_LEVELS),
}
#: Spellings read for what the values are compared with (case-insensitive settings).
_NORMALISE: dict[tuple[str, str], Callable[[str], str]] = {
    ("database", "sqlite_synchronous"): str.upper,
    ("log", "level"): str.upper,
}


@dataclass(frozen=True, slots=True)
class _Setting:
    section: str  # "" at the top level
    key: str
    kind: str  # the annotation: "int", "float", "str", "bool", "Path | None", "tuple[str, ...]"

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.key}" if self.section else self.key

    @property
    def flat(self) -> str:
        """The name of its flag (``tls_ca``) and, upper-cased, of its environment variable."""
        if (self.section, self.key) == ("database", "url"):
            return "database"
        return f"{self.section}_{self.key}" if self.section else self.key


def _table() -> dict[str, _Setting]:
    table = {
        f.name: _Setting("", f.name, str(f.type))
        for f in fields(Settings)
        if f.name in ("listen", "insecure", "grace_period")
    }
    for section, cls in _SECTIONS.items():
        for f in fields(cls):
            if (section, f.name) not in _NOT_SETTINGS:
                setting = _Setting(section, f.name, str(f.type))
                table[setting.flat] = setting
    return table


_SETTINGS = _table()
_BY_DOTTED = {s.dotted: s for s in _SETTINGS.values()}
#: Older environment names still read (below the current name in precedence).
_LEGACY_ENV = {"FAILHOOK_DB_POOL_SIZE": "database_pool_size"}


def _parse(setting: _Setting, value: Any, *, text: bool) -> Any:
    """``value`` (from TOML, or ``text`` from the environment / a flag) as the setting's type."""
    kind = setting.kind
    if kind == "bool":
        if isinstance(value, bool):
            return value
        lowered = str(value).strip().lower() if text else None
        if lowered not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            raise ValueError
        return lowered in ("1", "true", "yes", "on")
    if kind == "int":
        if isinstance(value, bool) or not (isinstance(value, int) or text):
            raise ValueError
        return int(value)
    if kind == "float":
        if isinstance(value, bool) or not (isinstance(value, int | float) or text):
            raise ValueError
        return float(value)
    if kind == "tuple[str, ...]":
        items = str(value).split(",") if text else value
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
            raise ValueError
        return tuple(sorted({i.strip().lower() for i in items if i.strip()}))
    if kind == "Path | None" and isinstance(value, Path):
        return value
    if not (isinstance(value, str) or text):
        raise ValueError
    if kind == "Path | None":
        return Path(value) if value else None
    return _NORMALISE.get((setting.section, setting.key), str)(str(value))


def _value(setting: _Setting, value: Any, source: str, *, text: bool = False) -> Any:
    try:
        parsed = _parse(setting, value, text=text)
    except ValueError:
        kind = {"Path | None": "path", "tuple[str, ...]": "list of names"}.get(setting.kind, setting.kind)
        raise ConfigError(f"{source}{setting.dotted}: {value!r} is not a valid {kind}") from None
    check = _CHECKS.get((setting.section, setting.key))
    problem = check(parsed) if check is not None and parsed is not None else None
    if problem:
        raise ConfigError(f"{source}{setting.dotted}: {parsed!r} {problem}")
    return parsed


def _policy(name: str, data: Any, base: RetryPolicy, source: str) -> RetryPolicy:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}{name}: must be a table of policy fields")
    known = {f.name for f in fields(RetryPolicy)}
    if unknown := sorted(set(data) - known):
        raise ConfigError(f"{source}unknown setting {name + '.' + unknown[0]!r} (known: {sorted(known)})")
    values = {f.name: getattr(base, f.name) for f in fields(RetryPolicy)}
    for key, value in data.items():
        kind = RetryPolicy.__dataclass_fields__[key].type
        ok = {
            "int": isinstance(value, int) and not isinstance(value, bool),
            "float": isinstance(value, int | float) and not isinstance(value, bool),
        }.get(str(kind), isinstance(value, list) and all(isinstance(c, int) for c in value))
        if not ok:
            raise ConfigError(f"{source}{name}.{key}: {value!r} is not a valid {kind}")
        values[key] = frozenset(value) if key == "non_retryable_codes" else value
    try:
        return limits.check_policy(RetryPolicy(**values))
    except limits.PolicyViolation as violation:
        raise ConfigError(f"{source}{name}.{violation.field}: {violation.message}") from None


def _roles(data: Any, source: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}roles: must be a table of identity = [roles]")
    roles: dict[str, tuple[str, ...]] = {}
    for identity, names in data.items():
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"{source}roles.{identity!r}: must be a list of role names, got {names!r}")
        roles[identity] = tuple(names)
    try:
        RoleMap(roles)
    except ValueError as exc:
        raise ConfigError(f"{source}roles: {exc}") from None
    return roles


def _targets(data: Any, source: str) -> dict[str, TargetOverride]:
    if not isinstance(data, dict):
        raise ConfigError(f'{source}targets: must be tables [targets."host:port"]')
    known = {f.name for f in fields(TargetOverride)} | {"breaker", *LIMIT_KEYS}
    targets: dict[str, TargetOverride] = {}
    for target, override in data.items():
        where = f"targets.{target!r}"
        if not isinstance(override, dict):
            raise ConfigError(f"{source}{where}: must be a table with {sorted(known)}")
        if unknown := sorted(set(override) - known):
            raise ConfigError(f"{source}unknown setting {where + '.' + unknown[0]} (known: {sorted(known)})")
        for key, value in override.items():
            if key not in ("breaker", *LIMIT_KEYS) and (not isinstance(value, str) or not value):
                raise ConfigError(f"{source}{where}.{key}: {value!r} is not a non-empty string")
        ca = override.get("ca")
        targets[target] = TargetOverride(server_name=override.get("server_name"), ca=Path(ca) if ca else None)
    return targets


_TABLES = ("step_policy", "hook_policy", "roles", "targets", "breaker", "flow_control")


def _read_file(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The file's settings by flat name, and its tables (policies, roles, targets) as given."""
    source = f"config file {path}: "
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{source}{exc}") from None
    values: dict[str, Any] = {}
    tables: dict[str, Any] = {}
    for key, value in data.items():
        if key in _TABLES:
            tables[key] = value
        elif key in _SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{source}{key}: must be a table [{key}]")
            for inner, item in value.items():
                setting = _BY_DOTTED.get(f"{key}.{inner}")
                if setting is None:
                    raise ConfigError(f"{source}unknown setting {key + '.' + inner!r}")
                values[setting.flat] = _value(setting, item, source)
        elif key in _BY_DOTTED:
            values[key] = _value(_BY_DOTTED[key], value, source)
        else:
            raise ConfigError(f"{source}unknown setting {key!r}")
    return values, tables


def _build(values: Mapping[str, Any], tables: Mapping[str, Any], source: str = "") -> Settings:
    sections: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
    top: dict[str, Any] = {}
    for flat, value in values.items():
        setting = _SETTINGS[flat]
        (sections[setting.section] if setting.section else top)[setting.key] = value
    hook_policy = _policy("hook_policy", tables.get("hook_policy", {}), DEFAULT_HOOK_POLICY, source)
    # Targets first: their check knows every key of a target table (TLS, breaker and limits).
    targets = _targets(tables.get("targets", {}), source)
    flow = _flow_control(tables, source)
    return Settings(
        **top,
        database=DatabaseSettings(**sections["database"]),
        tls=TlsSettings(**sections["tls"]),
        runtime=RuntimeSettings(
            **sections["runtime"], hook_policy=hook_policy, flow_targets=flow.targets, flow_keys=flow.keys
        ),
        api=ApiSettings(**sections["api"]),
        dlq=DlqSettings(**sections["dlq"]),
        log=LogSettings(**sections["log"]),
        step_policy=_policy("step_policy", tables.get("step_policy", {}), DEFAULT_STEP_POLICY, source),
        roles=_roles(tables.get("roles", {}), source),
        targets=targets,
        breaker=_breaker(tables, source),
    )


def _flow_control(tables: Mapping[str, Any], source: str) -> FlowControlConfig:
    """``[targets."host:port"]`` limits and ``[flow_control."name"]`` (``flow_control_config.py``)."""
    try:
        return parse_flow_control(tables)
    except FlowControlConfigError as exc:
        raise ConfigError(f"{source}{exc}") from None


def _breaker(tables: Mapping[str, Any], source: str) -> BreakerConfig:
    try:
        return parse_breaker_config(tables)
    except BreakerSettingsError as exc:
        raise ConfigError(f"{source}{exc}") from None


def load_settings(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Settings:
    """Merge the sources into checked settings.

    Args:
        flags: Values by flat name (``listen``, ``database``, ``tls_ca``, ``database_pool_size``,
            ``log_level`` …); ``None`` values are not given.
        env: The environment (``os.environ`` by default).
        config_file: The TOML file (else ``FAILHOOK_CONFIG``, else none).

    Raises:
        ConfigError: Naming the setting that is unknown, malformed or out of bounds.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    tables: dict[str, Any] = {}
    path = config_file or (Path(env[f"{ENV_PREFIX}CONFIG"]) if env.get(f"{ENV_PREFIX}CONFIG") else None)
    source = ""
    if path is not None:
        values, tables = _read_file(path)
        source = f"config file {path}: "
    for legacy, flat in _LEGACY_ENV.items():
        if (raw := env.get(legacy)) is not None:
            values[flat] = _value(_SETTINGS[flat], raw, f"{legacy}: ", text=True)
    for flat, setting in _SETTINGS.items():
        if (raw := env.get(ENV_PREFIX + flat.upper())) is not None:
            values[flat] = _value(setting, raw, f"{ENV_PREFIX}{flat.upper()}: ", text=True)
    for flat, value in (flags or {}).items():
        if value is not None:
            if flat not in _SETTINGS:
                raise ConfigError(f"unknown setting {flat!r}")
            values[flat] = _value(_SETTINGS[flat], value, f"--{flat.replace('_', '-')}: ", text=True)
    settings = _build(values, tables, source)
    settings.check()
    return settings


def replace_settings(settings: Settings, **values: Any) -> Settings:
    """``settings`` with some values changed, by flat name (as flags name them) or table.

    ``replace_settings(s, runtime_lease_seconds=3.0, step_policy=policy, database=url)``;
    ``breaker`` takes a :class:`~.breaker_config.BreakerConfig`.
    Values are checked like any other source's; the combination is not (see :meth:`Settings.check`).
    """
    changed = settings
    for flat, value in values.items():
        if flat == "step_policy":
            changed = replace(changed, step_policy=limits.check_policy(value))
        elif flat == "hook_policy":
            runtime = replace(changed.runtime, hook_policy=limits.check_policy(value))
            changed = replace(changed, runtime=runtime)
        elif flat == "flow_control":  # a FlowControlConfig: the runtime's limits
            runtime = replace(changed.runtime, flow_targets=value.targets, flow_keys=value.keys)
            changed = replace(changed, runtime=runtime)
        elif flat in ("roles", "targets", "breaker"):  # breaker: a breaker_config.BreakerConfig
            changed = replace(changed, **{flat: value})
        elif flat in _SETTINGS:
            setting = _SETTINGS[flat]
            parsed = _value(setting, value, "")
            if setting.section:
                section = replace(getattr(changed, setting.section), **{setting.key: parsed})
                changed = replace(changed, **{setting.section: section})
            else:
                changed = replace(changed, **{setting.key: parsed})
        else:
            raise ConfigError(f"unknown setting {flat!r}")
    return changed
