import type { NodeSummary } from "./types";

// Search syntax, close to Scope's:
//   nginx            label, minor label or any metadata value contains "nginx"
//   pid:42           a metadata or metric field whose label or ID starts with "pid"
//                    has a value containing "42"
//   cpu>50 mem<1gb   metric comparisons (k, m, g suffixes as powers of 1024 for sizes)
// Terms are combined with AND, case-insensitive.

export type Term =
  | { kind: "text"; text: string }
  | { kind: "field"; field: string; text: string }
  | { kind: "compare"; field: string; op: "<" | ">" | "="; value: number };

const SIZE: Record<string, number> = { k: 1024, kb: 1024, m: 1024 ** 2, mb: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3 };

function parseNumber(s: string): number | undefined {
  const m = /^(-?\d+(?:\.\d+)?)\s*(k|kb|m|mb|g|gb|%)?$/i.exec(s.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit = m[2]?.toLowerCase();
  return unit && unit !== "%" ? n * SIZE[unit] : n;
}

export function parseQuery(query: string): Term[] {
  const terms: Term[] = [];
  for (const raw of query.trim().split(/\s+/)) {
    if (!raw) continue;
    const cmp = /^([^<>=:]+)([<>=])(.+)$/.exec(raw);
    if (cmp) {
      const value = parseNumber(cmp[3]);
      if (value !== undefined) {
        terms.push({ kind: "compare", field: cmp[1].toLowerCase(), op: cmp[2] as "<" | ">" | "=", value });
        continue;
      }
    }
    const colon = raw.indexOf(":");
    if (colon > 0 && colon < raw.length - 1) {
      terms.push({ kind: "field", field: raw.slice(0, colon).toLowerCase(), text: raw.slice(colon + 1).toLowerCase() });
      continue;
    }
    terms.push({ kind: "text", text: raw.toLowerCase() });
  }
  return terms;
}

function fieldMatches(field: string, id: string, label: string): boolean {
  return id.toLowerCase().startsWith(field) || label.toLowerCase().startsWith(field);
}

function termMatches(node: NodeSummary, term: Term): boolean {
  switch (term.kind) {
    case "text": {
      if (node.label.toLowerCase().includes(term.text)) return true;
      if (node.labelMinor.toLowerCase().includes(term.text)) return true;
      return (node.metadata ?? []).some((m) => m.value.toLowerCase().includes(term.text));
    }
    case "field": {
      for (const m of node.metadata ?? [])
        if (fieldMatches(term.field, m.id, m.label) && m.value.toLowerCase().includes(term.text)) return true;
      for (const t of node.tables ?? [])
        for (const r of t.rows ?? []) {
          const label = r.entries.label ?? r.id;
          if (fieldMatches(term.field, r.id, label) && (r.entries.value ?? "").toLowerCase().includes(term.text))
            return true;
        }
      return false;
    }
    case "compare": {
      for (const m of node.metrics ?? []) {
        if (!fieldMatches(term.field, m.id, m.label)) continue;
        if (term.op === "<" && m.value < term.value) return true;
        if (term.op === ">" && m.value > term.value) return true;
        if (term.op === "=" && m.value === term.value) return true;
      }
      return false;
    }
  }
}

export function matchesAll(node: NodeSummary, terms: Term[]): boolean {
  return terms.every((t) => termMatches(node, t));
}

/**
 * IDs of the nodes matching the active query and every pinned search, or `null` when
 * no search is active (everything is shown normally).
 */
export function searchNodes(
  nodes: Iterable<NodeSummary>,
  query: string,
  pinned: readonly string[],
): Set<string> | null {
  const termSets = [query, ...pinned].map(parseQuery).filter((t) => t.length > 0);
  if (termSets.length === 0) return null;
  const out = new Set<string>();
  for (const n of nodes) if (termSets.every((ts) => matchesAll(n, ts))) out.add(n.id);
  return out;
}
