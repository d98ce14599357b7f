import { useMemo, useRef, useState, type UIEvent } from "react";
import type { NodeMap } from "../diff";
import { compareKeys, formatMetadata, formatMetricRow, sortKey } from "../format";
import { useStore } from "../store";
import type { NodeSummary } from "../types";

const ROW = 34;
const MAX_META_COLUMNS = 6;

interface Column {
  id: string;
  label: string;
  kind: "label" | "meta" | "metric";
  dataType?: string;
}

/** The columns of a node set: name, the most common metadata fields, every metric. */
export function tableColumns(nodes: Iterable<NodeSummary>): Column[] {
  const meta = new Map<string, { label: string; count: number; priority: number; dataType?: string }>();
  const metrics = new Map<string, { label: string; priority: number }>();
  for (const n of nodes) {
    for (const m of n.metadata ?? []) {
      if (m.id === "cmdline" || m.id === "docker_container_command") continue;
      const e = meta.get(m.id);
      if (e) e.count++;
      else meta.set(m.id, { label: m.label, count: 1, priority: m.priority ?? 0, dataType: m.dataType });
    }
    for (const m of n.metrics ?? []) if (!metrics.has(m.id)) metrics.set(m.id, { label: m.label, priority: m.priority ?? 0 });
  }
  const metaCols = [...meta.entries()]
    .sort((a, b) => b[1].count - a[1].count || a[1].priority - b[1].priority)
    .slice(0, MAX_META_COLUMNS)
    .sort((a, b) => a[1].priority - b[1].priority)
    .map(([id, m]) => ({ id, label: m.label, kind: "meta" as const, dataType: m.dataType }));
  const metricCols = [...metrics.entries()]
    .sort((a, b) => a[1].priority - b[1].priority)
    .map(([id, m]) => ({ id, label: m.label, kind: "metric" as const, dataType: "number" }));
  return [{ id: "label", label: "Name", kind: "label" }, ...metaCols, ...metricCols];
}

function cellKey(n: NodeSummary, c: Column): number | string {
  if (c.kind === "label") return sortKey(n.label);
  if (c.kind === "metric") return sortKey(n.metrics?.find((m) => m.id === c.id)?.value, "number");
  return sortKey(n.metadata?.find((m) => m.id === c.id)?.value, c.dataType);
}

function cellText(n: NodeSummary, c: Column): string {
  if (c.kind === "metric") {
    const m = n.metrics?.find((x) => x.id === c.id);
    return m ? formatMetricRow(m) : "";
  }
  const m = n.metadata?.find((x) => x.id === c.id);
  return m ? formatMetadata(m) : "";
}

/** Every node of the view as a sortable table; only the rows in sight are drawn. */
export default function TableView({ nodes, matches }: { nodes: NodeMap; matches: Set<string> | null }) {
  const selectNode = useStore((s) => s.selectNode);
  const selected = useStore((s) => s.selectedNodeId);
  const [sort, setSort] = useState<{ id: string; desc: boolean }>({ id: "label", desc: false });
  const [scroll, setScroll] = useState(0);
  const [height, setHeight] = useState(800);
  const box = useRef<HTMLDivElement>(null);

  const shown = useMemo(
    () => [...nodes.values()].filter((n) => !matches || matches.has(n.id)),
    [nodes, matches],
  );
  const columns = useMemo(() => tableColumns(shown), [shown]);
  const rows = useMemo(() => {
    const col = columns.find((c) => c.id === sort.id) ?? columns[0];
    const keyed = shown.map((n) => [cellKey(n, col), n] as const);
    keyed.sort((a, b) => compareKeys(a[0], b[0]) || (a[1].id < b[1].id ? -1 : 1));
    if (sort.desc) keyed.reverse();
    return keyed.map((k) => k[1]);
  }, [shown, columns, sort]);

  const onScroll = (e: UIEvent<HTMLDivElement>) => {
    setScroll(e.currentTarget.scrollTop);
    setHeight(e.currentTarget.clientHeight);
  };
  const first = Math.max(0, Math.floor(scroll / ROW) - 10);
  const last = Math.min(rows.length, Math.ceil((scroll + height) / ROW) + 10);

  const header = (c: Column) => (
    <th
      key={c.id}
      className={c.kind === "label" ? "col-label" : c.kind === "metric" ? "num" : ""}
      onClick={() => setSort((s) => ({ id: c.id, desc: s.id === c.id ? !s.desc : c.kind === "metric" }))}
      aria-sort={sort.id === c.id ? (sort.desc ? "descending" : "ascending") : "none"}
    >
      {c.label}
      {sort.id === c.id ? (sort.desc ? " ▾" : " ▴") : ""}
    </th>
  );

  return (
    <div className="table-view" ref={box} onScroll={onScroll} data-testid="table">
      <table>
        <thead>
          <tr>{columns.map(header)}</tr>
        </thead>
        <tbody>
          {first > 0 && <tr style={{ height: first * ROW }} aria-hidden />}
          {rows.slice(first, last).map((n) => (
            <tr
              key={n.id}
              className={n.id === selected ? "selected" : ""}
              onClick={() => selectNode(n.id)}
              style={{ height: ROW }}
              data-node={n.id}
            >
              {columns.map((c) =>
                c.kind === "label" ? (
                  <td key={c.id} className="col-label">
                    <span className="node-label">{n.label}</span>
                    {n.labelMinor && <span className="node-minor">{n.labelMinor}</span>}
                  </td>
                ) : (
                  <td key={c.id} className={c.kind === "metric" ? "num" : ""}>
                    {cellText(n, c)}
                  </td>
                ),
              )}
            </tr>
          ))}
          {last < rows.length && <tr style={{ height: (rows.length - last) * ROW }} aria-hidden />}
        </tbody>
      </table>
      {rows.length === 0 && <p className="empty-note">No nodes match.</p>}
    </div>
  );
}
