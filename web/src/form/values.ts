// The value a form edits: a proto-JSON object keyed by proto field names,
// exactly the YAML shape of the config (so the YAML view and the form are
// two views of one value), plus the paths the validator and the gateway use
// to name a field (`nodes[0].port`, `labels.team`, `labels["a-b"]`).
import type { FieldMeta, SchemaMeta } from "./schema";

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type JsonObject = { [k: string]: Json };

/** Violation messages by field path; "" is the message itself. */
export type ErrorMap = Record<string, string[]>;

export const join = (path: string, name: string) => (path === "" ? name : `${path}.${name}`);
export const index = (path: string, i: number) => `${path}[${i}]`;
export const key = (path: string, k: string) =>
  /^[A-Za-z_][A-Za-z0-9_]*$/.test(k) ? join(path, k) : `${path}[${JSON.stringify(k)}]`;

/** A DOM id for the input of a path. */
export const domId = (path: string) => `f-${path.replace(/[^A-Za-z0-9_]+/g, "-").replace(/-+$/, "")}`;

export function isObject(v: Json | undefined): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** `obj` with `name` set to `v`, or removed when `v` is undefined. */
export function withField(obj: JsonObject, name: string, v: Json | undefined): JsonObject {
  const next = { ...obj };
  if (v === undefined) delete next[name];
  else next[name] = v;
  return next;
}

/** The value a new list element or map value starts with. */
export function emptyValue(meta: SchemaMeta, f: FieldMeta): Json {
  switch (f.kind) {
    case "message":
      return {};
    case "enum": {
      const first = meta.enums[f.enum ?? ""]?.values.find((v) => v.number !== 0);
      return first?.name ?? "";
    }
    case "scalar":
      if (f.scalar === "bool") return false;
      if (f.scalar === "string" || f.scalar === "bytes") return "";
      return 0;
    default:
      return "";
  }
}

/** Groups violations by path. */
export function errorMap(violations: { path: string; rule: string; message: string }[]): ErrorMap {
  const out: ErrorMap = {};
  for (const v of violations) (out[v.path] ??= []).push(`${v.message} [${v.rule}]`);
  return out;
}
