// What every page shares once signed in: the client, the role, and the live
// event feed (one Watch stream over grpc-web for the whole session, which
// also tells the lists when to read again).
import { createContext, useContext, useEffect, useState, type ReactNode } from "react";
import { ResyncRequiredError, type Event, type PingoraConfigClient } from "@pingora-config/client";

import type { Role } from "./api";

export interface AppState {
  client: PingoraConfigClient;
  role: Role;
  baseUrl: string;
  events: Event[];
  /** "live", "connecting" or the last error of the stream. */
  feed: string;
  /** Grows with every resource event: a dependency for lists to reload on. */
  changes: number;
}

const Ctx = createContext<AppState | undefined>(undefined);

export function useApp(): AppState {
  const s = useContext(Ctx);
  if (!s) throw new Error("useApp outside <AppProvider>");
  return s;
}

const KEEP = 200;

export function AppProvider({ client, role, baseUrl, children }: { client: PingoraConfigClient; role: Role; baseUrl: string; children: ReactNode }) {
  const [events, setEvents] = useState<Event[]>([]);
  const [feed, setFeed] = useState("connecting");
  const [changes, setChanges] = useState(0);
  useEffect(() => {
    const abort = new AbortController();
    (async () => {
      // The facade reconnects by itself; after a resync (the feed fell
      // behind) the lists reload and the feed starts again from now.
      for (;;) {
        try {
          setFeed("live");
          for await (const ev of client.watch({}, { signal: abort.signal })) {
            setEvents((old) => [ev, ...old].slice(0, KEEP));
            if (ev.payload.case === "resource") setChanges((n) => n + 1);
          }
          return;
        } catch (err) {
          if (abort.signal.aborted) return;
          if (err instanceof ResyncRequiredError) {
            setChanges((n) => n + 1);
            continue;
          }
          setFeed(`stopped: ${err instanceof Error ? err.message : String(err)}`);
          return;
        }
      }
    })();
    return () => abort.abort();
  }, [client]);
  return <Ctx.Provider value={{ client, role, baseUrl, events, feed, changes }}>{children}</Ctx.Provider>;
}
