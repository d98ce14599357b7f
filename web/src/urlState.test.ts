import { describe, expect, it } from "vitest";
import { decodeState, encodeState } from "./urlState";

describe("URL state", () => {
  it("round-trips a full state", () => {
    const state = {
      topologyId: "containers",
      topologyOptions: { containers: { system: ["application"], namespace: ["a", "b"] } },
      selectedNodeId: "abc;<container>",
      searchQuery: "cpu>50",
      pinnedSearches: ["nginx", "pid:42"],
      gridMode: true,
      pinnedMetricType: "CPU",
    };
    expect(decodeState(encodeState(state))).toEqual(state);
  });

  it("writes slashes and percent signs the way Scope does", () => {
    const hash = encodeState({ selectedNodeId: "host/a%b" });
    expect(hash.startsWith("#!/state/")).toBe(true);
    const json = decodeURIComponent(hash.slice("#!/state/".length));
    expect(json).toContain("<SLASH>");
    expect(json).toContain("<PERCENT>");
    expect(json).not.toContain("/");
    expect(decodeState(hash).selectedNodeId).toBe("host/a%b");
  });

  it("reads a link made by Weave Scope's UI", () => {
    const scope =
      '#!/state/{"pinnedMetricType":"CPU","selectedNodeId":"vm;<host>","topologyId":"hosts","topologyOptions":{"processes":{"unconnected":"hide"}}}';
    const s = decodeState(scope);
    expect(s.topologyId).toBe("hosts");
    expect(s.selectedNodeId).toBe("vm;<host>");
    expect(s.topologyOptions).toEqual({ processes: { unconnected: ["hide"] } });
  });

  it("ignores garbage instead of failing", () => {
    expect(decodeState("#!/state/%E0%A4%A")).toEqual({});
    expect(decodeState("#!/state/{not json")).toEqual({});
    expect(decodeState("#!/state/[1,2]")).toEqual({});
    expect(decodeState('#!/state/{"topologyId":7,"pinnedSearches":["a",3]}')).toEqual({ pinnedSearches: ["a"] });
    expect(decodeState("#/somewhere")).toEqual({});
  });

  it("leaves defaults out of the link", () => {
    expect(encodeState({ topologyId: "hosts", searchQuery: "", pinnedSearches: [], gridMode: false })).toBe(
      encodeState({ topologyId: "hosts" }),
    );
  });
});
