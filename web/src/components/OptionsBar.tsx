import { flattenTopologies, selectedValues, viewIdOf } from "../api";
import { useStore } from "../store";
import type { OptionGroup } from "../types";

function Group({ view, group }: { view: string; group: OptionGroup }) {
  const chosen = useStore((s) => s.options[view]);
  const setOption = useStore((s) => s.setOption);
  const values = selectedValues(group, chosen);
  const union = group.selectType === "union";
  const click = (value: string) => {
    if (!union) return setOption(view, group.id, [value]);
    const next = values.includes(value) ? values.filter((v) => v !== value) : [...values, value];
    setOption(view, group.id, next);
  };
  return (
    <div className="option-group" role="group" aria-label={group.id}>
      {union && (
        <button className={values.length === 0 ? "selected" : ""} onClick={() => setOption(view, group.id, [])}>
          {group.noneLabel || "All"}
        </button>
      )}
      {(group.options ?? []).map((o) => (
        <button
          key={o.value}
          className={values.includes(o.value) ? "selected" : ""}
          aria-pressed={values.includes(o.value)}
          onClick={() => click(o.value)}
        >
          {o.label}
        </button>
      ))}
    </div>
  );
}

/** The current view's options (filters), as Scope shows them under the view tabs. */
export default function OptionsBar() {
  const topologies = useStore((s) => s.topologies);
  const current = useStore((s) => s.topologyId);
  const view = flattenTopologies(topologies).find((t) => viewIdOf(t) === current);
  const groups = (view?.options ?? []).filter((g) => (g.options ?? []).length > 0);
  if (!view || groups.length === 0) return <div className="options empty" />;
  return (
    <div className="options">
      {groups.map((g) => (
        <Group key={g.id} view={current!} group={g} />
      ))}
      {view.stats && view.stats.filtered_nodes > 0 && (
        <span className="filtered">{view.stats.filtered_nodes} hidden by filters</span>
      )}
    </div>
  );
}
