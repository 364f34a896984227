// The dev server proxies /api and /health to the backend, so the browser talks only to
// the front end. BACKEND_URL comes from conductor ({services.backend.url}).
import { defineConfig } from "vite";

const backend = process.env.BACKEND_URL || "http://127.0.0.1:5004";

export default defineConfig({
  clearScreen: false,
  server: {
    host: process.env.FRONTEND_HOST || "127.0.0.1",
    port: Number(process.env.FRONTEND_PORT || 3000),
    strictPort: true,
    proxy: {
      "/api": { target: backend, changeOrigin: false },
      "/health": { target: backend, changeOrigin: false },
    },
  },
});
