import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import App from "./App";
import { startLive } from "./live";
import { useStore } from "./store";
import "./styles.css";

const ICON = "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 32 32'%3E%3Ccircle cx='16' cy='16' r='13' fill='none' stroke='%233b82f6' stroke-width='4'/%3E%3Ccircle cx='16' cy='16' r='5' fill='%233b82f6'/%3E%3C/svg%3E";

startLive();
addIconLater();
// For the end-to-end tests and for poking at the state from the browser console.
(window as unknown as { __rescopeStore: typeof useStore }).__rescopeStore = useStore;
createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);

/**
 * The page's icon, added once the first view is on screen and the page is idle: the
 * browser draws an SVG icon on the page's main thread, which would otherwise hold up
 * the first graph (by 30–200 ms in headless Chromium on a busy machine).
 */
function addIconLater() {
  const add = () => {
    if (document.querySelector("link[rel=icon]")) return;
    const link = document.createElement("link");
    link.rel = "icon";
    link.href = ICON;
    document.head.appendChild(link);
  };
  const timer = setTimeout(add, 5000);
  const unsub = useStore.subscribe((s) => {
    if (s.nodesKey === "") return;
    unsub();
    clearTimeout(timer);
    // In a quiet moment, so it does not hold up the user's first pans either.
    if (typeof requestIdleCallback === "function") requestIdleCallback(add, { timeout: 5000 });
    else setTimeout(add, 1000);
  });
}
