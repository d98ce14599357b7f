import { describe, expect, it } from "vitest";
import { compareKeys, formatBytes, formatMetadata, formatMetric, sortKey } from "./format";
import { optionsQuery, selectedValues, viewIdOf, errorText } from "./api";

describe("formatting", () => {
  it("formats metrics by their format", () => {
    expect(formatMetric(3.14159, "percent")).toBe("3.14%");
    expect(formatMetric(42.25, "percent")).toBe("42.3%");
    expect(formatMetric(1536, "filesize")).toBe("1.5 KB");
    expect(formatMetric(3 * 1024 ** 3, "filesize")).toBe("3.0 GB");
    expect(formatMetric(12345.6, "integer")).toBe("12,346");
    expect(formatMetric(0.5)).toBe("0.5");
    expect(formatMetric(NaN)).toBe("–");
    expect(formatBytes(100)).toBe("100 B");
  });

  it("formats metadata by data type", () => {
    expect(formatMetadata({ value: "93784", dataType: "duration" })).toBe("1d 2h");
    expect(formatMetadata({ value: "not a date", dataType: "datetime" })).toBe("not a date");
    expect(formatMetadata({ value: "plain" })).toBe("plain");
  });

  it("sorts numbers as numbers and IPs by address", () => {
    const keys = ["10", "9", "100"].map((v) => sortKey(v, "number"));
    expect([...keys].sort(compareKeys)).toEqual([9, 10, 100]);
    expect(compareKeys(sortKey("10.0.0.2", "ip"), sortKey("9.255.0.1", "ip"))).toBeGreaterThan(0);
    expect(compareKeys(sortKey("b"), sortKey("A"))).toBeGreaterThan(0);
  });
});

describe("API helpers", () => {
  const groups = [
    { id: "system", defaultValue: "application", options: [{ value: "all", label: "All" }] },
    { id: "namespace", defaultValue: "", selectType: "union" as const, options: [] },
  ];

  it("sends every option group, defaults included", () => {
    expect(optionsQuery(groups, undefined)).toBe("system=application&namespace=");
    expect(optionsQuery(groups, { system: ["all"], namespace: ["a", "b"] })).toBe(
      "system=all&namespace=a%2Cb",
    );
    expect(optionsQuery(null, undefined)).toBe("");
    expect(selectedValues(groups[0], {})).toEqual(["application"]);
  });

  it("names views by the last part of their URL", () => {
    expect(viewIdOf({ url: "/api/topology/containers-by-image" })).toBe("containers-by-image");
  });

  it("shows error bodies as one readable line", () => {
    expect(errorText('"probe abc is not connected right now"', 400)).toBe("probe abc is not connected right now");
    expect(errorText('{"error":"nope"}', 500)).toBe("nope");
    expect(errorText("plain text\n", 404)).toBe("plain text");
    expect(errorText("", 502)).toBe("HTTP 502");
  });
});
