// Browser tests of the admin UI against a real gateway process.
//
// Starts the gateway binary (GATEWAY_BIN, built by `make test-web`) with a
// file store and an admin listener with an EDITOR and a VIEWER key that
// serves web/dist at /ui/ (as `make run` does), and a plain HTTP upstream.
// Then drives Debian's Chromium (installed with apt-get when
// /usr/bin/chromium is missing) with playwright-core, which downloads no
// browser of its own. Screenshots go to web/test-artifacts/.
//
//   GATEWAY_BIN=/path/to/gateway node e2e/run.mjs
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

const web = dirname(dirname(fileURLToPath(import.meta.url)));
const dist = join(web, "dist");
const artifacts = join(web, "test-artifacts");
const CHROMIUM = "/usr/bin/chromium";
const EDITOR_KEY = "editor-key-0123456789abcdef";
const VIEWER_KEY = "viewer-key-0123456789abcdef";

// ---------------------------------------------------------------- setup

function ensureChromium() {
  if (existsSync(CHROMIUM)) return;
  console.log("e2e: installing chromium with apt-get");
  execFileSync("apt-get", ["update"], { stdio: "inherit" });
  execFileSync("apt-get", ["install", "-y", "chromium"], { stdio: "inherit", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

async function waitFor(what, fn, ms = 15000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ""}`);
}

function listen(server) {
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server.address().port)));
}

const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml" };

async function startGateway() {
  const bin = process.env.GATEWAY_BIN;
  if (!bin || !existsSync(bin)) throw new Error(`GATEWAY_BIN must name the gateway binary (got ${bin})`);
  const dir = mkdtempSync(join(tmpdir(), "pingora-config-web-e2e-"));
  const port = await freePort();
  const adminPort = await freePort();
  writeFileSync(join(dir, "config.yaml"), "routes: []\n");
  writeFileSync(
    join(dir, "gateway.yaml"),
    [
      "threads: 1",
      "listeners:",
      `  - { name: http, address: "127.0.0.1:${port}" }`,
      "store:",
      "  file: { path: config.yaml, watch_debounce: 0.05s }",
      "shutdown: { graceful_timeout: 1s }",
      "admin:",
      `  address: "127.0.0.1:${adminPort}"`,
      "  api_keys:",
      `    - { name: e2e-editor, key: "${EDITOR_KEY}", role: EDITOR }`,
      `    - { name: e2e-viewer, key: "${VIEWER_KEY}", role: VIEWER }`,
      // The gateway serves the built UI itself, same origin as the API.
      `  ui_dir: "${dist}"`,
      "metrics: { path: /metrics }",
      "",
    ].join("\n"),
  );
  const log = join(dir, "gateway.log");
  const child = spawn(bin, ["run", "--bootstrap", join(dir, "gateway.yaml"), "--pid-file", join(dir, "gw.pid"), "--upgrade-sock", join(dir, "upgrade.sock")], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn" },
  });
  const out = [];
  child.stdout.on("data", (d) => out.push(d));
  child.stderr.on("data", (d) => out.push(d));
  child.on("exit", () => writeFileSync(log, Buffer.concat(out)));
  const gw = { child, dir, port, adminPort, admin: `http://127.0.0.1:${adminPort}`, output: () => Buffer.concat(out).toString() };
  await waitFor("the admin listener", () => fetch(`${gw.admin}/metrics`).then((r) => r.ok));
  return gw;
}

// ---------------------------------------------------------------- steps

const results = [];
async function step(name, fn) {
  const t = Date.now();
  try {
    await fn();
    results.push({ name, ok: true });
    console.log(`ok   ${name} (${Date.now() - t} ms)`);
  } catch (err) {
    results.push({ name, ok: false, err });
    console.log(`FAIL ${name}\n     ${String(err?.stack ?? err).split("\n").slice(0, 6).join("\n     ")}`);
  }
}

function watchConsole(page, label, errors) {
  page.on("console", (m) => m.type() === "error" && errors.push(`${label}: console: ${m.text()}`));
  page.on("pageerror", (e) => errors.push(`${label}: page error: ${e.message}`));
}

async function signIn(page, ui, admin, key) {
  await page.goto(`${ui}/ui/`);
  await page.getByLabel("API key").fill(key);
  await page.getByText("Admin API address").click();
  await page.getByLabel("Admin listener URL").fill(admin);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByTestId("role").waitFor();
}

const field = (page, path) => page.locator(`[data-path="${path}"]`);
const input = (page, path) => page.locator(`#f-${path.replace(/[^A-Za-z0-9_]+/g, "-").replace(/-+$/, "")}`);

async function main() {
  if (!existsSync(join(dist, "index.html"))) throw new Error("web/dist is missing: run npm run build first");
  ensureChromium();
  rmSync(artifacts, { recursive: true, force: true });
  mkdirSync(artifacts, { recursive: true });

  const upstream = http.createServer((req, res) => res.writeHead(200, { "content-type": "text/plain" }).end(`hello from the e2e upstream: ${req.url}\n`));
  const upstreamPort = await listen(upstream);
  const gw = await startGateway();
  const uiOrigin = gw.admin;
  const launched = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
  // Fail a step in 10 s rather than Playwright's 30.
  const browser = {
    newContext: async (opts) => {
      const c = await launched.newContext(opts);
      c.setDefaultTimeout(10000);
      return c;
    },
    close: () => launched.close(),
  };
  const consoleErrors = [];
  const shot = (page, name) => page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });

  try {
    const ctxA = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    const a = await ctxA.newPage();
    watchConsole(a, "editor A", consoleErrors);

    await step("an editor signs in with an API key and sees the dashboard", async () => {
      await signIn(a, uiOrigin, gw.admin, EDITOR_KEY);
      await a.getByTestId("role").filter({ hasText: "editor" }).waitFor();
      await a.getByRole("heading", { name: "Dashboard" }).waitFor();
      await a.getByText("connected", { exact: true }).waitFor();
      const stored = await a.evaluate(() => [sessionStorage.length, localStorage.length]);
      if (stored[0] !== 1 || stored[1] !== 0) throw new Error(`key storage: sessionStorage ${stored[0]}, localStorage ${stored[1]}`);
      await shot(a, "dashboard");
    });

    await step("a rule broken in the upstream form shows on its field (client side, the gateway's message)", async () => {
      await a.goto(`${uiOrigin}/ui/#/upstreams/new`);
      await input(a, "id").fill("e2e-up");
      await a.getByRole("button", { name: "Add nodes" }).click();
      await input(a, "nodes[0].host").fill("127.0.0.1");
      await input(a, "nodes[0].port").fill("70000");
      await a.getByRole("button", { name: "Create upstream" }).click();
      const alert = field(a, "nodes[0].port").getByRole("alert");
      await alert.waitFor();
      const text = await alert.textContent();
      if (!text.includes("must be <= 65535") || !text.includes("[lte]")) throw new Error(`alert: ${text}`);
      await shot(a, "upstream-form-invalid");
    });

    await step("an upstream is reviewed as a diff against the live config (dry run), then created through the form", async () => {
      await input(a, "nodes[0].port").fill(String(upstreamPort));
      await a.getByRole("button", { name: "Review changes" }).click();
      const change = a.getByLabel("Changes").locator(".change.added");
      await change.getByText("e2e-up").waitFor();
      await shot(a, "upstream-review");
      await a.getByRole("button", { name: "Create upstream" }).click();
      await a.waitForURL(/#\/upstreams\/e2e-up$/);
      await a.getByRole("heading", { name: "Upstream e2e-up" }).waitFor();
      await shot(a, "upstream-detail");
    });

    await step("a reference the gateway rejects shows on the route's field (server side)", async () => {
      await a.goto(`${uiOrigin}/ui/#/routes/new`);
      await input(a, "id").fill("e2e-route");
      await a.getByRole("button", { name: "Add uris" }).click();
      await a.getByLabel("Uris 1", { exact: true }).fill("/e2e/*");
      await a.getByRole("group", { name: /Target/ }).getByLabel("Choose one").selectOption("upstream_id");
      await input(a, "upstream_id").fill("no-such-upstream");
      await a.getByRole("button", { name: "Create route" }).click();
      const alert = field(a, "upstream_id").getByRole("alert");
      await alert.waitFor();
      const text = await alert.textContent();
      if (!text.includes("no-such-upstream") || !text.includes("[ref]")) throw new Error(`alert: ${text}`);
      await shot(a, "route-form-server-violation");
    });

    await step("a route to the upstream, counted by the prometheus plugin, is created; a plain HTTP request through the gateway reaches the upstream and shows on the dashboard", async () => {
      await input(a, "upstream_id").fill("e2e-up");
      // An empty plugin message turns the plugin on: the form sets presence.
      await a.getByRole("button", { name: "Set plugins" }).click();
      await field(a, "plugins").getByRole("button", { name: "Set prometheus" }).click();
      await a.getByRole("button", { name: "Create route" }).click();
      await a.waitForURL(/#\/routes\/e2e-route$/);
      const body = await waitFor("the route to serve", async () => {
        const r = await fetch(`http://127.0.0.1:${gw.port}/e2e/hello`);
        const t = await r.text();
        return r.status === 200 && t.includes("e2e upstream") ? t : undefined;
      });
      if (!body.includes("/e2e/hello")) throw new Error(`body: ${body}`);
      await a.goto(`${uiOrigin}/ui/#/`);
      await a.getByRole("row").filter({ hasText: "e2e-route" }).waitFor();
    });

    const ctxB = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    const b = await ctxB.newPage();
    watchConsole(b, "editor B", consoleErrors);
    await signIn(b, uiOrigin, gw.admin, EDITOR_KEY);

    await step("saving over a change made meanwhile by another client shows the conflict; overwrite is explicit", async () => {
      await a.goto(`${uiOrigin}/ui/#/upstreams/e2e-up`);
      await a.getByRole("button", { name: "Edit" }).click();
      await input(a, "description").fill("mine");

      await b.goto(`${uiOrigin}/ui/#/upstreams/e2e-up`);
      await b.getByRole("button", { name: "Edit" }).click();
      await input(b, "description").fill("theirs");
      await b.getByRole("button", { name: "Save changes" }).click();
      await b.getByText(/Saved at revision/).waitFor();

      await a.getByRole("button", { name: "Save changes" }).click();
      await a.getByText("Conflict:").waitFor();
      await a.getByText(/it is now at\s+revision/).waitFor();
      await shot(a, "conflict");
      await a.getByRole("button", { name: "Overwrite with mine" }).click();
      await a.getByText(/Saved at revision/).waitFor();
      await b.reload();
      await b.getByRole("heading", { name: "Upstream e2e-up" }).waitFor();
      const desc = await input(b, "description").inputValue();
      if (desc !== "mine") throw new Error(`description after overwrite: ${desc}`);
    });

    await step("the event feed shows a change made by another client", async () => {
      await a.goto(`${uiOrigin}/ui/#/events`);
      await b.goto(`${uiOrigin}/ui/#/upstreams/new`);
      await input(b, "id").fill("e2e-other");
      await b.getByRole("button", { name: "Add nodes" }).click();
      await input(b, "nodes[0].host").fill("127.0.0.1");
      await input(b, "nodes[0].port").fill("9");
      await b.getByRole("button", { name: "Create upstream" }).click();
      await b.waitForURL(/#\/upstreams\/e2e-other$/);
      const ev = a.getByRole("listitem").filter({ hasText: "upstream e2e-other created" });
      await ev.waitFor();
      await ev.getByText("Values").click();
      await ev.getByText("port: 9").waitFor();
      await shot(a, "events");
    });

    await step("deleting a referenced upstream lists who refers to it", async () => {
      await a.goto(`${uiOrigin}/ui/#/upstreams/e2e-up`);
      await a.getByRole("button", { name: "Delete" }).click();
      await a.getByRole("button", { name: "Delete upstream" }).click();
      const banner = a.locator(".error-banner");
      await banner.waitFor();
      await banner.getByRole("listitem").filter({ hasText: "route `e2e-route`" }).waitFor();
      await shot(a, "delete-referenced");
    });

    await step("the list filters by search and by label", async () => {
      await a.goto(`${uiOrigin}/ui/#/upstreams`);
      await a.getByRole("link", { name: "e2e-other" }).waitFor();
      await a.getByLabel("Search").fill("mine");
      await a.getByRole("link", { name: "e2e-other" }).waitFor({ state: "detached" });
      await a.getByRole("link", { name: "e2e-up" }).waitFor();
      await a.getByLabel("Search").fill("");
      await a.getByLabel("Labels").fill("team=none");
      await a.getByRole("button", { name: "Filter" }).click();
      await a.getByText("No upstreams.").waitFor();
      await shot(a, "upstreams-list");
    });

    await step("the whole config as YAML: an edit is reviewed as a diff (dry run), then applied", async () => {
      await a.goto(`${uiOrigin}/ui/#/config`);
      const area = a.getByLabel(/The whole config/);
      await a.waitForFunction(() => document.querySelector("#config-yaml")?.value.includes("e2e-route"));
      const text = await area.inputValue();
      await area.fill(text.replace("/e2e/*", "/e2e2/*"));
      await a.getByRole("button", { name: "Review changes (dry run)" }).click();
      const diff = a.getByLabel("Changes");
      await diff.getByText("e2e-route").waitFor();
      await diff.getByText(/"\/e2e2\/\*"/).waitFor();
      await shot(a, "config-diff");
      await a.getByRole("button", { name: /^Apply 1 change/ }).click();
      await a.getByText(/^Applied: revision/).waitFor();
      await waitFor("the new uri to serve", async () => (await fetch(`http://127.0.0.1:${gw.port}/e2e2/x`)).status === 200);
    });

    await step("a viewer sees no edit buttons and a read-only form", async () => {
      const ctxV = await browser.newContext({ viewport: { width: 1280, height: 860 } });
      const v = await ctxV.newPage();
      watchConsole(v, "viewer", consoleErrors);
      await signIn(v, uiOrigin, gw.admin, VIEWER_KEY);
      await v.getByTestId("role").filter({ hasText: "viewer" }).waitFor();
      await v.goto(`${uiOrigin}/ui/#/upstreams`);
      await v.getByRole("link", { name: "e2e-up" }).waitFor();
      if ((await v.getByRole("link", { name: /New upstream/ }).count()) !== 0) throw new Error("viewer sees New upstream");
      await v.getByRole("link", { name: "e2e-up" }).click();
      await v.getByRole("heading", { name: "Upstream e2e-up" }).waitFor();
      for (const name of ["Edit", "Delete"]) {
        if ((await v.getByRole("button", { name }).count()) !== 0) throw new Error(`viewer sees ${name}`);
      }
      if (!(await input(v, "id").isDisabled())) throw new Error("viewer can type in the form");
      await shot(v, "viewer-upstream");
      await ctxV.close();
    });

    await step("the layout works at phone width, menu behind a button", async () => {
      const ctxP = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true });
      const p = await ctxP.newPage();
      watchConsole(p, "phone", consoleErrors);
      await signIn(p, uiOrigin, gw.admin, EDITOR_KEY);
      await p.getByRole("heading", { name: "Dashboard" }).waitFor();
      if (await p.getByRole("link", { name: "Upstreams" }).isVisible()) throw new Error("nav visible before opening the menu");
      await shot(p, "phone-dashboard");
      await p.getByRole("button", { name: "Menu" }).click();
      await p.getByRole("link", { name: "Upstreams" }).click();
      await p.getByRole("link", { name: "e2e-up" }).waitFor();
      const overflow = await p.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
      if (overflow) throw new Error("the page scrolls sideways at phone width");
      await p.getByRole("link", { name: "e2e-up" }).click();
      await p.getByRole("heading", { name: "Upstream e2e-up" }).waitFor();
      await shot(p, "phone-upstream");
      await ctxP.close();
    });

    await step("keyboard only: sign in, then add a node and read the problems list, which takes the focus", async () => {
      const ctxK = await browser.newContext({ viewport: { width: 1280, height: 860 } });
      const k = await ctxK.newPage();
      watchConsole(k, "keyboard", consoleErrors);
      await k.goto(`${uiOrigin}/ui/`);
      const press = async (key, times = 1) => {
        for (let i = 0; i < times; i++) await k.keyboard.press(key);
      };
      const focused = () => k.evaluate(() => document.activeElement?.id || document.activeElement?.textContent?.trim());
      // The page's load event can come before React has rendered the form.
      await k.getByLabel("API key").waitFor();
      await press("Tab");
      if ((await focused()) !== "api-key") throw new Error(`first Tab focuses ${await focused()}`);
      await k.keyboard.type(EDITOR_KEY);
      await press("Tab"); // the "Admin API address" disclosure
      await press("Enter");
      await press("Tab");
      if ((await focused()) !== "base-url") throw new Error(`Tab after opening focuses ${await focused()}`);
      await press("Control+A");
      await k.keyboard.type(gw.admin);
      await press("Enter"); // submits the form
      await k.getByTestId("role").filter({ hasText: "editor" }).waitFor();
      await k.goto(`${uiOrigin}/ui/#/upstreams/new`);
      await k.getByLabel(/^Id/).focus();
      await k.keyboard.type("kb-up");
      await k.getByRole("button", { name: "Add nodes" }).focus();
      await press("Enter"); // the new node's section takes the focus
      if ((await focused()) !== "f-nodes-0") throw new Error(`focus after adding a node: ${await focused()}`);
      await press("Tab"); // its first field: host
      if ((await focused()) !== "f-nodes-0-host") throw new Error(`focus after adding a node: ${await focused()}`);
      await k.keyboard.type("127.0.0.1");
      await k.getByRole("button", { name: "Create upstream" }).focus();
      await press("Enter");
      await k.waitForFunction(() => document.activeElement?.classList.contains("error-summary"));
      await k.getByRole("link", { name: "nodes[0].port" }).focus();
      await press("Enter");
      if ((await focused()) !== "f-nodes-0-port") throw new Error(`the problem's link focuses ${await focused()}`);
      await ctxK.close();
    });

    await step("no console errors on any page", async () => {
      if (consoleErrors.length > 0) throw new Error(consoleErrors.join("\n"));
    });
  } finally {
    await browser.close();
    gw.child.kill("SIGTERM");
    await new Promise((r) => (gw.child.exitCode !== null ? r() : gw.child.on("exit", r)));
    upstream.close();
    if (results.some((r) => !r.ok)) {
      writeFileSync(join(artifacts, "gateway.log"), gw.output());
      console.log(`gateway log: ${join(artifacts, "gateway.log")}`);
    }
    rmSync(gw.dir, { recursive: true, force: true });
  }
  const failed = results.filter((r) => !r.ok);
  console.log(`\n${results.length - failed.length} passed, ${failed.length} failed; screenshots in ${artifacts}`);
  process.exit(failed.length > 0 ? 1 : 0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
