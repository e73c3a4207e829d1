/** TLS material of a worker: its certificate, its key and the CA its callers' certificates must chain to. */

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ServerCredentials } from "@grpc/grpc-js";

/** Paths of PEM files: the CA bundle, the certificate chain and its private key. */
export interface TlsFiles {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

/**
 * The files `failhook certs init DIR` writes for `name`: `ca.pem`, `<name>.pem`, `<name>-key.pem`.
 */
export function tlsFilesFromDir(directory: string, name: string): TlsFiles {
  return { ca: join(directory, "ca.pem"), cert: join(directory, `${name}.pem`), key: join(directory, `${name}-key.pem`) };
}

/**
 * Server credentials that require a client certificate signed by the CA (mTLS).
 *
 * @throws Error naming the file that cannot be read.
 */
export function serverCredentials(files: TlsFiles): ServerCredentials {
  const read = (what: string, path: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (error) {
      throw new Error(`cannot read the TLS ${what} file ${path}: ${(error as Error).message}`);
    }
  };
  const ca = read("CA", files.ca);
  const cert = read("certificate", files.cert);
  const key = read("key", files.key);
  return ServerCredentials.createSsl(ca, [{ cert_chain: cert, private_key: key }], true);
}
