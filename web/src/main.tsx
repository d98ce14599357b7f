import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import App from "./App";
import { startLive } from "./live";
import { useStore } from "./store";
import "./styles.css";

startLive();
// For the end-to-end tests and for poking at the state from the browser console.
(window as unknown as { __rescopeStore: typeof useStore }).__rescopeStore = useStore;
createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
