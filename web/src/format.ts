import type { MetadataRow, MetricRow } from "./types";

const UNITS = ["B", "KB", "MB", "GB", "TB", "PB"];

export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return "–";
  let v = Math.abs(n);
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  const digits = u === 0 || v >= 100 ? 0 : 1;
  return `${n < 0 ? "-" : ""}${v.toFixed(digits)} ${UNITS[u]}`;
}

function trimNumber(v: number, digits: number): string {
  return Number(v.toFixed(digits)).toString();
}

/** A metric value as Scope formats it, by the metric's `format`. */
export function formatMetric(value: number, format?: string): string {
  if (!Number.isFinite(value)) return "–";
  switch (format) {
    case "percent":
      return `${trimNumber(value, value < 10 ? 2 : 1)}%`;
    case "filesize":
      return formatBytes(value);
    case "integer":
      return Math.round(value).toLocaleString("en-US");
    default:
      return trimNumber(value, 2);
  }
}

export function formatMetricRow(m: MetricRow): string {
  if (m.valueEmpty) return "n/a";
  return formatMetric(m.value, m.format);
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "–";
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = Math.floor(seconds % 60);
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m ${s}s`;
  return `${s}s`;
}

/** A metadata value for display, by its `dataType`. Unknown types show as they are. */
export function formatMetadata(row: Pick<MetadataRow, "value" | "dataType">): string {
  const v = row.value;
  switch (row.dataType) {
    case "datetime": {
      const t = Date.parse(v);
      return Number.isNaN(t) ? v : new Date(t).toLocaleString();
    }
    case "duration": {
      const n = Number(v);
      return Number.isNaN(n) ? v : formatDuration(n);
    }
    default:
      return v;
  }
}

/** Sort key for a cell: numbers compare as numbers, everything else as lower-case text. */
export function sortKey(value: string | number | undefined, dataType?: string): number | string {
  if (value === undefined || value === "") return dataType === "number" ? -Infinity : "";
  if (typeof value === "number") return value;
  if (dataType === "number") {
    const n = Number(value);
    return Number.isNaN(n) ? -Infinity : n;
  }
  if (dataType === "ip") {
    const parts = value.split(".").map(Number);
    if (parts.length === 4 && parts.every((p) => p >= 0 && p < 256))
      return parts.reduce((a, p) => a * 256 + p, 0);
  }
  return value.toLowerCase();
}

export function compareKeys(a: number | string, b: number | string): number {
  if (typeof a === "number" && typeof b === "number") return a - b;
  if (typeof a === "number") return -1;
  if (typeof b === "number") return 1;
  return a < b ? -1 : a > b ? 1 : 0;
}
