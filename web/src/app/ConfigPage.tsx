// The whole config as YAML: export it, edit it, review the diff against the
// live config (ApplyConfig with dry_run), then apply exactly that diff
// (expected_revision = the revision of the review). If the store changed in
// between, the apply gets ABORTED: the page says so and offers to review
// again against the new revision, or to reload the live config.
import { useEffect, useState } from "react";
import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { ConfigSchema, ResourceChange_Type, Resource_Kind, validateJson, type ConfigDiff } from "@pingora-config/client";
import YAML from "yaml";

import { serverViolations } from "../form/validate";
import { asJson, codeOf, describe } from "./api";
import { useApp } from "./context";

export function ConfigPage() {
  const { client, role } = useApp();
  const [text, setText] = useState("");
  const [revision, setRevision] = useState<bigint>(0n);
  const [hash, setHash] = useState("");
  const [problems, setProblems] = useState<string[]>([]);
  const [diff, setDiff] = useState<{ diff: ConfigDiff; revision: bigint }>();
  const [message, setMessage] = useState("");
  const [conflict, setConflict] = useState(false);
  const [busy, setBusy] = useState(false);

  const load = async () => {
    try {
      const r = await client.export();
      setText(YAML.stringify(asJson("pingora_config.v1.Config", r.config)));
      setRevision(r.revision);
      setHash(r.configHash);
      setDiff(undefined);
      setProblems([]);
      setConflict(false);
      setMessage("");
    } catch (err) {
      setMessage(describe(err));
    }
  };
  useEffect(() => {
    void load();
  }, []);

  const parse = () => {
    let json: unknown;
    try {
      json = YAML.parse(text) ?? {};
    } catch (err) {
      setProblems([err instanceof Error ? err.message : String(err)]);
      return undefined;
    }
    const v = validateJson(ConfigSchema, json as JsonValue);
    setProblems(v.map((x) => `${x.path || "(config)"}: ${x.message} [${x.rule}]`));
    return v.length === 0 ? fromJson(ConfigSchema, json as JsonValue) : undefined;
  };

  const review = async () => {
    setMessage("");
    setConflict(false);
    const config = parse();
    if (!config) return;
    setBusy(true);
    try {
      const r = await client.apply(config, revision, true);
      setDiff({ diff: r.diff ?? { changes: [] } as unknown as ConfigDiff, revision: r.revision });
    } catch (err) {
      if (codeOf(err) === Code.Aborted) setConflict(true);
      setProblems(serverViolations(err).map((x) => `${x.path}: ${x.message} [${x.rule}]`));
      setMessage(describe(err));
    } finally {
      setBusy(false);
    }
  };

  const apply = async () => {
    if (!diff) return;
    const config = parse();
    if (!config) return;
    setBusy(true);
    try {
      const r = await client.apply(config, diff.revision, false);
      setMessage(`Applied: revision ${r.revision}, ${r.diff?.changes.length ?? 0} changes.`);
      await load();
      setMessage(`Applied: revision ${r.revision}, ${r.diff?.changes.length ?? 0} changes.`);
    } catch (err) {
      if (codeOf(err) === Code.Aborted) setConflict(true);
      setMessage(describe(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <section>
      <div className="page-head">
        <h1>Config</h1>
        <span className="muted">
          live revision {revision.toString()} · {hash}
        </span>
      </div>
      <div className="field">
        <label htmlFor="config-yaml">The whole config (YAML){role !== "editor" && " — read only: your key may review but not apply"}</label>
        <textarea
          id="config-yaml"
          className="yaml"
          rows={24}
          spellCheck={false}
          value={text}
          onChange={(e) => {
            setText(e.target.value);
            setDiff(undefined);
          }}
        />
      </div>
      {problems.length > 0 && (
        <ul className="problems" role="alert">
          {problems.map((p, i) => (
            <li key={i} className="error">
              {p}
            </li>
          ))}
        </ul>
      )}
      {conflict && (
        <div className="banner conflict" role="alert">
          <p>
            <strong>Conflict:</strong> the config changed since revision {(diff?.revision ?? revision).toString()}. Review again to see the
            diff against the new live config, or reload it (your edits are lost).
          </p>
          <button type="button" className="secondary" onClick={() => void load()}>
            Reload live config
          </button>
        </div>
      )}
      {message && <p role="status">{message}</p>}
      <div className="form-actions">
        <button type="button" onClick={() => void review()} disabled={busy}>
          Review changes (dry run)
        </button>
        {role === "editor" && diff && diff.diff.changes.length > 0 && (
          <button type="button" className="danger" onClick={() => void apply()} disabled={busy}>
            Apply {diff.diff.changes.length} change{diff.diff.changes.length > 1 ? "s" : ""}
          </button>
        )}
        <button type="button" className="secondary" onClick={() => void load()} disabled={busy}>
          Reload
        </button>
      </div>
      {diff && <DiffView diff={diff.diff} />}
    </section>
  );
}

export function DiffView({ diff }: { diff: ConfigDiff }) {
  if (diff.changes.length === 0) return <p className="status">No changes: the config equals the live one.</p>;
  return (
    <div className="diff" aria-label="Changes">
      <h2>Changes against the live config</h2>
      <ul>
        {diff.changes.map((c, i) => (
          <li key={i} className={`change ${ResourceChange_Type[c.type].toLowerCase()}`}>
            <strong>{ResourceChange_Type[c.type]}</strong> {Resource_Kind[c.kind].toLowerCase()} <code>{c.id}</code>
            {c.fields.length > 0 && (
              <table>
                <thead>
                  <tr>
                    <th scope="col">Field</th>
                    <th scope="col">Live</th>
                    <th scope="col">New</th>
                  </tr>
                </thead>
                <tbody>
                  {c.fields.map((f) => (
                    <tr key={f.path}>
                      <td>
                        <code>{f.path}</code>
                      </td>
                      <td className="old">
                        <code>{f.oldValue || "—"}</code>
                      </td>
                      <td className="new">
                        <code>{f.newValue || "—"}</code>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </li>
        ))}
      </ul>
    </div>
  );
}
