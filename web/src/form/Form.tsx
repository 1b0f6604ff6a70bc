// The form generator: renders an editor for any message of the schema from
// the generated metadata alone (web/src/gen/schema.json). Scalars, enums
// (select), bools, durations, nested messages (collapsible), lists (rows to
// add and remove), maps (key/value rows) and oneofs (choose one), each with
// its proto comment as help text and the violations of its path beside it.
import { useEffect, useState, type ReactNode } from "react";

import { messageMeta, summary, title, type FieldMeta, type MessageMeta, type OneofMeta, type SchemaMeta } from "./schema";
import {
  domId,
  emptyValue,
  index,
  isObject,
  join,
  key,
  withField,
  type ErrorMap,
  type Json,
  type JsonObject,
} from "./values";

export interface MessageFormProps {
  meta: SchemaMeta;
  /** Full name of the message, `pingora_config.v1.Upstream`. */
  type: string;
  value: JsonObject;
  onChange: (v: JsonObject) => void;
  errors?: ErrorMap;
  readOnly?: boolean;
}

interface Ctx {
  meta: SchemaMeta;
  errors: ErrorMap;
  readOnly: boolean;
}

/** The form of one message, with a summary of every violation on top. */
export function MessageForm({ meta, type, value, onChange, errors = {}, readOnly = false }: MessageFormProps) {
  const ctx: Ctx = { meta, errors, readOnly };
  const all = Object.entries(errors).flatMap(([p, msgs]) => msgs.map((m) => [p, m] as const));
  return (
    <div className="form">
      {all.length > 0 && (
        <div className="error-summary" role="group" aria-labelledby="error-summary-title" tabIndex={-1}>
          <h3 id="error-summary-title">
            {all.length} problem{all.length > 1 ? "s" : ""}
          </h3>
          <ul>
            {all.map(([p, m], i) => (
              <li key={i}>
                <a href={`#${domId(p)}`} onClick={(e) => focusField(e, p)}>
                  {p === "" ? messageMeta(meta, type).name : p}
                </a>
                : {m}
              </li>
            ))}
          </ul>
        </div>
      )}
      <Fields ctx={ctx} m={messageMeta(meta, type)} value={value} onChange={onChange} path="" />
    </div>
  );
}

function focusField(e: React.MouseEvent, path: string) {
  const el = document.getElementById(domId(path));
  if (!el) return;
  e.preventDefault();
  // Open the collapsed sections around the field first.
  for (let p = el.parentElement; p; p = p.parentElement) if (p instanceof HTMLDetailsElement) p.open = true;
  el.focus();
  el.scrollIntoView?.({ block: "center" });
}

function Errors({ ctx, path }: { ctx: Ctx; path: string }) {
  const errs = ctx.errors[path];
  if (!errs?.length) return null;
  return (
    <div id={`${domId(path)}-error`} className="field-errors">
      {errs.map((e, i) => (
        <p key={i} className="error" role="alert">
          {e}
        </p>
      ))}
    </div>
  );
}

function Help({ f, id }: { f: FieldMeta; id: string }) {
  const text = summary(f.comment);
  if (!text && !f.default) return null;
  const more = f.comment.includes("\n\n");
  return (
    <small className="help" id={id}>
      {text}
      {more && (
        <details className="more">
          <summary>More</summary>
          <span className="pre">{f.comment}</span>
        </details>
      )}
    </small>
  );
}

/** The fields of a message, a oneof where its first member is declared. */
function Fields({ ctx, m, value, onChange, path }: { ctx: Ctx; m: MessageMeta; value: JsonObject; onChange: (v: JsonObject) => void; path: string }) {
  const seen = new Set<string>();
  const out: ReactNode[] = [];
  for (const f of m.fields) {
    if (f.oneof) {
      if (seen.has(f.oneof)) continue;
      seen.add(f.oneof);
      const o = m.oneofs.find((x) => x.name === f.oneof);
      if (o) {
        out.push(<Oneof key={`oneof-${o.name}`} ctx={ctx} m={m} o={o} value={value} onChange={onChange} path={path} />);
        continue;
      }
    }
    out.push(
      <Field
        key={f.name}
        ctx={ctx}
        f={f}
        value={value[f.name]}
        onChange={(v) => onChange(withField(value, f.name, v))}
        path={join(path, f.name)}
      />,
    );
  }
  return (
    <>
      <Errors ctx={ctx} path={path} />
      {out}
    </>
  );
}

function Oneof({ ctx, m, o, value, onChange, path }: { ctx: Ctx; m: MessageMeta; o: OneofMeta; value: JsonObject; onChange: (v: JsonObject) => void; path: string }) {
  const members = o.fields.map((n) => m.fields.find((f) => f.name === n)).filter((f): f is FieldMeta => !!f);
  const chosen = members.find((f) => value[f.name] !== undefined);
  const id = domId(join(path, o.name));
  const choose = (name: string) => {
    let next = value;
    for (const f of members) next = withField(next, f.name, undefined);
    const f = members.find((x) => x.name === name);
    if (f) next = withField(next, f.name, emptyValue(ctx.meta, f));
    onChange(next);
  };
  return (
    <fieldset className="oneof">
      <legend>
        {title(o.name)}
        {o.required && <span className="req" aria-hidden="true"> *</span>}
      </legend>
      {o.comment && <small className="help">{summary(o.comment)}</small>}
      <label className="inline" htmlFor={id}>
        Choose one
      </label>
      <select id={id} value={chosen?.name ?? ""} disabled={ctx.readOnly} onChange={(e) => choose(e.target.value)}>
        <option value="">{o.required ? "(choose one)" : "(none)"}</option>
        {members.map((f) => (
          <option key={f.name} value={f.name} title={summary(f.comment)}>
            {title(f.name)}
          </option>
        ))}
      </select>
      {chosen && (
        <Field
          ctx={ctx}
          f={{ ...chosen, label: "single" }}
          value={value[chosen.name]}
          onChange={(v) => onChange(withField(value, chosen.name, v ?? emptyValue(ctx.meta, chosen)))}
          path={join(path, chosen.name)}
        />
      )}
    </fieldset>
  );
}

interface FieldProps {
  ctx: Ctx;
  f: FieldMeta;
  value: Json | undefined;
  onChange: (v: Json | undefined) => void;
  path: string;
}

function Field(props: FieldProps) {
  const { f } = props;
  if (f.label === "repeated") return <ListField {...props} />;
  if (f.label === "map") return <MapField {...props} />;
  if (f.kind === "message") return <MessageField {...props} />;
  return <ScalarField {...props} />;
}

function Label({ f, htmlFor, text }: { f: FieldMeta; htmlFor: string; text?: string }) {
  return (
    <label htmlFor={htmlFor}>
      {text ?? title(f.name)}
      {f.rules.required && <span className="req" aria-hidden="true"> *</span>}
      {f.default && <span className="default"> (default {f.default})</span>}
    </label>
  );
}

function describedBy(ctx: Ctx, path: string, f: FieldMeta) {
  const ids = [];
  if (summary(f.comment)) ids.push(`${domId(path)}-help`);
  if (ctx.errors[path]?.length) ids.push(`${domId(path)}-error`);
  return ids.join(" ") || undefined;
}

function ScalarField({ ctx, f, value, onChange, path }: FieldProps) {
  const id = domId(path);
  return (
    <div className={`field${ctx.errors[path]?.length ? " invalid" : ""}`} data-path={path}>
      <Label f={f} htmlFor={id} />
      <ScalarInput ctx={ctx} f={f} value={value} onChange={onChange} path={path} id={id} />
      <Help f={f} id={`${id}-help`} />
      <Errors ctx={ctx} path={path} />
    </div>
  );
}

/** The input of one scalar, enum, duration or timestamp value. */
function ScalarInput({ ctx, f, value, onChange, path, id, label }: FieldProps & { id: string; label?: string }) {
  const common = {
    id,
    "aria-invalid": ctx.errors[path]?.length ? true : undefined,
    "aria-describedby": describedBy(ctx, path, f),
    "aria-label": label,
    disabled: ctx.readOnly,
  };
  if (f.kind === "enum") {
    const e = ctx.meta.enums[f.enum ?? ""];
    const current = typeof value === "string" ? value : "";
    const chosen = e?.values.find((v) => v.name === current);
    return (
      <>
        <select {...common} value={current} onChange={(ev) => onChange(ev.target.value === "" ? undefined : ev.target.value)}>
          <option value="">{f.default ? `(default: ${f.default})` : "(unset)"}</option>
          {e?.values
            .filter((v) => v.number !== 0)
            .map((v) => (
              <option key={v.name} value={v.name} title={v.comment}>
                {v.name}
              </option>
            ))}
        </select>
        {chosen?.comment && <small className="help enum-help">{summary(chosen.comment)}</small>}
      </>
    );
  }
  if (f.kind === "scalar" && f.scalar === "bool") {
    if (f.label === "optional") {
      // Presence matters: unset takes the documented default.
      const current = value === true ? "true" : value === false ? "false" : "";
      return (
        <select {...common} value={current} onChange={(ev) => onChange(ev.target.value === "" ? undefined : ev.target.value === "true")}>
          <option value="">{f.default ? `(default: ${f.default})` : "(unset)"}</option>
          <option value="true">true</option>
          <option value="false">false</option>
        </select>
      );
    }
    return <input {...common} type="checkbox" checked={value === true} onChange={(ev) => onChange(ev.target.checked ? true : undefined)} />;
  }
  const text = value === undefined || value === null ? "" : String(value);
  if (f.kind === "scalar" && f.scalar !== "string" && f.scalar !== "bytes") {
    const big = f.scalar === "int64" || f.scalar === "uint64";
    return (
      <input
        {...common}
        type={big ? "text" : "number"}
        inputMode={f.scalar === "float" || f.scalar === "double" ? "decimal" : "numeric"}
        value={text}
        min={f.rules.gte ?? f.rules.gt}
        max={f.rules.lte ?? f.rules.lt}
        onChange={(ev) => {
          const s = ev.target.value.trim();
          if (s === "") return onChange(undefined);
          const n = Number(s);
          // Kept as typed when it is not a number, so the validator names it.
          onChange(big && !Number.isSafeInteger(n) ? s : Number.isNaN(n) ? s : n);
        }}
      />
    );
  }
  const placeholder = f.kind === "duration" ? 'e.g. "1.5s"' : f.kind === "timestamp" ? "2026-01-02T15:04:05Z" : f.rules.format_text;
  if (f.rules.format === "PEM") {
    return (
      <textarea
        {...common}
        rows={4}
        value={text}
        placeholder="-----BEGIN ...-----"
        onChange={(ev) => onChange(ev.target.value === "" ? undefined : ev.target.value)}
      />
    );
  }
  return (
    <input
      {...common}
      type={f.rules.secret ? "password" : "text"}
      autoComplete={f.rules.secret ? "new-password" : "off"}
      spellCheck={false}
      value={text}
      placeholder={placeholder}
      onChange={(ev) => onChange(ev.target.value === "" && f.label !== "repeated" ? undefined : ev.target.value)}
    />
  );
}

function MessageField({ ctx, f, value, onChange, path }: FieldProps) {
  const id = domId(path);
  const typeName = f.message ?? "";
  const m = messageMeta(ctx.meta, typeName);
  if (!isObject(value ?? undefined)) {
    return (
      <div className={`field message unset${ctx.errors[path]?.length ? " invalid" : ""}`} data-path={path}>
        <span className="field-name" id={`${id}-name`}>
          {title(f.name)}
          {f.rules.required && <span className="req" aria-hidden="true"> *</span>}
        </span>
        {!ctx.readOnly && (
          <button type="button" id={id} className="secondary small" onClick={() => onChange({})} aria-describedby={describedBy(ctx, path, f)}>
            Set {title(f.name).toLowerCase()}
          </button>
        )}
        {ctx.readOnly && <span className="muted"> (unset)</span>}
        <Help f={f} id={`${id}-help`} />
        <Errors ctx={ctx} path={path} />
      </div>
    );
  }
  return (
    <details className={`field message${ctx.errors[path]?.length ? " invalid" : ""}`} data-path={path} open>
      <summary id={id} tabIndex={0}>
        {title(f.name)}
        {f.rules.required && <span className="req" aria-hidden="true"> *</span>}
        <span className="muted"> · {m.name}</span>
      </summary>
      <Help f={f} id={`${id}-help`} />
      <div className="nested">
        <Fields ctx={ctx} m={m} value={value as JsonObject} onChange={onChange} path={path} />
        {!ctx.readOnly && !f.rules.required && f.label !== "single" && (
          <button type="button" className="secondary small" onClick={() => onChange(undefined)}>
            Remove {title(f.name).toLowerCase()}
          </button>
        )}
      </div>
    </details>
  );
}

/** The element of a list or the value of a map: one field of the element kind. */
function elementMeta(f: FieldMeta, rulesKey: "items" | "values"): FieldMeta {
  return { ...f, label: "single", rules: f.rules[rulesKey] ?? {}, comment: "", default: undefined };
}

function rowTitle(ctx: Ctx, f: FieldMeta, v: Json, i: number): string {
  if (f.kind === "message" && isObject(v)) {
    const m = messageMeta(ctx.meta, f.message ?? "");
    const keyField = f.rules.unique_by ?? m.fields.find((x) => x.kind === "scalar" && x.scalar === "string")?.name;
    const label = keyField ? v[keyField] : undefined;
    if (typeof label === "string" && label !== "") return `${i + 1}. ${label}`;
  }
  return `${i + 1}.`;
}

function ListField({ ctx, f, value, onChange, path }: FieldProps) {
  const items = Array.isArray(value) ? value : [];
  const id = domId(path);
  const el = elementMeta(f, "items");
  const set = (next: Json[]) => onChange(next.length === 0 ? undefined : next);
  // A row added from the keyboard takes the focus (it appears above the button).
  const [added, setAdded] = useState<number>();
  useEffect(() => {
    if (added === undefined) return;
    document.getElementById(domId(index(path, added)))?.focus();
    setAdded(undefined);
  }, [added, path]);
  return (
    <fieldset className={`field list${ctx.errors[path]?.length ? " invalid" : ""}`} data-path={path}>
      <legend id={`${id}-legend`}>
        {title(f.name)}
        {(f.rules.required || (f.rules.min_items ?? 0) > 0) && <span className="req" aria-hidden="true"> *</span>}
      </legend>
      <Help f={f} id={`${id}-help`} />
      <Errors ctx={ctx} path={path} />
      <ol className="rows">
        {items.map((item, i) => {
          const ip = index(path, i);
          return (
            <li key={i} className="row">
              {f.kind === "message" ? (
                <details open data-path={ip}>
                  <summary id={domId(ip)} tabIndex={0}>
                    {title(f.name)} {rowTitle(ctx, f, item, i)}
                  </summary>
                  <div className="nested">
                    <Fields
                      ctx={ctx}
                      m={messageMeta(ctx.meta, f.message ?? "")}
                      value={isObject(item) ? item : {}}
                      onChange={(v) => set(items.map((x, j) => (j === i ? v : x)))}
                      path={ip}
                    />
                  </div>
                </details>
              ) : (
                <div className="row-value">
                  <ScalarInput
                    ctx={ctx}
                    f={el}
                    value={item}
                    onChange={(v) => set(items.map((x, j) => (j === i ? (v ?? emptyValue(ctx.meta, el)) : x)))}
                    path={ip}
                    id={domId(ip)}
                    label={`${title(f.name)} ${i + 1}`}
                  />
                  <Errors ctx={ctx} path={ip} />
                </div>
              )}
              {!ctx.readOnly && (
                <button
                  type="button"
                  className="secondary small remove"
                  aria-label={`Remove ${title(f.name).toLowerCase()} ${i + 1}`}
                  onClick={() => set(items.filter((_, j) => j !== i))}
                >
                  Remove
                </button>
              )}
            </li>
          );
        })}
      </ol>
      {!ctx.readOnly && (
        <button
          type="button"
          id={items.length === 0 ? id : undefined}
          className="secondary small"
          onClick={() => {
            set([...items, emptyValue(ctx.meta, el)]);
            setAdded(items.length);
          }}
        >
          Add {title(f.name).toLowerCase()}
        </button>
      )}
    </fieldset>
  );
}

function MapField({ ctx, f, value, onChange, path }: FieldProps) {
  const entries = isObject(value ?? undefined) ? Object.entries(value as JsonObject) : [];
  const id = domId(path);
  const el = elementMeta(f, "values");
  const [draftKey, setDraftKey] = useState("");
  const set = (next: [string, Json][]) => onChange(next.length === 0 ? undefined : Object.fromEntries(next));
  const [added, setAdded] = useState<string>();
  useEffect(() => {
    if (added === undefined) return;
    document.getElementById(domId(key(path, added)))?.focus();
    setAdded(undefined);
  }, [added, path]);
  return (
    <fieldset className={`field map${ctx.errors[path]?.length ? " invalid" : ""}`} data-path={path}>
      <legend>{title(f.name)}</legend>
      <Help f={f} id={`${id}-help`} />
      <Errors ctx={ctx} path={path} />
      <ul className="rows">
        {entries.map(([k, v], i) => {
          const kp = key(path, k);
          return (
            <li key={i} className="row map-row">
              <input
                aria-label={`${title(f.name)} key ${i + 1}`}
                className="map-key"
                value={k}
                disabled={ctx.readOnly}
                onChange={(ev) => set(entries.map(([ek, ev2], j) => (j === i ? [ev.target.value, ev2] : [ek, ev2])))}
              />
              <div className="row-value">
                {f.kind === "message" ? (
                  <details open data-path={kp}>
                    <summary id={domId(kp)} tabIndex={0}>
                      {k}
                    </summary>
                    <div className="nested">
                      <Fields
                        ctx={ctx}
                        m={messageMeta(ctx.meta, f.message ?? "")}
                        value={isObject(v) ? v : {}}
                        onChange={(nv) => set(entries.map(([ek, ev2], j) => (j === i ? [ek, nv] : [ek, ev2])))}
                        path={kp}
                      />
                    </div>
                  </details>
                ) : (
                  <ScalarInput
                    ctx={ctx}
                    f={el}
                    value={v}
                    onChange={(nv) => set(entries.map(([ek, ev2], j) => (j === i ? [ek, nv ?? emptyValue(ctx.meta, el)] : [ek, ev2])))}
                    path={kp}
                    id={domId(kp)}
                    label={`${title(f.name)} ${k || i + 1} value`}
                  />
                )}
                <Errors ctx={ctx} path={kp} />
              </div>
              {!ctx.readOnly && (
                <button
                  type="button"
                  className="secondary small remove"
                  aria-label={`Remove ${title(f.name).toLowerCase()} ${k || i + 1}`}
                  onClick={() => set(entries.filter((_, j) => j !== i))}
                >
                  Remove
                </button>
              )}
            </li>
          );
        })}
      </ul>
      {!ctx.readOnly && (
        <div className="map-add">
          <input
            id={id}
            aria-label={`New ${title(f.name).toLowerCase()} key`}
            placeholder="key"
            value={draftKey}
            onChange={(ev) => setDraftKey(ev.target.value)}
          />
          <button
            type="button"
            className="secondary small"
            disabled={draftKey === "" || entries.some(([k]) => k === draftKey)}
            onClick={() => {
              set([...entries, [draftKey, emptyValue(ctx.meta, el)]]);
              setAdded(draftKey);
              setDraftKey("");
            }}
          >
            Add {title(f.name).toLowerCase()} entry
          </button>
        </div>
      )}
    </fieldset>
  );
}
