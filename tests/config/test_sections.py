"""One test per section of the settings: defaults, precedence, and every bad key or value refused
with a ConfigError that names it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from failhook_orchestrator.config import ConfigError, DatabaseSettings
from failhook_orchestrator.engine.runtime import RuntimeSettings

from .conftest import Load


def test_top_level(load: Load) -> None:
    settings = load('listen = "0.0.0.0:6000"\ngrace_period = 3')
    assert (settings.listen, settings.grace_period) == ("0.0.0.0:6000", 3.0)
    for toml, key in [
        ('listen = "nowhere"', "listen"),
        ("grace_period = -1", "grace_period"),
        ('grace_period = "soon"', "grace_period"),
        ("grace_period = inf", "grace_period"),
        ("colour = 1", "unknown setting 'colour'"),
        ("lease_seconds = 3", "unknown setting 'lease_seconds'"),  # a runtime key, outside [runtime]
    ]:
        with pytest.raises(ConfigError, match=key):
            load(toml)


def test_database(load: Load) -> None:
    assert load().database == DatabaseSettings()
    assert DatabaseSettings().sqlite_synchronous == "FULL" and DatabaseSettings().pool_size == 10
    toml = (
        '[database]\nurl = "postgresql+asyncpg://db/failhook"\npool_size = 4\nsqlite_synchronous = "normal"'
    )
    settings = load(toml)
    assert settings.database == DatabaseSettings("postgresql+asyncpg://db/failhook", 4, "NORMAL")
    # flag > environment > file > default, for the pool size too (the store no longer reads the env)
    assert load(toml, env={"FAILHOOK_DB_POOL_SIZE": "5"}).database.pool_size == 5
    assert (
        load(toml, env={"FAILHOOK_DATABASE_POOL_SIZE": "6", "FAILHOOK_DB_POOL_SIZE": "5"}).database.pool_size
        == 6
    )
    assert (
        load(
            toml, flags={"database_pool_size": "7"}, env={"FAILHOOK_DATABASE_POOL_SIZE": "6"}
        ).database.pool_size
        == 7
    )
    assert (
        load(toml, env={"FAILHOOK_DATABASE": "sqlite+aiosqlite:///x.db"}).database.url
        == "sqlite+aiosqlite:///x.db"
    )
    for toml, key in [
        ('[database]\nsqlite_synchronous = "OFF"', "database.sqlite_synchronous"),
        ("[database]\npool_size = 0", "database.pool_size"),
        ('[database]\npool_size = "ten"', "database.pool_size"),
        ('[database]\nurl = "mysql://x"', "database.url"),
        ("[database]\npool = 3", "unknown setting 'database.pool'"),
        ('database = "sqlite+aiosqlite:///x.db"', "database: must be a table"),
    ]:
        with pytest.raises(ConfigError, match=key):
            load(toml)
    with pytest.raises(ConfigError, match=r"FAILHOOK_DB_POOL_SIZE: database\.pool_size"):
        load(env={"FAILHOOK_DB_POOL_SIZE": "-2"})


def test_tls(load: Load, tmp_path: Path) -> None:
    pem = tmp_path / "ca.pem"
    pem.write_text("x")
    settings = load(
        flags={"insecure": None},
        env={"FAILHOOK_TLS_CA": str(pem), "FAILHOOK_TLS_CERT": str(pem), "FAILHOOK_TLS_KEY": str(pem)},
    )
    assert settings.tls.ca == pem and not settings.insecure
    with pytest.raises(ConfigError, match="exclusive"):
        load(f'[tls]\nca = "{pem}"')
    with pytest.raises(ConfigError, match=r"tls\.key: .* is not a readable file"):
        load(f'[tls]\nca = "{pem}"\ncert = "{pem}"\nkey = "{tmp_path}/none.pem"', flags={"insecure": None})
    with pytest.raises(ConfigError, match=r"unknown setting 'tls\.certificate'"):
        load(f'[tls]\ncertificate = "{pem}"')


def test_runtime(load: Load) -> None:
    assert load().runtime == RuntimeSettings()  # the engine's defaults, not a copy of them
    settings = load(
        "[runtime]\nlease_seconds = 8\nheartbeat_seconds = 2\nmax_step_output_bytes = 4096",
        env={"FAILHOOK_RUNTIME_CLAIM_INTERVAL_SECONDS": "1.5"},
    )
    assert (settings.runtime.lease_seconds, settings.runtime.claim_interval_seconds) == (8.0, 1.5)
    assert settings.runtime.max_step_output_bytes == 4096
    for toml, key in [
        ("[runtime]\nheartbeat_seconds = 40", "heartbeat_seconds must be shorter"),
        ("[runtime]\nlease_seconds = 0", "runtime.lease_seconds"),
        ("[runtime]\nmax_step_output_bytes = 0", "runtime.max_step_output_bytes"),
        ("[runtime]\nmax_concurrent_dispatches = 0", "runtime.max_concurrent_dispatches"),
        ("[runtime]\nmax_concurrent_dispatches = 2.5", "runtime.max_concurrent_dispatches"),
        ("[runtime]\nlease_second = 3", "unknown setting 'runtime.lease_second'"),
        ('[runtime]\nowner = "me"', "unknown setting 'runtime.owner'"),
    ]:
        with pytest.raises(ConfigError, match=key):
            load(toml)


def test_api(load: Load) -> None:
    settings = load('[api]\nmax_payload_bytes = 2048\nsensitive_headers = ["X-Secret", "authorization"]')
    assert settings.api.max_payload_bytes == 2048
    assert settings.api.sensitive_headers == ("authorization", "x-secret")
    assert load(env={"FAILHOOK_API_SENSITIVE_HEADERS": "a, b"}).api.sensitive_headers == ("a", "b")
    assert "authorization" in load().api.sensitive_headers
    for toml, key in [
        ("[api]\nmax_payload_bytes = 0", "api.max_payload_bytes"),
        ("[api]\nmax_payload_bytes = 100000000", "api.max_payload_bytes"),
        ('[api]\nsensitive_headers = "authorization"', "api.sensitive_headers"),
        ('[api]\nsensitive_headers = ["bad header"]', "api.sensitive_headers"),
        ('[api]\npage_token_secret = "short"', "api.page_token_secret"),
        ("[api]\nmax_payload = 1", "unknown setting 'api.max_payload'"),
    ]:
        with pytest.raises(ConfigError, match=key):
            load(toml)


def test_dlq_and_log(load: Load) -> None:
    settings = load('[dlq]\nretention_days = 7\n[log]\nformat = "json"\nlevel = "debug"')
    assert (settings.dlq.retention_days, settings.log.format, settings.log.level) == (7.0, "json", "DEBUG")
    assert load(env={"FAILHOOK_LOG_FORMAT": "json"}).log.format == "json"
    for toml, key in [
        ("[dlq]\nretention_days = -1", "dlq.retention_days"),
        ("[dlq]\nretention_days = 1e9", "dlq.retention_days"),
        ('[log]\nformat = "xml"', "log.format"),
        ('[log]\nlevel = "LOUD"', "log.level"),
        ("[log]\ncolour = true", "unknown setting 'log.colour'"),
    ]:
        with pytest.raises(ConfigError, match=key):
            load(toml)


def test_roles(load: Load) -> None:
    settings = load('[roles]\n"spiffe://x/ops" = ["read", "operate"]')
    assert settings.roles == {"spiffe://x/ops": ("read", "operate")}
    for toml, key in [
        ('[roles]\n"spiffe://x/ops" = ["read", "superuser"]', "roles: unknown role"),
        ('[roles]\n"spiffe://x/ops" = "read"', "roles.'spiffe://x/ops'"),
        ('roles = ["read"]', "roles: must be a table"),
    ]:
        with pytest.raises(ConfigError, match=key):
            load(toml)


def test_targets(load: Load, tmp_path: Path) -> None:
    settings = load('[targets."pay:50052"]\nserver_name = "pay.example.com"')
    assert settings.targets["pay:50052"].server_name == "pay.example.com"
    for toml, key in [
        (
            '[targets."pay:50052"]\nsever_name = "pay.example.com"',
            "unknown setting targets.'pay:50052'.sever_name",
        ),
        (
            '[targets."pay:50052"]\nca = "/nonexistent/ca.pem"',
            "targets.'pay:50052'.ca: .* is not a readable file",
        ),
        ('[targets."pay:50052"]\nserver_name = 3', "targets.'pay:50052'.server_name"),
        ('[targets]\n"pay:50052" = "x"', "targets.'pay:50052': must be a table"),
    ]:
        with pytest.raises(ConfigError, match=key):
            load(toml)


def test_breaker(load: Load) -> None:
    toml = "[breaker]\ndistinct_runs = 3\n"
    toml += '[targets."pay:50052"]\nserver_name = "pay"\n[targets."pay:50052".breaker]\nenabled = false'
    settings = load(toml)
    assert settings.breaker.settings.distinct_runs == 3
    assert settings.breaker.overrides["pay:50052"].enabled is False
    assert settings.targets["pay:50052"].server_name == "pay"
    for toml, key in [
        ("[breaker]\ndistinct_run = 5", "breaker.distinct_run"),
        ('[targets."pay:50052".breaker]\nenabled = 1', 'targets."pay:50052".breaker.enabled'),
    ]:
        with pytest.raises(ConfigError, match=re.escape(key)):
            load(toml)
