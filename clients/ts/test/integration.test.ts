// The facade against the real gateway, over gRPC-web (`src/web.ts`, fetch)
// and gRPC (`src/node.ts`, HTTP/2): one gateway process for this file,
// started before the tests and killed after them, each test with its own
// resource ids. See test/gateway.ts for where the binary is looked for.
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { after, before, describe, test } from "node:test";

import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";

import {
  Event_Kind,
  ResourceChange_Type,
  ResourceEvent_Type,
  Resource_Kind,
  RouteSchema,
  UpstreamSchema,
  fieldViolations,
  isConflict,
  type Event,
  type PingoraConfigClient,
} from "../src/index.js";
import { dial as dialNode } from "../src/node.js";
import { dial as dialWeb } from "../src/web.js";
import { EDITOR_KEY, Gateway, VIEWER_KEY } from "./gateway.js";

let gw: Gateway;
let origin: Server;
let originPort = 0;

before(async () => {
  gw = await Gateway.start();
  origin = createServer((req, res) => {
    res.setHeader("x-upstream", "origin");
    res.end(`origin ${req.url}`);
  });
  await new Promise<void>((ok) => origin.listen(0, "127.0.0.1", ok));
  const addr = origin.address();
  originPort = typeof addr === "object" && addr ? addr.port : 0;
});

after(async () => {
  origin?.close();
  await gw?.stop();
});

let seq = 0;
/** An id no other test of this run uses. */
const uid = (prefix: string) => `${prefix}-${process.pid}-${++seq}`;

const upstream = (id: string) => fromJson(UpstreamSchema, { id, nodes: [{ host: "127.0.0.1", port: originPort }] });
const route = (id: string, uri: string, upstreamId: string, extra: Record<string, JsonValue> = {}) =>
  fromJson(RouteSchema, { id, uris: [uri], upstream_id: upstreamId, ...extra });

async function rejects(p: Promise<unknown>, code: Code, what: string): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    const e = ConnectError.from(err);
    assert.equal(e.code, code, `${what}: ${e.message}`);
    return e;
  }
  assert.fail(`${what}: no error, want ${Code[code]}`);
}

/** Collects the events of a watch until `stop`. */
function collect(c: PingoraConfigClient, req: Parameters<PingoraConfigClient["watch"]>[0]) {
  const abort = new AbortController();
  const seen: Event[] = [];
  let wake: () => void = () => {};
  let ended: unknown;
  const done = (async () => {
    try {
      for await (const ev of c.watch(req, { signal: abort.signal })) {
        seen.push(ev);
        wake();
      }
    } catch (err) {
      ended = err;
      wake();
    }
  })();
  return {
    /** The first event (from the start) that `match` accepts. */
    async next(what: string, match: (ev: Event) => boolean, timeoutMs = 10_000): Promise<Event> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = seen.find(match);
        if (found) return found;
        if (ended !== undefined && !abort.signal.aborted) assert.fail(`watch ended (${String(ended)}) before ${what}`);
        const left = deadline - Date.now();
        if (left <= 0) assert.fail(`no event: ${what}`);
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, Math.min(left, 200));
        });
      }
    },
    async stop(): Promise<void> {
      abort.abort();
      await done;
    },
  };
}

async function fetchUntil(path: string, status: number): Promise<Response> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const resp = await fetch(gw.url(path));
    if (resp.status === status) return resp;
    if (Date.now() > deadline) assert.fail(`GET ${path}: ${resp.status}, want ${status}: ${await resp.text()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const transports: [string, typeof dialWeb][] = [
  ["grpc-web", dialWeb],
  ["grpc", dialNode],
];

for (const [name, dial] of transports) {
  describe(`over ${name}`, () => {
    const editor = () => dial(gw.adminUrl, { apiKey: EDITOR_KEY });
    const viewer = () => dial(gw.adminUrl, { apiKey: VIEWER_KEY });

    test("CRUD of upstreams and routes, served by the data plane", async () => {
      const c = editor();
      const up = uid("up");
      const created = await c.createUpstream(upstream(up));
      assert.equal(created.upstream?.id, up);
      const rev = created.meta?.revision ?? 0n;
      assert.ok(rev > 0n && created.meta?.createRevision === rev);
      await rejects(c.createUpstream(upstream(up)), Code.AlreadyExists, "create again");

      const id = uid("route");
      const path = `/${id}`;
      const r = await c.createRoute(route(id, path, up));
      const resp = await fetchUntil(path, 200);
      assert.equal(await resp.text(), `origin ${path}`);
      assert.equal((await c.getRoute(id)).route?.uris[0], path);
      const listed = await c.listRoutes(1, "", []);
      assert.equal(listed.items.length, 1);
      const all = await c.listAllRoutes();
      assert.ok(all.items.some((e) => e.route?.id === id), JSON.stringify(all.items.map((e) => e.route?.id)));

      const changed = route(id, path, up, { labels: { team: "a" } });
      const updated = await c.updateRoute(changed, r.meta?.revision ?? 0n);
      assert.ok((updated.meta?.revision ?? 0n) > (r.meta?.revision ?? 0n));
      const byLabel = await c.listAllRoutes([{ key: "team", value: "a" }]);
      assert.deepEqual(
        byLabel.items.map((e) => e.route?.id),
        [id],
      );
      await c.deleteRoute(id, updated.meta?.revision ?? 0n);
      await rejects(c.getRoute(id), Code.NotFound, "get after delete");
      await fetchUntil(path, 404);
      const u = await c.getUpstream(up);
      await c.deleteUpstream(up, u.meta?.revision ?? 0n);
    });

    test("a stale revision is a conflict", async () => {
      const [alice, bob] = [editor(), editor()];
      const id = uid("contended");
      const e = await alice.createUpstream(upstream(id));
      const read = e.meta?.revision ?? 0n;
      await bob.updateUpstream({ ...upstream(id), description: "bob" }, read);
      const err = await rejects(alice.updateUpstream({ ...upstream(id), description: "alice" }, read), Code.Aborted, "stale update");
      assert.ok(isConflict(err));
      const cur = await alice.getUpstream(id);
      assert.equal(cur.upstream?.description, "bob");
      await alice.updateUpstream({ ...upstream(id), description: "alice" }, cur.meta?.revision ?? 0n);
      await rejects(alice.deleteUpstream(id, read), Code.Aborted, "stale delete");

      const exported = await alice.export();
      const stale = await rejects(alice.apply(exported.config ?? {}, exported.revision - 1n, false), Code.Aborted, "stale apply");
      assert.ok(isConflict(stale));
      assert.ok(!isConflict(new Error("plain")));
    });

    test("apply: a dry run shows the diff, then it applies", async () => {
      const c = editor();
      const exported = await c.export();
      const config = exported.config;
      assert.ok(config);
      const [up, id] = [uid("applied"), uid("applied-route")];
      config.upstreams.push(upstream(up));
      config.routes.push(route(id, `/${id}`, up));
      const dry = await c.apply(config, exported.revision, true);
      assert.equal(dry.revision, exported.revision);
      assert.deepEqual(
        dry.diff?.changes.map((ch) => [ch.kind, ch.id, ch.type]),
        [
          [Resource_Kind.ROUTE, id, ResourceChange_Type.ADDED],
          [Resource_Kind.UPSTREAM, up, ResourceChange_Type.ADDED],
        ],
      );
      await fetchUntil(`/${id}`, 404);
      const applied = await c.apply(config, exported.revision, false);
      assert.equal(applied.revision, exported.revision + 1n);
      await fetchUntil(`/${id}`, 200);
    });

    test("rejected writes carry field violations; a viewer cannot write", async () => {
      const c = editor();
      const up = uid("up");
      await c.createUpstream(upstream(up));
      const bad = await rejects(c.createRoute(route(uid("bad"), "no-slash", up)), Code.InvalidArgument, "invalid uri");
      const v = fieldViolations(bad);
      assert.equal(v.length, 1, JSON.stringify(v));
      assert.match(v[0]?.field ?? "", /^routes\[\d+\]\.uris\[0\]$/);
      assert.ok(v[0]?.description);
      const dangling = await rejects(c.createRoute(route(uid("dangling"), "/x", "missing")), Code.FailedPrecondition, "dangling");
      assert.match(fieldViolations(dangling)[0]?.field ?? "", /\.upstream_id$/);
      assert.deepEqual(fieldViolations(new Error("plain")), []);

      const report = await c.validate({ routes: [route("x", "/x", "nothing")] });
      assert.equal(report.valid, false);
      assert.equal(report.violations[0]?.path, "routes[0].upstream_id");

      await rejects(viewer().createUpstream(upstream(uid("viewer"))), Code.PermissionDenied, "a viewer writes");
      await rejects(dial(gw.adminUrl, { apiKey: "not-a-key-of-this-gateway" }).export(), Code.Unauthenticated, "a wrong key");
    });

    test("watch resumes across a gateway restart", async () => {
      // A gateway of its own: this test restarts it.
      const own = await Gateway.start();
      try {
        const watchBackoff = { initialMs: 20, maxMs: 200 };
        const writer = dial(own.adminUrl, { apiKey: EDITOR_KEY });
        const watcher = dial(own.adminUrl, { apiKey: VIEWER_KEY, watchBackoff });
        const before = await writer.createUpstream(upstream("before"));
        const events = collect(watcher, { startRevision: before.meta?.revision ?? 0n });
        try {
          await events.next("the replayed creation", (e) => e.payload.case === "resource" && e.payload.value.id === "before");
          // The file store's history is in memory: after the restart the
          // gateway holds only the revisions after `before`; watch resumes there.
          await own.restart();
          const after = await writer.createUpstream(upstream("after"));
          const ev = await events.next("the creation after the restart", (e) => e.payload.case === "resource" && e.payload.value.id === "after");
          assert.equal(ev.revision, after.meta?.revision);
        } finally {
          await events.stop();
        }
      } finally {
        await own.stop();
      }
    });

    test("watch (server streaming) sees another client's writes and resumes from a revision", async () => {
      const [writer, watcher] = [editor(), viewer()];
      const { revision } = await watcher.listAllUpstreams();
      const live = collect(watcher, { startRevision: revision + 1n, kinds: [Event_Kind.RESOURCE] });
      try {
        const id = uid("watched");
        const created = await writer.createUpstream(upstream(id));
        const ev = await live.next("the creation", (e) => e.payload.case === "resource" && e.payload.value.id === id);
        assert.equal(ev.revision, created.meta?.revision);
        assert.ok(ev.payload.case === "resource");
        assert.equal(ev.payload.value.kind, Resource_Kind.UPSTREAM);
        assert.equal(ev.payload.value.type, ResourceEvent_Type.PUT);
        assert.equal(ev.payload.value.newValue?.value.case, "upstream");
        await writer.deleteUpstream(id, created.meta?.revision ?? 0n);
        await live.next(
          "the deletion",
          (e) => e.payload.case === "resource" && e.payload.value.id === id && e.payload.value.type === ResourceEvent_Type.DELETE,
        );

        const replay = collect(watcher, { startRevision: created.meta?.revision ?? 0n, resourceKinds: [Resource_Kind.UPSTREAM] });
        try {
          const first = await replay.next("the replayed creation", () => true);
          assert.equal(first.revision, created.meta?.revision);
          assert.ok(first.payload.case === "resource" && first.payload.value.id === id);
          await replay.next("the replayed deletion", (e) => e.payload.case === "resource" && e.payload.value.type === ResourceEvent_Type.DELETE);
        } finally {
          await replay.stop();
        }
      } finally {
        await live.stop();
      }
    });
  });
}
