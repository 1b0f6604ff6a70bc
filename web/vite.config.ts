// Vite builds the UI into dist/ with relative asset paths, so the admin
// listener can serve it under any prefix (`/ui/`). The generated TS client is
// compiled from its sources in clients/ts (one copy of the generated code),
// with @bufbuild/protobuf and Connect resolved once, from web/node_modules.
import { fileURLToPath } from "node:url";

import react from "@vitejs/plugin-react";
import { defineConfig } from "vitest/config";

const client = (file: string) => fileURLToPath(new URL(`../clients/ts/src/${file}`, import.meta.url));

// `npx vite` / `npx vite preview`: the API and the metrics are proxied to the
// admin listener (ADMIN_URL, default the bootstrap's default address), so the
// UI is same-origin as it is when the gateway serves it.
const admin = process.env.ADMIN_URL ?? "http://127.0.0.1:9180";
const proxy = { "^/pingora_config\\.v1\\.": { target: admin }, "/metrics": { target: admin } };

export default defineConfig({
  base: "./",
  plugins: [react()],
  resolve: {
    alias: [
      { find: /^@pingora-config\/client\/web$/, replacement: client("web.ts") },
      { find: /^@pingora-config\/client$/, replacement: client("index.ts") },
    ],
    dedupe: ["@bufbuild/protobuf", "@connectrpc/connect", "@connectrpc/connect-web"],
  },
  server: { fs: { allow: [".."] }, proxy },
  preview: { proxy },
  build: { outDir: "dist", sourcemap: false, chunkSizeWarningLimit: 2000 },
  test: {
    environment: "jsdom",
    globals: true,
    include: ["test/**/*.test.{ts,tsx}"],
    setupFiles: ["test/setup.ts"],
  },
});
