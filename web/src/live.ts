// Keeps the store in step with the app: the view list and plugins by polling, the
// nodes of the view on screen by the topology websocket (diffs batched per animation
// frame), the selected node's details by polling, and the URL hash both ways.

import * as api from "./api";
import { mergeDiffs } from "./diff";
import { useStore, urlStateOf } from "./store";
import type { Control, TopologyDesc, TopologyDiff } from "./types";
import { decodeState, encodeState } from "./urlState";

const WS_PERIOD = "2s";
const POLL_MS = 5000;
const DETAILS_MS = 3000;

function findView(list: readonly TopologyDesc[], id: string | null): TopologyDesc | undefined {
  if (!id) return undefined;
  return api.flattenTopologies(list).find((t) => api.viewIdOf(t) === id);
}

/** The query string of the current view with its options. */
export function currentQuery(): string {
  const s = useStore.getState();
  const view = findView(s.topologies, s.topologyId);
  return api.optionsQuery(view?.options, s.topologyId ? s.options[s.topologyId] : undefined);
}

function pickDefaultView(list: readonly TopologyDesc[]): string {
  const all = api.flattenTopologies(list);
  const containers = all.find((t) => api.viewIdOf(t) === "containers");
  if (containers?.stats && containers.stats.nonpseudo_node_count > 0) return "containers";
  const processes = all.find((t) => api.viewIdOf(t) === "processes");
  return processes ? "processes" : all.length ? api.viewIdOf(all[0]) : "processes";
}

async function pollApi() {
  try {
    const info = await api.getApi();
    useStore.setState({ api: info, apiError: null });
  } catch (e) {
    useStore.setState({ apiError: String((e as Error).message ?? e) });
  }
}

async function pollTopologies() {
  try {
    const list = await api.getTopologies(currentQuery());
    const s = useStore.getState();
    const patch: Partial<ReturnType<typeof useStore.getState>> = { topologies: list };
    if (!s.topologyId || !findView(list, s.topologyId)) patch.topologyId = pickDefaultView(list);
    useStore.setState(patch);
  } catch (e) {
    useStore.setState({ linkError: String((e as Error).message ?? e) });
  }
}

let countsTimer: ReturnType<typeof setTimeout> | null = null;

/**
 * Refreshes the view list (and its node counts) soon after the view gained or lost
 * nodes, rather than at the next poll: the counts in the topology bar then agree
 * with the map. Several diffs in a row cause one request.
 */
function countsChanged() {
  if (countsTimer) return;
  countsTimer = setTimeout(() => {
    countsTimer = null;
    void pollTopologies();
  }, 500);
}

class TopologySocket {
  private ws: WebSocket | null = null;
  private key = "";
  private retry = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private queue: TopologyDiff[] = [];
  private frame = 0;

  /** Opens the socket for `key` (view + options) unless it is already open. */
  follow(view: string, query: string) {
    const key = `${view}?${query}`;
    if (key === this.key) return;
    this.close();
    this.key = key;
    this.retry = 0;
    this.open();
  }

  private open() {
    const key = this.key;
    const [view, query] = key.split("?", 2);
    const path = `api/topology/${encodeURIComponent(view)}/ws?t=${WS_PERIOD}${query ? `&${query}` : ""}`;
    const ws = new WebSocket(api.wsUrl(path));
    this.ws = ws;
    if (useStore.getState().link !== "lost") useStore.setState({ link: "connecting" });
    ws.onopen = () => {
      this.retry = 0;
    };
    ws.onmessage = (ev) => {
      if (ws !== this.ws) return;
      // The link counts as open from its first message, which comes at once: the
      // status then changes with the view it brings, in the same frame, rather than
      // in a frame of its own just before it (each frame costs a software GPU tens of
      // ms, and the graph's WebGL set-up waits behind them).
      if (useStore.getState().link !== "open") useStore.setState({ link: "open", linkError: null });
      try {
        this.queue.push(JSON.parse(String(ev.data)) as TopologyDiff);
      } catch {
        return;
      }
      if (useStore.getState().nodesKey !== key) {
        // The view's first picture is drawn at once; later changes batch per frame.
        if (this.frame) cancelAnimationFrame(this.frame);
        this.flush(key);
      } else if (!this.frame) this.frame = requestAnimationFrame(() => this.flush(key));
    };
    ws.onclose = () => {
      if (ws !== this.ws) return;
      this.ws = null;
      useStore.setState({ link: "lost", linkError: "The connection to the Rescope app was lost; reconnecting…" });
      const delay = Math.min(1000 * 2 ** this.retry, 10_000);
      this.retry++;
      this.timer = setTimeout(() => {
        this.timer = null;
        if (this.key === key) this.open();
      }, delay);
    };
  }

  private flush(key: string) {
    this.frame = 0;
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0 || key !== this.key) return;
    useStore.getState().applyDiff(key, batch.length === 1 ? batch[0] : mergeDiffs(batch));
    if (batch.some((d) => d.add?.length || d.remove?.length)) countsChanged();
  }

  close() {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
    this.queue = [];
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close();
  }
}

let detailsSeq = 0;

/** Fetches the selected node's details now; stale answers are dropped. */
export async function refreshDetails() {
  const s = useStore.getState();
  const id = s.selectedNodeId;
  const view = s.selectedTopologyId ?? s.topologyId;
  if (!id || !view) return;
  const seq = ++detailsSeq;
  const query = view === s.topologyId ? currentQuery() : "";
  try {
    const { node } = await api.getDetails(view, id, query);
    if (seq !== detailsSeq) return;
    useStore.setState({ details: node, detailsError: null });
  } catch (e) {
    if (seq !== detailsSeq) return;
    const err = e as api.HttpError;
    useStore.setState({
      detailsError: err.status === 404 ? "This node is gone: it is no longer in the report." : err.message,
    });
  }
}

/** Runs a control and acts on its answer: a terminal for a pipe, closing removed nodes. */
export async function runControl(c: Control, title: string) {
  const key = `${c.nodeId}/${c.id}`;
  const store = useStore.getState();
  if (c.confirmation && !window.confirm(c.confirmation)) return;
  useStore.setState({ busyControls: { ...store.busyControls, [key]: true } });
  try {
    const res = await api.postControl(c.probeId, c.nodeId, c.id);
    if (res.pipe) {
      const old = useStore.getState().terminal;
      if (old) void api.deletePipe(old.pipeId);
      useStore.setState({
        terminal: {
          pipeId: res.pipe,
          title: `${c.human} · ${title}`,
          raw: !!res.raw_tty,
          probeId: c.probeId,
          nodeId: c.nodeId,
          resizeControl: res.resize_tty_control || undefined,
        },
      });
    }
    if (res.removedNode) useStore.getState().selectNode(null);
    else void refreshDetails();
  } catch (e) {
    useStore.getState().toast(`${c.human}: ${(e as Error).message}`);
  } finally {
    const busy = { ...useStore.getState().busyControls };
    delete busy[key];
    useStore.setState({ busyControls: busy });
  }
}

/** Starts everything; returns a function that stops it (used by tests and hot reload). */
export function startLive(): () => void {
  const socket = new TopologySocket();
  const timers: ReturnType<typeof setInterval>[] = [];

  useStore.getState().loadUrlState(decodeState(location.hash));

  void pollApi();
  void pollTopologies();
  timers.push(setInterval(pollApi, POLL_MS));
  timers.push(setInterval(pollTopologies, POLL_MS));
  timers.push(
    setInterval(() => {
      if (useStore.getState().selectedNodeId) void refreshDetails();
    }, DETAILS_MS),
  );

  let lastHash = location.hash;
  let lastView: string | null = null;
  let lastSelected: string | null = null;
  const unsub = useStore.subscribe((s, prev) => {
    // The view's websocket follows the view and its options, once the list is known.
    if (s.topologyId && s.topologies.length > 0) socket.follow(s.topologyId, currentQuery());
    if (s.topologyId !== prev.topologyId || s.options !== prev.options) void pollTopologies();
    if (s.selectedNodeId !== prev.selectedNodeId || s.selectedTopologyId !== prev.selectedTopologyId)
      void refreshDetails();

    const hash = encodeState(urlStateOf(s));
    if (hash !== lastHash) {
      lastHash = hash;
      // Navigations (another view, another node) get a history entry; the rest replace it.
      const navigation = s.topologyId !== lastView || s.selectedNodeId !== lastSelected;
      if (navigation && lastView !== null) history.pushState(null, "", hash);
      else history.replaceState(null, "", hash);
    }
    lastView = s.topologyId;
    lastSelected = s.selectedNodeId;
  });
  const onHash = () => {
    if (location.hash === lastHash) return;
    lastHash = location.hash;
    useStore.getState().loadUrlState(decodeState(location.hash));
  };
  window.addEventListener("hashchange", onHash);
  window.addEventListener("popstate", onHash);

  return () => {
    unsub();
    socket.close();
    timers.forEach(clearInterval);
    if (countsTimer) clearTimeout(countsTimer);
    countsTimer = null;
    window.removeEventListener("hashchange", onHash);
    window.removeEventListener("popstate", onHash);
  };
}
