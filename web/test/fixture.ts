// A small schema in the shape `make gen` writes, with one field of every
// kind, so the generator's tests do not depend on how the real config looks.
import type { SchemaMeta } from "../src/form/schema";

export const fixture: SchemaMeta = {
  root: "test.Thing",
  messages: {
    "test.Thing": {
      name: "Thing",
      comment: "A thing.",
      fields: [
        { name: "id", jsonName: "id", number: 1, label: "single", kind: "scalar", scalar: "string", comment: "Unique id of the thing.", rules: { required: true, format: "ID" } },
        { name: "port", jsonName: "port", number: 2, label: "single", kind: "scalar", scalar: "uint32", comment: "TCP port, 1-65535.", rules: { gte: 1, lte: 65535 } },
        { name: "secret_key", jsonName: "secretKey", number: 3, label: "single", kind: "scalar", scalar: "string", comment: "The key. Secret.", rules: { secret: true } },
        { name: "enabled", jsonName: "enabled", number: 4, label: "optional", kind: "scalar", scalar: "bool", comment: "Whether it runs. Default true.", default: "true", rules: {} },
        { name: "verbose", jsonName: "verbose", number: 5, label: "single", kind: "scalar", scalar: "bool", comment: "Log more.", rules: {} },
        { name: "mode", jsonName: "mode", number: 6, label: "single", kind: "enum", enum: "test.Mode", comment: "How it works.", rules: {} },
        { name: "timeout", jsonName: "timeout", number: 7, label: "optional", kind: "duration", comment: "How long to wait. Default 5s.", default: "5s", rules: { duration_lte: "60s" } },
        { name: "inner", jsonName: "inner", number: 8, label: "optional", kind: "message", message: "test.Inner", comment: "Nested settings.", rules: {} },
        { name: "tags", jsonName: "tags", number: 9, label: "repeated", kind: "scalar", scalar: "string", comment: "Free tags.", rules: { unique: true } },
        { name: "nodes", jsonName: "nodes", number: 10, label: "repeated", kind: "message", message: "test.Inner", comment: "Nodes.", rules: { min_items: 1 } },
        { name: "labels", jsonName: "labels", number: 11, label: "map", mapKey: "string", kind: "scalar", scalar: "string", comment: "Labels for selection.", rules: {} },
        { name: "upstream_id", jsonName: "upstreamId", number: 12, label: "optional", kind: "scalar", scalar: "string", oneof: "target", comment: "Id of an upstream.", rules: { ref: "upstreams" } },
        { name: "inline", jsonName: "inline", number: 13, label: "optional", kind: "message", message: "test.Inner", oneof: "target", comment: "An inline target.", rules: {} },
      ],
      oneofs: [{ name: "target", fields: ["upstream_id", "inline"], required: true, comment: "Where requests go." }],
    },
    "test.Inner": {
      name: "Inner",
      comment: "Inner settings.",
      fields: [
        { name: "host", jsonName: "host", number: 1, label: "single", kind: "scalar", scalar: "string", comment: "Host name or IP.", rules: { required: true } },
        { name: "weight", jsonName: "weight", number: 2, label: "optional", kind: "scalar", scalar: "uint32", comment: "Relative weight. Default 1.", default: "1", rules: {} },
      ],
      oneofs: [],
    },
  },
  enums: {
    "test.Mode": {
      comment: "Modes.",
      values: [
        { name: "MODE_UNSPECIFIED", number: 0, comment: "" },
        { name: "FAST", number: 1, comment: "Skips the checks." },
        { name: "SAFE", number: 2, comment: "Checks everything." },
      ],
    },
  },
};
