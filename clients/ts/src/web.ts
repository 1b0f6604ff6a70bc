// Browser entry point: a gRPC-web transport to the admin listener (tonic-web).
import { createGrpcWebTransport } from "@connectrpc/connect-web";

import { apiKeyInterceptor, PingoraConfigClient, type ClientOptions } from "./gen/client.js";

export * from "./index.js";

/** Options of {@link dial}. */
export interface DialOptions extends ClientOptions {
  /** Sent as `authorization: Bearer <key>` on every call. */
  apiKey?: string;
}

/** A client of the admin listener at `baseUrl` over gRPC-web. */
export function dial(baseUrl: string, options: DialOptions = {}): PingoraConfigClient {
  const transport = createGrpcWebTransport({
    baseUrl,
    interceptors: options.apiKey ? [apiKeyInterceptor(options.apiKey)] : [],
  });
  return new PingoraConfigClient(transport, options);
}
