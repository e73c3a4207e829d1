"""Build the orchestrator's image with podman, here, without a Docker engine or an image registry.

No registry is reachable, so the base image is made locally: ``debootstrap`` writes a minimal
Debian bookworm with ``python3`` and ``python3-venv``, which is imported into podman as
``localhost/failhook-base:<BASE_VERSION>`` and passed to the Dockerfile as ``BASE_IMAGE``. The
root file system's tarball and the imported image are kept between runs (in ``CACHE_DIR`` and
podman's own storage), so only the first run pays for debootstrap; bump ``BASE_VERSION`` to
make a new base.

The image's ``pip install`` goes through this machine's network, whose TLS may be inspected by a
proxy that only the machine's CA bundle trusts: ``/etc/ssl/certs`` is mounted into the build
read-only (Debian's pip uses that bundle), never copied into the image. A network index that the
host's pip is configured with is passed on in a pip configuration mounted the same way.

The prerequisites (podman, runc, debootstrap, …) come from ``scripts/container-prereqs.sh``,
which the fixtures run as root; without root the tests skip, or fail when ``CI=true``.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from failhook.certs import DevCerts, init_dev_certs

ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("FAILHOOK_CI_CACHE", "/var/cache/failhook-ci"))
BASE_VERSION = "bookworm-1"
BASE_IMAGE = f"localhost/failhook-base:{BASE_VERSION}"
IMAGE = "localhost/failhook-orchestrator:test"
CONTAINER_UID = 10001
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
TOOLS = ("podman", "runc", "debootstrap")

CONTAINERS_CONF = """\
# Written by tests/container: rootful podman on a machine without systemd or a Docker engine.
[containers]
default_ulimits = []
log_driver = "k8s-file"

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"

[network]
network_backend = "netavark"
"""

_LISTENING = re.compile(r"listening on [^ ]+:(\d+) ")


def _progress(message: str) -> None:
    print(f"[container] {message}", flush=True)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the container test is mandatory)")
    pytest.skip(reason)


@dataclass
class Podman:
    """Runs ``podman`` with the test's own ``containers.conf``."""

    env: dict[str, str]

    def run(
        self, *args: str, timeout: float = 120.0, check: bool = True, quiet: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``podman ARGS``; raise with its output when ``check`` and it fails.

        Args:
            args: The podman arguments.
            timeout: Seconds before the command is killed.
            check: Raise ``AssertionError`` on a non-zero exit.
            quiet: Capture the output (else it streams to the terminal, for long builds).

        Returns:
            The finished process, output captured when ``quiet``.
        """
        result = subprocess.run(
            ["podman", *args],
            env=self.env,
            capture_output=quiet,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def logs(self, name: str) -> str:
        """Everything a container has printed (stdout and stderr)."""
        result = self.run("logs", name, check=False)
        return result.stdout + result.stderr

    def remove(self, name: str) -> None:
        """Remove a container, running or not, with its anonymous volumes."""
        self.run("rm", "--force", "--volumes", name, check=False)


@dataclass
class Container:
    """A started container of the image and the port the orchestrator said it listens on."""

    podman: Podman
    name: str
    port: int = 0
    extra: dict[str, str] = field(default_factory=dict)

    def wait_listening(self, timeout: float = 60.0) -> int:
        """Wait for the orchestrator's "listening on HOST:PORT" line; return the port."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            logs = self.podman.logs(self.name)
            match = _LISTENING.search(logs)
            if match:
                self.port = int(match[1])
                return self.port
            state = self.podman.run("inspect", "--format", "{{.State.Running}}", self.name, check=False)
            if state.stdout.strip() == "false":
                raise AssertionError(f"container {self.name} exited before listening:\n{logs}")
            time.sleep(0.3)
        raise AssertionError(
            f"container {self.name} did not listen within {timeout}s:\n{self.podman.logs(self.name)}"
        )

    def exit_code(self) -> int:
        """The exit code of the stopped container."""
        result = self.podman.run("inspect", "--format", "{{.State.ExitCode}}", self.name)
        return int(result.stdout.strip())


def _ensure_prerequisites() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if os.geteuid() != 0:
        _unavailable(
            "the container test runs podman as root (rootful, cgroupfs, runc); not root here"
            + (f" and {', '.join(missing)} missing" if missing else "")
        )
    _progress("checking prerequisites (scripts/container-prereqs.sh)")
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "container-prereqs.sh")],
        check=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )


def _host_index_urls() -> list[tuple[str, str]]:
    """The host pip's index settings that point at a network index (file: indexes stay out)."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found: dict[str, str] = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition("=")
        option = key.rpartition(".")[2]
        if option not in ("index-url", "extra-index-url"):
            continue
        urls = [u for u in value.strip().strip("'\"").split() if u.startswith(("http://", "https://"))]
        if urls:
            found[option] = " ".join(urls)
    for option in ("index-url", "extra-index-url"):
        env_value = os.environ.get("PIP_" + option.upper().replace("-", "_"), "")
        urls = [u for u in env_value.split() if u.startswith(("http://", "https://"))]
        if urls:
            found[option] = " ".join(urls)
    return sorted(found.items())


def _build_mounts(directory: Path) -> list[str]:
    """``--volume`` options of the build: the host's CA bundle, and its pip indexes if it has any.

    A file mounted where the image has none leaves an empty placeholder behind, so the pip
    configuration is mounted only when there is an index to pass on.
    """
    mounts: list[str] = []
    if HOST_CA_BUNDLE.is_file():
        mounts += ["--volume", f"{HOST_CA_BUNDLE.parent}:{HOST_CA_BUNDLE.parent}:ro"]
    indexes = _host_index_urls()
    if indexes:
        lines = ["[global]", *(f"{option} = {value}" for option, value in indexes)]
        if HOST_CA_BUNDLE.is_file():
            lines.append(f"cert = {HOST_CA_BUNDLE}")
        pip_conf = directory / "pip.conf"
        pip_conf.write_text("\n".join(lines) + "\n")
        mounts += ["--volume", f"{pip_conf}:/etc/pip.conf:ro"]
    return mounts


def _ensure_base_image(podman: Podman) -> None:
    if podman.run("image", "exists", BASE_IMAGE, check=False).returncode == 0:
        _progress(f"base image {BASE_IMAGE}: cached")
        return
    tarball = CACHE_DIR / f"failhook-base-{BASE_VERSION}.tar"
    if tarball.is_file():
        _progress(f"base image {BASE_IMAGE}: importing the cached root file system {tarball}")
    else:
        rootfs = Path(tempfile.mkdtemp(prefix="rootfs-", dir=CACHE_DIR))
        try:
            _progress(f"base image {BASE_IMAGE}: debootstrap bookworm (minbase + python3) into {rootfs}")
            started = time.monotonic()
            subprocess.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    "--include=python3,python3-venv,ca-certificates",
                    "bookworm",
                    str(rootfs),
                ],
                check=True,
                timeout=1200,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
            )
            _progress(f"debootstrap took {time.monotonic() - started:.0f}s")
            for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for entry in (rootfs / leftover).glob("*"):
                    if entry.is_file():
                        entry.unlink()
            partial = rootfs.with_name(rootfs.name + ".tar")
            subprocess.run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], check=True, timeout=600)
            partial.replace(tarball)
        finally:
            shutil.rmtree(rootfs, ignore_errors=True)
            rootfs.with_name(rootfs.name + ".tar").unlink(missing_ok=True)
    podman.run("import", str(tarball), BASE_IMAGE, timeout=600)
    _progress(f"base image {BASE_IMAGE}: imported")


def _build_image(podman: Podman) -> str:
    """Build the image; return its id (the tag may move on to a concurrent run's build)."""
    with tempfile.TemporaryDirectory(prefix="build-", dir=CACHE_DIR) as scratch:
        mounts = _build_mounts(Path(scratch))
        iidfile = Path(scratch) / "image-id"
        _progress(f"building {IMAGE} from {ROOT / 'Dockerfile'} on {BASE_IMAGE}")
        started = time.monotonic()
        podman.run(
            "build",
            "--format",
            "docker",  # the OCI format has no HEALTHCHECK
            "--network",
            "host",
            "--pull=never",
            *mounts,
            "--build-arg",
            f"BASE_IMAGE={BASE_IMAGE}",
            "--tag",
            IMAGE,
            "--iidfile",
            str(iidfile),
            "--file",
            str(ROOT / "Dockerfile"),
            str(ROOT),
            timeout=1200,
            quiet=False,
        )
        image_id = iidfile.read_text().strip()
        _progress(f"built {IMAGE} ({image_id[:19]}) in {time.monotonic() - started:.0f}s")
    # Layers of earlier builds that nothing names any more; recent ones stay as the build cache.
    podman.run("image", "prune", "--force", "--filter", "until=2h", check=False)
    return image_id


@contextmanager
def _cache_lock() -> Iterator[None]:
    """One test run at a time makes the base image and builds (runs on one machine may overlap)."""
    with (CACHE_DIR / "lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def podman() -> Podman:
    """Podman, installed if needed, with this test's containers.conf."""
    _ensure_prerequisites()
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    conf = CACHE_DIR / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    return Podman(env={**os.environ, "CONTAINERS_CONF": str(conf)})


@pytest.fixture(scope="session")
def image(podman: Podman) -> str:
    """The orchestrator's image (its id), built from the working tree's Dockerfile on the local base."""
    started = time.monotonic()
    with _cache_lock():
        _ensure_base_image(podman)
        image_id = _build_image(podman)
    _progress(f"image ready in {time.monotonic() - started:.0f}s")
    return image_id


@pytest.fixture(scope="session")
def container_certs(tmp_path_factory: pytest.TempPathFactory) -> DevCerts:
    """Dev certificates owned by the container's user (keys stay 0600; root on the host reads them)."""
    certs = init_dev_certs(tmp_path_factory.mktemp("container-certs"))
    for path in (certs.directory, *certs.paths()):
        os.chown(path, CONTAINER_UID, CONTAINER_UID)
    return certs


@pytest.fixture
def container_name(podman: Podman) -> Iterator[str]:
    """A unique container name; the container is removed afterwards, whatever happened."""
    name = f"failhook-test-{uuid.uuid4().hex[:10]}"
    yield name
    podman.remove(name)
