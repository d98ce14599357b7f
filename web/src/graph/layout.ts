// Node placement for the graph view. Small views get a layered layout (edges flow top
// to bottom, as in Scope: clients above servers, the Internet at the edges); large views
// start on a sunflower spiral and are refined by ForceAtlas2 in a worker. Live updates
// never move placed nodes: newcomers are put next to their neighbours.

export interface Point {
  x: number;
  y: number;
}

export interface LayoutNode {
  id: string;
  adjacency?: readonly string[];
  rank?: string;
  label?: string;
}

export const LAYER_GAP = 110;
export const NODE_GAP = 90;

/** Directed edges between nodes that are both present, without self-loops or repeats. */
export function edgesOf(nodes: readonly LayoutNode[]): [string, string][] {
  const ids = new Set(nodes.map((n) => n.id));
  const seen = new Set<string>();
  const out: [string, string][] = [];
  for (const n of nodes)
    for (const t of n.adjacency ?? []) {
      if (t === n.id || !ids.has(t)) continue;
      const k = `${n.id}\u0000${t}`;
      if (seen.has(k)) continue;
      seen.add(k);
      out.push([n.id, t]);
    }
  return out;
}

function byName(a: LayoutNode, b: LayoutNode): number {
  const ka = `${a.rank ?? ""}\u0000${a.label ?? ""}\u0000${a.id}`;
  const kb = `${b.rank ?? ""}\u0000${b.label ?? ""}\u0000${b.id}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

/**
 * A layered layout: connected components side by side, each in layers by longest path
 * from its sources (cycles broken at back edges), ordered within layers by barycentre
 * sweeps; nodes without edges go to a grid below. Deterministic for a given input.
 */
export function layeredLayout(nodes: readonly LayoutNode[]): Map<string, Point> {
  const sorted = [...nodes].sort(byName);
  const edges = edgesOf(sorted);
  const out = new Map<string, Point>();
  const succ = new Map<string, string[]>();
  const und = new Map<string, string[]>();
  for (const n of sorted) {
    succ.set(n.id, []);
    und.set(n.id, []);
  }
  for (const [a, b] of edges) {
    succ.get(a)!.push(b);
    und.get(a)!.push(b);
    und.get(b)!.push(a);
  }

  // Connected components, in name order of their first node.
  const comp = new Map<string, number>();
  const comps: string[][] = [];
  for (const n of sorted) {
    if (comp.has(n.id)) continue;
    const members: string[] = [];
    const stack = [n.id];
    comp.set(n.id, comps.length);
    while (stack.length) {
      const v = stack.pop()!;
      members.push(v);
      for (const w of und.get(v)!)
        if (!comp.has(w)) {
          comp.set(w, comps.length);
          stack.push(w);
        }
    }
    comps.push(members);
  }

  const isolated = comps.filter((c) => c.length === 1).map((c) => c[0]);
  const connected = comps.filter((c) => c.length > 1).sort((a, b) => b.length - a.length);
  const order = new Map(sorted.map((n, i) => [n.id, i]));

  let offsetX = 0;
  let maxDepth = 0;
  for (const members of connected) {
    const inComp = new Set(members);
    // Break cycles: drop edges that close a cycle in a DFS from name-ordered roots.
    const state = new Map<string, 1 | 2>();
    const dag = new Map<string, string[]>(members.map((m) => [m, []]));
    const indeg = new Map<string, number>(members.map((m) => [m, 0]));
    for (const a of members) for (const b of succ.get(a)!) indeg.set(b, indeg.get(b)! + 1);
    const roots = [...members].sort((a, b) => indeg.get(a)! - indeg.get(b)! || order.get(a)! - order.get(b)!);
    for (const root of roots) {
      if (state.has(root)) continue;
      const stack: [string, number][] = [[root, 0]];
      state.set(root, 1);
      while (stack.length) {
        const top = stack[stack.length - 1];
        const next = succ.get(top[0])!;
        if (top[1] >= next.length) {
          state.set(top[0], 2);
          stack.pop();
          continue;
        }
        const w = next[top[1]++];
        if (!inComp.has(w)) continue;
        const st = state.get(w);
        if (st === 1) continue; // back edge: ignored for layering
        dag.get(top[0])!.push(w);
        if (st === undefined) {
          state.set(w, 1);
          stack.push([w, 0]);
        }
      }
    }
    // Longest-path layering over the DAG (Kahn's order).
    const layer = new Map<string, number>(members.map((m) => [m, 0]));
    const din = new Map<string, number>(members.map((m) => [m, 0]));
    for (const a of members) for (const b of dag.get(a)!) din.set(b, din.get(b)! + 1);
    const queue = members.filter((m) => din.get(m) === 0).sort((a, b) => order.get(a)! - order.get(b)!);
    for (let i = 0; i < queue.length; i++) {
      const v = queue[i];
      for (const w of dag.get(v)!) {
        layer.set(w, Math.max(layer.get(w)!, layer.get(v)! + 1));
        din.set(w, din.get(w)! - 1);
        if (din.get(w) === 0) queue.push(w);
      }
    }
    const depth = Math.max(...layer.values());
    maxDepth = Math.max(maxDepth, depth);
    const layers: string[][] = Array.from({ length: depth + 1 }, () => []);
    for (const m of [...members].sort((a, b) => order.get(a)! - order.get(b)!)) layers[layer.get(m)!].push(m);

    // Barycentre sweeps, down then up, to reduce crossings.
    const pos = new Map<string, number>();
    const setPos = () => layers.forEach((l) => l.forEach((v, i) => pos.set(v, i)));
    setPos();
    for (let sweep = 0; sweep < 4; sweep++) {
      const range = sweep % 2 === 0 ? layers.map((_, i) => i).slice(1) : layers.map((_, i) => i).reverse().slice(1);
      for (const li of range) {
        const bary = new Map<string, number>();
        for (const v of layers[li]) {
          const ns = und.get(v)!.filter((w) => Math.abs(layer.get(w)! - li) === 1 && (sweep % 2 === 0 ? layer.get(w)! < li : layer.get(w)! > li));
          bary.set(v, ns.length ? ns.reduce((s, w) => s + pos.get(w)!, 0) / ns.length : pos.get(v)!);
        }
        layers[li].sort((a, b) => bary.get(a)! - bary.get(b)! || order.get(a)! - order.get(b)!);
        layers[li].forEach((v, i) => pos.set(v, i));
      }
    }
    const width = Math.max(...layers.map((l) => l.length));
    layers.forEach((l, li) => {
      const pad = ((width - l.length) * NODE_GAP) / 2;
      l.forEach((v, i) => out.set(v, { x: offsetX + pad + i * NODE_GAP, y: li * LAYER_GAP }));
    });
    offsetX += width * NODE_GAP + NODE_GAP;
  }

  // Isolated nodes in a grid under everything else.
  const top = connected.length ? (maxDepth + 1) * LAYER_GAP + LAYER_GAP / 2 : 0;
  const cols = Math.max(Math.ceil(Math.sqrt(isolated.length * 2)), Math.round(offsetX / NODE_GAP) - 1, 1);
  isolated.forEach((v, i) => {
    out.set(v, { x: (i % cols) * NODE_GAP, y: top + Math.floor(i / cols) * (LAYER_GAP * 0.8) });
  });
  return out;
}

/** Sunflower (golden-angle) positions: an even disc that needs no iteration. */
export function spiralLayout(nodes: readonly LayoutNode[], spacing = NODE_GAP / 2): Map<string, Point> {
  const sorted = [...nodes].sort(byName);
  const golden = Math.PI * (3 - Math.sqrt(5));
  const out = new Map<string, Point>();
  sorted.forEach((n, i) => {
    const r = spacing * Math.sqrt(i + 0.5);
    out.set(n.id, { x: r * Math.cos(i * golden), y: r * Math.sin(i * golden) });
  });
  return out;
}

/**
 * A spot for a node that appeared after the layout: near the centre of its placed
 * neighbours (in either direction), slightly offset so it does not cover them; next
 * to the bounding box when it has none.
 */
export function placeNear(
  id: string,
  neighbours: readonly string[],
  placed: ReadonlyMap<string, Point>,
  seed: number,
): Point {
  const known = neighbours.map((n) => placed.get(n)).filter((p): p is Point => !!p);
  const angle = hash(id) * Math.PI * 2;
  if (known.length) {
    const cx = known.reduce((s, p) => s + p.x, 0) / known.length;
    const cy = known.reduce((s, p) => s + p.y, 0) / known.length;
    return { x: cx + Math.cos(angle) * NODE_GAP * 0.6, y: cy + Math.sin(angle) * NODE_GAP * 0.6 + LAYER_GAP * 0.25 };
  }
  let maxX = -Infinity;
  let minY = Infinity;
  let maxY = -Infinity;
  for (const p of placed.values()) {
    maxX = Math.max(maxX, p.x);
    minY = Math.min(minY, p.y);
    maxY = Math.max(maxY, p.y);
  }
  if (!Number.isFinite(maxX)) return { x: 0, y: 0 };
  const h = Math.max(maxY - minY, LAYER_GAP);
  return { x: maxX + NODE_GAP, y: minY + ((seed * 0.618034) % 1) * h };
}

/** A number in [0, 1) from a string: stable colours and offsets per node. */
export function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return (h >>> 0) / 4294967296;
}
