import { describe, expect, it } from "vitest";
import { parseQuery, searchNodes } from "./search";
import type { NodeSummary } from "./types";

const nginx: NodeSummary = {
  id: "h;101",
  label: "nginx",
  labelMinor: "web-1 (101)",
  rank: "nginx",
  metadata: [
    { id: "pid", label: "PID", value: "101" },
    { id: "cmdline", label: "Command", value: "nginx -g daemon off;" },
  ],
  metrics: [
    { id: "process_cpu_usage_percent", label: "CPU", value: 62.5, samples: null, min: 0, max: 100 },
    { id: "process_memory_usage_bytes", label: "Memory", value: 300 * 1024 * 1024, samples: null, min: 0, max: 0 },
  ],
  tables: [
    { id: "docker_label_", label: "Labels", type: "property-list", columns: null, rows: [{ id: "label_app", entries: { label: "app", value: "frontend" } }] },
  ],
};
const redis: NodeSummary = {
  id: "h;202",
  label: "redis-server",
  labelMinor: "db-1 (202)",
  rank: "redis",
  metadata: [{ id: "pid", label: "PID", value: "202" }],
  metrics: [{ id: "process_cpu_usage_percent", label: "CPU", value: 3, samples: null, min: 0, max: 100 }],
};
const all = [nginx, redis];
const ids = (s: Set<string> | null) => (s ? [...s].sort() : null);

describe("search", () => {
  it("is inactive without a query", () => {
    expect(searchNodes(all, "  ", [])).toBeNull();
  });

  it("matches labels, minor labels and metadata values, case-insensitively", () => {
    expect(ids(searchNodes(all, "REDIS", []))).toEqual(["h;202"]);
    expect(ids(searchNodes(all, "web-1", []))).toEqual(["h;101"]);
    expect(ids(searchNodes(all, "daemon", []))).toEqual(["h;101"]);
    expect(ids(searchNodes(all, "nothing-like-this", []))).toEqual([]);
  });

  it("matches a named field by ID or label prefix", () => {
    expect(ids(searchNodes(all, "pid:202", []))).toEqual(["h;202"]);
    expect(ids(searchNodes(all, "command:daemon", []))).toEqual(["h;101"]);
    expect(ids(searchNodes(all, "app:front", []))).toEqual(["h;101"]);
    expect(ids(searchNodes(all, "pid:daemon", []))).toEqual([]);
  });

  it("compares metrics, with size suffixes", () => {
    expect(ids(searchNodes(all, "cpu>50", []))).toEqual(["h;101"]);
    expect(ids(searchNodes(all, "cpu<50", []))).toEqual(["h;202"]);
    expect(ids(searchNodes(all, "memory>200mb", []))).toEqual(["h;101"]);
    expect(ids(searchNodes(all, "memory>1gb", []))).toEqual([]);
  });

  it("combines terms and pinned searches with AND", () => {
    expect(ids(searchNodes(all, "cpu>1", ["redis"]))).toEqual(["h;202"]);
    expect(ids(searchNodes(all, "nginx redis", []))).toEqual([]);
  });

  it("parses the syntax", () => {
    expect(parseQuery("a pid:1 cpu>2.5 mem<1k")).toEqual([
      { kind: "text", text: "a" },
      { kind: "field", field: "pid", text: "1" },
      { kind: "compare", field: "cpu", op: ">", value: 2.5 },
      { kind: "compare", field: "mem", op: "<", value: 1024 },
    ]);
    // Not a number after the operator: plain text.
    expect(parseQuery("a>b")).toEqual([{ kind: "text", text: "a>b" }]);
  });
});
