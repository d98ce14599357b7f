import { viewIdOf } from "../api";
import { useStore } from "../store";
import type { TopologyDesc } from "../types";

function count(t: TopologyDesc): string {
  const n = t.stats?.node_count;
  return n === undefined ? "" : String(n);
}

/** The views and their sub-views, with node counts, as tabs. */
export default function TopologyBar() {
  const topologies = useStore((s) => s.topologies);
  const current = useStore((s) => s.topologyId);
  const setTopology = useStore((s) => s.setTopology);
  const visible = [...topologies]
    .filter((t) => !t.hide_if_empty || (t.stats?.node_count ?? 0) > 0)
    .sort((a, b) => a.rank - b.rank || a.name.localeCompare(b.name));
  return (
    <nav className="topologies" aria-label="Views">
      {visible.map((t) => {
        const id = viewIdOf(t);
        const subs = (t.sub_topologies ?? []).filter((s) => !s.hide_if_empty || (s.stats?.node_count ?? 0) > 0);
        const active = id === current || subs.some((s) => viewIdOf(s) === current);
        return (
          <div key={id} className={`topology${active ? " active" : ""}`}>
            <button
              className={`topology-main${id === current ? " current" : ""}`}
              onClick={() => setTopology(id)}
              data-view={id}
              aria-current={id === current ? "page" : undefined}
            >
              {t.name} <span className="count">{count(t)}</span>
            </button>
            {subs.length > 0 && (
              <div className="subtopologies">
                {subs.map((s) => {
                  const sid = viewIdOf(s);
                  return (
                    <button
                      key={sid}
                      className={sid === current ? "current" : ""}
                      onClick={() => setTopology(sid)}
                      data-view={sid}
                      aria-current={sid === current ? "page" : undefined}
                    >
                      {s.name} <span className="count">{count(s)}</span>
                    </button>
                  );
                })}
              </div>
            )}
          </div>
        );
      })}
    </nav>
  );
}
