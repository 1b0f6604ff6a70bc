// The live event feed: config changes (by anyone: this tab, another client,
// an edit of the YAML file), upstream health transitions and nodes joining
// or leaving, newest first, from the session's one Watch stream.
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { HealthEvent_Source, NodeEvent_Type, ResourceEvent_Type, Resource_Kind, type Event, type Resource } from "@pingora-config/client";
import YAML from "yaml";

import { asJson, KINDS } from "./api";
import { useApp } from "./context";

/** A resource of an event as YAML (secrets arrive redacted). */
function yamlOf(r: Resource | undefined): string {
  if (!r || r.value.case === undefined) return "";
  const kind = KINDS.find((k) => k.singular === r.value.case);
  return kind ? YAML.stringify(asJson(kind.type, r.value.value)) : "";
}

function line(ev: Event): string {
  switch (ev.payload.case) {
    case "resource": {
      const r = ev.payload.value;
      const what = r.type === ResourceEvent_Type.DELETE ? "deleted" : r.oldValue ? "updated" : "created";
      return `${Resource_Kind[r.kind].toLowerCase()} ${r.id} ${what}`;
    }
    case "health": {
      const h = ev.payload.value;
      return `upstream ${h.upstreamId} node ${h.node} is ${h.healthy ? "healthy" : "unhealthy"} (${HealthEvent_Source[h.source].toLowerCase()}: ${h.reason})`;
    }
    case "node": {
      const n = ev.payload.value;
      return `node ${n.nodeId} ${n.type === NodeEvent_Type.JOINED ? "joined" : "left"} (${n.version})`;
    }
    case "resyncRequired":
      return "the feed fell behind: reload the lists";
    default:
      return "unknown event";
  }
}

export function EventsPage() {
  const { events, feed } = useApp();
  return (
    <section>
      <h1>Events</h1>
      <p className="muted" aria-live="polite">
        Feed: {feed}. Showing the {events.length} latest events since sign-in.
      </p>
      <ol className="events" aria-label="Events" aria-live="polite">
        {events.map((ev) => (
          <li key={`${ev.id}-${ev.revision}`} className={`event ${ev.payload.case ?? ""}`}>
            <time>{ev.time ? timestampDate(ev.time).toLocaleTimeString() : ""}</time> <span className="rev">r{ev.revision.toString()}</span>{" "}
            <span className="what">{line(ev)}</span>
            {ev.payload.case === "resource" && (
              <details className="event-values">
                <summary>Values</summary>
                <div className="before-after">
                  <div>
                    <h3>Before</h3>
                    <pre>{yamlOf(ev.payload.value.oldValue) || "(none)"}</pre>
                  </div>
                  <div>
                    <h3>After</h3>
                    <pre>{yamlOf(ev.payload.value.newValue) || "(none)"}</pre>
                  </div>
                </div>
              </details>
            )}
          </li>
        ))}
      </ol>
    </section>
  );
}
