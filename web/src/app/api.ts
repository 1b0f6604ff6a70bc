// The connection to the admin listener: the generated TS client over the
// grpc-web transport (clients/ts `web.ts`), the API key kept in
// sessionStorage only, the caller's role, and one table of the resource
// kinds so that every page works for every kind.
import { toJson, type JsonValue } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { Resource_Kind, type PingoraConfigClient, type ResourceMeta } from "@pingora-config/client";
import { dial } from "@pingora-config/client/web";

import { descriptor } from "../form/validate";
import type { JsonObject } from "../form/values";

export type Role = "viewer" | "editor";

export interface Session {
  baseUrl: string;
  apiKey: string;
}

const STORAGE = "pingora-config.session";

export function loadSession(): Session | undefined {
  try {
    const s = JSON.parse(sessionStorage.getItem(STORAGE) ?? "null") as Session | null;
    return s && typeof s.baseUrl === "string" ? s : undefined;
  } catch {
    return undefined;
  }
}

export function saveSession(s: Session | undefined) {
  if (s) sessionStorage.setItem(STORAGE, JSON.stringify(s));
  else sessionStorage.removeItem(STORAGE);
}

/** The admin listener's address: where this page came from, unless said otherwise. */
export function defaultBaseUrl(): string {
  return window.location.origin;
}

export function connect(s: Session): PingoraConfigClient {
  return dial(s.baseUrl.replace(/\/+$/, ""), s.apiKey ? { apiKey: s.apiKey } : {});
}

/**
 * The caller's role. admin.proto has no "who am I" call, so the UI asks for
 * a write that cannot change anything (deleting the plugin config with the
 * empty id, which no resource can have): a VIEWER key gets
 * PERMISSION_DENIED before the request is read, an EDITOR key gets past the
 * role check and then INVALID_ARGUMENT (the id is checked before the store
 * is touched: no write, no write metric).
 */
export async function probeRole(c: PingoraConfigClient): Promise<Role> {
  try {
    await c.resourceService.deletePluginConfig({ id: "", expectedRevision: 0n });
    return "editor";
  } catch (err) {
    const code = ConnectError.from(err).code;
    if (code === Code.PermissionDenied) return "viewer";
    if (code === Code.Unauthenticated) throw err;
    return "editor";
  }
}

export interface Entry {
  value: JsonObject;
  meta: ResourceMeta | undefined;
}

/** One kind of resource, as the management API serves it. */
export interface Kind {
  /** The `Config` field, also the URL segment: `upstreams`. */
  collection: string;
  /** `upstream`; also the field of `<Kind>Entry` (in JSON). */
  singular: string;
  title: string;
  /** Full name of the message. */
  type: string;
  /** The key field: `id`, or `username` for consumers. */
  idField: string;
  resourceKind: Resource_Kind;
  /** The facade's method names: Upstream, Upstreams. */
  method: string;
  methodPlural: string;
}

export const KINDS: Kind[] = [
  { collection: "routes", singular: "route", title: "Routes", type: "pingora_config.v1.Route", idField: "id", resourceKind: Resource_Kind.ROUTE, method: "Route", methodPlural: "Routes" },
  { collection: "services", singular: "service", title: "Services", type: "pingora_config.v1.Service", idField: "id", resourceKind: Resource_Kind.SERVICE, method: "Service", methodPlural: "Services" },
  { collection: "upstreams", singular: "upstream", title: "Upstreams", type: "pingora_config.v1.Upstream", idField: "id", resourceKind: Resource_Kind.UPSTREAM, method: "Upstream", methodPlural: "Upstreams" },
  { collection: "consumers", singular: "consumer", title: "Consumers", type: "pingora_config.v1.Consumer", idField: "username", resourceKind: Resource_Kind.CONSUMER, method: "Consumer", methodPlural: "Consumers" },
  { collection: "ssls", singular: "ssl", title: "SSL certificates", type: "pingora_config.v1.Ssl", idField: "id", resourceKind: Resource_Kind.SSL, method: "Ssl", methodPlural: "Ssls" },
  { collection: "global_rules", singular: "globalRule", title: "Global rules", type: "pingora_config.v1.GlobalRule", idField: "id", resourceKind: Resource_Kind.GLOBAL_RULE, method: "GlobalRule", methodPlural: "GlobalRules" },
  { collection: "plugin_configs", singular: "pluginConfig", title: "Plugin configs", type: "pingora_config.v1.PluginConfig", idField: "id", resourceKind: Resource_Kind.PLUGIN_CONFIG, method: "PluginConfig", methodPlural: "PluginConfigs" },
];

export function kindOf(collection: string): Kind | undefined {
  return KINDS.find((k) => k.collection === collection);
}

/** A resource message as the form and YAML edit it: proto-JSON with proto field names. */
export function asJson(type: string, msg: unknown): JsonObject {
  if (!msg) return {};
  return toJson(descriptor(type), msg as any, { useProtoFieldName: true }) as JsonObject;
}

// The facade has one method per kind and verb; the kind table names them.
type Loose = Record<string, (...args: any[]) => Promise<any>>;

function entryOf(k: Kind, e: Record<string, unknown>): Entry {
  return { value: asJson(k.type, e[k.singular]), meta: e.meta as ResourceMeta | undefined };
}

export async function listAll(c: PingoraConfigClient, k: Kind, labels: { key: string; value: string }[]) {
  const r = await (c as unknown as Loose)[`listAll${k.methodPlural}`]!(labels);
  return { items: (r.items as Record<string, unknown>[]).map((e) => entryOf(k, e)), revision: r.revision as bigint };
}

export async function getOne(c: PingoraConfigClient, k: Kind, id: string): Promise<Entry> {
  return entryOf(k, await (c as unknown as Loose)[`get${k.method}`]!(id));
}

export async function createOne(c: PingoraConfigClient, k: Kind, msg: unknown): Promise<Entry> {
  return entryOf(k, await (c as unknown as Loose)[`create${k.method}`]!(msg));
}

export async function updateOne(c: PingoraConfigClient, k: Kind, msg: unknown, rev: bigint): Promise<Entry> {
  return entryOf(k, await (c as unknown as Loose)[`update${k.method}`]!(msg, rev));
}

export async function deleteOne(c: PingoraConfigClient, k: Kind, id: string, rev: bigint): Promise<void> {
  await (c as unknown as Loose)[`delete${k.method}`]!(id, rev);
}

/** A short, human line for an error of any call. */
export function describe(err: unknown): string {
  const e = ConnectError.from(err);
  return `${Code[e.code] ?? e.code}: ${e.rawMessage}`;
}

export function codeOf(err: unknown): Code {
  return ConnectError.from(err).code;
}

export function jsonValue(v: JsonObject): JsonValue {
  return v as JsonValue;
}
