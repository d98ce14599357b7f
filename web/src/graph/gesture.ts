// Pan and zoom without redrawing. On software WebGL a frame of sigma costs clearing,
// drawing and presenting its full-size layers again, whatever moved; while the user
// drags or wheels, the picture only slides and scales. So the screen shows a copy of
// the drawn layers, made after every draw; during such a gesture that copy is moved
// with a CSS transform (the compositor does that without redrawing anything) and the
// view is drawn once, for real, when the gesture ends. Anything else that asks for a
// frame meanwhile (a live update, a hover change, the force layout) waits for that
// one draw.

export interface CameraState {
  x: number;
  y: number;
  ratio: number;
  angle: number;
}

type Point = { x: number; y: number };

/** A CSS `matrix(a, b, c, d, e, f)`: (x, y) -> (a x + c y + e, b x + d y + f). */
export type Matrix = [number, number, number, number, number, number];

/**
 * The transform that takes a picture drawn with the camera at `from` to where the same
 * graph appears with the camera at `to`, in viewport pixels (origin top left).
 * `toGraph` and `toViewport` are the renderer's viewport <-> framed-graph mappings for a
 * given camera; sigma's are affine, so three points determine the matrix.
 */
export function cameraShift(
  toGraph: (p: Point, cam: CameraState) => Point,
  toViewport: (p: Point, cam: CameraState) => Point,
  from: CameraState,
  to: CameraState,
  width: number,
  height: number,
): Matrix {
  const move = (p: Point) => toViewport(toGraph(p, from), to);
  const w = Math.max(width, 1);
  const h = Math.max(height, 1);
  const o = move({ x: 0, y: 0 });
  const ex = move({ x: w, y: 0 });
  const ey = move({ x: 0, y: h });
  return [(ex.x - o.x) / w, (ex.y - o.y) / w, (ey.x - o.x) / h, (ey.y - o.y) / h, o.x, o.y];
}

export function sameCamera(a: CameraState, b: CameraState): boolean {
  return a.x === b.x && a.y === b.y && a.ratio === b.ratio && a.angle === b.angle;
}

export interface GestureSignals {
  /** A button is held on the stage (a drag may be going on). */
  mouseDown: boolean;
  /** The camera is animating (a wheel step's zoom, the glide after a drag). */
  animated: boolean;
  /** The renderer itself still counts the camera as moving (sigma's own test). */
  rendererMoving: boolean;
  /** When the last wheel step or drag move arrived (ms, same clock as `now`). */
  lastInput: number;
}

/**
 * Whether a gesture is still going on: the view is drawn for real only once this is
 * false, i.e. `quietMs` after the last input with no button held and the camera still.
 */
export function gestureOngoing(s: GestureSignals, now: number, quietMs: number): boolean {
  return s.mouseDown || s.animated || s.rendererMoving || now - s.lastInput < quietMs;
}

interface Captor {
  isMouseDown?: boolean;
  isMoving?: boolean;
  draggedEvents?: number;
  currentWheelDirection?: number;
}

/** What this needs of sigma 3's renderer (some of it private). */
interface Renderer {
  render(): unknown;
  refresh(opts?: { partialGraph?: unknown; schedule?: boolean; skipIndexation?: boolean }): unknown;
  renderHighlightedNodes?: () => unknown;
  renderFrame: number | null;
  getNodeAtPosition(position: unknown): string | null;
  getCamera(): { getState(): CameraState; isAnimated(): boolean };
  getCanvases(): Record<string, HTMLCanvasElement>;
  getDimensions(): { width: number; height: number };
  viewportToFramedGraph(p: Point, override?: { cameraState?: CameraState }): Point;
  framedGraphToViewport(p: Point, override?: { cameraState?: CameraState }): Point;
  on(event: "afterRender" | "beforeRender", fn: () => void): unknown;
}

export interface GestureOptions {
  /** How long after the last wheel step or drag move the gesture counts as over. */
  quietMs?: number;
  /** Clock (for tests). */
  now?: () => number;
  /** The element that gets wheel and button-down events (sigma's mouse layer). */
  stage: EventTarget;
  /** Where moves and button-up events are listened for (sigma listens on the document). */
  doc: EventTarget;
  /**
   * Whether a draw may start the copy: until this first returns true after a draw (or
   * a gesture starts, whose first frame is then drawn and copied), the layers
   * themselves are shown; from then on every draw is copied. Lets the page put the
   * copy (a full-size canvas, three layer blits per draw) off until after its first
   * view is on screen. Default: always.
   */
  copyFrom?: () => boolean;
}

/**
 * Makes `renderer` show one opaque copy of its drawn layers (`.sigma-gesture`), made
 * right after every draw, in place of the layers themselves; while the user pans or
 * zooms with the mouse that copy is moved with a CSS transform, and the view is drawn
 * once when the gesture ends. Because the copy is always there, a gesture starts
 * without drawing anything: its first frame costs what any other frame of it costs.
 * (Without a 2D context for the copy, the layers themselves are moved.) Camera moves
 * made by code (the zoom buttons, fitting the view) are drawn as before. A lookup of
 * the node under the pointer made while the picture is stale (a click during the
 * glide after a drag) draws first, so it never reads a stale picking buffer. Returns
 * a function that removes the listeners.
 */
export function transformWhileMoving(renderer: unknown, captor: Captor, opts: GestureOptions): () => void {
  const r = renderer as Renderer;
  const quietMs = opts.quietMs ?? 120;
  const now = opts.now ?? (() => performance.now());
  const camera = r.getCamera();
  const render = r.render.bind(r);
  const refresh = r.refresh.bind(r);
  const lookup = r.getNodeAtPosition.bind(r);
  const layers = Object.entries(r.getCanvases())
    .filter(([id]) => id !== "mouse")
    .map(([, c]) => c);
  // The picture as one opaque canvas: moving three transparent full-size layers costs
  // the compositor three blended full-viewport quads a frame (on software GL, tens
  // of ms each); one opaque one costs one and hides the page behind it. The copy has
  // to be made in the task that drew the layers: sigma's WebGL contexts do not keep
  // their drawing buffer once it has been shown. At rest the copy costs about what it
  // saves: three layers blitted into it, one quad composited instead of three.
  const mouse = r.getCanvases().mouse;
  const snap = mouse.ownerDocument.createElement("canvas");
  snap.className = "sigma-gesture";
  Object.assign(snap.style, {
    position: "absolute",
    inset: "0",
    width: "100%",
    height: "100%",
    transformOrigin: "0 0",
    display: "none",
  });
  mouse.parentElement?.insertBefore(snap, mouse);
  const snapCtx = snap.getContext("2d", { alpha: false });
  /** The copy is on screen in place of the layers. */
  let snapped = false;
  const background = () => {
    for (let el: Element | null = mouse.parentElement; el; el = el.parentElement) {
      const bg = getComputedStyle(el).backgroundColor;
      if (bg && bg !== "transparent" && !/rgba\(.*,\s*0\)$/.test(bg)) return bg;
    }
    return "#fff";
  };
  const takeSnapshot = () => {
    if (!snapCtx) return;
    const w = layers[0]?.width ?? 0;
    const h = layers[0]?.height ?? 0;
    if (snap.width !== w) snap.width = w;
    if (snap.height !== h) snap.height = h;
    // The copy covers exactly what the layers cover: sigma sizes them in pixels and
    // only when it draws, so a container resized since then crops them; a copy sized
    // to the container would be stretched over it instead.
    const lw = layers[0]?.style.width ?? "";
    const lh = layers[0]?.style.height ?? "";
    if (lw && snap.style.width !== lw) snap.style.width = lw;
    if (lh && snap.style.height !== lh) snap.style.height = lh;
    snapCtx.fillStyle = background();
    snapCtx.fillRect(0, 0, w, h);
    for (const c of layers) if (c.style.visibility !== "hidden" && c.width === w && c.height === h) snapCtx.drawImage(c, 0, 0);
    snap.style.transform = "";
    if (!snapped) {
      snapped = true;
      snap.style.display = "";
      for (const c of layers) c.style.opacity = "0";
    }
  };

  let active = false;
  let lastInput = -Infinity;
  /** The camera of the picture on screen (the last real draw). */
  let drawn: CameraState = camera.getState();
  /** The picture on screen is not the view as it is: a moved copy, or a draw waits. */
  let stale = false;
  /** Inside sigma's render (which draws the hovered nodes itself). */
  let rendering = false;
  /** A full refresh was asked for during the gesture. */
  let refreshPending = false;
  /** Draw even though a gesture is going on. */
  let forced = false;
  /** Brings the picture up to date: the refresh put off, or a draw. */
  const flush = () => {
    if (!refreshPending) return void render();
    refreshPending = false;
    // Sigma's refresh draws through `r.render`, which must draw even mid-gesture.
    forced = true;
    try {
      refresh();
    } finally {
      forced = false;
    }
  };
  let timer: ReturnType<typeof setTimeout> | null = null;

  const ongoing = () =>
    gestureOngoing(
      {
        mouseDown: !!captor.isMouseDown,
        animated: camera.isAnimated(),
        rendererMoving: !!captor.isMoving || !!captor.draggedEvents || !!captor.currentWheelDirection,
        lastInput,
      },
      now(),
      quietMs,
    );

  r.on("beforeRender", () => {
    rendering = true;
    drawn = camera.getState();
  });
  r.on("afterRender", () => {
    rendering = false;
    stale = false;
    // A draw during a gesture always starts the copy: the gesture's next frames slide it.
    if (snapped || active || (opts.copyFrom?.() ?? true)) takeSnapshot();
    if (!snapped) for (const c of layers) c.style.transform = "";
  });
  // Sigma may also redraw the hovered nodes' layers alone, in a frame of their own.
  // The copy cannot be made then (the other layers' drawing buffers are gone once
  // shown), so the whole view is drawn instead, which draws them too; during a gesture
  // that waits for the draw at its end.
  const highlight = r.renderHighlightedNodes?.bind(r);
  if (highlight)
    r.renderHighlightedNodes = () => {
      // (Before the copy has started the layers are on screen and may be drawn alone.)
      if (rendering || !snapCtx || !snapped) return highlight();
      if (active) {
        stale = true;
        return undefined;
      }
      return render();
    };

  const check = () => {
    timer = null;
    if (!active) return;
    if (ongoing()) {
      timer = setTimeout(check, 40);
      return;
    }
    active = false;
    // A gesture that left the camera where it was (a click) needs no new picture.
    if (refreshPending || stale || !sameCamera(camera.getState(), drawn)) flush();
  };
  const input = () => {
    active = true;
    lastInput = now();
    timer ??= setTimeout(check, quietMs);
  };

  r.render = () => {
    if (!active || forced) return render();
    // A frame asked for during the gesture: cancel sigma's pending one (it cancels it
    // itself when it draws; left set, it would never schedule another) and slide the
    // picture instead.
    if (r.renderFrame) {
      cancelAnimationFrame(r.renderFrame);
      r.renderFrame = null;
    }
    if (!snapped && snapCtx) {
      // No copy yet (nothing drawn since the renderer was made, or copies not started
      // yet): draw, which makes one if it may.
      return render();
    }
    const cam = camera.getState();
    let css = "";
    if (!sameCamera(cam, drawn)) {
      const { width, height } = r.getDimensions();
      const m = cameraShift(
        (p, c) => r.viewportToFramedGraph(p, { cameraState: c }),
        (p, c) => r.framedGraphToViewport(p, { cameraState: c }),
        drawn,
        cam,
        width,
        height,
      );
      css = `matrix(${m.map((v) => +v.toFixed(6)).join(",")})`;
    }
    if (snapped) snap.style.transform = css;
    else for (const c of layers) c.style.transform = css;
    stale = true;
    return r;
  };
  // A full refresh (indexing every node and edge again, then drawing) asked for during
  // the gesture is put off to its end: live updates ask for one, and sigma does when a
  // drag ends in a view that hides edges while moving; on thousands of nodes the
  // indexing alone costs frames. Partial refreshes (sigma's own, for single changes)
  // keep their indexing and only their draw waits.
  r.refresh = (opts) => {
    if (active && !opts?.partialGraph) {
      refreshPending = true;
      return r;
    }
    return refresh(opts);
  };
  r.getNodeAtPosition = (position: unknown) => {
    if (stale || refreshPending) flush();
    return lookup(position);
  };

  const onWheel = () => input();
  const onMove = () => {
    if (captor.isMouseDown) input();
  };
  const onUp = () => {
    if (!active) return;
    // The drag is over; only a glide (camera animation) may keep the gesture going.
    lastInput = -Infinity;
    if (timer) clearTimeout(timer);
    timer = setTimeout(check, 0);
  };
  opts.stage.addEventListener("wheel", onWheel, { passive: true });
  opts.doc.addEventListener("mousemove", onMove);
  opts.doc.addEventListener("mouseup", onUp);
  return () => {
    if (timer) clearTimeout(timer);
    snap.remove();
    for (const c of layers) {
      c.style.opacity = "";
      c.style.transform = "";
    }
    opts.stage.removeEventListener("wheel", onWheel);
    opts.doc.removeEventListener("mousemove", onMove);
    opts.doc.removeEventListener("mouseup", onUp);
  };
}
