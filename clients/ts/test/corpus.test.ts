// The shared corpus (proto/testdata) through the TS validator: valid
// documents pass; each invalid one reports exactly the (path, rule) pairs of
// its `# error:` header, as the gateway's loader does. The limits of the
// decoded-message path are listed in `exceptions` with their reason (the test
// fails if one starts agreeing), never skipped silently; see the Go test
// (clients/go/validate/corpus_test.go), which has the same rule.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import type { DescMessage, JsonValue } from "@bufbuild/protobuf";
import { parseAllDocuments } from "yaml";

import { BootstrapSchema } from "../src/gen/pingora_config/v1/bootstrap_pb.js";
import { ConfigSchema } from "../src/gen/pingora_config/v1/config_pb.js";
import { decodeViolation, unknownFields, check, type RuleViolation } from "../src/validate.js";
import { fromJson } from "@bufbuild/protobuf";

const exceptions: Record<string, string> = {
  "config/invalid/node_port_string.yaml":
    "fromJson accepts a quoted number for a 32-bit integer (proto-JSON allows it); the loader accepts quoted numbers for 64-bit integers only",
  "bootstrap/invalid/threads_string.yaml":
    "fromJson accepts a quoted number for a 32-bit integer (proto-JSON allows it); the loader accepts quoted numbers for 64-bit integers only",
  "config/invalid/plugin_written_as_null.yaml":
    "fromJson reads null as an unset message field; the loader rejects a null message",
  "config/invalid/upstream_scheme_unspecified.yaml":
    "the zero enum value written out decodes to an unset field (no proto3 presence), so the message cannot show it was written",
  "bootstrap/invalid/tls_min_version_unspecified.yaml":
    "the zero enum value written out decodes to an unset field (no proto3 presence), so the message cannot show it was written",
  "config/invalid/several_errors_in_one_document.yaml":
    "fromJson stops at the first decoding error (the lower-case enum name), so the three rule violations after it are not reached",
};

interface Case {
  name: string;
  text: string;
  schema: DescMessage;
  valid: boolean;
  errors: Set<string>;
}

const root = join(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "..", "..", "..", "proto", "testdata");

function corpus(): Case[] {
  const cases: Case[] = [];
  for (const kind of ["config", "bootstrap"]) {
    for (const validity of ["valid", "invalid"]) {
      const dir = join(root, kind, validity);
      for (const file of readdirSync(dir).filter((f) => f.endsWith(".yaml")).sort()) {
        const text = readFileSync(join(dir, file), "utf8");
        const errors = new Set<string>();
        for (const line of text.split("\n")) {
          if (!line.startsWith("#")) break;
          const m = /^# error: (.*) (\S+)\s*$/.exec(line);
          if (m) errors.add(`${m[1]?.trim()} ${m[2]}`);
        }
        cases.push({
          name: `${kind}/${validity}/${file}`,
          text,
          schema: kind === "config" ? ConfigSchema : BootstrapSchema,
          valid: validity === "valid",
          errors,
        });
      }
    }
  }
  return cases;
}

const pairs = (vs: RuleViolation[]) => new Set(vs.map((v) => `${v.path === "" ? "(document)" : v.path} ${v.rule}`));
const sorted = (s: Set<string>) => [...s].sort();
const same = (a: Set<string>, b: Set<string>) => a.size === b.size && [...a].every((x) => b.has(x));
const normal = (name: string) => name.replaceAll("_", "").toLowerCase();

/** "" when the TS validator agrees with the header. */
function outcome(c: Case): string {
  const docs = parseAllDocuments(c.text);
  const list = Array.isArray(docs) ? docs : [docs];
  if (list.length > 1 || list.some((d) => d.errors.length > 0)) {
    return c.errors.size === 1 && c.errors.has("(document) syntax") ? "" : `YAML error, expected ${sorted(c.errors)}`;
  }
  const json = (list[0]?.toJS() ?? {}) as JsonValue;
  const unknown = unknownFields(c.schema, json);
  if (unknown.length > 0) {
    const got = pairs(unknown);
    return same(got, c.errors) ? "" : `expected ${sorted(c.errors)}, got ${sorted(got)}`;
  }
  let msg;
  try {
    msg = fromJson(c.schema, json);
  } catch (err) {
    const v = decodeViolation(err);
    if (c.valid) return `valid document does not decode: ${v.message}`;
    if (c.errors.size !== 1) return `decoding stops at the first error (${v.message} [${v.rule}]), expected ${sorted(c.errors)}`;
    const [want = ""] = c.errors;
    const i = want.lastIndexOf(" ");
    const path = want.slice(0, i);
    const rule = want.slice(i + 1);
    const trimmed = path.replace(/(\[\d+\])+$/, "");
    const last = trimmed.slice(trimmed.lastIndexOf(".") + 1);
    if (rule !== v.rule || (v.path !== "" && normal(last) !== normal(v.path))) {
      return `decode error ${v.message} gives ${v.path} [${v.rule}], expected ${want}`;
    }
    return "";
  }
  const violations = check(c.schema, msg);
  const got = pairs(violations);
  if (c.valid && got.size > 0) return `valid document rejected: ${JSON.stringify(violations)}`;
  if (!c.valid && !same(got, c.errors)) return `expected ${sorted(c.errors)}, got ${sorted(got)}`;
  return "";
}

test("the TS validator agrees with the loader on the shared corpus", () => {
  const cases = corpus();
  assert.ok(cases.length >= 40, `the corpus has ${cases.length} documents`);
  const failures: string[] = [];
  let agree = 0;
  for (const c of cases) {
    const problem = outcome(c);
    const reason = exceptions[c.name];
    if (problem === "" && reason !== undefined) failures.push(`${c.name}: listed as an exception (${reason}) but agrees now`);
    else if (problem === "") agree++;
    else if (reason === undefined) failures.push(`${c.name}: ${problem}`);
  }
  assert.deepEqual(failures, [], `${failures.length} disagreements:\n${failures.join("\n")}`);
  assert.ok(agree >= cases.length - Object.keys(exceptions).length);
});
