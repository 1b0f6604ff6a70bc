{{ header -}}
//
// The facade of the management API: one typed helper per RPC of the
// management services (generated from their descriptors), a pager per
// paginated listing, and a watch that reconnects with backoff. Build it on
// any Connect transport; `dial` in `@pingora-config/client/node` (gRPC) and
// `@pingora-config/client/web` (gRPC-web) make one with the API key.

import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { Code, ConnectError, createClient, type CallOptions, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
{%- for (module, names) in imports %}
import { {{ names|join(", ") }} } from "{{ module }}";
{%- endfor %}

/** Bounds of the delay between two connection attempts of `watch`, in ms. */
export interface Backoff {
  initialMs: number;
  maxMs: number;
}

/** The backoff of `watch` unless the client options say otherwise. */
export const DEFAULT_BACKOFF: Backoff = { initialMs: 100, maxMs: 10_000 };

/** Options of a {@link PingoraConfigClient}. */
export interface ClientOptions {
  /** Reconnection backoff of `watch`. */
  watchBackoff?: Backoff;
}

/**
 * Sends `authorization: Bearer <key>` on every call, the metadata the admin
 * listener expects when API keys are configured (`Bootstrap.admin.api_keys`).
 */
export function apiKeyInterceptor(key: string): Interceptor {
  return (next) => async (req) => {
    req.header.set("authorization", `Bearer ${key}`);
    return next(req);
  };
}

/**
 * Whether `err` is the ABORTED status of a write whose expected revision is
 * stale: the resource (or, for `apply`, the config) changed since it was
 * read. Read it again, reapply the change and retry.
 */
export function isConflict(err: unknown): boolean {
  return ConnectError.from(err).code === Code.Aborted;
}

/** One field violation of a `google.rpc.BadRequest` error detail. */
export interface FieldViolation {
  /** Path of the offending field in the stored config, e.g. `routes[3].uris[0]`. */
  field: string;
  /** Why it is rejected. */
  description: string;
}

/**
 * The `google.rpc.BadRequest` field violations that a rejected write carries
 * (INVALID_ARGUMENT for a rule of the schema, FAILED_PRECONDITION for a
 * reference to nothing): one per offending field. Empty when `err` carries
 * none.
 */
export function fieldViolations(err: unknown): FieldViolation[] {
  const out: FieldViolation[] = [];
  for (const d of ConnectError.from(err).details) {
    if (!("type" in d) || d.type !== "google.rpc.BadRequest" || !(d.value instanceof Uint8Array)) {
      continue;
    }
    // BadRequest { repeated FieldViolation field_violations = 1; }
    // FieldViolation { string field = 1; string description = 2; }
    const br = new BinaryReader(d.value);
    while (br.pos < br.len) {
      const [no, wt] = br.tag();
      if (no !== 1 || wt !== WireType.LengthDelimited) {
        br.skip(wt);
        continue;
      }
      const fv = new BinaryReader(br.bytes());
      const v: FieldViolation = { field: "", description: "" };
      while (fv.pos < fv.len) {
        const [n, w] = fv.tag();
        if (n === 1 && w === WireType.LengthDelimited) {
          v.field = fv.string();
        } else if (n === 2 && w === WireType.LengthDelimited) {
          v.description = fv.string();
        } else {
          fv.skip(w);
        }
      }
      out.push(v);
    }
  }
  return out;
}

/** Thrown by `watch` after it yielded a `resyncRequired` event. */
export class ResyncRequiredError extends Error {
  constructor() {
    super("watch: resync required: list again and watch from its revision + 1");
    this.name = "ResyncRequiredError";
  }
}

/** Statuses of a broken watch stream that a retry cannot fix. */
const PERMANENT = new Set<Code>([
  Code.Unauthenticated,
  Code.PermissionDenied,
  Code.InvalidArgument,
  Code.Unimplemented,
  Code.FailedPrecondition,
  Code.NotFound,
  Code.OutOfRange,
  Code.AlreadyExists,
]);

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** The client of one gateway's admin listener. */
export class PingoraConfigClient {
{%- for s in services %}
  /** The Connect-ES client of `pingora_config.v1.{{ s.name }}`. */
  readonly {{ s.ts_field }}: Client<typeof {{ s.name }}>;
{%- endfor %}
  private readonly backoff: Backoff;

  constructor(transport: Transport, options: ClientOptions = {}) {
{%- for s in services %}
    this.{{ s.ts_field }} = createClient({{ s.name }}, transport);
{%- endfor %}
    this.backoff = options.watchBackoff ?? DEFAULT_BACKOFF;
  }
{%- for s in services %}
{%- for m in s.methods %}
{%- if !m.server_streaming %}

  /**
   * Calls `{{ s.name }}.{{ m.rpc }}`.
{%- for l in m.comment %}
   * {{ l }}
{%- endfor %}
   */
  {{ m.ts_helper }}({{ m.ts_params() }}options?: CallOptions): Promise<{{ m.output.ts }}> {
    return this.{{ s.ts_field }}.{{ m.ts_rpc }}({{ m.ts_request() }}, options);
  }
{%- endif %}
{%- if let Some(p) = m.pager %}

  /**
   * Calls `{{ m.rpc }}` page by page: every item, and the store revision the
   * listing was read at (watch from `revision + 1n` to follow the changes
   * made after it).
   */
  async {{ p.ts_name }}({{ p.ts_params() }}options?: CallOptions): Promise<{ items: {{ p.item.ts }}[]; revision: bigint }> {
    const items: {{ p.item.ts }}[] = [];
    let pageToken = "";
    for (;;) {
      const page = await this.{{ s.ts_field }}.{{ m.ts_rpc }}({ {{ p.ts_fields() }}pageToken }, options);
      items.push(...page.items);
      if (page.nextPageToken === "") {
        return { items, revision: page.revision };
      }
      pageToken = page.nextPageToken;
    }
  }
{%- endif %}
{%- if m.watch %}

  /**
   * Calls `{{ s.name }}.{{ m.rpc }}` and yields each event until
   * `options.signal` aborts, the consumer stops, or the stream fails with a
   * status a retry cannot fix (UNAUTHENTICATED, PERMISSION_DENIED, ...).
   * When the stream breaks it reconnects with backoff and resumes at the
   * revision of the last resource event yielded: one write of several
   * resources shares a revision, so it asks for that revision again and
   * drops the events already yielded (by id). When the gateway restarted
   * and holds every revision after that last one but no longer that one (the
   * file store keeps its history in memory), it resumes at the next revision
   * instead: nothing written since is lost, but events of that last revision
   * that had not arrived when the stream broke cannot be replayed (a write's
   * events are sent together). After any other `resyncRequired` event it
   * throws {@link ResyncRequiredError}: list again and watch from the
   * listing's `revision + 1n`.
{%- for l in m.comment %}
   * {{ l }}
{%- endfor %}
   */
  async *{{ m.ts_helper }}(
    req: MessageInitShape<typeof {{ m.input.ts }}Schema> = {},
    options?: CallOptions,
  ): AsyncGenerator<{{ m.output.ts }}, void, undefined> {
    const next = create({{ m.input.ts }}Schema, req);
    let backoff = this.backoff.initialMs;
    let last = 0n;
    const seen = new Set<string>();
    for (;;) {
      try {
        let resume = false;
        for await (const ev of this.{{ s.ts_field }}.{{ m.ts_rpc }}(next, options)) {
          backoff = this.backoff.initialMs;
          if (ev.payload.case === "resyncRequired" && last > 0n && ev.payload.value.oldestRevision === last + 1n) {
            next.startRevision = last + 1n;
            resume = true;
            break;
          }
          if (ev.payload.case === "resource") {
            if (ev.revision === last && seen.has(ev.id)) {
              continue;
            }
            if (ev.revision !== last) {
              last = ev.revision;
              seen.clear();
            }
            seen.add(ev.id);
            next.startRevision = last;
          }
          yield ev;
          if (ev.payload.case === "resyncRequired") {
            throw new ResyncRequiredError();
          }
        }
        if (resume) {
          continue;
        }
      } catch (err) {
        if (err instanceof ResyncRequiredError || options?.signal?.aborted) {
          throw err;
        }
        if (PERMANENT.has(ConnectError.from(err).code)) {
          throw err;
        }
      }
      await sleep(backoff / 2 + Math.random() * (backoff / 2), options?.signal);
      backoff = Math.min(backoff * 2, this.backoff.maxMs);
    }
  }
{%- endif %}
{%- endfor %}
{%- endfor %}
}
