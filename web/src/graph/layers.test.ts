import { describe, expect, it } from "vitest";
import { lazyClear2D, lazyClearWebGL, pickingAtRestOnly, skipPickingWhileMoving } from "./layers";
import { shapeCode } from "./style";

function fakeCanvas() {
  return { style: { visibility: "" }, clientWidth: 300, clientHeight: 200, width: 600, height: 400 };
}

function fakeGL() {
  const calls: string[] = [];
  const ext = { drawArraysInstancedANGLE: () => calls.push("extDraw") };
  const gl = {
    canvas: fakeCanvas(),
    clear: (_mask: number) => calls.push("clear"),
    drawArrays: () => calls.push("draw"),
    getExtension: (name: string) => (name === "ANGLE_instanced_arrays" ? ext : null),
  };
  return { gl, calls };
}

describe("lazy WebGL clears", () => {
  it("clear only what was drawn on, and hide the layer while it is empty", () => {
    const { gl, calls } = fakeGL();
    lazyClearWebGL(gl as unknown as WebGLRenderingContext);
    gl.clear(0x4000);
    expect(calls).toEqual(["clear"]);
    expect(gl.canvas.style.visibility).toBe("hidden");
    gl.clear(0x4000);
    gl.clear(0x4000);
    expect(calls).toEqual(["clear"]);
    gl.drawArrays();
    expect(gl.canvas.style.visibility).toBe("");
    gl.clear(0x4000);
    expect(calls).toEqual(["clear", "draw", "clear"]);
  });

  it("count draws made through the instancing extension", () => {
    const { gl, calls } = fakeGL();
    lazyClearWebGL(gl as unknown as WebGLRenderingContext);
    gl.clear(0x4000);
    (gl.getExtension("ANGLE_instanced_arrays") as { drawArraysInstancedANGLE: () => void }).drawArraysInstancedANGLE();
    gl.clear(0x4000);
    expect(calls).toEqual(["clear", "extDraw", "clear"]);
  });
});

describe("lazy 2D clears", () => {
  function fake2D() {
    const calls: string[] = [];
    const ctx = {
      canvas: fakeCanvas(),
      clearRect: (...a: number[]) => calls.push(`clear ${a.join(",")}`),
      fillText: () => calls.push("text"),
    };
    lazyClear2D(ctx as unknown as CanvasRenderingContext2D);
    return { ctx, calls };
  }

  it("skip full clears of an empty layer", () => {
    const { ctx, calls } = fake2D();
    ctx.clearRect(0, 0, 300, 200);
    ctx.clearRect(0, 0, 300, 200);
    expect(calls).toEqual(["clear 0,0,300,200"]);
    expect(ctx.canvas.style.visibility).toBe("hidden");
    ctx.fillText();
    expect(ctx.canvas.style.visibility).toBe("");
    ctx.clearRect(0, 0, 300, 200);
    expect(calls.length).toBe(3);
  });

  it("keep a partly cleared layer dirty and visible", () => {
    const { ctx, calls } = fake2D();
    ctx.clearRect(0, 0, 100, 100);
    ctx.clearRect(0, 0, 100, 100);
    expect(calls.length).toBe(2);
    expect(ctx.canvas.style.visibility).toBe("");
  });
});

describe("picking while moving", () => {
  it("drops wheel steps, drag moves and the release after a drag but passes hovering and clicks", () => {
    const seen: string[] = [];
    const captor = {
      isMouseDown: false,
      draggedEvents: 0,
      emit(type: string) {
        seen.push(type);
        return true;
      },
    };
    skipPickingWhileMoving(captor);
    captor.emit("mousemove");
    captor.emit("wheel");
    captor.isMouseDown = true;
    captor.emit("mousemove");
    captor.emit("mousemovebody");
    // A click: released where it was pressed.
    captor.isMouseDown = false;
    captor.emit("mouseup");
    captor.emit("click");
    // Released after a drag (sigma counts the moves until just after the release).
    captor.draggedEvents = 7;
    captor.emit("mouseup");
    expect(seen).toEqual(["mousemove", "mousemovebody", "mouseup", "click"]);
  });
});

describe("picking only at rest", () => {
  function fakeRenderer() {
    const frames: { picking: boolean; layers: number }[] = [];
    const r = {
      pickingLayers: new Set(["nodes"]),
      nodePrograms: { shape: { pickProgram: "pick" as unknown } },
      edgePrograms: { arrow: { pickProgram: null as unknown } },
      scheduled: 0,
      render() {
        frames.push({ picking: r.nodePrograms.shape.pickProgram !== null, layers: r.pickingLayers.size });
      },
      scheduleRender() {
        r.scheduled++;
      },
      getNodeAtPosition(_position: unknown) {
        return frames.at(-1)?.picking ? "n1" : "stale";
      },
    };
    return { r, frames };
  }

  it("skips the picking pass while moving and draws it again once still", async () => {
    const { r, frames } = fakeRenderer();
    let moving = false;
    pickingAtRestOnly(r, () => moving);
    r.render();
    moving = true;
    r.render();
    expect(frames).toEqual([
      { picking: true, layers: 1 },
      { picking: false, layers: 0 },
    ]);
    // Restored after the frame.
    expect(r.nodePrograms.shape.pickProgram).toBe("pick");
    expect(r.pickingLayers.size).toBe(1);
    await new Promise((done) => setTimeout(done, 150));
    expect(r.scheduled).toBe(0);
    moving = false;
    await new Promise((done) => setTimeout(done, 150));
    expect(r.scheduled).toBe(1);
  });

  it("never looks up a node in a picture drawn while moving", () => {
    const { r, frames } = fakeRenderer();
    let moving = true;
    pickingAtRestOnly(r, () => moving);
    r.render();
    moving = false;
    expect(r.getNodeAtPosition({ x: 1, y: 1 })).toBe("n1");
    expect(frames.at(-1)).toEqual({ picking: true, layers: 1 });
  });
});

describe("shape codes", () => {
  it("map Scope's shape names, unknown ones to a circle, and mark stacks", () => {
    expect(shapeCode("circle")).toBe(0);
    expect(shapeCode(undefined)).toBe(0);
    expect(shapeCode("no-such-shape")).toBe(0);
    expect(shapeCode("hexagon")).toBe(4);
    expect(shapeCode("dottedcylinder")).toBe(shapeCode("cylinder"));
    expect(shapeCode("hexagon", true)).toBe(20);
  });
});
