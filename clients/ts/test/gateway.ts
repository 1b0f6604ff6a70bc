// Starts the real gateway binary for the integration tests: a temporary
// bootstrap and config (file store), the data plane and the admin listener
// on free loopback ports. The binary is $GATEWAY_BIN, or else debug/gateway
// under $CARGO_TARGET_DIR (relative to the repository root when relative),
// or else <repo>/target/debug/gateway; `make test-ts` builds it first.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, closeSync } from "node:fs";
import { createServer, connect } from "node:net";
import { tmpdir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";

export const EDITOR_KEY = "editor-key-0123456789abcdef";
export const VIEWER_KEY = "viewer-key-0123456789abcdef";

const repoRoot = resolve(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "..", "..", "..");

/** The gateway binary to run (see the module doc). */
export function gatewayBinary(): string {
  const fromEnv = process.env.GATEWAY_BIN;
  if (fromEnv) {
    if (!existsSync(fromEnv)) throw new Error(`GATEWAY_BIN=${fromEnv}: no such file`);
    return resolve(fromEnv);
  }
  let target = process.env.CARGO_TARGET_DIR || join(repoRoot, "target");
  if (!isAbsolute(target)) target = join(repoRoot, target);
  const bin = join(target, "debug", "gateway");
  if (!existsSync(bin)) {
    throw new Error(
      `${bin}: no such file: build it with \`cargo build -p pingora-config-gateway --bin gateway\` (make test-ts does), or set GATEWAY_BIN`,
    );
  }
  return bin;
}

/** A TCP port free on 127.0.0.1 at the time of the call. */
export function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.once("error", fail);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === "object" && addr ? ok(addr.port) : fail(new Error("no port"))));
    });
  });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((ok) => {
    const s = connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      ok(true);
    });
    s.once("error", () => ok(false));
  });
}

/** One running gateway process. */
export class Gateway {
  private child: ChildProcess | undefined;
  private exited = true;

  private constructor(
    private readonly bin: string,
    /** Holds gateway.yaml, config.yaml and gateway.log. */
    readonly dir: string,
    /** The data plane listener's port. */
    readonly httpPort: number,
    /** The admin listener's port (gRPC, grpc-web). */
    readonly adminPort: number,
  ) {}

  /** The admin listener's base URL, `http://127.0.0.1:<port>`. */
  get adminUrl(): string {
    return `http://127.0.0.1:${this.adminPort}`;
  }

  /** The data plane's URL of `path`. */
  url(path: string): string {
    return `http://127.0.0.1:${this.httpPort}${path}`;
  }

  /** What the gateway wrote to stdout and stderr so far. */
  log(): string {
    try {
      return readFileSync(join(this.dir, "gateway.log"), "utf8");
    } catch {
      return "";
    }
  }

  /** Runs the gateway and resolves once both listeners accept connections. */
  static async start(config = ""): Promise<Gateway> {
    const bin = gatewayBinary();
    const dir = mkdtempSync(join(tmpdir(), "pingora-config-gateway-"));
    const [httpPort, adminPort] = [await freePort(), await freePort()];
    const configPath = join(dir, "config.yaml");
    writeFileSync(configPath, config);
    writeFileSync(
      join(dir, "gateway.yaml"),
      `threads: 2
listeners:
  - { name: http, address: "127.0.0.1:${httpPort}" }
store:
  file: { path: ${JSON.stringify(configPath)}, watch_debounce: 0.05s }
shutdown: { graceful_timeout: 1s }
admin:
  address: "127.0.0.1:${adminPort}"
  api_keys:
    - { name: editor, key: ${EDITOR_KEY}, role: EDITOR }
    - { name: viewer, key: ${VIEWER_KEY}, role: VIEWER }
`,
    );
    const gw = new Gateway(bin, dir, httpPort, adminPort);
    try {
      await gw.spawn();
    } catch (err) {
      await gw.stop();
      throw err;
    }
    return gw;
  }

  private async spawn(): Promise<void> {
    const log = openSync(join(this.dir, "gateway.log"), "a");
    const child = spawn(
      this.bin,
      ["run", "--bootstrap", join(this.dir, "gateway.yaml"), "--pid-file", join(this.dir, "gateway.pid"), "--upgrade-sock", join(this.dir, "upgrade.sock")],
      { cwd: this.dir, stdio: ["ignore", log, log], env: { ...process.env, RUST_LOG: "info" } },
    );
    closeSync(log);
    this.child = child;
    this.exited = false;
    // Killed with this process too, however it ends.
    const kill = () => child.kill("SIGKILL");
    process.once("exit", kill);
    child.once("exit", () => {
      this.exited = true;
      process.removeListener("exit", kill);
    });
    const deadline = Date.now() + 30_000;
    for (const port of [this.adminPort, this.httpPort]) {
      while (!(await accepts(port))) {
        if (this.exited || Date.now() > deadline) {
          const why = this.exited ? "exited" : "did not listen within 30s";
          throw new Error(`the gateway ${why} (port ${port}):\n${this.log()}`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  private async kill(): Promise<void> {
    const child = this.child;
    if (child && !this.exited) {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGKILL");
      await exited;
    }
  }

  /** Kills the gateway (as a crash would) and starts it again on the same directory, files and ports. */
  async restart(): Promise<void> {
    await this.kill();
    await this.spawn();
  }

  /** Kills the gateway (SIGKILL), waits for it and removes its directory. */
  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
