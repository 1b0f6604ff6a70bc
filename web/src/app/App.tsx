// The admin UI: sign in, then a navigation bar and the page of the current
// hash route (#/, #/upstreams, #/upstreams/new, #/upstreams/<id>,
// #/config, #/events). Hash routes, so the built files work under any path.
import { useEffect, useState } from "react";
import type { PingoraConfigClient } from "@pingora-config/client";

import { connect, defaultBaseUrl, KINDS, kindOf, loadSession, probeRole, saveSession, describe, type Role, type Session } from "./api";
import { AppProvider, useApp } from "./context";
import { ConfigPage } from "./ConfigPage";
import { Dashboard } from "./Dashboard";
import { EventsPage } from "./EventsPage";
import { ResourceList } from "./ResourceList";
import { ResourcePage } from "./ResourcePage";

function useHash(): string {
  const [hash, setHash] = useState(() => window.location.hash);
  useEffect(() => {
    const on = () => setHash(window.location.hash);
    window.addEventListener("hashchange", on);
    return () => window.removeEventListener("hashchange", on);
  }, []);
  return hash.replace(/^#\/?/, "");
}

export function App() {
  const [signedIn, setSignedIn] = useState<{ client: PingoraConfigClient; role: Role; session: Session }>();
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);

  const signIn = async (s: Session) => {
    setBusy(true);
    setError("");
    try {
      const client = connect(s);
      await client.status();
      const role = await probeRole(client);
      saveSession(s);
      setSignedIn({ client, role, session: s });
    } catch (err) {
      saveSession(undefined);
      setError(describe(err));
    } finally {
      setBusy(false);
    }
  };

  useEffect(() => {
    const s = loadSession();
    if (s) void signIn(s);
  }, []);

  if (!signedIn) return <SignIn onSubmit={signIn} error={error} busy={busy} />;
  return (
    <AppProvider client={signedIn.client} role={signedIn.role} baseUrl={signedIn.session.baseUrl}>
      <Shell
        onSignOut={() => {
          saveSession(undefined);
          setSignedIn(undefined);
        }}
      />
    </AppProvider>
  );
}

function SignIn({ onSubmit, error, busy }: { onSubmit: (s: Session) => void; error: string; busy: boolean }) {
  const [apiKey, setApiKey] = useState("");
  const [baseUrl, setBaseUrl] = useState(defaultBaseUrl());
  return (
    <main className="signin">
      <h1>pingora-config</h1>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          onSubmit({ baseUrl, apiKey: apiKey.trim() });
        }}
      >
        <div className="field">
          <label htmlFor="api-key">API key</label>
          <input id="api-key" type="password" autoComplete="current-password" value={apiKey} onChange={(e) => setApiKey(e.target.value)} />
          <small className="help">Sent as `authorization: Bearer …` and kept in this tab only (sessionStorage).</small>
        </div>
        <details>
          <summary>Admin API address</summary>
          <div className="field">
            <label htmlFor="base-url">Admin listener URL</label>
            <input id="base-url" type="url" value={baseUrl} onChange={(e) => setBaseUrl(e.target.value)} />
            <small className="help">The gateway's admin listener (grpc-web). Default: the address this page came from.</small>
          </div>
        </details>
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}

function Shell({ onSignOut }: { onSignOut: () => void }) {
  const route = useHash();
  const { role, feed } = useApp();
  const [menu, setMenu] = useState(false);
  const parts = route.split("/").filter(Boolean).map(decodeURIComponent);
  const [head = "", id] = parts;
  const kind = kindOf(head);
  useEffect(() => setMenu(false), [route]);

  let page;
  if (head === "") page = <Dashboard />;
  else if (head === "config") page = <ConfigPage />;
  else if (head === "events") page = <EventsPage />;
  else if (kind && id === undefined) page = <ResourceList kind={kind} />;
  else if (kind && id !== undefined) page = <ResourcePage key={`${kind.collection}/${id}`} kind={kind} id={id === "new" ? undefined : id} />;
  else page = <p>Nothing here. <a href="#/">Dashboard</a></p>;

  const link = (href: string, text: string, active: boolean) => (
    <li key={href}>
      <a href={href} aria-current={active ? "page" : undefined}>
        {text}
      </a>
    </li>
  );
  return (
    <div className="shell">
      <header className="topbar">
        <a className="brand" href="#/">
          pingora-config
        </a>
        <button type="button" className="menu-toggle secondary small" aria-expanded={menu} aria-controls="nav" onClick={() => setMenu(!menu)}>
          Menu
        </button>
        <span className="who">
          <span className={`badge ${role}`} data-testid="role">
            {role}
          </span>
          <span className={`badge feed ${feed === "live" ? "ok" : "bad"}`} title="Event feed">
            events: {feed === "live" ? "live" : feed}
          </span>
          <button type="button" className="secondary small" onClick={onSignOut}>
            Sign out
          </button>
        </span>
      </header>
      <nav id="nav" className={menu ? "open" : ""} aria-label="Main">
        <ul>
          {link("#/", "Dashboard", head === "")}
          {KINDS.map((k) => link(`#/${k.collection}`, k.title, head === k.collection))}
          {link("#/config", "Config (YAML)", head === "config")}
          {link("#/events", "Events", head === "events")}
        </ul>
      </nav>
      <main className="content">{page}</main>
    </div>
  );
}
