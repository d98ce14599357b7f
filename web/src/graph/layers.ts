// Sigma stacks seven full-size canvases and clears six of them on every frame, drawn
// on or not. The browser then blends every visible layer into each frame. Without a
// GPU (software WebGL, remote desktops, virtual machines) that blending, not drawing
// the graph, is what a frame costs: measured in headless Chromium with SwiftShader,
// the compositor's buffer swap took most of each 100–300 ms frame while panning.
//
// The helpers here keep a layer out of the compositor while it is empty: a clear is
// skipped when nothing was drawn since the last one, and an empty layer is hidden
// until something is drawn on it again. While panning with edges and labels hidden,
// only the node layer is left to blend.

export interface LayerState {
  /** Something was drawn since the last full clear. */
  dirty: boolean;
}

const GL_DRAWS = ["drawArrays", "drawElements", "drawArraysInstanced", "drawElementsInstanced", "drawRangeElements"];
const INSTANCED_EXT_DRAWS = ["drawArraysInstancedANGLE", "drawElementsInstancedANGLE"];
const CANVAS_DRAWS = ["fill", "stroke", "fillRect", "strokeRect", "fillText", "strokeText", "drawImage", "putImageData"];

function tracker(canvas: HTMLCanvasElement): { state: LayerState; drawn: () => void; emptied: () => void } {
  const state: LayerState = { dirty: true };
  return {
    state,
    drawn: () => {
      if (state.dirty) return;
      state.dirty = true;
      canvas.style.visibility = "";
    },
    emptied: () => {
      state.dirty = false;
      canvas.style.visibility = "hidden";
    },
  };
}

/** Replaces `obj[name]` by a call that first runs `before`. */
function hook(obj: object, names: string[], before: () => void) {
  const o = obj as Record<string, unknown>;
  for (const name of names) {
    const orig = o[name];
    if (typeof orig !== "function") continue;
    o[name] = function (this: unknown, ...args: unknown[]) {
      before();
      return (orig as (...a: unknown[]) => unknown).apply(this, args);
    };
  }
}

/**
 * Lazy clears for a WebGL layer. Only for layers without a picking framebuffer: a
 * picking pass clears its own buffer and must never be skipped.
 */
export function lazyClearWebGL(gl: WebGLRenderingContext | WebGL2RenderingContext): LayerState {
  const canvas = gl.canvas as HTMLCanvasElement;
  const t = tracker(canvas);
  hook(gl, GL_DRAWS, t.drawn);
  const getExtension = gl.getExtension.bind(gl);
  (gl as { getExtension: (name: string) => unknown }).getExtension = (name: string) => {
    const ext = getExtension(name);
    if (ext && name === "ANGLE_instanced_arrays") hook(ext, INSTANCED_EXT_DRAWS, t.drawn);
    return ext;
  };
  const clear = gl.clear.bind(gl);
  gl.clear = (mask: number) => {
    if (!t.state.dirty) return;
    clear(mask);
    t.emptied();
  };
  return t.state;
}

/** Lazy clears for a 2D layer that is always cleared whole (as sigma does). */
export function lazyClear2D(ctx: CanvasRenderingContext2D): LayerState {
  const t = tracker(ctx.canvas);
  hook(ctx, CANVAS_DRAWS, t.drawn);
  const clearRect = ctx.clearRect.bind(ctx);
  ctx.clearRect = (x: number, y: number, w: number, h: number) => {
    if (!t.state.dirty) return;
    clearRect(x, y, w, h);
    // Sigma clears in CSS pixels with the context scaled to the device pixel ratio; a
    // partial clear leaves drawing behind, so the layer stays as it is.
    const { clientWidth, clientHeight } = ctx.canvas;
    if (x <= 0 && y <= 0 && x + w >= clientWidth && y + h >= clientHeight) t.emptied();
  };
  return t.state;
}

/**
 * Applies lazy clears to a sigma instance's layers that have no picking pass: edges
 * (unless edge events are on), the hovered nodes and the three label canvases.
 */
export function lazyLayerClears(canvases: Record<string, HTMLCanvasElement>, edgeEvents: boolean) {
  for (const id of ["hoverNodes", ...(edgeEvents ? [] : ["edges"])]) {
    const canvas = canvases[id];
    const gl = canvas?.getContext("webgl2") ?? canvas?.getContext("webgl");
    if (gl) lazyClearWebGL(gl);
  }
  for (const id of ["labels", "hovers", "edgeLabels"]) {
    const ctx = canvases[id]?.getContext("2d");
    if (ctx) lazyClear2D(ctx);
  }
}

interface Captor {
  emit(type: string, ...args: unknown[]): boolean;
  isMouseDown?: boolean;
  draggedEvents?: number;
}

/**
 * Stops pointer events that would make sigma look for the node under the pointer
 * while the user pans or zooms. That lookup reads a pixel back from the GPU, which
 * waits for every queued frame; once per wheel step or drag step it halves the frame
 * rate on slow GPUs. The button's release at the end of a drag is dropped too: its
 * lookup (for "upNode", which the UI does not use) would draw the moved view twice
 * in the middle of the gesture, once for the picture and once for the picking pass.
 * Hovering and clicking are unaffected.
 */
export function skipPickingWhileMoving(captor: Captor) {
  const emit = captor.emit.bind(captor);
  captor.emit = (type: string, ...args: unknown[]) => {
    if (type === "wheel") return false;
    if (type === "mousemove" && captor.isMouseDown) return false;
    if (type === "mouseup" && (captor.draggedEvents ?? 0) > 0) return false;
    return emit(type, ...args);
  };
}

interface PickingRenderer {
  render(): unknown;
  scheduleRender(): unknown;
  getNodeAtPosition(position: unknown): string | null;
  pickingLayers: Set<string>;
  nodePrograms: Record<string, { pickProgram: unknown }>;
  edgePrograms: Record<string, { pickProgram: unknown }>;
}

/**
 * Keeps sigma's picking pass (nodes drawn a second time, in ID colours, into a texture
 * it reallocates on every frame) out of the frames drawn while the camera moves: no
 * pointer lookup happens then (see skipPickingWhileMoving). Once the camera is still
 * the view is drawn again with the pass, and a lookup made before that (a click right
 * after a drag) draws it first, so a lookup never reads a stale picture.
 */
export function pickingAtRestOnly(renderer: unknown, moving: () => boolean) {
  const r = renderer as PickingRenderer;
  const render = r.render.bind(r);
  const lookup = r.getNodeAtPosition.bind(r);
  let stale = false;
  let timer: ReturnType<typeof setTimeout> | null = null;
  const whenStill = () => {
    timer = null;
    if (!stale) return;
    if (moving()) timer = setTimeout(whenStill, 100);
    else r.scheduleRender();
  };
  r.render = () => {
    if (!moving()) {
      stale = false;
      return render();
    }
    const layers = r.pickingLayers;
    const programs = [...Object.values(r.nodePrograms), ...Object.values(r.edgePrograms)];
    const picks = programs.map((p) => p.pickProgram);
    r.pickingLayers = new Set();
    programs.forEach((p) => (p.pickProgram = null));
    try {
      return render();
    } finally {
      r.pickingLayers = layers;
      programs.forEach((p, i) => (p.pickProgram = picks[i]));
      stale = true;
      timer ??= setTimeout(whenStill, 100);
    }
  };
  r.getNodeAtPosition = (position: unknown) => {
    if (stale) {
      stale = false;
      render();
    }
    return lookup(position);
  };
}
