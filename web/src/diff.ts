import type { NodeSummary, TopologyDiff } from "./types";

/** The nodes of the view on screen, keyed by node ID. Never mutated in place. */
export type NodeMap = ReadonlyMap<string, NodeSummary>;

/**
 * Applies one topology websocket message to the current nodes and returns the new
 * node map. A `reset` message replaces everything with `add`; otherwise additions and
 * updates carry whole summaries and removals carry IDs. Returns the same map object
 * when the message changes nothing, so subscribers can skip work.
 */
export function applyDiff(nodes: NodeMap, diff: TopologyDiff): NodeMap {
  const add = diff.add ?? [];
  const update = diff.update ?? [];
  const remove = diff.remove ?? [];
  if (diff.reset) {
    return new Map(add.map((n) => [n.id, n]));
  }
  if (add.length === 0 && update.length === 0 && remove.length === 0) {
    return nodes;
  }
  const next = new Map(nodes);
  for (const id of remove) next.delete(id);
  for (const n of add) next.set(n.id, n);
  for (const n of update) next.set(n.id, n);
  return next;
}

/** Combines queued messages into one so a burst costs a single re-render. */
export function mergeDiffs(diffs: TopologyDiff[]): TopologyDiff {
  let lastReset = -1;
  diffs.forEach((d, i) => {
    if (d.reset) lastReset = i;
  });
  const tail = lastReset >= 0 ? diffs.slice(lastReset) : diffs;
  const changed = new Map<string, NodeSummary | null>();
  const reset = lastReset >= 0;
  for (const d of tail) {
    if (d.reset) changed.clear();
    for (const id of d.remove ?? []) changed.set(id, null);
    for (const n of d.add ?? []) changed.set(n.id, n);
    for (const n of d.update ?? []) changed.set(n.id, n);
  }
  const add: NodeSummary[] = [];
  const remove: string[] = [];
  for (const [id, n] of changed) {
    if (n) add.push(n);
    else if (!reset) remove.push(id);
  }
  return { add, update: null, remove, reset: reset || undefined };
}

/** Number of edges in a node set: the sum of adjacency lengths, as the app counts them. */
export function edgeCount(nodes: NodeMap): number {
  let n = 0;
  for (const node of nodes.values()) n += node.adjacency?.length ?? 0;
  return n;
}
