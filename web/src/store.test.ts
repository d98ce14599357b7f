import { beforeEach, describe, expect, it } from "vitest";
import { urlStateOf, useStore } from "./store";
import { decodeState, encodeState } from "./urlState";

const node = (id: string) => ({ id, label: id, labelMinor: "", rank: "" });

describe("store", () => {
  beforeEach(() => {
    useStore.setState({ nodes: new Map(), nodesKey: "", pinnedSearches: [], searchQuery: "", selectedNodeId: null, topologyId: "processes" });
  });

  it("applies diffs for the view on screen and starts over for another view", () => {
    const s = useStore.getState();
    s.applyDiff("processes?", { add: [node("a"), node("b")], update: null, remove: null, reset: true });
    s.applyDiff("processes?", { add: null, update: null, remove: ["a"] });
    expect([...useStore.getState().nodes.keys()]).toEqual(["b"]);
    // A late message from the old view's socket must not mix into the new view.
    s.applyDiff("hosts?", { add: [node("h")], update: null, remove: null });
    expect([...useStore.getState().nodes.keys()]).toEqual(["h"]);
    expect(useStore.getState().nodesKey).toBe("hosts?");
  });

  it("pins searches once and unpins them", () => {
    const s = useStore.getState();
    s.setSearch("nginx");
    s.pinSearch();
    s.setSearch("nginx");
    s.pinSearch();
    expect(useStore.getState().pinnedSearches).toEqual(["nginx"]);
    expect(useStore.getState().searchQuery).toBe("nginx");
    s.unpinSearch("nginx");
    expect(useStore.getState().pinnedSearches).toEqual([]);
  });

  it("changing view closes the details of the old one", () => {
    const s = useStore.getState();
    s.selectNode("a;<host>");
    expect(useStore.getState().selectedNodeId).toBe("a;<host>");
    s.setTopology("containers");
    expect(useStore.getState().selectedNodeId).toBeNull();
  });

  it("restores what a link describes", () => {
    const s = useStore.getState();
    s.setTopology("hosts");
    s.selectNode("vm;<host>");
    s.setGridMode(true);
    s.setOption("hosts", "x", ["1"]);
    const hash = encodeState(urlStateOf(useStore.getState()));
    useStore.setState({ topologyId: "processes", selectedNodeId: null, gridMode: false, options: {} });
    useStore.getState().loadUrlState(decodeState(hash));
    const after = useStore.getState();
    expect(after.topologyId).toBe("hosts");
    expect(after.selectedNodeId).toBe("vm;<host>");
    expect(after.selectedTopologyId).toBe("hosts");
    expect(after.gridMode).toBe(true);
    expect(after.options).toEqual({ hosts: { x: ["1"] } });
  });
});
