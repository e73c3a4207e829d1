"""Dev certificates: ``init_dev_certs`` and ``failhook certs init``."""

from __future__ import annotations

import ipaddress
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from failhook.certs import (
    OPERATOR_IDENTITY,
    ORCHESTRATOR_IDENTITY,
    WORKER_IDENTITY,
    init_dev_certs,
    issue_certificate,
    make_ca,
)
from failhook.cli import main
from failhook.tls import TLSFiles

EXPECTED_FILES = {
    "ca.pem",
    "ca-key.pem",
    "orchestrator.pem",
    "orchestrator-key.pem",
    "worker.pem",
    "worker-key.pem",
    "operator.pem",
    "operator-key.pem",
}


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_init_dev_certs_layout_and_permissions(tmp_path: Path) -> None:
    made = init_dev_certs(tmp_path / "certs")

    assert {p.name for p in made.directory.iterdir()} == EXPECTED_FILES
    assert {p.name for p in made.paths()} == EXPECTED_FILES
    for path in made.paths():
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o600 if path.name.endswith("-key.pem") else 0o644), path
    assert made.tls_files("worker") == TLSFiles.from_dir(tmp_path / "certs", "worker")
    with pytest.raises(ValueError, match="no dev certificate named"):
        made.tls_files("stranger")


@pytest.mark.parametrize(
    ("name", "identity", "usages"),
    [
        (
            "orchestrator",
            ORCHESTRATOR_IDENTITY,
            {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH},
        ),
        ("worker", WORKER_IDENTITY, {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}),
        ("operator", OPERATOR_IDENTITY, {ExtendedKeyUsageOID.CLIENT_AUTH}),
    ],
)
def test_dev_leaf_certificates(
    tmp_path: Path, name: str, identity: str, usages: set[x509.ObjectIdentifier]
) -> None:
    made = init_dev_certs(tmp_path, valid_days=30)
    files = made.tls_files(name)
    cert, ca = _cert(files.cert), _cert(made.ca)

    cert.verify_directly_issued_by(ca)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [identity]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    assert set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == usages
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    key = load_pem_private_key(files.key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp256r1"
    assert key.public_key() == cert.public_key()
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= timedelta(days=30, minutes=10)
    assert cert.not_valid_after_utc > datetime.now(UTC) + timedelta(days=29)


def test_dev_ca_is_a_ca(tmp_path: Path) -> None:
    made = init_dev_certs(tmp_path)
    ca = _cert(made.ca)

    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert stat.S_IMODE(made.ca_key.stat().st_mode) == 0o600


def test_init_dev_certs_refuses_to_overwrite(tmp_path: Path) -> None:
    made = init_dev_certs(tmp_path)
    ca_before = made.ca.read_bytes()

    with pytest.raises(FileExistsError, match=r"refusing to overwrite .*ca\.pem"):
        init_dev_certs(tmp_path)
    assert made.ca.read_bytes() == ca_before

    init_dev_certs(tmp_path, overwrite=True)
    assert made.ca.read_bytes() != ca_before
    assert {p.name for p in tmp_path.iterdir()} == EXPECTED_FILES


def test_init_dev_certs_rejects_bad_validity(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="valid_days"):
        init_dev_certs(tmp_path, valid_days=0)
    assert list(tmp_path.iterdir()) == []


def test_issue_certificate_mints_expired_and_foreign_certificates() -> None:
    ca_pem, ca_key = make_ca("test CA")
    now = datetime.now(UTC)
    cert_pem, _ = issue_certificate(
        ca_pem,
        ca_key,
        "late",
        server=False,
        client=True,
        not_before=now - timedelta(days=2),
        not_after=now - timedelta(days=1),
        dns_names=(),
        ip_addresses=(),
        uris=("spiffe://elsewhere/late",),
    )
    cert = x509.load_pem_x509_certificate(cert_pem)

    assert cert.not_valid_after_utc < now
    assert cert.issuer == x509.load_pem_x509_certificate(ca_pem).subject
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(san) == [x509.UniformResourceIdentifier("spiffe://elsewhere/late")]
    with pytest.raises(ValueError, match="server and/or client"):
        issue_certificate(ca_pem, ca_key, "useless", server=False, client=False)
    with pytest.raises(ValueError, match="must be after"):
        issue_certificate(
            ca_pem, ca_key, "backwards", server=True, client=False, not_after=now - timedelta(days=1)
        )


def test_cli_certs_init(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "dev"

    assert main(["certs", "init", str(directory), "--days", "7"]) == 0

    out = capsys.readouterr().out
    assert {p.name for p in directory.iterdir()} == EXPECTED_FILES
    ca, orchestrator = directory / "ca.pem", directory / "orchestrator.pem"
    assert f"failhook-orchestrator serve --tls-ca {ca} --tls-cert {orchestrator}" in out
    assert f"--tls-key {directory / 'orchestrator-key.pem'}" in out
    assert str(directory / "worker-key.pem") in out
    assert str(directory / "operator.pem") in out
    cert = _cert(directory / "worker.pem")
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= timedelta(days=7, minutes=10)


def test_cli_certs_init_refuses_to_overwrite_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["certs", "init", str(tmp_path)]) == 0
    ca_before = (tmp_path / "ca.pem").read_bytes()
    capsys.readouterr()

    assert main(["certs", "init", str(tmp_path)]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (tmp_path / "ca.pem").read_bytes() == ca_before

    assert main(["certs", "init", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "ca.pem").read_bytes() != ca_before


def test_cli_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ["certs"], ["certs", "init"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
    assert "usage: failhook" in capsys.readouterr().err
