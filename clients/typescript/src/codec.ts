/**
 * How step outputs and run outputs are written to and read from the wire: the same convention
 * as the Python SDK, so a run can be served by workers in either language.
 *
 * Step outputs (`StepResult.output`) are compact UTF-8 JSON with one extension for bytes: a
 * `Uint8Array` at any depth is written as `{"$bytes": "<standard base64>"}` and read back as a
 * `Uint8Array`, and a user object whose only key is `"$bytes"` or `"$object"` is escaped as
 * `{"$object": {...}}` so that no user value is mistaken for a tagged one. Everything else is
 * plain JSON (`null`, booleans, finite numbers, strings, arrays, plain objects); `undefined` is
 * recorded as `null`. Other values (`Date`, `Map`, class instances, `bigint`, `NaN`) are refused
 * with a `TypeError` rather than silently changed, because a replay must see exactly what the
 * first run recorded.
 *
 * The run's output (`RunStepResponse.run_output`) is a returned `Uint8Array` as is, or the JSON
 * encoding above of any other value.
 */

/** A value a step may return and the SDK can record faithfully. */
export type JsonValue =
  | null
  | boolean
  | number
  | string
  | Uint8Array
  | readonly JsonValue[]
  | { readonly [key: string]: JsonValue | undefined };

const BYTES_TAG = "$bytes";
const OBJECT_TAG = "$object";

function isPlainObject(value: object): boolean {
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function toTree(value: unknown, path: string): unknown {
  if (value === null || value === undefined) {
    return null;
  }
  switch (typeof value) {
    case "boolean":
    case "string":
      return value;
    case "number":
      if (!Number.isFinite(value)) {
        throw new TypeError(`${path}: ${value} has no JSON representation`);
      }
      return value;
    case "object":
      break;
    default:
      throw new TypeError(`${path}: a value of type ${typeof value} cannot be recorded as JSON`);
  }
  if (value instanceof Uint8Array) {
    return { [BYTES_TAG]: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString("base64") };
  }
  if (Array.isArray(value)) {
    return value.map((item, index) => toTree(item, `${path}[${index}]`));
  }
  if (!isPlainObject(value)) {
    const kind = value.constructor?.name ?? "object";
    throw new TypeError(`${path}: a ${kind} cannot be recorded as JSON (return plain objects)`);
  }
  const tree: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) {
    tree[key] = toTree(item, `${path}[${JSON.stringify(key)}]`);
  }
  const keys = Object.keys(tree);
  if (keys.length === 1 && (keys[0] === BYTES_TAG || keys[0] === OBJECT_TAG)) {
    return { [OBJECT_TAG]: tree };
  }
  return tree;
}

function fromTree(tree: unknown): unknown {
  if (Array.isArray(tree)) {
    return tree.map(fromTree);
  }
  if (tree === null || typeof tree !== "object") {
    return tree;
  }
  const entries = Object.entries(tree);
  const only = entries.length === 1 ? entries[0] : undefined;
  if (only !== undefined && only[0] === BYTES_TAG) {
    if (typeof only[1] !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(only[1]) || only[1].length % 4 !== 0) {
      throw new RangeError('"$bytes" must hold a standard base64 string');
    }
    return new Uint8Array(Buffer.from(only[1], "base64"));
  }
  if (only !== undefined && only[0] === OBJECT_TAG) {
    if (only[1] === null || typeof only[1] !== "object" || Array.isArray(only[1])) {
      throw new RangeError('"$object" must hold an object');
    }
    return Object.fromEntries(Object.entries(only[1]).map(([key, value]) => [key, fromTree(value)]));
  }
  return Object.fromEntries(entries.map(([key, value]) => [key, fromTree(value)]));
}

/** Encodes a step's return value; throws `TypeError` for a value JSON cannot hold faithfully. */
export function encodeOutput(value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(toTree(value, "value")));
}

/**
 * Decodes a recorded step output written by {@link encodeOutput} (or the Python SDK). Empty bytes
 * (a sleep's output) decode to `null`.
 *
 * @throws RangeError if the bytes are not such an output.
 */
export function decodeOutput(data: Uint8Array): unknown {
  if (data.length === 0) {
    return null;
  }
  let tree: unknown;
  try {
    tree = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(data));
  } catch (error) {
    throw new RangeError(`not a JSON step output: ${String(error)}`);
  }
  return fromTree(tree);
}

/** Encodes the workflow's return value: a `Uint8Array` as is, anything else as JSON. */
export function encodeRunOutput(value: unknown): Uint8Array {
  return value instanceof Uint8Array ? value : encodeOutput(value);
}
