import { Suspense, lazy, useEffect, useLayoutEffect, useMemo, useRef, useState } from "react";
import OptionsBar from "./components/OptionsBar";
import Plugins from "./components/Plugins";
import SearchBox from "./components/SearchBox";
import TopologyBar from "./components/TopologyBar";
import GraphView from "./graph/GraphView";
import { searchNodes } from "./search";
import { useStore } from "./store";

// Code the first view does not need loads when it is first shown: the terminal
// (xterm.js, a third of all code), the node details (with uPlot) and the table. The
// first graph then waits for less code to be fetched, compiled and run.
const TerminalPanel = lazy(() => import("./components/TerminalPanel"));
const Details = lazy(() => import("./components/Details"));
const TableView = lazy(() => import("./components/TableView"));

function Terminal() {
  const open = useStore((s) => s.terminal != null);
  if (!open) return null;
  return (
    <Suspense fallback={null}>
      <TerminalPanel />
    </Suspense>
  );
}

/** Above this many nodes the graph offers the table, which reads better at that size. */
const SUGGEST_TABLE = 1000;

function MetricSelector() {
  const nodes = useStore((s) => s.nodes);
  const pinned = useStore((s) => s.pinnedMetricType);
  const setPinned = useStore((s) => s.setPinnedMetric);
  const labels = useMemo(() => {
    const seen = new Map<string, number>();
    for (const n of nodes.values())
      for (const m of n.metrics ?? []) if (!seen.has(m.label)) seen.set(m.label, m.priority ?? 0);
    return [...seen.entries()].sort((a, b) => a[1] - b[1]).map((e) => e[0]);
  }, [nodes]);
  if (labels.length === 0) return null;
  return (
    <div className="metric-selector" role="group" aria-label="Colour nodes by metric">
      {labels.map((l) => (
        <button
          key={l}
          className={pinned === l ? "selected" : ""}
          aria-pressed={pinned === l}
          onClick={() => setPinned(pinned === l ? null : l)}
        >
          {l}
        </button>
      ))}
    </div>
  );
}

function Toasts() {
  const toasts = useStore((s) => s.toasts);
  const dismiss = useStore((s) => s.dismissToast);
  return (
    <div className="toasts" aria-live="polite">
      {toasts.map((t) => (
        <div key={t.id} className={`toast ${t.kind}`} role="alert" onClick={() => dismiss(t.id)}>
          {t.text}
        </div>
      ))}
    </div>
  );
}

export default function App() {
  const nodes = useStore((s) => s.nodes);
  const nodesKey = useStore((s) => s.nodesKey);
  const query = useStore((s) => s.searchQuery);
  const pinned = useStore((s) => s.pinnedSearches);
  const gridMode = useStore((s) => s.gridMode);
  const setGridMode = useStore((s) => s.setGridMode);
  const link = useStore((s) => s.link);
  const linkError = useStore((s) => s.linkError);
  const api = useStore((s) => s.api);
  const theme = useStore((s) => s.theme);
  const setTheme = useStore((s) => s.setTheme);
  const hasSelection = useStore((s) => s.selectedNodeId !== null);
  const topologyId = useStore((s) => s.topologyId);
  const [dismissedSuggestion, setDismissed] = useState(false);
  const search = useRef<HTMLInputElement>(null);

  const matches = useMemo(() => searchNodes(nodes.values(), query, pinned), [nodes, query, pinned]);

  // A layout effect, so the page has its new colours before the graph view (a child,
  // whose effects run first) redraws for the theme: the picture it shows is an opaque
  // copy that includes the page's background at the time of the draw.
  useLayoutEffect(() => {
    document.documentElement.dataset.theme = theme;
  }, [theme]);

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const target = e.target as HTMLElement;
      const typing = target.closest("input, textarea, .terminal-panel");
      if (typing) return;
      if (e.key === "/" ) {
        e.preventDefault();
        search.current?.focus();
      } else if (e.key === "Escape") {
        const s = useStore.getState();
        if (s.selectedNodeId) s.selectNode(null);
        else if (s.searchQuery) s.setSearch("");
      } else if (e.key === "t" && !e.ctrlKey && !e.metaKey) {
        useStore.getState().setGridMode(!useStore.getState().gridMode);
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, []);

  const ready = nodesKey !== "" && nodesKey.startsWith(`${topologyId}?`);
  // The graph's renderer is made once the first view has arrived (the key then stays
  // set): making it blocks the page for a few hundred ms on a software GPU (WebGL
  // contexts, shaders), and made before, it holds up that view's message, which waits
  // behind it; made after, the view is drawn in the same task.
  const graphWanted = nodesKey !== "";
  return (
    <div className={`app${hasSelection ? " with-details" : ""}`}>
      <header className="topbar">
        <div className="brand" title={api ? `Rescope ${api.version} on ${api.hostname}` : "Rescope"}>
          <svg viewBox="0 0 32 32" width="22" height="22" aria-hidden>
            <circle cx="16" cy="16" r="13" fill="none" stroke="currentColor" strokeWidth="3.5" />
            <circle cx="16" cy="16" r="5" fill="currentColor" />
          </svg>
          <span>Rescope</span>
        </div>
        <TopologyBar />
        <SearchBox ref={search} matchCount={matches ? matches.size : null} />
        <div className="view-toggle" role="group" aria-label="Display">
          <button className={gridMode ? "" : "selected"} aria-pressed={!gridMode} onClick={() => setGridMode(false)} title="Graph (t)">
            Graph
          </button>
          <button className={gridMode ? "selected" : ""} aria-pressed={gridMode} onClick={() => setGridMode(true)} title="Table (t)">
            Table
          </button>
        </div>
        <button
          className="theme-toggle"
          title={theme === "dark" ? "Light theme" : "Dark theme"}
          aria-label="Toggle theme"
          onClick={() => setTheme(theme === "dark" ? "light" : "dark")}
        >
          {theme === "dark" ? "☀" : "☾"}
        </button>
      </header>
      <OptionsBar />
      {link === "lost" && (
        <div className="banner warn" role="status" data-testid="link-lost">
          {linkError ?? "Disconnected; reconnecting…"}
        </div>
      )}
      {!gridMode && nodes.size > SUGGEST_TABLE && !dismissedSuggestion && (
        <div className="banner info">
          This view has {nodes.size.toLocaleString("en-US")} nodes. The table may be easier to read.
          <button onClick={() => setGridMode(true)}>Show table</button>
          <button onClick={() => setDismissed(true)}>Keep graph</button>
        </div>
      )}
      <main className="stage">
        {gridMode ? (
          <Suspense fallback={null}>
            <TableView nodes={nodes} matches={matches} />
          </Suspense>
        ) : graphWanted ? (
          <GraphView nodes={nodes} nodesKey={nodesKey} matches={matches} />
        ) : null}
        {ready && nodes.size === 0 && (
          <div className="empty-state">
            <p>Nothing to show in this view.</p>
            <p className="note">Check the filters above, or pick another view.</p>
          </div>
        )}
        {!ready && link !== "lost" && <div className="empty-state loading">Loading…</div>}
        {hasSelection && (
          <Suspense fallback={null}>
            <Details />
          </Suspense>
        )}
      </main>
      <footer className="footer">
        <MetricSelector />
        <span className="footer-status">
          <span className={`dot ${link}`} aria-hidden />
          {link === "open" ? "Live" : link === "lost" ? "Reconnecting" : "Connecting"}
          {api && ` · ${api.hostname} · v${api.version}`}
        </span>
        <Plugins />
      </footer>
      <Terminal />
      <Toasts />
    </div>
  );
}
