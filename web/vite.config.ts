import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";

// The UI is served by the Rescope app from `web/dist`, possibly under a path prefix,
// so every asset and API path is relative (`base: "./"`). `npm run dev` proxies the
// API to a running `rescope launch`.
const app = process.env.RESCOPE_APP ?? "http://127.0.0.1:4040";

export default defineConfig({
  base: "./",
  plugins: [react()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    chunkSizeWarningLimit: 1200,
  },
  server: {
    proxy: {
      "/api": { target: app, ws: true, changeOrigin: true },
    },
  },
  test: {
    environment: "jsdom",
    include: ["src/**/*.test.ts", "src/**/*.test.tsx"],
  },
});
