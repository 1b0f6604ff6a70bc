// One resource: its detail (the generated form, read only, or its YAML),
// and for an editor: edit (form or YAML), create, delete. Values are checked
// in the browser with the schema's rules before they are sent; what the
// gateway rejects is shown on the field it names. A write over a stale
// revision (ABORTED) shows the conflict and lets the user reload or
// overwrite knowingly; a delete refused because others refer to the
// resource (FAILED_PRECONDITION) lists them.
import { useEffect, useState } from "react";
import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { ConfigSchema, type ConfigDiff } from "@pingora-config/client";
import YAML from "yaml";

import { MessageForm } from "../form/Form";
import { schema } from "../form/schema";
import { referrers, serverViolations, toMessage, validateValue } from "../form/validate";
import { errorMap, isObject, type ErrorMap, type JsonObject } from "../form/values";
import { asJson, codeOf, createOne, deleteOne, describe, getOne, updateOne, type Entry, type Kind } from "./api";
import { DiffView } from "./ConfigPage";
import { useApp } from "./context";

export function ResourcePage({ kind, id }: { kind: Kind; id: string | undefined }) {
  const { client, role } = useApp();
  const creating = id === undefined;
  const [entry, setEntry] = useState<Entry>();
  const [value, setValue] = useState<JsonObject>({});
  const [editing, setEditing] = useState(creating);
  const [tab, setTab] = useState<"form" | "yaml">("form");
  const [yamlText, setYamlText] = useState("");
  const [yamlError, setYamlError] = useState("");
  const [errors, setErrors] = useState<ErrorMap>({});
  const [message, setMessage] = useState("");
  const [conflict, setConflict] = useState<Entry>();
  const [deleting, setDeleting] = useState(false);
  const [deleteError, setDeleteError] = useState<{ text: string; referrers: string[] }>();
  const [busy, setBusy] = useState(false);
  const [notFound, setNotFound] = useState(false);
  const [review, setReview] = useState<ConfigDiff>();

  const load = async () => {
    if (creating) return;
    try {
      const e = await getOne(client, kind, id);
      setEntry(e);
      setValue(e.value);
      setYamlText(YAML.stringify(e.value));
      setErrors({});
      setConflict(undefined);
      setMessage("");
    } catch (err) {
      if (codeOf(err) === Code.NotFound) setNotFound(true);
      else setMessage(describe(err));
    }
  };
  useEffect(() => {
    void load();
  }, [kind, id]);

  const singular = kind.title.replace(/s$/, "").toLowerCase();
  if (notFound) {
    return (
      <section>
        <h1>No {singular} `{id}`</h1>
        <a href={`#/${kind.collection}`}>Back to {kind.title.toLowerCase()}</a>
      </section>
    );
  }

  const changeValue = (v: JsonObject) => {
    setReview(undefined);
    setValue(v);
    setYamlText(YAML.stringify(v));
    // Errors follow the value: re-check what was shown, as the user fixes it.
    if (Object.keys(errors).length > 0) setErrors(validateValue(kind.type, v));
  };

  const changeYaml = (text: string) => {
    setReview(undefined);
    setYamlText(text);
    try {
      const parsed: unknown = YAML.parse(text) ?? {};
      if (!isObject(parsed as JsonObject)) throw new Error(`a ${singular} is a mapping of fields`);
      setValue(parsed as JsonObject);
      setYamlError("");
    } catch (err) {
      setYamlError(err instanceof Error ? err.message : String(err));
    }
  };

  /** After a refused save, the list of problems takes the focus (screen readers read it). */
  const focusProblems = () => setTimeout(() => document.querySelector<HTMLElement>(".error-summary")?.focus(), 0);

  const save = async (overwrite?: Entry) => {
    setMessage("");
    if (yamlError) return;
    const local = validateValue(kind.type, value);
    setErrors(local);
    if (Object.keys(local).length > 0) {
      setMessage("Fix the fields marked below.");
      focusProblems();
      return;
    }
    setBusy(true);
    try {
      const msg = toMessage(kind.type, value);
      const saved = creating
        ? await createOne(client, kind, msg)
        : await updateOne(client, kind, msg, (overwrite ?? entry)?.meta?.revision ?? 0n);
      setConflict(undefined);
      if (creating) {
        window.location.hash = `#/${kind.collection}/${encodeURIComponent(String(saved.value[kind.idField] ?? ""))}`;
        return;
      }
      setEntry(saved);
      setValue(saved.value);
      setYamlText(YAML.stringify(saved.value));
      setEditing(false);
      setMessage(`Saved at revision ${saved.meta?.revision ?? "?"}.`);
    } catch (err) {
      const code = codeOf(err);
      if (code === Code.Aborted && !creating) {
        try {
          setConflict(await getOne(client, kind, id));
        } catch (e2) {
          setMessage(describe(e2));
        }
        setMessage(describe(err));
      } else {
        const v = serverViolations(err, kind.collection);
        setErrors(errorMap(v));
        // The violations say it field by field; the status line says who refused.
        setMessage(v.length > 0 ? `The gateway refused this ${singular} (${Code[codeOf(err)]}): see the fields marked below.` : describe(err));
        if (v.length > 0) focusProblems();
      }
    } finally {
      setBusy(false);
    }
  };

  /**
   * The diff this edit would make to the live config: the exported config
   * with this resource put in its place, through ApplyConfig's dry run (the
   * gateway's diff, field by field; it also shows changes made by others
   * since this page read the resource, as they would be undone).
   */
  const reviewChanges = async () => {
    setMessage("");
    if (yamlError) return;
    const local = validateValue(kind.type, value);
    setErrors(local);
    if (Object.keys(local).length > 0) {
      setMessage("Fix the fields marked below.");
      return;
    }
    setBusy(true);
    try {
      const live = await client.export();
      const config = asJson("pingora_config.v1.Config", live.config);
      const key = creating ? value[kind.idField] : id;
      const list = Array.isArray(config[kind.collection]) ? [...(config[kind.collection] as JsonObject[])] : [];
      const at = list.findIndex((x) => isObject(x) && x[kind.idField] === key);
      if (at >= 0) list[at] = value;
      else list.push(value);
      config[kind.collection] = list;
      const r = await client.apply(fromJson(ConfigSchema, config as JsonValue), live.revision, true);
      setReview(r.diff ?? ({ changes: [] } as unknown as ConfigDiff));
    } catch (err) {
      const v = serverViolations(err, kind.collection);
      setErrors(errorMap(v));
      setMessage(describe(err));
    } finally {
      setBusy(false);
    }
  };

  const remove = async () => {
    if (!entry) return;
    setBusy(true);
    try {
      await deleteOne(client, kind, id ?? "", entry.meta?.revision ?? 0n);
      window.location.hash = `#/${kind.collection}`;
    } catch (err) {
      setDeleteError({ text: describe(err), referrers: referrers(err) });
    } finally {
      setBusy(false);
      setDeleting(false);
    }
  };

  const readOnly = !editing;
  return (
    <section>
      <div className="page-head">
        <h1>{creating ? `New ${singular}` : `${kind.title.replace(/s$/, "")} ${id}`}</h1>
        {!creating && entry && (
          <span className="muted">
            revision {entry.meta?.revision.toString()}
          </span>
        )}
        {role === "editor" && !creating && !editing && entry && (
          <span className="actions">
            <button type="button" onClick={() => setEditing(true)}>
              Edit
            </button>
            <button type="button" className="danger" onClick={() => setDeleting(true)}>
              Delete
            </button>
          </span>
        )}
      </div>

      {deleting && (
        <div className="confirm" role="alertdialog" aria-labelledby="confirm-title">
          <p id="confirm-title">
            Delete {singular} `{id}`? This cannot be undone.
          </p>
          <button type="button" className="danger" onClick={() => void remove()} disabled={busy} autoFocus>
            Delete {singular}
          </button>
          <button type="button" className="secondary" onClick={() => setDeleting(false)}>
            Cancel
          </button>
        </div>
      )}
      {deleteError && (
        <div className="banner error-banner" role="alert">
          <p>Not deleted: {deleteError.text}</p>
          {deleteError.referrers.length > 0 && (
            <>
              <p>Still referred to by:</p>
              <ul className="referrers">
                {deleteError.referrers.map((r) => (
                  <li key={r}>{r}</li>
                ))}
              </ul>
            </>
          )}
        </div>
      )}

      {conflict && (
        <div className="banner conflict" role="alert">
          <p>
            <strong>Conflict:</strong> this {singular} changed since you opened it (you edited revision {entry?.meta?.revision.toString()}, it is now at
            revision {conflict.meta?.revision.toString()}).
          </p>
          <details>
            <summary>Their version</summary>
            <pre>{YAML.stringify(conflict.value)}</pre>
          </details>
          <button type="button" className="secondary" onClick={() => void load()}>
            Reload theirs (discard my changes)
          </button>
          <button type="button" className="danger" onClick={() => void save(conflict)}>
            Overwrite with mine
          </button>
        </div>
      )}

      {message && (
        <p className={Object.keys(errors).length > 0 || conflict ? "error" : "status"} role="status">
          {message}
        </p>
      )}

      {(creating || entry) && (
        <>
          <div className="tabs" role="tablist" aria-label="View">
            <button type="button" role="tab" aria-selected={tab === "form"} onClick={() => setTab("form")}>
              Form
            </button>
            <button type="button" role="tab" aria-selected={tab === "yaml"} onClick={() => setTab("yaml")}>
              YAML
            </button>
          </div>
          <form
            onSubmit={(e) => {
              e.preventDefault();
              void save();
            }}
            noValidate
          >
            {tab === "form" ? (
              <MessageForm meta={schema} type={kind.type} value={value} onChange={changeValue} errors={errors} readOnly={readOnly} />
            ) : readOnly ? (
              <pre className="yaml" aria-label="YAML">
                {yamlText}
              </pre>
            ) : (
              <div className="field">
                <label htmlFor="yaml">YAML</label>
                <textarea id="yaml" className="yaml" rows={20} spellCheck={false} value={yamlText} onChange={(e) => changeYaml(e.target.value)} />
                {yamlError && (
                  <p className="error" role="alert">
                    {yamlError}
                  </p>
                )}
                {Object.entries(errors).map(([p, m]) => (
                  <p key={p} className="error">
                    {p || "(resource)"}: {m.join("; ")}
                  </p>
                ))}
              </div>
            )}
            {editing && (
              <div className="form-actions">
                <button type="submit" disabled={busy}>
                  {creating ? `Create ${singular}` : "Save changes"}
                </button>
                <button type="button" className="secondary" disabled={busy} onClick={() => void reviewChanges()}>
                  Review changes
                </button>
                {!creating && (
                  <button
                    type="button"
                    className="secondary"
                    onClick={() => {
                      setEditing(false);
                      void load();
                    }}
                  >
                    Cancel
                  </button>
                )}
              </div>
            )}
          </form>
          {editing && review && <DiffView diff={review} />}
        </>
      )}
    </section>
  );
}
