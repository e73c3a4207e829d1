"""The breakers' settings come from the config file; a bad one stops the process with exit 2."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from failhook_orchestrator.config import ConfigError, load_settings
from failhook_orchestrator.engine.breaker import BreakerSettings
from tests.support.process import SCRIPT

CONFIG = """
[breaker]
distinct_runs = 3
cooldown_seconds = 0.5

[targets."payments:50052"]
server_name = "payments.internal"

[targets."payments:50052".breaker]
max_cooldown_seconds = 30.0
"""


def test_breaker_settings_and_per_target_overrides_are_read(tmp_path: Path) -> None:
    path = tmp_path / "failhook.toml"
    path.write_text(CONFIG)
    settings = load_settings({"insecure": True}, env={}, config_file=path)
    assert settings.breaker.settings == BreakerSettings(distinct_runs=3, cooldown_seconds=0.5)
    override = settings.breaker.overrides["payments:50052"]
    assert (override.distinct_runs, override.cooldown_seconds, override.max_cooldown_seconds) == (
        3,
        0.5,
        30.0,
    )
    assert settings.targets["payments:50052"].server_name == "payments.internal"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[breaker]\ndistinct_runs = 0\n", "breaker.distinct_runs"),
        ("[breaker]\ntrip_on = 1\n", "breaker.trip_on"),
        ('[targets."a:1".breaker]\nfailure_ratio = 2\n', 'targets."a:1".breaker.failure_ratio'),
    ],
)
def test_a_bad_breaker_setting_is_a_config_error_naming_its_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "failhook.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_settings({"insecure": True}, env={}, config_file=path)


@pytest.mark.asyncio
async def test_the_process_exits_2_on_a_bad_breaker_setting(tmp_path: Path) -> None:
    path = tmp_path / "failhook.toml"
    path.write_text("[breaker]\ncooldown_seconds = -1\n")
    proc = await asyncio.create_subprocess_exec(
        str(SCRIPT), "serve", "--insecure", "--config", str(path), stderr=asyncio.subprocess.PIPE
    )
    _out, err = await proc.communicate()
    assert proc.returncode == 2
    assert b"breaker.cooldown_seconds" in err
