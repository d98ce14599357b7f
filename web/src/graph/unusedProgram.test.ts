import { describe, expect, it } from "vitest";
import UnusedProgram, { withoutDefaults } from "./unusedProgram";

describe("withoutDefaults", () => {
  it("leaves sigma no default program to compile besides the ones given", async () => {
    // Sigma's program modules read WebGL constants when loaded; jsdom has no WebGL.
    const g = globalThis as Record<string, unknown>;
    g.WebGLRenderingContext ??= class {};
    g.WebGL2RenderingContext ??= class {};
    const { EdgeArrowProgram } = await import("sigma/rendering");
    const { DEFAULT_EDGE_PROGRAM_CLASSES, DEFAULT_NODE_PROGRAM_CLASSES, resolveSettings } = await import("sigma/settings");
    const { default: ShapeDotProgram } = await import("./shapeProgram");
    const settings = resolveSettings({
      nodeProgramClasses: withoutDefaults({ shape: ShapeDotProgram }, DEFAULT_NODE_PROGRAM_CLASSES),
      edgeProgramClasses: withoutDefaults({ arrow: EdgeArrowProgram }, DEFAULT_EDGE_PROGRAM_CLASSES),
    } as never);
    expect(settings.nodeProgramClasses.shape).toBe(ShapeDotProgram);
    expect(settings.edgeProgramClasses.arrow).toBe(EdgeArrowProgram);
    const others = [
      ...Object.entries(settings.nodeProgramClasses).filter(([k]) => k !== "shape"),
      ...Object.entries(settings.edgeProgramClasses).filter(([k]) => k !== "arrow"),
    ];
    expect(others.length).toBeGreaterThan(0);
    for (const [, cls] of others) expect(cls).toBe(UnusedProgram);
  });

  it("the stand-in takes sigma's calls without a WebGL context", () => {
    const p = new UnusedProgram(null, null, null);
    expect(() => {
      p.reallocate(3);
      p.process(0, 0, { x: 0, y: 0 });
      p.render({});
      p.kill();
    }).not.toThrow();
  });
});
