// Checks pingora-config messages with the rules written in the schema (the
// pingora_config.validate.v1 options), read from the generated descriptors
// with getOption: the same rules, rule names and paths as the gateway's
// loader and the Go client's validate package.
import {
  createRegistry,
  fromJson,
  getOption,
  ScalarType,
  type DescEnumValue,
  type DescField,
  type DescMessage,
  type JsonValue,
  type Message,
} from "@bufbuild/protobuf";
import { reflect, type ReflectMessage } from "@bufbuild/protobuf/reflect";
import type { Duration } from "@bufbuild/protobuf/wkt";

import { file_pingora_config_v1_admin } from "./gen/pingora_config/v1/admin_pb.js";
import { file_pingora_config_v1_bootstrap } from "./gen/pingora_config/v1/bootstrap_pb.js";
import {
  Compare_Op,
  field as fieldExt,
  Format,
  message as messageExt,
  oneof as oneofExt,
  type FieldRules,
} from "./gen/pingora_config/validate/v1/validate_pb.js";

/** One broken rule (the admin API's `Violation` message has the same fields). */
export interface RuleViolation {
  /** Path from the root message in proto field names, `routes[0].upstream_id`; "" for the root. */
  path: string;
  /** The rule, named as in validate.proto (`required`, `format`, `ref`, ...). */
  rule: string;
  message: string;
}

const LABEL = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
const OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
const PORT = "(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})";
const HOSTNAME = `${LABEL}(?:\\.${LABEL})*`;
const IPV4 = `${OCTET}(?:\\.${OCTET}){3}`;
const H = "[0-9A-Fa-f]{1,4}";
const IPV6 = [
  `(?:${H}:){7}${H}`,
  `(?:${H}:){1,7}:`,
  `(?:${H}:){1,6}:${H}`,
  `(?:${H}:){1,5}(?::${H}){1,2}`,
  `(?:${H}:){1,4}(?::${H}){1,3}`,
  `(?:${H}:){1,3}(?::${H}){1,4}`,
  `(?:${H}:){1,2}(?::${H}){1,5}`,
  `${H}:(?::${H}){1,6}`,
  `:(?:(?::${H}){1,7}|:)`,
  `::(?:[Ff]{4}:)?${IPV4}`,
  `(?:${H}:){1,4}:${IPV4}`,
]
  .map((a) => `(?:${a})`)
  .join("|");

/** The well-known formats: the same expressions as the gateway's and the JSON Schema's. */
const FORMATS: Partial<Record<Format, string>> = {
  [Format.HOSTNAME]: HOSTNAME,
  [Format.HOST_PATTERN]: `(?:\\*\\.)?${HOSTNAME}`,
  [Format.HOST]: `${HOSTNAME}|${IPV4}|${IPV6}`,
  [Format.IP]: `${IPV4}|${IPV6}`,
  [Format.CIDR]: `${IPV4}(?:/(?:3[0-2]|[12]?[0-9]))?|(?:${IPV6})(?:/(?:12[0-8]|1[01][0-9]|[1-9]?[0-9]))?`,
  [Format.SOCKET_ADDRESS]: `(?:${HOSTNAME}|${IPV4}|\\[(?:${IPV6})\\]):${PORT}`,
  [Format.URL]: "https?://[^\\s/?#@]+(?:[/?#]\\S*)?",
  [Format.URI_PATH]: "/\\S*",
  [Format.HEADER_NAME]: "[!#$%&'*+.^_`|~0-9A-Za-z-]+",
  [Format.ID]: "[A-Za-z0-9._-]{1,64}",
  [Format.PEM]: "\\s*-----BEGIN [A-Z0-9 ]+-----[\\s\\S]*-----END [A-Z0-9 ]+-----\\s*",
};

const compiledCache = new Map<string, RegExp>();
function compiled(p: string): RegExp {
  let re = compiledCache.get(p);
  if (!re) {
    re = new RegExp(p, "u");
    compiledCache.set(p, re);
  }
  return re;
}

/** Whether `s` has the well-known format `f`. */
export function matchesFormat(f: Format, s: string): boolean {
  if (f === Format.REGEX) {
    try {
      new RegExp(s, "u");
      return true;
    } catch {
      return false;
    }
  }
  if ((f === Format.HOSTNAME || f === Format.HOST_PATTERN || f === Format.HOST) && [...s].length > 253) {
    return false;
  }
  const p = FORMATS[f];
  return p === undefined || compiled(`^(?:${p})$`).test(s);
}

/** A proto-JSON duration ("1.5s") in nanoseconds. */
export function parseDuration(s: string): bigint | undefined {
  const m = /^(-?)([0-9]+)(?:\.([0-9]{1,9}))?s$/.exec(s);
  if (!m) return undefined;
  const secs = BigInt(m[2] ?? "0");
  if (secs > 315576000000n) return undefined;
  const total = secs * 1_000_000_000n + BigInt((m[3] ?? "").padEnd(9, "0"));
  return m[1] === "-" ? -total : total;
}

const join = (path: string, name: string) => (path === "" ? name : `${path}.${name}`);
const keyPath = (path: string, key: string) =>
  /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? join(path, key) : `${path}[${JSON.stringify(key)}]`;
const quoteList = (names: readonly string[]) => names.map((n) => `\`${n}\``).join(", ");

function rulesOf(f: DescField): FieldRules {
  return getOption(f, fieldExt);
}

function isSet(r: ReflectMessage, f: DescField): boolean {
  if (f.fieldKind === "list") return r.get(f).size > 0;
  if (f.fieldKind === "map") return r.get(f).size > 0;
  return r.isSet(f);
}

function dottedIsSet(r: ReflectMessage, name: string): boolean {
  const [head, ...rest] = name.split(".");
  const f = r.fields.find((x: DescField) => x.name === head);
  if (!f || !isSet(r, f)) return false;
  if (rest.length === 0) return true;
  if (f.fieldKind !== "message") return false;
  return dottedIsSet(r.get(f), rest.join("."));
}

function durationNanos(d: Duration): bigint {
  return d.seconds * 1_000_000_000n + BigInt(d.nanos);
}

interface Reference {
  collection: string;
  id: string;
  path: string;
}

class Walk {
  out: RuleViolation[] = [];
  refs: Reference[] = [];
  ids = new Map<string, Set<string>>();

  report(path: string, rule: string, message: string) {
    this.out.push({ path, rule, message });
  }

  message(r: ReflectMessage, path: string) {
    const reported = new Set<string>();
    for (const f of r.fields) {
      const rules = rulesOf(f);
      const fpath = join(path, f.name);
      const before = this.out.length;
      if (isSet(r, f)) this.field(r, f, rules, fpath);
      if (this.out.length > before) {
        reported.add(f.name);
        continue;
      }
      if (f.fieldKind === "list" && (rules.minItems ?? 0) > 0 && !isSet(r, f)) {
        this.report(fpath, "min_items", `missing \`${f.name}\`: needs at least ${rules.minItems} items`);
        continue;
      }
      if (rules.required && !isSet(r, f)) {
        this.report(fpath, "required", `missing required field \`${f.name}\``);
      }
    }
    for (const o of r.desc.oneofs) {
      if (getOption(o, oneofExt).required && r.oneofCase(o) === undefined) {
        this.report(path, "oneof_required", `exactly one of ${quoteList(o.fields.map((f: DescField) => f.name))} is required`);
      }
    }
    const anyReported = (names: string[]) => names.some((n) => reported.has(n.split(".")[0] ?? n));
    const headPath = (name: string) => join(path, name.split(".")[0] ?? name);
    const rules = getOption(r.desc, messageExt);
    for (const g of rules.oneOf) {
      if (anyReported(g.fields)) continue;
      const chosen = g.fields.filter((n) => dottedIsSet(r, n));
      if (chosen.length > 1) {
        this.report(headPath(chosen[1] ?? ""), "one_of", `only one of ${quoteList(g.fields)} may be set`);
      } else if (chosen.length === 0 && g.required) {
        this.report(path, "one_of", `exactly one of ${quoteList(g.fields)} is required`);
      }
    }
    for (const g of rules.anyOf) {
      if (anyReported(g.fields) || g.fields.some((n) => dottedIsSet(r, n))) continue;
      this.report(path, "any_of", `at least one of ${quoteList(g.fields)} must be set`);
    }
    for (const g of rules.requires) {
      const [first, ...others] = g.fields;
      if (first === undefined || !dottedIsSet(r, first)) continue;
      for (const o of others) {
        if (!dottedIsSet(r, o)) this.report(headPath(o), "requires", `\`${o}\` is required when \`${first}\` is set`);
      }
    }
    for (const w of rules.requiredWhen) {
      const f = r.fields.find((x: DescField) => x.name === w.when);
      if (!f || !r.isSet(f)) continue;
      let value = "";
      if (f.fieldKind === "enum") value = f.enum.values.find((v: DescEnumValue) => v.number === r.get(f))?.name ?? "";
      else if (f.fieldKind === "scalar" && f.scalar === ScalarType.STRING) value = String(r.get(f));
      if (w.equals.includes(value) && !dottedIsSet(r, w.field)) {
        this.report(headPath(w.field), "required_when", `\`${w.field}\` is required when \`${w.when}\` is ${value}`);
      }
    }
    for (const c of rules.compare) {
      const l = comparable(r, c.lhs);
      const rv = comparable(r, c.rhs);
      if (l === undefined || rv === undefined) continue;
      const [ok, sym] =
        c.op === Compare_Op.LT
          ? [l < rv, "<"]
          : c.op === Compare_Op.LTE
            ? [l <= rv, "<="]
            : c.op === Compare_Op.GT
              ? [l > rv, ">"]
              : c.op === Compare_Op.GTE
                ? [l >= rv, ">="]
                : [true, ""];
      if (!ok) this.report(headPath(c.lhs), "compare", `\`${c.lhs}\` must be ${sym} \`${c.rhs}\``);
    }
  }

  field(r: ReflectMessage, f: DescField, rules: FieldRules, path: string) {
    switch (f.fieldKind) {
      case "list": {
        const list = r.get(f);
        const items = [...list] as unknown[];
        this.listRules(f, rules, items, path);
        items.forEach((item, i) => this.value(f, rules.items, item, `${path}[${i}]`));
        break;
      }
      case "map": {
        const entries = [...r.get(f)] as [unknown, unknown][];
        entries.sort((a, b) => (String(a[0]) < String(b[0]) ? -1 : 1));
        for (const [k, v] of entries) {
          const kp = keyPath(path, String(k));
          if (rules.keys && typeof k === "string") this.str(rules.keys, k, kp);
          this.value(f, rules.values, v, kp);
        }
        break;
      }
      default:
        this.value(f, rules, r.get(f), path);
    }
  }

  listRules(f: DescField & { fieldKind: "list" }, rules: FieldRules, items: unknown[], path: string) {
    const n = items.length;
    if (rules.minItems !== undefined && n < rules.minItems) {
      this.report(path, "min_items", `needs at least ${rules.minItems} items, has ${n}`);
    }
    if (rules.maxItems !== undefined && n > rules.maxItems) {
      this.report(path, "max_items", `allows at most ${rules.maxItems} items, has ${n}`);
    }
    if (rules.unique) {
      const seen = new Map<string, number>();
      items.forEach((item, i) => {
        const key = String(item);
        const first = seen.get(key);
        if (first !== undefined) this.report(`${path}[${i}]`, "unique", `duplicate value ${key}, already at [${first}]`);
        else seen.set(key, i);
      });
    }
    const key = rules.uniqueBy;
    if (key !== undefined && key !== "" && f.listKind === "message") {
      const kf = f.message.fields.find((x) => x.name === key);
      if (!kf) return;
      const keyRequired = rulesOf(kf).required;
      const seen = new Map<string, number>();
      items.forEach((item, i) => {
        const id = String((item as ReflectMessage).get(kf));
        const ip = `${path}[${i}].${key}`;
        const first = seen.get(id);
        if (id === "" && keyRequired) return;
        if (id === "") {
          this.report(ip, "required", `missing required field \`${key}\` (every item of \`${f.name}\` needs a unique ${key})`);
        } else if (first !== undefined) {
          this.report(ip, "unique_by", `duplicate ${key} \`${id}\`, already used by ${f.name}[${first}]`);
        } else {
          seen.set(id, i);
        }
      });
      if (!/[.[]/.test(path)) this.ids.set(f.name, new Set(seen.keys()));
    }
  }

  value(f: DescField, rules: FieldRules | undefined, v: unknown, path: string) {
    const kind = f.fieldKind === "list" ? f.listKind : f.fieldKind === "map" ? f.mapKind : f.fieldKind;
    if (kind === "message") {
      const rm = v as ReflectMessage;
      switch (rm.desc.typeName) {
        case "google.protobuf.Duration": {
          const n = durationNanos(rm.message as Duration);
          const min = rules?.durationGte !== undefined ? parseDuration(rules.durationGte) : undefined;
          const max = rules?.durationLte !== undefined ? parseDuration(rules.durationLte) : undefined;
          if (min !== undefined && n < min) this.report(path, "duration_gte", `must be at least ${rules?.durationGte}`);
          if (max !== undefined && n > max) this.report(path, "duration_lte", `must be at most ${rules?.durationLte}`);
          return;
        }
        case "google.protobuf.Timestamp":
          return;
        default:
          this.message(rm, path);
          return;
      }
    }
    if (kind === "enum") {
      const e = f.enum;
      if (v === 0) this.report(path, "enum", "the unset value; leave the field out to get the default");
      else if (e && !e.values.some((x) => x.number === v)) this.report(path, "enum", `unknown value ${String(v)}`);
      return;
    }
    if (rules === undefined) return;
    if (typeof v === "string") {
      if (f.scalar === ScalarType.STRING) this.str(rules, v, path);
      return;
    }
    if (typeof v === "number" || typeof v === "bigint") {
      if (rules.intIn.length > 0 && !rules.intIn.some((a) => BigInt(a) === BigInt(v))) {
        this.report(path, "int_in", `${v} is not allowed; allowed: ${rules.intIn.join(", ")}`);
      }
      const x = Number(v);
      if (rules.gte !== undefined && !(x >= rules.gte)) this.report(path, "gte", `must be >= ${rules.gte}, is ${x}`);
      if (rules.lte !== undefined && !(x <= rules.lte)) this.report(path, "lte", `must be <= ${rules.lte}, is ${x}`);
      if (rules.gt !== undefined && !(x > rules.gt)) this.report(path, "gt", `must be > ${rules.gt}, is ${x}`);
      if (rules.lt !== undefined && !(x < rules.lt)) this.report(path, "lt", `must be < ${rules.lt}, is ${x}`);
    }
  }

  str(rules: FieldRules, s: string, path: string) {
    const shown = rules.secret ? "the secret" : `\`${s}\``;
    const n = [...s].length;
    if (rules.minLen !== undefined && n < rules.minLen) {
      this.report(path, "min_len", `must be at least ${rules.minLen} characters long, is ${n}`);
    }
    if (rules.maxLen !== undefined && n > rules.maxLen) {
      this.report(path, "max_len", `must be at most ${rules.maxLen} characters long, is ${n}`);
    }
    if (rules.pattern !== undefined && !compiled(rules.pattern).test(s)) {
      this.report(path, "pattern", `${shown} does not match the pattern ${rules.pattern}`);
    }
    if (rules.in.length > 0 && !rules.in.includes(s)) {
      this.report(path, "in", `${shown} is not allowed; allowed: ${rules.in.join(", ")}`);
    }
    if (rules.format !== Format.FORMAT_UNSPECIFIED && !matchesFormat(rules.format, s)) {
      this.report(path, "format", `${shown} is not a valid ${Format[rules.format]}`);
    }
    if (rules.ref !== undefined && rules.ref !== "" && s !== "") {
      this.refs.push({ collection: rules.ref, id: s, path });
    }
  }
}

function comparable(r: ReflectMessage, name: string): number | bigint | undefined {
  const f = r.fields.find((x: DescField) => x.name === name);
  if (!f || !r.isSet(f)) return undefined;
  if (f.fieldKind === "scalar") {
    const v = r.get(f);
    return typeof v === "number" || typeof v === "bigint" ? Number(v) : undefined;
  }
  if (f.fieldKind === "message" && f.message.typeName === "google.protobuf.Duration") {
    return Number(durationNanos(r.get(f).message as Duration));
  }
  return undefined;
}

/** Every violation of `msg`, ordered by path. References are resolved when it holds the collections. */
export function check(schema: DescMessage, msg: Message): RuleViolation[] {
  const w = new Walk();
  const root = reflect(schema, msg);
  w.message(root, "");
  for (const r of w.refs) {
    if (!schema.fields.some((f) => f.name === r.collection)) continue;
    if (!w.ids.get(r.collection)?.has(r.id)) {
      w.report(r.path, "ref", `${r.collection.replace(/s$/, "")} \`${r.id}\` does not exist in \`${r.collection}\``);
    }
  }
  return w.out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/**
 * Every key of a proto-JSON document that is not a proto field name of its
 * message, with its full path (the config files use proto names only), and
 * every duration string fromJson would read too leniently.
 */
export function unknownFields(schema: DescMessage, json: JsonValue): RuleViolation[] {
  const out: RuleViolation[] = [];
  const visit = (v: JsonValue, md: DescMessage, path: string) => {
    if (v === null || typeof v !== "object" || Array.isArray(v)) return;
    if (md.typeName.startsWith("google.protobuf.")) return;
    for (const k of Object.keys(v).sort()) {
      const f = md.fields.find((x) => x.name === k);
      const item = v[k] as JsonValue;
      if (!f) {
        const json = md.fields.find((x) => x.jsonName === k);
        const hint = json ? `; did you mean \`${json.name}\`?` : "";
        out.push({ path: keyPath(path, k), rule: "unknown_field", message: `unknown field \`${k}\`${hint}` });
        continue;
      }
      const fp = join(path, k);
      // fromJson reads "30sec" as 30s (its pattern is not anchored at the end).
      if (f.fieldKind === "message" && f.message.typeName === "google.protobuf.Duration" && typeof item === "string") {
        if (!/^-?[0-9]+(\.[0-9]{1,9})?s$/.test(item)) {
          out.push({ path: fp, rule: "duration", message: `\`${item}\` is not a duration such as "1.5s"` });
        }
      } else if (f.fieldKind === "message") visit(item, f.message, fp);
      else if (f.fieldKind === "list" && f.listKind === "message" && Array.isArray(item)) {
        item.forEach((x, i) => visit(x, f.message, `${fp}[${i}]`));
      } else if (f.fieldKind === "map" && f.mapKind === "message" && item && typeof item === "object" && !Array.isArray(item)) {
        for (const [mk, mv] of Object.entries(item)) visit(mv as JsonValue, f.message, keyPath(fp, mk));
      }
    }
  };
  visit(json, schema, "");
  return out;
}

const registry = createRegistry(file_pingora_config_v1_admin, file_pingora_config_v1_bootstrap);

/**
 * Names a fromJson failure with the rule the gateway reports for the same
 * mistake (`oneof`, `enum`, `duration`, `duration_range`, `type`).
 * fromJson stops at the first error and gives the field, not its path:
 * `path` holds the field's proto name.
 */
export function decodeViolation(err: unknown): RuleViolation {
  const message = err instanceof Error ? err.message : String(err);
  const oneof = /oneof set multiple times by (\w+) and (\w+)/.exec(message);
  if (oneof) return { path: oneof[2] ?? "", rule: "oneof", message };
  if (message.includes("google.protobuf.Duration")) {
    const value = /from JSON: "(.*)"$/.exec(message)?.[1];
    if (value === undefined) return { path: "", rule: "type", message };
    const rule = /^-?[0-9]+(\.[0-9]{1,9})?s$/.test(value) ? "duration_range" : "duration";
    return { path: "", rule, message };
  }
  if (/^cannot decode enum /.test(message)) return { path: "", rule: "enum", message };
  const field = /cannot decode field ([\w.]+) from JSON/.exec(message)?.[1];
  if (field) {
    const i = field.lastIndexOf(".");
    const md = registry.getMessage(field.slice(0, i));
    const f = md?.fields.find((x) => x.name === field.slice(i + 1));
    const isEnum = f?.fieldKind === "enum" || (f?.fieldKind === "list" && f.listKind === "enum");
    return { path: field.slice(i + 1), rule: isEnum ? "enum" : "type", message };
  }
  return { path: "", rule: "type", message };
}

/** Decodes a proto-JSON document into a message of `schema` and checks it. */
export function validateJson<Desc extends DescMessage>(schema: Desc, json: JsonValue): RuleViolation[] {
  const unknown = unknownFields(schema, json);
  if (unknown.length > 0) return unknown;
  let msg: Message;
  try {
    msg = fromJson(schema, json);
  } catch (err) {
    return [decodeViolation(err)];
  }
  return check(schema, msg);
}
