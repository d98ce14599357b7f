import { useEffect } from "react";
import { formatMetadata, formatMetricRow } from "../format";
import { rankColor, shapeImage } from "../graph/style";
import { refreshDetails, runControl } from "../live";
import { useStore } from "../store";
import type { ChildGroup, ConnectionTable, Control, NodeDetails, NodeSummary, Table, TableColumn } from "../types";
import Sparkline from "./Sparkline";

const ICONS: Record<string, string> = {
  "fa-terminal": ">_",
  "fa-desktop": "▣",
  "fa-stop": "■",
  "fa-play": "▶",
  "fa-pause": "❚❚",
  "fa-redo": "↻",
  "fa-refresh": "↻",
  "fa-sync": "↻",
  "fa-trash": "✕",
  "fa-trash-alt": "✕",
  "fa-file-alt": "≡",
  "fa-list": "≡",
  "fa-toggle-on": "◉",
  "fa-toggle-off": "○",
  "fa-power-off": "⏻",
  "fa-stethoscope": "✚",
  "fa-bed": "☾",
  "fa-hourglass-half": "⧗",
};

function iconText(icon: string): string {
  for (const cls of icon.split(/\s+/)) if (ICONS[cls]) return ICONS[cls];
  return "•";
}

function go(topologyId: string, id: string) {
  const s = useStore.getState();
  s.setTopology(topologyId);
  useStore.getState().selectNode(id, topologyId);
}

function Controls({ controls, title }: { controls: Control[]; title: string }) {
  const busy = useStore((s) => s.busyControls);
  if (controls.length === 0) return null;
  const sorted = [...controls].sort((a, b) => a.rank - b.rank);
  return (
    <div className="controls" role="toolbar" aria-label="Controls">
      {sorted.map((c) => (
        <button
          key={`${c.probeId}/${c.id}`}
          className="control"
          title={c.human}
          data-control={c.id}
          disabled={!!busy[`${c.nodeId}/${c.id}`]}
          onClick={() => void runControl(c, title)}
        >
          <span className="control-icon" aria-hidden>
            {iconText(c.icon)}
          </span>
          {c.human}
        </button>
      ))}
    </div>
  );
}

function Metrics({ node }: { node: NodeDetails }) {
  const metrics = node.metrics ?? [];
  if (metrics.length === 0) return null;
  return (
    <section className="section">
      <h3>Metrics</h3>
      <table className="kv metrics">
        <tbody>
          {metrics.map((m) => (
            <tr key={m.id} data-metric={m.id}>
              <th>{m.label}</th>
              <td className="spark">
                {m.samples && m.samples.length > 1 && (
                  <Sparkline samples={m.samples} max={m.format === "percent" ? 100 : undefined} />
                )}
              </td>
              <td className="num value">{formatMetricRow(m)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

function Metadata({ node }: { node: NodeDetails }) {
  const rows = node.metadata ?? [];
  if (rows.length === 0) return null;
  return (
    <section className="section">
      <h3>Info</h3>
      <table className="kv">
        <tbody>
          {rows.map((m) => (
            <tr key={m.id} data-meta={m.id}>
              <th>{m.label}</th>
              <td title={m.value}>{formatMetadata(m)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

function ReportTable({ table }: { table: Table }) {
  const rows = table.rows ?? [];
  const more = table.truncationCount ? <p className="note">{table.truncationCount} more not shown</p> : null;
  if (table.type === "multicolumn-table" && table.columns) {
    return (
      <section className="section" data-table={table.id}>
        <h3>{table.label}</h3>
        {rows.length === 0 ? (
          <p className="note">None</p>
        ) : (
          <table className="grid">
            <thead>
              <tr>
                {table.columns.map((c) => (
                  <th key={c.id}>{c.label}</th>
                ))}
              </tr>
            </thead>
            <tbody>
              {rows.map((r) => (
                <tr key={r.id}>
                  {table.columns!.map((c) => (
                    <td key={c.id}>{r.entries[c.id] ?? ""}</td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
        )}
        {more}
      </section>
    );
  }
  return (
    <section className="section" data-table={table.id}>
      <h3>{table.label}</h3>
      {rows.length === 0 ? (
        <p className="note">None</p>
      ) : (
        <table className="kv">
          <tbody>
            {rows.map((r) => (
              <tr key={r.id}>
                <th>{r.entries.label ?? r.id}</th>
                <td title={r.entries.value}>{r.entries.value ?? ""}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {more}
    </section>
  );
}

function cell(n: NodeSummary, c: TableColumn): string {
  const meta = n.metadata?.find((m) => m.id === c.id);
  if (meta) return formatMetadata(meta);
  const metric = n.metrics?.find((m) => m.id === c.id);
  return metric ? formatMetricRow(metric) : "";
}

function Children({ group }: { group: ChildGroup }) {
  const nodes = group.nodes ?? [];
  const columns = group.columns ?? [];
  return (
    <section className="section" data-children={group.topologyId}>
      <h3>
        {group.label} <span className="count">{nodes.length}</span>
      </h3>
      {nodes.length === 0 ? (
        <p className="note">None</p>
      ) : (
        <table className="grid clickable">
          <thead>
            <tr>
              <th>Name</th>
              {columns.map((c) => (
                <th key={c.id} className={c.dataType === "number" ? "num" : ""}>
                  {c.label}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {nodes.map((n) => (
              <tr key={n.id} onClick={() => go(group.topologyId, n.id)}>
                <td className="link">{n.label || n.id}</td>
                {columns.map((c) => (
                  <td key={c.id} className={c.dataType === "number" ? "num" : ""}>
                    {cell(n, c)}
                  </td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function Connections({ table }: { table: ConnectionTable }) {
  const rows = table.connections ?? [];
  const columns = table.columns ?? [];
  return (
    <section className="section" data-connections={table.id}>
      <h3>
        {table.label} <span className="count">{rows.length}</span>
      </h3>
      {rows.length === 0 ? (
        <p className="note">None</p>
      ) : (
        <table className="grid clickable">
          <thead>
            <tr>
              <th>{table.label === "Inbound" ? "Client" : "Server"}</th>
              {columns.map((c) => (
                <th key={c.id} className={c.dataType === "number" ? "num" : ""}>
                  {c.label}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {rows.map((r) => (
              <tr key={r.id} onClick={() => go(table.topologyId, r.nodeId)}>
                <td className="link">
                  {r.label}
                  {r.labelMinor && <span className="node-minor">{r.labelMinor}</span>}
                </td>
                {columns.map((c) => (
                  <td key={c.id} className={c.dataType === "number" ? "num" : ""}>
                    {r.metadata?.find((m) => m.id === c.id)?.value ?? ""}
                  </td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

/** The selected node's details: everything the app knows about it, plugins included. */
export default function Details() {
  const id = useStore((s) => s.selectedNodeId);
  const details = useStore((s) => s.details);
  const error = useStore((s) => s.detailsError);
  const dark = useStore((s) => s.theme === "dark");
  const selectNode = useStore((s) => s.selectNode);

  useEffect(() => {
    if (id && !details) void refreshDetails();
  }, [id, details]);

  if (!id) return null;
  const node = details && details.id === id ? details : null;
  return (
    <aside className="details" aria-label="Node details" data-testid="details">
      <header className="details-head">
        {node && (
          <img
            className="details-shape"
            alt=""
            src={shapeImage(node.shape, node.stack)}
            style={{ background: node.pseudo ? "#9ca3af" : rankColor(node.rank || node.label, dark) }}
          />
        )}
        <div className="details-title">
          <h2>{node?.label ?? (error ? "Unknown node" : "Loading…")}</h2>
          {node?.labelMinor && <p className="minor">{node.labelMinor}</p>}
        </div>
        <button className="close" title="Close (Esc)" aria-label="Close details" onClick={() => selectNode(null)}>
          ×
        </button>
      </header>
      {error && <p className="error-note">{error}</p>}
      {node && (
        <div className="details-body">
          <Controls controls={node.controls ?? []} title={node.label} />
          {node.parents && node.parents.length > 0 && (
            <div className="parents">
              {node.parents.map((p) => (
                <button key={`${p.topologyId}/${p.id}`} className="parent" onClick={() => go(p.topologyId, p.id)}>
                  <span className="parent-kind">{p.topologyId}</span> {p.label || p.id}
                </button>
              ))}
            </div>
          )}
          <Metrics node={node} />
          <Metadata node={node} />
          {(node.tables ?? []).map((t) => (
            <ReportTable key={t.id} table={t} />
          ))}
          {(node.children ?? []).map((g) => (
            <Children key={`${g.topologyId}/${g.label}`} group={g} />
          ))}
          {(node.connections ?? []).map((c) => (
            <Connections key={c.id} table={c} />
          ))}
        </div>
      )}
    </aside>
  );
}
