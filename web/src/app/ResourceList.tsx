// The resources of one kind: a text search over ids and content, a label
// filter sent to the server (`label_selector`: `team=payments,tier`), and
// a reload whenever the event feed reports a change.
import { useEffect, useMemo, useState } from "react";

import { describe, listAll, type Entry, type Kind } from "./api";
import { useApp } from "./context";

/** `team=payments, tier` -> [{key: team, value: payments}, {key: tier, value: ""}]. */
export function parseSelector(s: string): { key: string; value: string }[] {
  return s
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean)
    .map((p) => {
      const [key = "", ...rest] = p.split("=");
      return { key: key.trim(), value: rest.join("=").trim() };
    });
}

export function ResourceList({ kind }: { kind: Kind }) {
  const { client, role, changes } = useApp();
  const [items, setItems] = useState<Entry[]>([]);
  const [error, setError] = useState("");
  const [loading, setLoading] = useState(true);
  const [search, setSearch] = useState("");
  const [labels, setLabels] = useState("");
  const [selector, setSelector] = useState("");

  useEffect(() => {
    let live = true;
    setLoading(true);
    listAll(client, kind, parseSelector(selector))
      .then((r) => {
        if (!live) return;
        setItems(r.items);
        setError("");
      })
      .catch((err) => live && setError(describe(err)))
      .finally(() => live && setLoading(false));
    return () => {
      live = false;
    };
  }, [client, kind, selector, changes]);

  const shown = useMemo(() => {
    const q = search.trim().toLowerCase();
    if (!q) return items;
    return items.filter((e) => JSON.stringify(e.value).toLowerCase().includes(q));
  }, [items, search]);

  return (
    <section>
      <div className="page-head">
        <h1>{kind.title}</h1>
        {role === "editor" && (
          <a className="button" href={`#/${kind.collection}/new`}>
            New {kind.title.replace(/s$/, "").toLowerCase()}
          </a>
        )}
      </div>
      <form
        className="filters"
        role="search"
        onSubmit={(e) => {
          e.preventDefault();
          setSelector(labels);
        }}
      >
        <div className="field">
          <label htmlFor="search">Search</label>
          <input id="search" type="search" value={search} onChange={(e) => setSearch(e.target.value)} placeholder={`${kind.idField} or any value`} />
        </div>
        <div className="field">
          <label htmlFor="labels">Labels</label>
          <input id="labels" value={labels} onChange={(e) => setLabels(e.target.value)} placeholder="team=payments, tier" />
        </div>
        <button type="submit" className="secondary">
          Filter
        </button>
      </form>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {loading && items.length === 0 ? (
        <p aria-live="polite">Loading…</p>
      ) : shown.length === 0 ? (
        <p>No {kind.title.toLowerCase()}.</p>
      ) : (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">{kind.idField}</th>
                <th scope="col">Name</th>
                <th scope="col">Labels</th>
                <th scope="col">Revision</th>
              </tr>
            </thead>
            <tbody>
              {shown.map((e) => {
                const id = String(e.value[kind.idField] ?? "");
                const l = e.value.labels && typeof e.value.labels === "object" ? Object.entries(e.value.labels) : [];
                return (
                  <tr key={id}>
                    <td>
                      <a href={`#/${kind.collection}/${encodeURIComponent(id)}`}>{id}</a>
                    </td>
                    <td>{String(e.value.name ?? e.value.description ?? "")}</td>
                    <td>
                      {l.map(([k, v]) => (
                        <span key={k} className="tag">
                          {k}={String(v)}
                        </span>
                      ))}
                    </td>
                    <td>{e.meta?.revision.toString()}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
