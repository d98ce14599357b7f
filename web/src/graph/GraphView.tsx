import Graph from "graphology";
import type FA2Layout from "graphology-layout-forceatlas2/worker";
import { useEffect, useRef, useState } from "react";
import Sigma from "sigma";
import type { Settings } from "sigma/settings";
import { EdgeArrowProgram, EdgeLineProgram, NodePointProgram } from "sigma/rendering";
import { DEFAULT_EDGE_PROGRAM_CLASSES, DEFAULT_NODE_PROGRAM_CLASSES } from "sigma/settings";
import type { NodeMap } from "../diff";
import { useStore } from "../store";
import type { NodeSummary } from "../types";
import { transformWhileMoving } from "./gesture";
import { lazyLayerClears, pickingAtRestOnly, skipPickingWhileMoving } from "./layers";
import { NODE_GAP, layeredLayout, placeNear, spiralLayout, type Point } from "./layout";
import { cutLabel } from "./label";
import ShapeDotProgram from "./shapeProgram";
import { withoutDefaults } from "./unusedProgram";
import { heatColor, pseudoColor, rankColor, shapeCode } from "./style";

/** Views up to this size get the layered layout; larger ones a force layout in a worker. */
export const LAYERED_MAX = 400;
/**
 * Views larger than this draw nodes as plain dots and edges as lines without arrow
 * heads: at that density shapes and arrows are too small to read, and the simplest
 * programs keep panning smooth on software WebGL (5,000 nodes in headless Chromium
 * with SwiftShader: ~600 ms frames with textured shapes and arrows, ~67 ms so).
 */
export const DENSE_ABOVE = 1000;

/** The force layout, loaded when a large view first needs it: small views never do. */
async function loadForceLayout() {
  const [fa2, worker] = await Promise.all([
    import("graphology-layout-forceatlas2"),
    import("graphology-layout-forceatlas2/worker"),
  ]);
  return { inferSettings: fa2.default.inferSettings, FA2Layout: worker.default };
}

interface Props {
  nodes: NodeMap;
  nodesKey: string;
  matches: Set<string> | null;
}

interface LabelData {
  x: number;
  y: number;
  size: number;
  label: string | null;
  minor?: string;
  color: string;
}

/** Drawing state shared with the label renderers, which sigma calls without context. */
const theme = {
  dark: false,
  /** Room for a label in pixels; NaN until measured in the current frame. */
  labelPx: Number.NaN,
  /** Measures the room for a label at the current zoom. */
  measure: () => 200,
};

/**
 * The room for a label, measured once per frame at the first label. Measured then
 * rather than before the frame: sigma updates the graph-to-screen mapping inside its
 * render, so a measure taken before it can be a frame late and, on a view that then
 * stands still, stay wrong.
 */
function labelRoom(): number {
  if (Number.isNaN(theme.labelPx)) theme.labelPx = theme.measure();
  return theme.labelPx;
}

/**
 * Labels already cut, by font, room and text: every frame draws every label again, and
 * while the view pans the room stays the same, so the measuring is done once.
 */
const fitted = new Map<string, string>();

/** The text cut to fit `px` pixels in the context's current font (`cutLabel`). */
function fit(ctx: CanvasRenderingContext2D, text: string, px: number): string {
  const key = `${ctx.font}\u0000${px}\u0000${text}`;
  let out = fitted.get(key);
  if (out === undefined) {
    if (fitted.size > 20_000) fitted.clear();
    out = cutLabel((t) => ctx.measureText(t).width, text, px);
    fitted.set(key, out);
  }
  return out;
}

function drawLabel(ctx: CanvasRenderingContext2D, data: LabelData, settings: { labelSize: number; labelFont: string }) {
  if (!data.label) return;
  const size = settings.labelSize;
  ctx.textAlign = "center";
  ctx.font = `600 ${size}px ${settings.labelFont}`;
  ctx.fillStyle = theme.dark ? "#e5e7eb" : "#111827";
  const px = (data as { hovered?: boolean }).hovered ? 420 : labelRoom();
  ctx.fillText(fit(ctx, data.label, px), data.x, data.y + data.size + size + 3);
  if (data.minor) {
    ctx.font = `400 ${size - 1}px ${settings.labelFont}`;
    ctx.fillStyle = theme.dark ? "#9ca3af" : "#6b7280";
    ctx.fillText(fit(ctx, data.minor, px), data.x, data.y + data.size + 2 * size + 5);
  }
  ctx.textAlign = "left";
}

function drawHover(ctx: CanvasRenderingContext2D, data: LabelData, settings: { labelSize: number; labelFont: string }) {
  if (!data.label) return;
  const size = settings.labelSize;
  ctx.font = `600 ${size}px ${settings.labelFont}`;
  const w = Math.min(Math.max(ctx.measureText(data.label).width, data.minor ? ctx.measureText(data.minor).width : 0), 420) + 12;
  const h = (data.minor ? 2 * size + 8 : size + 6) + 4;
  ctx.fillStyle = theme.dark ? "rgba(17,24,39,0.92)" : "rgba(255,255,255,0.94)";
  ctx.shadowColor = "rgba(0,0,0,0.25)";
  ctx.shadowBlur = 6;
  ctx.beginPath();
  ctx.roundRect(data.x - w / 2, data.y + data.size + 1, w, h, 4);
  ctx.fill();
  ctx.shadowBlur = 0;
  drawLabel(ctx, { ...data, hovered: true } as LabelData, settings);
}


/**
 * Frames the whole graph, but never magnifies a small one: sigma stretches any graph
 * to the viewport, which would put two nodes a screen apart.
 */
export function fitCamera(sigma: Sigma, graph: Graph) {
  let minX = Infinity;
  let maxX = -Infinity;
  let minY = Infinity;
  let maxY = -Infinity;
  graph.forEachNode((_, a) => {
    minX = Math.min(minX, a.x);
    maxX = Math.max(maxX, a.x);
    minY = Math.min(minY, a.y);
    maxY = Math.max(maxY, a.y);
  });
  const extent = Math.max(maxX - minX, maxY - minY, 1);
  const { width, height } = sigma.getDimensions();
  const ratio = Math.max(1, Math.min(width, height) / (extent * 1.2 + 200));
  sigma.getCamera().setState({ x: 0.5, y: 0.5, ratio, angle: 0 });
}

/** Sets a sigma setting only when it differs: each change indexes the whole graph again. */
function setIfChanged<K extends keyof Settings>(sigma: Sigma, key: K, value: Settings[K]) {
  if (sigma.getSetting(key) !== value) sigma.setSetting(key, value);
}

function nodeSize(count: number): number {
  if (count <= 40) return 22;
  if (count <= LAYERED_MAX) return 11;
  if (count <= 1500) return 6;
  return 4;
}

function metricFraction(n: NodeSummary, metricLabel: string | null): number | null {
  if (!metricLabel) return null;
  const m = n.metrics?.find((x) => x.label === metricLabel);
  if (!m) return null;
  const max = m.format === "percent" ? Math.max(m.max, 100) : m.max;
  return max > 0 ? m.value / max : 0;
}

function colorOf(n: NodeSummary, metric: string | null, dark: boolean): string {
  if (n.pseudo) return pseudoColor(dark);
  const f = metricFraction(n, metric);
  if (f !== null) return heatColor(f);
  if (metric) return dark ? "#4b5563" : "#d1d5db";
  return rankColor(n.rank || n.label, dark);
}

function nodeAttrs(n: NodeSummary, count: number, metric: string | null, dark: boolean) {
  const size = nodeSize(count);
  return {
    label: n.label || n.id,
    minor: n.labelMinor,
    size: n.pseudo ? size * 0.9 : size,
    color: colorOf(n, metric, dark),
    shapeCode: shapeCode(n.shape, n.stack),
    type: count > DENSE_ABOVE ? "dot" : "shape",
    pseudo: !!n.pseudo,
  };
}

export default function GraphView({ nodes, nodesKey, matches }: Props) {
  const container = useRef<HTMLDivElement>(null);
  const sigmaRef = useRef<Sigma | null>(null);
  const graphRef = useRef<Graph | null>(null);
  const layoutRef = useRef<FA2Layout | null>(null);
  /** Bumped whenever a layout is stopped, so a layout still loading knows it is stale. */
  const layoutSeq = useRef(0);
  /** A layout was asked for and its code is still loading. */
  const layoutPending = useRef(false);
  const keyRef = useRef<string>("");
  const hoverRef = useRef<{ node: string; near: Set<string> } | null>(null);
  const matchRef = useRef<Set<string> | null>(null);
  const selectedRef = useRef<string | null>(null);
  const stopTimer = useRef<ReturnType<typeof setTimeout> | null>(null);
  /** A view with nodes has been drawn (until then the layers stay empty). */
  const drewNodes = useRef(false);
  const [relayout, setRelayout] = useState(0);
  const relayoutSeen = useRef(0);
  const selectNode = useStore((s) => s.selectNode);
  const selected = useStore((s) => s.selectedNodeId);
  const metric = useStore((s) => s.pinnedMetricType);
  const dark = useStore((s) => s.theme === "dark");

  // Create the renderer once.
  useEffect(() => {
    const graph = new Graph({ multi: false, type: "directed" });
    graphRef.current = graph;
    const sigma = new Sigma(graph, container.current!, {
      // The programs of views up to DENSE_ABOVE nodes; those of denser views are added
      // when one is first shown (each program compiled costs time before the first
      // frame on a software GPU). Sigma's own defaults, which nothing here uses, are
      // replaced by a program that compiles nothing (see ./unusedProgram).
      nodeProgramClasses: withoutDefaults({ shape: ShapeDotProgram }, DEFAULT_NODE_PROGRAM_CLASSES),
      edgeProgramClasses: withoutDefaults({ arrow: EdgeArrowProgram }, DEFAULT_EDGE_PROGRAM_CLASSES),
      defaultEdgeType: "arrow",
      defaultNodeType: "shape",
      defaultDrawNodeLabel: drawLabel as never,
      defaultDrawNodeHover: drawHover as never,
      labelFont: "Inter, ui-sans-serif, system-ui, sans-serif",
      labelSize: 12,
      labelDensity: 0.5,
      labelGridCellSize: 90,
      labelRenderedSizeThreshold: 5,
      renderEdgeLabels: false,
      hideEdgesOnMove: false,
      zIndex: true,
      stagePadding: 60,
      minCameraRatio: 0.02,
      maxCameraRatio: 8,
      nodeReducer: (node, data) => {
        const res: Record<string, unknown> = { ...data };
        const hover = hoverRef.current;
        const match = matchRef.current;
        const faded = theme.dark ? "#374151" : "#e5e7eb";
        if (node === selectedRef.current) {
          res.highlighted = true;
          res.zIndex = 2;
        }
        if (hover && hover.node !== node && !hover.near.has(node)) {
          res.color = faded;
          res.label = null;
          res.zIndex = 0;
        } else if (hover) {
          res.zIndex = 1;
          res.forceLabel = true;
        }
        if (match && !match.has(node)) {
          res.color = faded;
          res.label = null;
        } else if (match) {
          res.forceLabel = true;
          res.zIndex = 1;
        }
        return res as typeof data;
      },
      edgeReducer: (edge, data) => {
        const res: Record<string, unknown> = { ...data };
        const hover = hoverRef.current;
        const match = matchRef.current;
        const [s, t] = graph.extremities(edge);
        if (hover) {
          if (s !== hover.node && t !== hover.node) res.hidden = true;
          else {
            res.color = theme.dark ? "#93c5fd" : "#2563eb";
            res.size = 2;
          }
        }
        if (match && (!match.has(s) || !match.has(t))) res.hidden = true;
        return res as typeof data;
      },
    });
    sigmaRef.current = sigma;
    lazyLayerClears(sigma.getCanvases(), false);
    const captor = sigma.getMouseCaptor() as unknown as Parameters<typeof skipPickingWhileMoving>[0] & {
      isMoving: boolean;
      draggedEvents: number;
      currentWheelDirection: number;
    };
    skipPickingWhileMoving(captor);
    // Sigma's own test for a moving camera (it hides edges and labels by it).
    pickingAtRestOnly(
      sigma,
      () => sigma.getCamera().isAnimated() || captor.isMoving || !!captor.draggedEvents || !!captor.currentWheelDirection,
    );
    // Mouse pans and zooms slide a copy of the drawn layers; the view is drawn once
    // they end. The copy starts once the first view is on screen and the page is idle
    // (made with a draw of its own then): making it with the first draw would hold
    // that draw up (a full-size canvas, three layer blits, on a software GPU too).
    let copying = false;
    let copyTimer: ReturnType<typeof setTimeout> | null = null;
    let copyIdle: number | null = null;
    const startCopying = () => {
      copyTimer = null;
      copyIdle = null;
      copying = true;
      sigma.scheduleRender();
    };
    const stopGestures = transformWhileMoving(sigma, captor, {
      stage: sigma.getCanvases().mouse,
      doc: document,
      copyFrom: () => copying,
    });
    sigma.on("afterRender", () => {
      if (copying || copyTimer !== null || copyIdle !== null || graph.order === 0) return;
      // A moment after the first view, so the GPU process has shown it first.
      copyTimer = setTimeout(() => {
        copyTimer = null;
        if (typeof requestIdleCallback === "function") copyIdle = requestIdleCallback(startCopying, { timeout: 1000 });
        else startCopying();
      }, 300);
    });
    // Labels get the room between neighbouring nodes at the current zoom.
    theme.measure = () => {
      if (graph.order > LAYERED_MAX) return 180;
      const a = sigma.graphToViewport({ x: 0, y: 0 });
      const b = sigma.graphToViewport({ x: NODE_GAP, y: 0 });
      return Math.max(40, Math.abs(b.x - a.x) - 8);
    };
    sigma.on("beforeRender", () => {
      theme.labelPx = Number.NaN;
    });
    // Hover changes draw the whole view in the next frame; sigma then skips its own
    // frame for the hovered node alone (see transformWhileMoving).
    sigma.on("enterNode", ({ node }) => {
      hoverRef.current = { node, near: new Set(graph.neighbors(node)) };
      container.current!.style.cursor = "pointer";
      sigma.refresh({ skipIndexation: true, schedule: true });
    });
    sigma.on("leaveNode", () => {
      hoverRef.current = null;
      container.current!.style.cursor = "";
      sigma.refresh({ skipIndexation: true, schedule: true });
    });
    sigma.on("clickNode", ({ node }) => selectNode(node));
    // When the last frame was drawn and with how many nodes: read by the UI benchmark.
    sigma.on("afterRender", () => {
      (window as unknown as { __rescopeLastRender?: object }).__rescopeLastRender = {
        order: graph.order,
        t: performance.now(),
      };
    });
    sigma.on("clickStage", () => selectNode(null));
    (window as unknown as { __rescopeSigma?: Sigma }).__rescopeSigma = sigma;
    // Sigma follows window resizes only; the stage also changes size when a banner
    // above it comes or goes. Its layers are sized in pixels when it draws, so draw.
    const resized =
      typeof ResizeObserver === "undefined"
        ? null
        : new ResizeObserver(([e]) => {
            const { width, height } = sigma.getDimensions();
            const box = e?.contentRect;
            if (box && (Math.round(box.width) !== width || Math.round(box.height) !== height)) sigma.scheduleRefresh();
          });
    resized?.observe(container.current!);
    return () => {
      resized?.disconnect();
      if (copyTimer !== null) clearTimeout(copyTimer);
      if (copyIdle !== null) cancelIdleCallback(copyIdle);
      stopGestures();
      layoutSeq.current++;
      layoutRef.current?.kill();
      layoutRef.current = null;
      sigma.kill();
      sigmaRef.current = null;
    };
  }, [selectNode]);

  // Selection and search only change how things are drawn. Declared before the
  // effect below so that, when the view first arrives, its draw already has them and
  // this one does not draw the view a second time in the same task.
  useEffect(() => {
    selectedRef.current = selected;
    matchRef.current = matches;
    if (drewNodes.current) sigmaRef.current?.refresh({ skipIndexation: true });
  }, [selected, matches]);

  // Keep the graph in step with the nodes.
  useEffect(() => {
    const graph = graphRef.current!;
    const sigma = sigmaRef.current!;
    theme.dark = dark;
    const fresh = keyRef.current !== nodesKey || graph.order === 0 || relayout !== relayoutSeen.current;
    relayoutSeen.current = relayout;
    const large = nodes.size > LAYERED_MAX;
    const seq = ++layoutSeq.current;
    const wasRunning = (layoutRef.current?.isRunning() ?? false) || layoutPending.current;
    layoutPending.current = false;
    layoutRef.current?.kill();
    layoutRef.current = null;

    if (nodes.size > DENSE_ABOVE && !sigma.getSetting("nodeProgramClasses").dot) {
      // Every program already there is kept: sigma 3.0.3's unregistering of a node
      // program replaces its node programs by its hover programs (which draw into the
      // hover layer), after which no node was drawn at all in views over DENSE_ABOVE.
      sigma.setSetting("nodeProgramClasses", { ...sigma.getSetting("nodeProgramClasses"), dot: NodePointProgram });
      sigma.setSetting("edgeProgramClasses", { ...sigma.getSetting("edgeProgramClasses"), line: EdgeLineProgram });
    }

    let added = 0;
    if (fresh) {
      graph.clear();
      // Settings first, while the graph is empty: sigma indexes the whole graph again
      // on every setting changed, and only when it changes.
      // Small views show every label (each cut to the room it has); large ones let
      // sigma thin them out.
      setIfChanged(sigma, "labelDensity", large ? 0.5 : 100);
      setIfChanged(sigma, "labelRenderedSizeThreshold", large ? 5 : 0);
      // Large views pan and zoom with nodes only; edges and labels return when the
      // camera stops.
      setIfChanged(sigma, "hideEdgesOnMove", large);
      setIfChanged(sigma, "hideLabelsOnMove", large);
      const list = [...nodes.values()];
      const pos = large ? spiralLayout(list) : layeredLayout(list);
      for (const n of list) {
        const p = pos.get(n.id)!;
        graph.addNode(n.id, { ...nodeAttrs(n, nodes.size, metric, dark), x: p.x, y: -p.y });
      }
      added = list.length;
      keyRef.current = nodesKey;
    } else {
      graph.forEachNode((id) => {
        if (!nodes.has(id)) graph.dropNode(id);
      });
      const placed = new Map<string, Point>();
      graph.forEachNode((id, a) => placed.set(id, { x: a.x as number, y: -(a.y as number) }));
      let seed = 0;
      for (const n of nodes.values()) {
        if (graph.hasNode(n.id)) {
          graph.mergeNodeAttributes(n.id, nodeAttrs(n, nodes.size, metric, dark));
          continue;
        }
        // Neighbours in both directions: who points at this node too.
        const near = [...(n.adjacency ?? [])];
        const p = placeNear(n.id, near, placed, seed++);
        placed.set(n.id, p);
        graph.addNode(n.id, { ...nodeAttrs(n, nodes.size, metric, dark), x: p.x, y: -p.y });
        added++;
      }
    }
    // Edges: exactly the adjacency of the nodes on screen.
    const edgeType = nodes.size > DENSE_ABOVE ? "line" : "arrow";
    const want = new Set<string>();
    for (const n of nodes.values())
      for (const t of n.adjacency ?? []) {
        if (t === n.id || !graph.hasNode(t)) continue;
        const key = `${n.id}->${t}`;
        want.add(key);
        if (!graph.hasEdge(key)) graph.addDirectedEdgeWithKey(key, n.id, t, { size: 1, color: dark ? "#4b5563" : "#cbd5e1", type: edgeType });
        else if (graph.getEdgeAttribute(key, "type") !== edgeType) graph.setEdgeAttribute(key, "type", edgeType);
      }
    graph.forEachEdge((e) => {
      if (!want.has(e)) graph.dropEdge(e);
    });

    if (large && (added > 0 || wasRunning)) {
      layoutPending.current = true;
      void loadForceLayout().then(({ inferSettings, FA2Layout }) => {
        if (seq !== layoutSeq.current) return;
        layoutPending.current = false;
        const layout = new FA2Layout(graph, {
          settings: { ...inferSettings(graph), barnesHutOptimize: graph.order > 800, slowDown: 8 },
        });
        layoutRef.current = layout;
        layout.start();
        if (stopTimer.current) clearTimeout(stopTimer.current);
        stopTimer.current = setTimeout(() => layout.stop(), fresh ? 6000 : 1500);
      });
    }
    if (fresh) fitCamera(sigma, graph);
    // Until the first nodes arrive there is nothing to draw: sigma drew its empty
    // layers when it was made, and each draw before the first view only adds GPU work
    // in front of it.
    if (graph.order > 0 || drewNodes.current) sigma.refresh();
    if (graph.order > 0) drewNodes.current = true;
  }, [nodes, nodesKey, metric, dark, relayout]);

  useEffect(() => () => {
    if (stopTimer.current) clearTimeout(stopTimer.current);
  }, []);

  const camera = () => sigmaRef.current!.getCamera();
  return (
    <div className="graph">
      <div ref={container} className="graph-canvas" data-testid="graph" />
      <div className="zoom-controls" role="group" aria-label="Zoom">
        <button title="Zoom in" onClick={() => camera().animatedZoom({ duration: 200 })}>+</button>
        <button title="Zoom out" onClick={() => camera().animatedUnzoom({ duration: 200 })}>−</button>
        <button title="Fit to screen" onClick={() => fitCamera(sigmaRef.current!, graphRef.current!)}>⤢</button>
        <button title="Lay out again" onClick={() => setRelayout((n) => n + 1)}>↻</button>
      </div>
    </div>
  );
}
