"""Exit statuses and messages scripts rely on: usage errors, unreachable targets, TLS defaults."""

from __future__ import annotations

import asyncio
import shutil
import socket
from pathlib import Path

import grpc
import pytest

from failhook.certs import DevCerts
from failhook.cli import main
from failhook.cli.exit_codes import ExitCode, exit_code_for_status
from tests.support.harness import Harness

from .conftest import Cli, tls_flags


def unused_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.NOT_FOUND, 3),
        (grpc.StatusCode.FAILED_PRECONDITION, 4),
        (grpc.StatusCode.UNAVAILABLE, 5),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 5),
        (grpc.StatusCode.PERMISSION_DENIED, 6),
        (grpc.StatusCode.UNAUTHENTICATED, 6),
        (grpc.StatusCode.INVALID_ARGUMENT, 1),
        (grpc.StatusCode.ALREADY_EXISTS, 1),
        (grpc.StatusCode.INTERNAL, 1),
    ],
)
def test_status_mapping(code: grpc.StatusCode, status: int) -> None:
    assert exit_code_for_status(code) == status


def test_unreachable_target_is_exit_5(dev_certs: DevCerts, capsys: pytest.CaptureFixture[str]) -> None:
    target = f"127.0.0.1:{unused_port()}"
    code = main(["runs", "list", "--target", target, "--timeout", "5s", *tls_flags(dev_certs, "operator")])
    err = capsys.readouterr().err
    assert code == ExitCode.UNAVAILABLE
    assert err.startswith("error: UNAVAILABLE: ") and f"running at {target}?" in err


def test_target_from_the_environment(
    dev_certs: DevCerts, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    target = f"127.0.0.1:{unused_port()}"
    monkeypatch.setenv("FAILHOOK_TARGET", target)
    files = dev_certs.tls_files("operator")
    monkeypatch.setenv("FAILHOOK_TLS_CA", str(files.ca))
    monkeypatch.setenv("FAILHOOK_TLS_CERT", str(files.cert))
    monkeypatch.setenv("FAILHOOK_TLS_KEY", str(files.key))
    assert main(["dlq", "list"]) == 5
    assert f"running at {target}?" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["runs", "start", "wf"],  # --endpoint is required
        ["runs", "start", "wf", "--endpoint", "x:1", "--initial-backoff", "5 parsecs"],
        ["runs", "start", "wf", "--endpoint", "x:1", "--header", "no-equals-sign"],
        ["runs", "start", "wf", "--endpoint", "x:1", "--payload", "a", "--payload-file", "f"],
        ["runs", "list", "--state", "sleepy"],
        ["runs", "list", "--limit", "-1"],
        ["runs", "list", "--created-after", "yesterday-ish"],
        ["dlq", "list", "--fail-status", "TEAPOT"],
        ["dlq", "list", "--hook-state", "lost"],
        ["dlq", "frobnicate"],
    ],
)
def test_argparse_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["dlq", "restart"], "give the ID of a dead letter, or --bulk"),
        (["dlq", "restart", "--workflow", "wf"], "give the ID of a dead letter, or --bulk"),
        (["dlq", "delete", "--bulk"], "--bulk needs filter flags, or --all"),
        (["dlq", "delete", "dl-1", "--bulk", "--all"], "not both"),
        (
            ["dlq", "resume", "--bulk", "--batched", "--all", "--payload", "{}"],
            "--payload cannot be used with --bulk",
        ),
        (["dlq", "delete", "--bulk", "--all", "--batched", "--rate", "5"], "applies to bulk jobs"),
        (["dlq", "delete", "dl-1", "--dry-run"], "--dry-run only applies with --bulk"),
        (["dlq", "retry-hook", "--bulk", "--all", "--batched"], "runs as a job"),
        (["dlq", "delete", "--bulk", "--all", "--batch-size", "9999"], "at most 5000"),
        (
            ["runs", "start", "wf", "--endpoint", "x:1", "--header", "k=1", "--header", "k=2"],
            "more than once",
        ),
        (["runs", "start", "wf", "--endpoint", "x:1", "--payload-file", "/no/such/file"], "--payload-file"),
    ],
)
def test_checked_usage_errors_exit_2_before_any_call(
    argv: list[str], message: str, dev_certs: DevCerts, capsys: pytest.CaptureFixture[str]
) -> None:
    # The target does not exist: a usage error is reported without calling the server.
    target = f"127.0.0.1:{unused_port()}"
    assert main([*argv, "--target", target, *tls_flags(dev_certs, "operator")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_tls_identity_must_be_complete_and_exclusive_with_insecure(
    dev_certs: DevCerts, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no var/certs here
    assert main(["dlq", "list"]) == 2
    assert "no TLS identity" in capsys.readouterr().err
    files = dev_certs.tls_files("operator")
    assert main(["dlq", "list", "--tls-ca", str(files.ca)]) == 2
    assert "missing --tls-cert (or FAILHOOK_TLS_CERT), --tls-key" in capsys.readouterr().err
    assert main(["dlq", "list", "--insecure", "--tls-ca", str(files.ca)]) == 2
    assert "--insecure excludes --tls-ca" in capsys.readouterr().err
    broken = tmp_path / "broken.pem"
    broken.write_text("not a certificate")
    assert (
        main(
            [
                "dlq",
                "list",
                "--tls-ca",
                str(broken),
                "--tls-cert",
                str(files.cert),
                "--tls-key",
                str(files.key),
            ]
        )
        == 2
    )
    assert "cannot use the TLS files" in capsys.readouterr().err


async def test_default_identity_is_the_operator_in_var_certs(
    harness: Harness,
    dev_certs: DevCerts,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    certs = tmp_path / "var" / "certs"
    certs.mkdir(parents=True)
    files = dev_certs.tls_files("operator")
    for path in (files.ca, files.cert, files.key):
        shutil.copy(path, certs / path.name)
    monkeypatch.chdir(tmp_path)
    target = f"localhost:{harness.orchestrator.port}"
    assert await asyncio.to_thread(main, ["dlq", "list", "--json", "--target", target]) == 0
    assert capsys.readouterr().out.strip() == "[]"
    # The operator may not start runs (no `submit` role).
    code = await asyncio.to_thread(
        main, ["runs", "start", "wf", "--endpoint", harness.endpoint, "--target", target]
    )
    assert code == 6
    assert "lacks role 'submit'" in capsys.readouterr().err


async def test_plaintext_client_of_an_mtls_server_is_exit_5(cli: Cli, harness: Harness) -> None:
    # A plaintext client cannot even reach an mTLS server: the handshake fails (UNAVAILABLE).
    result = await cli(
        "dlq", "list", "--insecure", "--target", f"localhost:{harness.orchestrator.port}", connection=False
    )
    assert result.code == 5
