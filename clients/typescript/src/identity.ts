/**
 * Who is calling: the identities of a call's verified client certificate, and the allowlist
 * check the worker runs before any user code (an unauthenticated failure hook can be called by
 * anyone, so the worker admits only the identities it is told to trust).
 */

import type { PeerCertificate } from "node:tls";
import { status } from "@grpc/grpc-js";

/** The orchestrator's development identity, the worker's default allowlist. */
export const ORCHESTRATOR_IDENTITY = "spiffe://failhook.dev/orchestrator";

// One "TYPE:value" entry of Node's subjectaltname string; values with separators are JSON-quoted.
const SAN_ENTRY = /(DNS|URI|IP Address|email|othername|DirName|Registered ID):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/g;

function parseSubjectAltName(text: string): Array<[string, string]> {
  const entries: Array<[string, string]> = [];
  for (const match of text.matchAll(SAN_ENTRY)) {
    const [, kind = "", raw = ""] = match;
    entries.push([kind, raw.startsWith('"') ? (JSON.parse(raw) as string) : raw]);
  }
  return entries;
}

/**
 * Returns the identities of a verified peer certificate: URI SANs (e.g.
 * `spiffe://failhook.dev/orchestrator`) first, then DNS SANs, then the subject common name,
 * without duplicates (the Python SDK's order). Empty when there is no certificate.
 */
export function peerIdentities(certificate: PeerCertificate | undefined): string[] {
  if (certificate === undefined || Object.keys(certificate).length === 0) {
    return [];
  }
  const sans = parseSubjectAltName(certificate.subjectaltname ?? "");
  const commonName = certificate.subject?.CN;
  const ordered = [
    ...sans.filter(([kind]) => kind === "URI").map(([, value]) => value),
    ...sans.filter(([kind]) => kind === "DNS").map(([, value]) => value),
    ...(Array.isArray(commonName) ? commonName : commonName ? [commonName] : []),
  ];
  return [...new Set(ordered.filter((value) => value !== ""))];
}

/** Why a call is refused. */
export interface Denial {
  readonly code: status;
  readonly message: string;
}

/** Admits only callers whose certificate names one of the allowed identities (exact match). */
export class Allowlist {
  readonly allowed: ReadonlySet<string>;

  /** @throws RangeError if `allowed` is empty, which would refuse every call. */
  constructor(allowed: Iterable<string>) {
    if (typeof allowed === "string") {
      throw new TypeError("allowed must be a list of identities, not a string");
    }
    this.allowed = new Set(allowed);
    if (this.allowed.size === 0) {
      throw new RangeError("the allowlist is empty: every call would be refused");
    }
  }

  /** Returns the matching identity, or the denial (UNAUTHENTICATED without a certificate). */
  check(method: string, certificate: PeerCertificate | undefined): string | Denial {
    const identities = peerIdentities(certificate);
    if (identities.length === 0) {
      return { code: status.UNAUTHENTICATED, message: `${method} requires a client certificate` };
    }
    const admitted = identities.find((identity) => this.allowed.has(identity));
    if (admitted !== undefined) {
      return admitted;
    }
    return {
      code: status.PERMISSION_DENIED,
      message: `identity ${JSON.stringify(identities[0])} is not allowed to call ${method}`,
    };
  }
}
