import { create } from "zustand";
import { applyDiff, type NodeMap } from "./diff";
import type { ApiInfo, NodeDetails, TopologyDesc, TopologyDiff } from "./types";
import type { UrlState, ViewOptions } from "./urlState";

export type LinkStatus = "connecting" | "open" | "lost";
export type Theme = "light" | "dark";

export interface Terminal {
  pipeId: string;
  title: string;
  raw: boolean;
  probeId: string;
  nodeId: string;
  resizeControl?: string;
}

export interface Toast {
  id: number;
  text: string;
  kind: "error" | "info";
}

export interface State {
  api: ApiInfo | null;
  apiError: string | null;
  topologies: TopologyDesc[];
  topologyId: string | null;
  options: ViewOptions;
  /** The nodes on screen and the view (with options) they belong to. */
  nodes: NodeMap;
  nodesKey: string;
  link: LinkStatus;
  linkError: string | null;
  selectedNodeId: string | null;
  /** The view the selected node was picked in (details are fetched from it). */
  selectedTopologyId: string | null;
  details: NodeDetails | null;
  detailsError: string | null;
  searchQuery: string;
  pinnedSearches: string[];
  gridMode: boolean;
  pinnedMetricType: string | null;
  theme: Theme;
  terminal: Terminal | null;
  toasts: Toast[];
  busyControls: Record<string, boolean>;

  setTopology(id: string): void;
  setOption(view: string, group: string, values: string[]): void;
  applyDiff(key: string, diff: TopologyDiff): void;
  selectNode(id: string | null, topologyId?: string | null): void;
  setSearch(q: string): void;
  pinSearch(): void;
  unpinSearch(q: string): void;
  setGridMode(on: boolean): void;
  setPinnedMetric(m: string | null): void;
  setTheme(t: Theme): void;
  toast(text: string, kind?: Toast["kind"]): void;
  dismissToast(id: number): void;
  loadUrlState(s: UrlState): void;
}

let toastSeq = 0;

function initialTheme(): Theme {
  try {
    const saved = localStorage.getItem("rescope.theme");
    if (saved === "light" || saved === "dark") return saved;
  } catch {
    /* storage may be blocked */
  }
  return typeof matchMedia === "function" && matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

export const useStore = create<State>()((set, get) => ({
  api: null,
  apiError: null,
  topologies: [],
  topologyId: null,
  options: {},
  nodes: new Map(),
  nodesKey: "",
  link: "connecting",
  linkError: null,
  selectedNodeId: null,
  selectedTopologyId: null,
  details: null,
  detailsError: null,
  searchQuery: "",
  pinnedSearches: [],
  gridMode: false,
  pinnedMetricType: null,
  theme: initialTheme(),
  terminal: null,
  toasts: [],
  busyControls: {},

  setTopology(id) {
    if (id === get().topologyId) return;
    set({ topologyId: id, selectedNodeId: null, selectedTopologyId: null, details: null, detailsError: null });
  },
  setOption(view, group, values) {
    const options = { ...get().options, [view]: { ...get().options[view], [group]: values } };
    set({ options });
  },
  applyDiff(key, diff) {
    const s = get();
    // A message for another view (or other options) than the one on screen starts over.
    const base = key === s.nodesKey ? s.nodes : new Map();
    const nodes = applyDiff(base, key === s.nodesKey ? diff : { ...diff, reset: true });
    if (nodes !== s.nodes || key !== s.nodesKey) set({ nodes, nodesKey: key });
  },
  selectNode(id, topologyId) {
    if (id === null) {
      set({ selectedNodeId: null, selectedTopologyId: null, details: null, detailsError: null });
      return;
    }
    const topo = topologyId ?? get().topologyId;
    if (id === get().selectedNodeId && topo === get().selectedTopologyId) return;
    set({ selectedNodeId: id, selectedTopologyId: topo, details: null, detailsError: null });
  },
  setSearch(q) {
    set({ searchQuery: q });
  },
  pinSearch() {
    const q = get().searchQuery.trim();
    if (!q || get().pinnedSearches.includes(q)) return;
    set({ pinnedSearches: [...get().pinnedSearches, q], searchQuery: "" });
  },
  unpinSearch(q) {
    set({ pinnedSearches: get().pinnedSearches.filter((p) => p !== q) });
  },
  setGridMode(on) {
    set({ gridMode: on });
  },
  setPinnedMetric(m) {
    set({ pinnedMetricType: m });
  },
  setTheme(t) {
    try {
      localStorage.setItem("rescope.theme", t);
    } catch {
      /* storage may be blocked */
    }
    set({ theme: t });
  },
  toast(text, kind = "error") {
    const id = ++toastSeq;
    set({ toasts: [...get().toasts, { id, text, kind }] });
    setTimeout(() => get().dismissToast(id), 10_000);
  },
  dismissToast(id) {
    set({ toasts: get().toasts.filter((t) => t.id !== id) });
  },
  loadUrlState(s) {
    set({
      topologyId: s.topologyId ?? get().topologyId,
      options: s.topologyOptions ?? get().options,
      selectedNodeId: s.selectedNodeId ?? null,
      selectedTopologyId: s.selectedNodeId ? (s.topologyId ?? get().topologyId) : null,
      searchQuery: s.searchQuery ?? "",
      pinnedSearches: s.pinnedSearches ?? [],
      gridMode: s.gridMode ?? false,
      pinnedMetricType: s.pinnedMetricType ?? null,
    });
  },
}));

/** The URL state for the current store state. */
export function urlStateOf(s: State): UrlState {
  return {
    topologyId: s.topologyId ?? undefined,
    topologyOptions: s.options,
    selectedNodeId: s.selectedNodeId ?? undefined,
    searchQuery: s.searchQuery || undefined,
    pinnedSearches: s.pinnedSearches,
    gridMode: s.gridMode,
    pinnedMetricType: s.pinnedMetricType ?? undefined,
  };
}
