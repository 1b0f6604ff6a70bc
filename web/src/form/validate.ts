// Client-side checks of a form value: clients/ts `validate.ts`, which reads
// the rules from the generated descriptors, so a message here is the one the
// gateway would send for the same value. Also reads the violations out of a
// rejected write's error details.
import { createRegistry, fromJson, type DescMessage, type JsonValue, type Message } from "@bufbuild/protobuf";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { ConnectError } from "@connectrpc/connect";
import {
  file_pingora_config_v1_admin,
  file_pingora_config_v1_common,
  file_pingora_config_v1_config,
  file_pingora_config_v1_consumer,
  file_pingora_config_v1_global_rule,
  file_pingora_config_v1_plugins,
  file_pingora_config_v1_route,
  file_pingora_config_v1_service,
  file_pingora_config_v1_ssl,
  file_pingora_config_v1_upstream,
  validateJson,
  ValidateConfigResponseSchema,
  type RuleViolation,
} from "@pingora-config/client";

import { errorMap, type ErrorMap, type JsonObject } from "./values";

// createRegistry takes each file's own types, not its imports': list them all.
const registry = createRegistry(
  file_pingora_config_v1_admin,
  file_pingora_config_v1_common,
  file_pingora_config_v1_config,
  file_pingora_config_v1_consumer,
  file_pingora_config_v1_global_rule,
  file_pingora_config_v1_plugins,
  file_pingora_config_v1_route,
  file_pingora_config_v1_service,
  file_pingora_config_v1_ssl,
  file_pingora_config_v1_upstream,
);

export function descriptor(typeName: string): DescMessage {
  const d = registry.getMessage(typeName);
  if (!d) throw new Error(`no descriptor for ${typeName}`);
  return d;
}

/** Every violation of `value` as a message of `typeName`, by path. */
export function validateValue(typeName: string, value: JsonObject): ErrorMap {
  return errorMap(validateJson(descriptor(typeName), value as JsonValue));
}

/** The message a form value stands for (throws on a value of the wrong type). */
export function toMessage(typeName: string, value: JsonObject): Message {
  return fromJson(descriptor(typeName), value as JsonValue);
}

/**
 * The violations a rejected write carries in its details: the API's
 * `ValidateConfigResponse` (with rule names), else the `google.rpc.BadRequest`
 * field violations. Paths are made relative to the resource written, by
 * dropping the `<collection>[i].` prefix the gateway names them with.
 */
export function serverViolations(err: unknown, collection?: string): RuleViolation[] {
  const e = ConnectError.from(err);
  let out: RuleViolation[] = e.findDetails(ValidateConfigResponseSchema).flatMap((d) => d.violations.map((v) => ({ ...v })));
  if (out.length === 0) out = badRequest(e);
  if (collection) {
    const prefix = new RegExp(`^${collection}\\[\\d+\\]\\.?`);
    out = out.map((v) => ({ ...v, path: v.path.replace(prefix, "") }));
  }
  return out;
}

/** Decodes `google.rpc.BadRequest` details by hand: field 1 FieldViolation{field = 1, description = 2}. */
function badRequest(e: ConnectError): RuleViolation[] {
  const out: RuleViolation[] = [];
  for (const d of e.details) {
    if (!("type" in d) || d.type !== "google.rpc.BadRequest") continue;
    const r = new BinaryReader(d.value);
    while (r.pos < r.len) {
      const [no, wt] = r.tag();
      if (no !== 1) {
        r.skip(wt);
        continue;
      }
      const sub = new BinaryReader(r.bytes());
      let path = "";
      let description = "";
      while (sub.pos < sub.len) {
        const [fno, fwt] = sub.tag();
        if (fno === 1) path = sub.string();
        else if (fno === 2) description = sub.string();
        else sub.skip(fwt);
      }
      const rule = /\[([a-z_]+)\]$/.exec(description)?.[1] ?? "";
      out.push({ path, rule, message: description.replace(/ \[[a-z_]+\]$/, "") });
    }
  }
  return out;
}

/** The subjects of `google.rpc.PreconditionFailure` details: who still refers to a resource. */
export function referrers(err: unknown): string[] {
  const out: string[] = [];
  for (const d of ConnectError.from(err).details) {
    if (!("type" in d) || d.type !== "google.rpc.PreconditionFailure") continue;
    const r = new BinaryReader(d.value);
    while (r.pos < r.len) {
      const [no, wt] = r.tag();
      if (no !== 1) {
        r.skip(wt);
        continue;
      }
      const sub = new BinaryReader(r.bytes());
      while (sub.pos < sub.len) {
        const [fno, fwt] = sub.tag();
        if (fno === 2) out.push(sub.string());
        else sub.skip(fwt);
      }
    }
  }
  return out;
}
