import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { PeerCertificate } from "node:tls";
import { status } from "@grpc/grpc-js";

import { Allowlist, ORCHESTRATOR_IDENTITY, peerIdentities } from "../src/identity.js";

function certificate(subjectaltname: string, cn = "failhook orchestrator"): PeerCertificate {
  return { subjectaltname, subject: { CN: cn } } as unknown as PeerCertificate;
}

describe("peer identities", () => {
  it("lists URI SANs, then DNS SANs, then the CN", () => {
    const cert = certificate(`DNS:localhost, IP Address:127.0.0.1, URI:${ORCHESTRATOR_IDENTITY}`);
    assert.deepEqual(peerIdentities(cert), [ORCHESTRATOR_IDENTITY, "localhost", "failhook orchestrator"]);
  });

  it("reads quoted SAN values and ignores a missing certificate", () => {
    assert.deepEqual(peerIdentities(certificate('URI:"spiffe://x/a, b"', "")), ["spiffe://x/a, b"]);
    assert.deepEqual(peerIdentities(undefined), []);
    assert.deepEqual(peerIdentities({} as PeerCertificate), []);
  });
});

describe("allowlist", () => {
  const allowlist = new Allowlist([ORCHESTRATOR_IDENTITY]);

  it("admits the orchestrator", () => {
    assert.equal(allowlist.check("/m", certificate(`URI:${ORCHESTRATOR_IDENTITY}`)), ORCHESTRATOR_IDENTITY);
  });

  it("refuses other identities and callers without a certificate", () => {
    assert.deepEqual(allowlist.check("/m", certificate("URI:spiffe://failhook.dev/worker", "worker")), {
      code: status.PERMISSION_DENIED,
      message: 'identity "spiffe://failhook.dev/worker" is not allowed to call /m',
    });
    assert.equal((allowlist.check("/m", undefined) as { code: status }).code, status.UNAUTHENTICATED);
  });

  it("refuses an empty list", () => {
    assert.throws(() => new Allowlist([]), /allowlist is empty/);
    assert.throws(() => new Allowlist("spiffe://x" as unknown as string[]), /not a string/);
  });
});
