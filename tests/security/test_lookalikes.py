"""Look-alike certificates: names that spell a trusted identity in the wrong certificate field.

Every certificate here is real, minted with ``cryptography`` by the same CA as the legitimate
ones, and presented over a real mutual-TLS socket. A certificate is its identity only through
the field the identity names: a SPIFFE id through a URI SAN, a DNS name through a DNS SAN, a
common name only where it is configured as ``CN=<name>``. The look-alikes must be refused by the
SDK worker before its steps or failure handler run, and get no role at the orchestrator.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from failhook.certs import (
    OPERATOR_IDENTITY,
    ORCHESTRATOR_IDENTITY,
    WORKER_IDENTITY,
    DevCerts,
    issue_certificate,
    spiffe_id,
)
from failhook.tls import Identity, IdentityKind, TLSFiles, channel_credentials
from failhook.v1 import dead_letter_service_pb2 as dl
from failhook.v1 import dead_letter_service_pb2_grpc as dl_grpc
from failhook.v1 import workflow_service_pb2 as ws
from failhook.v1 import workflow_service_pb2_grpc as ws_grpc
from failhook.worker import FailureContext, Worker, WorkflowContext
from failhook_orchestrator.security import Role, RoleMap
from tests.sdk._support import Client, hook_request, step_request
from tests.support.harness import started_harness

from ._support import OpenChannel

MALLORY = spiffe_id("mallory")


@dataclass(frozen=True)
class Names:
    """The names of a minted client certificate."""

    cn: str
    uris: tuple[str, ...] = ()
    dns: tuple[str, ...] = ()


# Each spells ``spiffe://failhook.dev/orchestrator`` somewhere other than a URI SAN, or puts a URI
# SAN that is close to it but is another identity.
LOOKALIKES: dict[str, Names] = {
    "cn-spells-the-id": Names(cn=ORCHESTRATOR_IDENTITY, uris=(MALLORY,)),
    "cn-spells-the-id-no-san": Names(cn=ORCHESTRATOR_IDENTITY),
    "dns-san-spells-the-id": Names(cn="mallory", uris=(MALLORY,), dns=(ORCHESTRATOR_IDENTITY,)),
    "dns-san-spells-the-id-only": Names(cn="mallory", dns=(ORCHESTRATOR_IDENTITY,)),
    "cn-and-dns-spell-the-id": Names(cn=ORCHESTRATOR_IDENTITY, dns=(ORCHESTRATOR_IDENTITY,)),
    "uri-san-deeper-path": Names(cn="mallory", uris=(f"{ORCHESTRATOR_IDENTITY}/mallory",)),
    "uri-san-longer-name": Names(cn="mallory", uris=(f"{ORCHESTRATOR_IDENTITY}-mallory",)),
    "uri-san-trailing-slash": Names(cn="mallory", uris=(f"{ORCHESTRATOR_IDENTITY}/",)),
    "uri-san-fragment": Names(cn="mallory", uris=(f"{ORCHESTRATOR_IDENTITY}#admin",)),
    "uri-san-other-case": Names(cn="mallory", uris=("spiffe://failhook.dev/Orchestrator",)),
    "uri-san-other-trust-domain": Names(cn="mallory", uris=("spiffe://mallory.dev/orchestrator",)),
    "uri-san-other-scheme": Names(cn="mallory", uris=("https://failhook.dev/orchestrator",)),
    "uri-san-no-scheme": Names(cn="mallory", uris=("failhook.dev/orchestrator",)),
}

MintFiles = Callable[[Names], TLSFiles]


@pytest.fixture
def mint(dev_certs: DevCerts, tmp_path: Path) -> MintFiles:
    """Issue client certificates with chosen names from the dev CA (the one every server trusts)."""
    ca, ca_key = dev_certs.ca.read_bytes(), dev_certs.ca_key.read_bytes()
    minted = 0

    def issue(names: Names) -> TLSFiles:
        nonlocal minted
        minted += 1
        cert, key = issue_certificate(
            ca,
            ca_key,
            names.cn,
            server=False,
            client=True,
            uris=names.uris,
            dns_names=names.dns,
            ip_addresses=(),
        )
        files = TLSFiles(
            ca=dev_certs.ca, cert=tmp_path / f"minted-{minted}.pem", key=tmp_path / f"minted-{minted}.key"
        )
        files.cert.write_bytes(cert)
        files.key.write_bytes(key)
        return files

    return issue


class Recording:
    """A worker whose step and failure handler record that they ran."""

    def __init__(self, certs: DevCerts, allowed: Collection[str] | None = None) -> None:
        self.ran: list[str] = []
        self.worker = Worker(tls=certs.tls_files("worker"), allowed_identities=allowed)

        @self.worker.workflow("order")
        async def order(ctx: WorkflowContext) -> str:
            return await ctx.run("charge", self._step)

        @order.on_failure
        async def failed(ctx: FailureContext, status: int, response: str, headers: Mapping[str, str]) -> str:
            self.ran.append("failure handler")
            return "handled"

    def _step(self) -> str:
        self.ran.append("step")
        return "charged"


async def _outcomes(client: Client) -> tuple[grpc.StatusCode, grpc.StatusCode]:
    """The status of a RunStep and of an OnWorkflowFailure call (OK when they ran)."""
    codes = []
    for call in (client.run_step(step_request("order")), client.on_failure(hook_request("order"))):
        try:
            await call
            codes.append(grpc.StatusCode.OK)
        except grpc.aio.AioRpcError as err:
            codes.append(err.code())
    return codes[0], codes[1]


@pytest.fixture
async def worker_port(dev_certs: DevCerts) -> AsyncIterator[tuple[int, Recording]]:
    """A worker with the default allow-list (the orchestrator's SPIFFE id) over mutual TLS."""
    recording = Recording(dev_certs)
    async with recording.worker.serving() as port:
        yield port, recording


DENIED = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.PERMISSION_DENIED)
RAN = (grpc.StatusCode.OK, grpc.StatusCode.OK)


@pytest.mark.parametrize("lookalike", sorted(LOOKALIKES))
async def test_worker_refuses_a_lookalike_before_user_code(
    worker_port: tuple[int, Recording], mint: MintFiles, open_channel: OpenChannel, lookalike: str
) -> None:
    port, recording = worker_port
    channel = open_channel(port, channel_credentials(mint(LOOKALIKES[lookalike])))

    assert await _outcomes(Client(channel)) == DENIED
    assert recording.ran == []


async def test_worker_admits_the_orchestrator_by_its_uri_san_whatever_its_cn(
    worker_port: tuple[int, Recording], dev_certs: DevCerts, mint: MintFiles, open_channel: OpenChannel
) -> None:
    port, recording = worker_port
    dev = open_channel(port, channel_credentials(dev_certs.tls_files("orchestrator")))
    odd_cn = open_channel(port, channel_credentials(mint(Names(cn="mallory", uris=(ORCHESTRATOR_IDENTITY,)))))

    assert await _outcomes(Client(dev)) == RAN
    assert await _outcomes(Client(odd_cn)) == RAN
    assert recording.ran == ["step", "failure handler"] * 2


@pytest.mark.parametrize(
    ("allowed", "names", "expected"),
    [
        # A DNS name is matched against DNS SANs only, without regard to case.
        ("orchestrator.internal", Names(cn="x", dns=("Orchestrator.Internal",)), RAN),
        ("orchestrator.internal", Names(cn="orchestrator.internal", uris=(MALLORY,)), DENIED),
        ("orchestrator.internal", Names(cn="x", uris=("dns://orchestrator.internal",)), DENIED),
        # A common name counts only where the allow-list says CN=...
        ("CN=orchestrator", Names(cn="orchestrator", uris=(MALLORY,)), RAN),
        ("CN=orchestrator", Names(cn="mallory", dns=("orchestrator",)), DENIED),
        ("CN=orchestrator", Names(cn="mallory", uris=("CN=orchestrator",)), DENIED),
        ("orchestrator", Names(cn="orchestrator", uris=(MALLORY,)), DENIED),
    ],
    ids=["dns-any-case", "dns-as-cn", "dns-in-uri", "cn", "cn-as-dns", "cn-in-uri", "bare-name-is-not-cn"],
)
async def test_worker_matches_dns_names_and_common_names_by_kind(
    dev_certs: DevCerts,
    mint: MintFiles,
    open_channel: OpenChannel,
    allowed: str,
    names: Names,
    expected: tuple[grpc.StatusCode, grpc.StatusCode],
) -> None:
    recording = Recording(dev_certs, allowed=[allowed])
    async with recording.worker.serving() as port:
        outcome = await _outcomes(Client(open_channel(port, channel_credentials(mint(names)))))

    assert outcome == expected
    assert recording.ran == ([] if expected == DENIED else ["step", "failure handler"])


async def _orchestrator_codes(channel: grpc.aio.Channel) -> dict[str, grpc.StatusCode]:
    """One call per role: the status each ended with (PERMISSION_DENIED: the role is missing)."""
    runs: ws_grpc.WorkflowServiceAsyncStub = ws_grpc.WorkflowServiceStub(channel)
    dlq: dl_grpc.DeadLetterServiceAsyncStub = dl_grpc.DeadLetterServiceStub(channel)
    calls: dict[str, Awaitable[object]] = {
        # Invalid on purpose: a caller that passes authorization gets INVALID_ARGUMENT or NOT_FOUND.
        "submit": runs.StartRun(ws.StartRunRequest(), timeout=10),
        "read": runs.GetRun(ws.GetRunRequest(run_id="no-such-run"), timeout=10),
        "operate": dlq.DeleteDeadLetter(
            dl.DeleteDeadLetterRequest(dead_letter_id="no-such-entry"), timeout=10
        ),
    }
    codes: dict[str, grpc.StatusCode] = {}
    for role, call in calls.items():
        try:
            await call
            codes[role] = grpc.StatusCode.OK
        except grpc.aio.AioRpcError as err:
            codes[role] = err.code()
    return codes


async def test_orchestrator_grants_no_role_to_a_lookalike(
    dev_certs: DevCerts, mint: MintFiles, open_channel: OpenChannel, tmp_path: Path
) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path / 'failhook.db'}"
    async with started_harness(dev_certs, database, "localhost:1") as harness:
        port = harness.orchestrator.port
        seen = {
            name: await _orchestrator_codes(open_channel(port, channel_credentials(mint(names))))
            for name, names in sorted(LOOKALIKES.items())
        }
        admin = await _orchestrator_codes(
            open_channel(port, channel_credentials(dev_certs.tls_files("orchestrator")))
        )

    denied = dict.fromkeys(("submit", "read", "operate"), grpc.StatusCode.PERMISSION_DENIED)
    assert seen == dict.fromkeys(LOOKALIKES, denied)
    # The real orchestrator certificate (admin) passes authorization and reaches validation.
    assert admin == {
        "submit": grpc.StatusCode.INVALID_ARGUMENT,
        "read": grpc.StatusCode.NOT_FOUND,
        "operate": grpc.StatusCode.NOT_FOUND,
    }


def test_role_map_matches_each_kind_of_name_only_with_its_own_kind() -> None:
    roles = RoleMap({OPERATOR_IDENTITY: ["operate"], "ops.internal": ["read"], "CN=auditor": ["read"]})

    assert roles.roles_for([Identity.uri(OPERATOR_IDENTITY)]) == {Role.OPERATE}
    assert roles.roles_for([Identity.common_name(OPERATOR_IDENTITY)]) == frozenset()
    assert roles.roles_for([Identity.dns("OPS.internal.")]) == {Role.READ}
    assert roles.roles_for([Identity.common_name("ops.internal")]) == frozenset()
    assert roles.roles_for([Identity.common_name("auditor")]) == {Role.READ}
    assert roles.roles_for([Identity.dns("auditor")]) == frozenset()
    # The dev grants name SPIFFE ids: a common name spelling one gets nothing.
    dev = RoleMap.dev_default()
    for identity in (ORCHESTRATOR_IDENTITY, WORKER_IDENTITY, OPERATOR_IDENTITY):
        assert dev.roles_for([Identity.common_name(identity)]) == frozenset()
        assert dev.roles_for([Identity.uri(identity)]) != frozenset()


def test_worker_refuses_an_allowed_identity_that_is_no_identity(dev_certs: DevCerts) -> None:
    with pytest.raises(ValueError, match=r"'two words' is not a certificate identity"):
        Worker(tls=dev_certs.tls_files("worker"), allowed_identities=["two words"])


def test_role_map_rejects_a_key_that_is_no_identity() -> None:
    with pytest.raises(ValueError, match=r"role grant for 'two words'.*CN=<name>"):
        RoleMap({"two words": ["read"]})


def test_identity_parse_reads_the_three_written_forms() -> None:
    assert Identity.parse(ORCHESTRATOR_IDENTITY) == Identity(IdentityKind.URI, ORCHESTRATOR_IDENTITY)
    assert Identity.parse("Worker.Internal.") == Identity(IdentityKind.DNS, "worker.internal")
    assert Identity.parse("*.internal") == Identity(IdentityKind.DNS, "*.internal")
    assert Identity.parse("CN=spiffe://failhook.dev/x") == Identity(
        IdentityKind.COMMON_NAME, "spiffe://failhook.dev/x"
    )
    assert Identity.parse("cn=worker") == Identity(IdentityKind.COMMON_NAME, "worker")
    for bad in ("", "CN=", "two words", "tab\there", "a/b", "-leading-hyphen.example"):
        with pytest.raises(ValueError, match="identity"):
            Identity.parse(bad)


def test_an_identity_is_checked_and_normalised_however_it_is_made() -> None:
    assert Identity(IdentityKind.DNS, "Worker.Internal.") == Identity.dns("worker.internal")
    for kind, bad in (
        (IdentityKind.URI, "failhook.dev/orchestrator"),
        (IdentityKind.URI, "spiffe://failhook.dev/a b"),
        (IdentityKind.DNS, ORCHESTRATOR_IDENTITY),
        (IdentityKind.COMMON_NAME, ""),
    ):
        with pytest.raises(ValueError, match="is not a"):
            Identity(kind, bad)


_printable = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40)


@given(
    st.one_of(
        _printable.map(Identity.common_name),
        _printable.map(lambda v: f"s:{v}").map(Identity.uri),
        st.from_regex(r"[a-z0-9]{1,10}(\.[a-z0-9]{1,10}){0,3}", fullmatch=True).map(Identity.dns),
    )
)
def test_an_identity_reads_back_from_its_written_form_as_the_same_kind(identity: Identity) -> None:
    assert Identity.parse(str(identity)) == identity
