// Node.js entry point: a gRPC (HTTP/2) transport to the admin listener.
import type { SecureContextOptions } from "node:tls";

import { createGrpcTransport } from "@connectrpc/connect-node";

import { apiKeyInterceptor, PingoraConfigClient, type ClientOptions } from "./gen/client.js";

export * from "./index.js";

/** Options of {@link dial}. */
export interface DialOptions extends ClientOptions {
  /** Sent as `authorization: Bearer <key>` on every call. */
  apiKey?: string;
  /** TLS settings (CA, client certificate) for an `https://` base URL. */
  tls?: SecureContextOptions & { rejectUnauthorized?: boolean; servername?: string };
}

/**
 * A client of the admin listener at `baseUrl`: `https://host:port` (TLS), or
 * `http://127.0.0.1:9180` for a plain loopback listener.
 */
export function dial(baseUrl: string, options: DialOptions = {}): PingoraConfigClient {
  const transport = createGrpcTransport({
    baseUrl,
    interceptors: options.apiKey ? [apiKeyInterceptor(options.apiKey)] : [],
    nodeOptions: options.tls,
  });
  return new PingoraConfigClient(transport, options);
}
