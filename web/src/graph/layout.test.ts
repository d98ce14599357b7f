import { describe, expect, it } from "vitest";
import { LAYER_GAP, edgesOf, layeredLayout, placeNear, spiralLayout } from "./layout";

const n = (id: string, adjacency: string[] = []) => ({ id, adjacency, label: id });

describe("layered layout", () => {
  it("puts clients above the servers they connect to", () => {
    const pos = layeredLayout([n("internet", ["web"]), n("web", ["db", "cache"]), n("db"), n("cache")]);
    expect(pos.get("internet")!.y).toBeLessThan(pos.get("web")!.y);
    expect(pos.get("web")!.y).toBeLessThan(pos.get("db")!.y);
    expect(pos.get("db")!.y).toBe(pos.get("cache")!.y);
  });

  it("survives cycles and self-loops and places every node once", () => {
    const nodes = [n("a", ["b", "a"]), n("b", ["c"]), n("c", ["a"]), n("lonely"), n("x", ["ghost"])];
    const pos = layeredLayout(nodes);
    expect(pos.size).toBe(5);
    const spots = new Set([...pos.values()].map((p) => `${p.x},${p.y}`));
    expect(spots.size).toBe(5);
  });

  it("puts unconnected nodes in a grid below the connected ones", () => {
    const pos = layeredLayout([n("a", ["b"]), n("b"), n("c"), n("d")]);
    expect(pos.get("c")!.y).toBeGreaterThan(pos.get("b")!.y);
    expect(pos.get("c")!.y).toBe(pos.get("d")!.y);
  });

  it("is deterministic whatever the input order", () => {
    const nodes = [n("a", ["b"]), n("b", ["c"]), n("c"), n("d", ["b"]), n("e")];
    const one = layeredLayout(nodes);
    const two = layeredLayout([...nodes].reverse());
    expect(two).toEqual(one);
  });

  it("ignores edges to nodes that are not there", () => {
    expect(edgesOf([n("a", ["b", "zz", "a"]), n("b", ["a"])])).toEqual([
      ["a", "b"],
      ["b", "a"],
    ]);
  });
});

describe("incremental placement", () => {
  it("puts a newcomer near its neighbours", () => {
    const placed = new Map([
      ["a", { x: 0, y: 0 }],
      ["b", { x: 1000, y: 0 }],
    ]);
    const p = placeNear("new", ["b"], placed, 0);
    expect(Math.hypot(p.x - 1000, p.y)).toBeLessThan(LAYER_GAP);
  });

  it("puts a node without neighbours beside the drawing", () => {
    const placed = new Map([
      ["a", { x: 0, y: 0 }],
      ["b", { x: 500, y: 200 }],
    ]);
    const p = placeNear("new", [], placed, 3);
    expect(p.x).toBeGreaterThan(500);
  });

  it("spreads a large view over a disc without overlaps", () => {
    const nodes = Array.from({ length: 5000 }, (_, i) => n(`n${i}`));
    const pos = spiralLayout(nodes);
    expect(pos.size).toBe(5000);
    const spots = new Set([...pos.values()].map((p) => `${Math.round(p.x)},${Math.round(p.y)}`));
    expect(spots.size).toBe(5000);
  });
});
