// The node at a glance: the config it serves (revision, hash, when), its
// store connection, the health of every upstream node, and request rates
// per route from the Prometheus endpoint of the admin listener when it is
// reachable (GET /metrics, no key needed).
import { useEffect, useRef, useState } from "react";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { StoreStatus_Kind, type ClusterNode, type NodeStatus } from "@pingora-config/client";

import { describe } from "./api";
import { useApp } from "./context";

const POLL_MS = 5000;
const REQUESTS = "pingora_config_http_requests_total";

/** Sums `pingora_config_http_requests_total` by route from a Prometheus text exposition. */
export function requestsByRoute(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${REQUESTS}{`)) continue;
    const route = /route="([^"]*)"/.exec(line)?.[1] ?? "";
    const value = Number(line.slice(line.lastIndexOf(" ") + 1));
    if (!Number.isNaN(value)) out.set(route, (out.get(route) ?? 0) + value);
  }
  return out;
}

function seconds(d: { seconds: bigint } | undefined): string {
  if (!d) return "—";
  const s = Number(d.seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}h ${m}m` : m > 0 ? `${m}m ${s % 60}s` : `${s}s`;
}

export function Dashboard() {
  const { client, baseUrl } = useApp();
  const [status, setStatus] = useState<NodeStatus>();
  const [nodes, setNodes] = useState<ClusterNode[]>([]);
  const [error, setError] = useState("");
  const [rates, setRates] = useState<{ route: string; total: number; rate: number }[]>();
  const [metricsError, setMetricsError] = useState("");
  const last = useRef<{ at: number; totals: Map<string, number> }>(undefined);

  useEffect(() => {
    let live = true;
    const poll = async () => {
      try {
        const [s, n] = await Promise.all([client.status(), client.listNodes()]);
        if (live) {
          setStatus(s);
          setNodes(n.nodes);
          setError("");
        }
      } catch (err) {
        if (live) setError(describe(err));
      }
      try {
        const res = await fetch(`${baseUrl.replace(/\/+$/, "")}/metrics`);
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        const totals = requestsByRoute(await res.text());
        const now = Date.now();
        const prev = last.current;
        last.current = { at: now, totals };
        if (live) {
          setRates(
            [...totals.entries()]
              .map(([route, total]) => ({
                route,
                total,
                rate: prev ? Math.max(0, total - (prev.totals.get(route) ?? 0)) / ((now - prev.at) / 1000) : 0,
              }))
              .sort((a, b) => b.total - a.total),
          );
          setMetricsError("");
        }
      } catch (err) {
        if (live) setMetricsError(err instanceof Error ? err.message : String(err));
      }
    };
    void poll();
    const t = setInterval(() => void poll(), POLL_MS);
    return () => {
      live = false;
      clearInterval(t);
    };
  }, [client, baseUrl]);

  return (
    <section>
      <h1>Dashboard</h1>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {status && (
        <div className="cards">
          <div className="card">
            <h2>Node</h2>
            <dl>
              <dt>Node</dt>
              <dd>{status.nodeId}</dd>
              <dt>Version</dt>
              <dd>{status.version}</dd>
              <dt>Uptime</dt>
              <dd>{seconds(status.uptime)}</dd>
            </dl>
          </div>
          <div className="card">
            <h2>Config</h2>
            <dl>
              <dt>Applied revision</dt>
              <dd data-testid="applied-revision">{status.appliedRevision.toString()}</dd>
              <dt>Config hash</dt>
              <dd className="hash">{status.configHash}</dd>
              <dt>Applied</dt>
              <dd>{status.appliedTime ? timestampDate(status.appliedTime).toLocaleString() : "—"}</dd>
              {status.lastError && (
                <>
                  <dt>Last refused change</dt>
                  <dd className="error">{status.lastError}</dd>
                </>
              )}
            </dl>
          </div>
          <div className="card">
            <h2>Store</h2>
            <dl>
              <dt>Kind</dt>
              <dd>{status.store ? StoreStatus_Kind[status.store.kind] : "—"}</dd>
              <dt>Connected</dt>
              <dd>
                <span className={`badge ${status.store?.connected ? "ok" : "bad"}`}>{status.store?.connected ? "connected" : "disconnected"}</span>
              </dd>
              <dt>Endpoint</dt>
              <dd>{status.store?.endpoint}</dd>
              <dt>Store revision</dt>
              <dd>{status.store?.revision.toString()}</dd>
              {status.store?.lastError && (
                <>
                  <dt>Error</dt>
                  <dd className="error">{status.store.lastError}</dd>
                </>
              )}
            </dl>
          </div>
        </div>
      )}
      {nodes.length > 1 && (
        <>
          <h2>Nodes sharing the store</h2>
          <div className="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">Node</th>
                  <th scope="col">Version</th>
                  <th scope="col">Applied revision</th>
                  <th scope="col">Config hash</th>
                  <th scope="col">Last error</th>
                </tr>
              </thead>
              <tbody>
                {nodes.map((n) => (
                  <tr key={n.nodeId}>
                    <td>{n.nodeId}</td>
                    <td>{n.version}</td>
                    <td>{n.appliedRevision.toString()}</td>
                    <td className="hash">{n.configHash === status?.configHash ? "same as this node" : n.configHash}</td>
                    <td className="error">{n.lastError}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
      <h2>Upstream health</h2>
      {status && status.upstreams.length === 0 && <p>No upstreams.</p>}
      {status && status.upstreams.length > 0 && (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Upstream</th>
                <th scope="col">Node</th>
                <th scope="col">Health</th>
                <th scope="col">Reason</th>
              </tr>
            </thead>
            <tbody>
              {status.upstreams.flatMap((u) =>
                u.nodes.map((n) => (
                  <tr key={`${u.upstreamId}/${n.address}`}>
                    <td>{u.upstreamId}</td>
                    <td>{n.address}</td>
                    <td>
                      <span className={`badge ${n.healthy ? "ok" : "bad"}`}>{n.healthy ? "healthy" : "unhealthy"}</span>
                    </td>
                    <td>{n.reason}</td>
                  </tr>
                )),
              )}
            </tbody>
          </table>
        </div>
      )}
      <h2>Requests</h2>
      {metricsError && <p className="muted">Metrics endpoint not reachable ({metricsError}).</p>}
      {rates && rates.length === 0 && <p className="muted">No requests counted yet (the prometheus plugin counts them).</p>}
      {rates && rates.length > 0 && (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Route</th>
                <th scope="col">Requests</th>
                <th scope="col">Per second</th>
              </tr>
            </thead>
            <tbody>
              {rates.map((r) => (
                <tr key={r.route}>
                  <td>{r.route || "(none)"}</td>
                  <td>{r.total}</td>
                  <td>{r.rate.toFixed(2)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
