import { describe, expect, it } from "vitest";
import { applyDiff, edgeCount, mergeDiffs, type NodeMap } from "./diff";
import type { NodeSummary } from "./types";

const node = (id: string, label = id, adjacency?: string[]): NodeSummary => ({
  id,
  label,
  labelMinor: "",
  rank: "",
  adjacency,
});

describe("applyDiff", () => {
  it("replaces everything on reset", () => {
    const before: NodeMap = new Map([["old", node("old")]]);
    const after = applyDiff(before, { add: [node("a"), node("b")], update: null, remove: null, reset: true });
    expect([...after.keys()].sort()).toEqual(["a", "b"]);
  });

  it("adds, updates and removes without touching the input", () => {
    const before: NodeMap = new Map([
      ["a", node("a", "A")],
      ["b", node("b")],
    ]);
    const after = applyDiff(before, { add: [node("c")], update: [node("a", "A2")], remove: ["b"] });
    expect(after.get("a")?.label).toBe("A2");
    expect(after.has("b")).toBe(false);
    expect(after.has("c")).toBe(true);
    expect(before.get("a")?.label).toBe("A");
    expect(before.has("b")).toBe(true);
  });

  it("returns the same map for an empty message, so nothing re-renders", () => {
    const before: NodeMap = new Map([["a", node("a")]]);
    expect(applyDiff(before, { add: null, update: null, remove: null })).toBe(before);
  });

  it("treats removal of an unknown node as harmless", () => {
    const before: NodeMap = new Map([["a", node("a")]]);
    const after = applyDiff(before, { add: null, update: null, remove: ["zzz"] });
    expect([...after.keys()]).toEqual(["a"]);
  });
});

describe("mergeDiffs", () => {
  it("gives the same result as applying the messages one by one", () => {
    const start: NodeMap = new Map([
      ["a", node("a")],
      ["b", node("b")],
    ]);
    const msgs = [
      { add: [node("c")], update: null, remove: ["a"] },
      { add: null, update: [node("c", "C2")], remove: null },
      { add: [node("a", "back")], update: null, remove: ["b"] },
    ];
    const stepwise = msgs.reduce(applyDiff, start);
    const merged = applyDiff(start, mergeDiffs(msgs));
    expect(new Map([...merged].sort())).toEqual(new Map([...stepwise].sort()));
  });

  it("starts over from the last reset", () => {
    const merged = mergeDiffs([
      { add: [node("x")], update: null, remove: null },
      { add: [node("a")], update: null, remove: null, reset: true },
      { add: [node("b")], update: null, remove: ["a"] },
    ]);
    expect(merged.reset).toBe(true);
    const after = applyDiff(new Map([["x", node("x")]]), merged);
    expect([...after.keys()]).toEqual(["b"]);
  });
});

it("counts edges as the sum of adjacency lengths", () => {
  const nodes: NodeMap = new Map([
    ["a", node("a", "a", ["b", "c"])],
    ["b", node("b", "b", ["a"])],
    ["c", node("c")],
  ]);
  expect(edgeCount(nodes)).toBe(3);
});
