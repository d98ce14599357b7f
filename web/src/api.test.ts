import { afterEach, describe, expect, it, vi } from "vitest";
import { getTopologies } from "./api";

afterEach(() => {
  vi.unstubAllGlobals();
  delete (globalThis as { __rescopeEarly?: unknown }).__rescopeEarly;
});

describe("early requests", () => {
  it("answer the first request for their path once, then the network does", async () => {
    const fetched: string[] = [];
    vi.stubGlobal("fetch", async (path: string) => {
      fetched.push(path);
      return new Response(JSON.stringify([{ name: "from network" }]));
    });
    (globalThis as { __rescopeEarly?: unknown }).__rescopeEarly = {
      "api/topology": Promise.resolve(new Response(JSON.stringify([{ name: "early" }]))),
    };
    expect((await getTopologies(""))[0].name).toBe("early");
    expect(fetched).toEqual([]);
    expect((await getTopologies(""))[0].name).toBe("from network");
    // Another path never takes an early answer.
    expect((await getTopologies("unconnected=show"))[0].name).toBe("from network");
    expect(fetched).toEqual(["api/topology", "api/topology?unconnected=show"]);
  });
});
