"""``[breaker]`` and ``[targets."host:port".breaker]`` of the config file."""

from __future__ import annotations

import tomllib

import pytest

from failhook_orchestrator.breaker_config import BreakerConfig, parse_breaker_config
from failhook_orchestrator.engine.breaker import BreakerSettings, BreakerSettingsError


def parse(text: str) -> BreakerConfig:
    return parse_breaker_config(tomllib.loads(text))


def test_defaults_without_a_section() -> None:
    config = parse('listen = "127.0.0.1:0"\n[targets."a:1"]\nserver_name = "a.example.com"\n')
    assert config.settings == BreakerSettings()
    assert config.overrides == {}


def test_defaults_and_per_target_overrides() -> None:
    config = parse(
        """
        [breaker]
        trip_codes = ["unavailable", 4]
        distinct_runs = 3
        cooldown_seconds = 1
        max_cooldown_seconds = 60.5

        [targets."pay.internal:50052"]
        server_name = "pay.example.com"

        [targets."pay.internal:50052".breaker]
        distinct_runs = 10
        enabled = false

        [targets."ship.internal:50052".breaker]
        half_open_probes = 2
        """
    )
    assert config.settings == BreakerSettings(
        trip_codes=frozenset({14, 4}), distinct_runs=3, cooldown_seconds=1.0, max_cooldown_seconds=60.5
    )
    pay = config.overrides["pay.internal:50052"]
    assert (pay.distinct_runs, pay.enabled, pay.cooldown_seconds) == (
        10,
        False,
        1.0,
    )  # the rest from [breaker]
    assert config.overrides["ship.internal:50052"].half_open_probes == 2
    assert config.overrides["ship.internal:50052"].trip_codes == frozenset({14, 4})


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ("[breaker]\ndistinct_run = 5", "breaker.distinct_run", "unknown setting"),
        ("[breaker]\nenabled = 1", "breaker.enabled", "must be true or false"),
        ("[breaker]\ndistinct_runs = 2.5", "breaker.distinct_runs", "must be a whole number"),
        ("[breaker]\ndistinct_runs = true", "breaker.distinct_runs", "must be a whole number"),
        ("[breaker]\ncooldown_seconds = '2s'", "breaker.cooldown_seconds", "must be a number"),
        ("[breaker]\ncooldown_seconds = 0", "breaker.cooldown_seconds", "must be a positive number"),
        ("[breaker]\ntrip_codes = 'UNAVAILABLE'", "breaker.trip_codes", "must be a list"),
        ("[breaker]\ntrip_codes = ['UNAVAILABLE', 'BROKEN']", "breaker.trip_codes", "'BROKEN' is not a gRPC"),
        ("[breaker]\ntrip_codes = [0]", "breaker.trip_codes", "0 is not a gRPC error code"),
        ("breaker = 3", "breaker", "must be a table"),
        (
            '[targets."a:1".breaker]\nfailure_ratio = 2.0',
            'targets."a:1".breaker.failure_ratio',
            "must be in (0, 1]",
        ),
        ('[targets."a:1".breaker]\ntypo = 1', 'targets."a:1".breaker.typo', "unknown setting"),
        ('[targets."a:1"]\nbreaker = "off"', 'targets."a:1".breaker', "must be a table"),
        (
            '[breaker]\nmax_cooldown_seconds = 10\n[targets."a:1".breaker]\ncooldown_seconds = 20',
            'targets."a:1".breaker.max_cooldown_seconds',
            "must be at least cooldown_seconds (20.0)",
        ),
    ],
)
def test_errors_name_the_key(text: str, key: str, message: str) -> None:
    with pytest.raises(BreakerSettingsError) as caught:
        parse(text)
    assert caught.value.key == key
    assert str(caught.value).startswith(f"{key}: ") and message in str(caught.value)
    assert isinstance(caught.value, ValueError)  # the config loader reports it as a config error
