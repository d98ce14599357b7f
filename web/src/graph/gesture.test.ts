import { afterEach, describe, expect, it, vi } from "vitest";
import { cameraShift, gestureOngoing, transformWhileMoving, type CameraState, type Matrix } from "./gesture";

type Point = { x: number; y: number };

// A renderer-like mapping: the camera's point at the viewport's centre, `ratio` graph
// units per 100 pixels, y pointing up in the graph.
const W = 400;
const H = 200;
const toGraph = (p: Point, c: CameraState): Point => ({
  x: ((p.x - W / 2) * c.ratio) / 100 + c.x,
  y: (-(p.y - H / 2) * c.ratio) / 100 + c.y,
});
const toViewport = (g: Point, c: CameraState): Point => ({
  x: ((g.x - c.x) * 100) / c.ratio + W / 2,
  y: (-(g.y - c.y) * 100) / c.ratio + H / 2,
});
const apply = ([a, b, c, d, e, f]: Matrix, p: Point): Point => ({ x: a * p.x + c * p.y + e, y: b * p.x + d * p.y + f });
const cam = (x: number, y: number, ratio: number): CameraState => ({ x, y, ratio, angle: 0 });

describe("cameraShift", () => {
  it("moves every drawn point to where the new camera shows it", () => {
    const pairs: [CameraState, CameraState][] = [
      [cam(0.5, 0.5, 1), cam(0.7, 0.4, 1)],
      [cam(0.5, 0.5, 1), cam(0.5, 0.5, 0.5)],
      [cam(0.2, 0.9, 2), cam(0.31, 0.75, 0.37)],
    ];
    for (const [from, to] of pairs) {
      const m = cameraShift(toGraph, toViewport, from, to, W, H);
      for (const g of [{ x: 0, y: 0 }, { x: 1, y: 1 }, { x: 0.3, y: -2 }]) {
        const was = toViewport(g, from);
        const is = toViewport(g, to);
        const moved = apply(m, was);
        expect(moved.x).toBeCloseTo(is.x, 6);
        expect(moved.y).toBeCloseTo(is.y, 6);
      }
    }
  });

  it("is a pure translation for a pan and a scale for a zoom", () => {
    const pan = cameraShift(toGraph, toViewport, cam(0.5, 0.5, 1), cam(0.6, 0.5, 1), W, H);
    expect(pan.map((v) => +v.toFixed(6))).toEqual([1, 0, 0, 1, -10, 0]);
    const zoom = cameraShift(toGraph, toViewport, cam(0.5, 0.5, 1), cam(0.5, 0.5, 0.5), W, H);
    // Twice as large around the viewport's centre.
    expect(zoom.map((v) => +v.toFixed(6))).toEqual([2, 0, 0, 2, -W / 2, -H / 2]);
  });
});

describe("gestureOngoing", () => {
  const still = { mouseDown: false, animated: false, rendererMoving: false, lastInput: 0 };
  it("ends only when nothing holds it", () => {
    expect(gestureOngoing(still, 200, 120)).toBe(false);
    expect(gestureOngoing(still, 100, 120)).toBe(true);
    expect(gestureOngoing({ ...still, mouseDown: true }, 1e6, 120)).toBe(true);
    expect(gestureOngoing({ ...still, animated: true }, 1e6, 120)).toBe(true);
    expect(gestureOngoing({ ...still, rendererMoving: true }, 1e6, 120)).toBe(true);
  });
});

function fakeRenderer() {
  const container = document.createElement("div");
  const canvases: Record<string, HTMLCanvasElement> = {};
  for (const id of ["edges", "nodes", "labels", "mouse"]) {
    const c = document.createElement("canvas");
    c.width = W;
    c.height = H;
    container.appendChild(c);
    canvases[id] = c;
  }
  let state = cam(0.5, 0.5, 1);
  const handlers: Record<string, (() => void)[]> = { beforeRender: [], afterRender: [] };
  const r = {
    draws: 0,
    highlights: 0,
    renderFrame: null as number | null,
    camera: {
      animated: false,
      getState: () => ({ ...state }),
      isAnimated: () => r.camera.animated,
    },
    setCamera: (c: CameraState) => {
      state = c;
    },
    render() {
      handlers.beforeRender.forEach((f) => f());
      r.draws++;
      // Sigma draws the hovered nodes as part of every frame.
      r.renderHighlightedNodes();
      handlers.afterRender.forEach((f) => f());
      return r;
    },
    renderHighlightedNodes() {
      r.highlights++;
    },
    refreshes: [] as string[],
    // Like sigma: indexes, then draws through the (wrapped) render.
    refresh(opts?: { partialGraph?: unknown }) {
      r.refreshes.push(opts?.partialGraph ? "partial" : "full");
      return r.render();
    },
    getNodeAtPosition: (_p: unknown) => "node",
    getCamera: () => r.camera,
    getCanvases: () => canvases,
    getDimensions: () => ({ width: W, height: H }),
    viewportToFramedGraph: (p: Point, o?: { cameraState?: CameraState }) => toGraph(p, o?.cameraState ?? state),
    framedGraphToViewport: (p: Point, o?: { cameraState?: CameraState }) => toViewport(p, o?.cameraState ?? state),
    on: (ev: string, f: () => void) => handlers[ev].push(f),
  };
  return { r, canvases, container };
}

describe("transformWhileMoving", () => {
  afterEach(() => {
    vi.useRealTimers();
    vi.restoreAllMocks();
  });

  function setup(withSnapshot: boolean, copyFrom?: () => boolean) {
    vi.useFakeTimers();
    const ctx = { fillStyle: "", fillRect: vi.fn(), drawImage: vi.fn() };
    vi.spyOn(HTMLCanvasElement.prototype, "getContext").mockReturnValue((withSnapshot ? ctx : null) as never);
    const { r, canvases, container } = fakeRenderer();
    const captor = { isMouseDown: false, isMoving: false, draggedEvents: 0, currentWheelDirection: 0 };
    const doc = new EventTarget();
    const stop = transformWhileMoving(r, captor, { stage: canvases.mouse, doc, now: () => Date.now(), quietMs: 120, copyFrom });
    const snap = container.querySelector(".sigma-gesture") as HTMLCanvasElement;
    return { r, canvases, captor, doc, stop, snap, ctx };
  }

  /** What is on screen: the copy (layers hidden) or the layers themselves. */
  function shown(snap: HTMLCanvasElement, canvases: Record<string, HTMLCanvasElement>) {
    const copy = snap.style.display === "";
    const layers = canvases.nodes.style.opacity === "";
    return copy === layers ? "both or neither" : copy ? "copy" : "layers";
  }

  it("shows a copy of every draw in place of the layers", () => {
    const { r, canvases, snap, ctx } = setup(true);
    // Nothing drawn yet: the layers show through.
    expect(shown(snap, canvases)).toBe("layers");
    r.render();
    expect(ctx.drawImage).toHaveBeenCalledTimes(3);
    expect(shown(snap, canvases)).toBe("copy");
    r.render();
    expect(ctx.drawImage).toHaveBeenCalledTimes(6);
    expect(shown(snap, canvases)).toBe("copy");
    // The hovered nodes' layers are never drawn alone (the other layers could not be
    // copied then): the whole view is drawn and copied instead.
    r.renderHighlightedNodes();
    expect(r.draws).toBe(3);
    expect(r.highlights).toBe(3);
    expect(ctx.drawImage).toHaveBeenCalledTimes(9);
  });

  it("shows the layers themselves until copies may start, then copies every draw", () => {
    let copying = false;
    const { r, canvases, snap, ctx } = setup(true, () => copying);
    r.render();
    expect(ctx.drawImage).toHaveBeenCalledTimes(0);
    expect(shown(snap, canvases)).toBe("layers");
    // Before the copy starts, hovered nodes draw alone.
    r.renderHighlightedNodes();
    expect(r.draws).toBe(1);
    expect(r.highlights).toBe(2);
    copying = true;
    r.render();
    expect(ctx.drawImage).toHaveBeenCalledTimes(3);
    expect(shown(snap, canvases)).toBe("copy");
    // Once started, every draw is copied, whatever the predicate says now.
    copying = false;
    r.render();
    expect(ctx.drawImage).toHaveBeenCalledTimes(6);
  });

  it("starts the copy with a gesture that comes before copies may start", () => {
    const { r, canvases, snap, ctx } = setup(true, () => false);
    r.render();
    expect(shown(snap, canvases)).toBe("layers");
    // The gesture's first frame is drawn for real and copied; the next ones slide it.
    canvases.mouse.dispatchEvent(new Event("wheel"));
    r.setCamera(cam(0.5, 0.5, 0.5));
    r.render();
    expect(r.draws).toBe(2);
    expect(ctx.drawImage).toHaveBeenCalledTimes(3);
    expect(shown(snap, canvases)).toBe("copy");
    r.setCamera(cam(0.5, 0.5, 0.25));
    r.render();
    expect(r.draws).toBe(2);
    expect(snap.style.transform).not.toBe("");
  });

  it("covers what the layers cover, even after the container changed size", () => {
    const { r, canvases, snap } = setup(true);
    // Sigma sizes its layers in pixels when it draws.
    for (const c of Object.values(canvases)) Object.assign(c.style, { width: "400px", height: "300px" });
    r.render();
    expect([snap.style.width, snap.style.height]).toEqual(["400px", "300px"]);
    for (const c of Object.values(canvases)) Object.assign(c.style, { width: "420px", height: "260px" });
    r.render();
    expect([snap.style.width, snap.style.height]).toEqual(["420px", "260px"]);
  });

  it("starts a gesture without drawing and draws once when it stops", () => {
    const { r, snap, ctx, canvases } = setup(true);
    r.render();
    expect(r.draws).toBe(1);
    canvases.mouse.dispatchEvent(new Event("wheel"));
    // The gesture's first frame only moves the copy, and lets sigma schedule frames again.
    r.setCamera(cam(0.5, 0.5, 0.5));
    r.renderFrame = 42;
    r.render();
    expect(r.draws).toBe(1);
    expect(ctx.drawImage).toHaveBeenCalledTimes(3);
    expect(r.renderFrame).toBe(null);
    expect(snap.style.transform).toBe("matrix(2,0,0,2,-200,-100)");
    // A hover redraw asked for meanwhile waits for the real draw.
    r.renderHighlightedNodes();
    expect(r.highlights).toBe(1);
    // Still going while the camera animates, over once it stops and the wheel is quiet.
    r.camera.animated = true;
    vi.advanceTimersByTime(500);
    expect(r.draws).toBe(1);
    r.camera.animated = false;
    vi.advanceTimersByTime(100);
    expect(r.draws).toBe(2);
    expect(r.highlights).toBe(2);
    // The new copy replaces the moved one.
    expect(ctx.drawImage).toHaveBeenCalledTimes(6);
    expect(snap.style.transform).toBe("");
    expect(snap.style.display).toBe("");
    // Camera moves made by code draw as before.
    r.setCamera(cam(0.6, 0.5, 0.5));
    r.render();
    expect(r.draws).toBe(3);
  });

  it("puts a full refresh asked for during a gesture off to its end", () => {
    const { r, canvases } = setup(true);
    r.render();
    canvases.mouse.dispatchEvent(new Event("wheel"));
    r.setCamera(cam(0.6, 0.5, 1));
    r.refresh();
    r.refresh({ skipIndexation: true } as never);
    expect(r.refreshes).toEqual([]);
    // A partial one indexes now; its draw waits.
    r.refresh({ partialGraph: { nodes: ["a"] } });
    expect(r.refreshes).toEqual(["partial"]);
    expect(r.draws).toBe(1);
    vi.advanceTimersByTime(200);
    // One full refresh, which draws.
    expect(r.refreshes).toEqual(["partial", "full"]);
    expect(r.draws).toBe(2);
  });

  it("a lookup during a gesture with a refresh put off refreshes and draws first", () => {
    const { r, canvases, snap } = setup(true);
    r.render();
    canvases.mouse.dispatchEvent(new Event("wheel"));
    r.refresh();
    expect(r.getNodeAtPosition({ x: 1, y: 1 })).toBe("node");
    expect(r.refreshes).toEqual(["full"]);
    expect(r.draws).toBe(2);
    expect(snap.style.transform).toBe("");
    vi.advanceTimersByTime(200);
    expect(r.draws).toBe(2);
  });

  it("draws at the end of a gesture that moved nothing but put off a hover redraw", () => {
    const { r, canvases } = setup(true);
    r.render();
    canvases.mouse.dispatchEvent(new Event("wheel"));
    r.renderHighlightedNodes();
    expect(r.draws).toBe(1);
    vi.advanceTimersByTime(200);
    expect(r.draws).toBe(2);
  });

  it("draws nothing at the end of a gesture that moved nothing", () => {
    const { r, captor, doc } = setup(true);
    r.render();
    captor.isMouseDown = true;
    doc.dispatchEvent(new Event("mousemove"));
    captor.isMouseDown = false;
    doc.dispatchEvent(new Event("mouseup"));
    vi.advanceTimersByTime(500);
    expect(r.draws).toBe(1);
  });

  it("draws first when a gesture starts before anything was drawn", () => {
    const { r, canvases, snap } = setup(true);
    canvases.mouse.dispatchEvent(new Event("wheel"));
    r.render();
    expect(r.draws).toBe(1);
    expect(snap.style.display).toBe("");
    r.setCamera(cam(0.6, 0.5, 1));
    r.render();
    expect(r.draws).toBe(1);
    expect(snap.style.transform).toBe("matrix(1,0,0,1,-10,0)");
  });

  it("keeps the drag going while the button is held; a lookup on a shifted picture draws first", () => {
    const { r, captor, doc, canvases } = setup(false);
    captor.isMouseDown = true;
    doc.dispatchEvent(new Event("mousemove"));
    r.setCamera(cam(0.6, 0.5, 1));
    r.render();
    // Without a 2D context the layers themselves are moved.
    expect(r.draws).toBe(0);
    expect(canvases.nodes.style.transform).toBe("matrix(1,0,0,1,-10,0)");
    expect(canvases.mouse.style.transform).toBe("");
    vi.advanceTimersByTime(1000);
    expect(r.draws).toBe(0);
    expect(r.getNodeAtPosition({ x: 1, y: 1 })).toBe("node");
    expect(r.draws).toBe(1);
    expect(canvases.nodes.style.transform).toBe("");
    r.setCamera(cam(0.7, 0.5, 1));
    r.render();
    expect(r.draws).toBe(1);
    captor.isMouseDown = false;
    doc.dispatchEvent(new Event("mouseup"));
    vi.advanceTimersByTime(10);
    expect(r.draws).toBe(2);
    expect(canvases.nodes.style.transform).toBe("");
  });

  it("ignores mouse moves without a button held", () => {
    const { r, doc } = setup(true);
    doc.dispatchEvent(new Event("mousemove"));
    r.setCamera(cam(0.6, 0.5, 1));
    r.render();
    r.render();
    expect(r.draws).toBe(2);
  });

  it("gives the layers back when removed", () => {
    const { r, canvases, stop } = setup(true);
    r.render();
    expect(canvases.nodes.style.opacity).toBe("0");
    stop();
    expect(canvases.nodes.style.opacity).toBe("");
    expect(canvases.nodes.parentElement?.querySelector(".sigma-gesture")).toBe(null);
  });
});
