import { useStore } from "../store";

/** The plugins the probes run, bottom right: label, description and status on hover. */
export default function Plugins() {
  const plugins = useStore((s) => s.api?.plugins ?? null);
  const list = [...(plugins ?? [])].sort((a, b) => a.id.localeCompare(b.id));
  return (
    <div className="plugins" data-testid="plugins">
      <span className="plugins-title">Plugins:</span>
      {list.length === 0 && <span className="plugin none">n/a</span>}
      {list.map((p) => {
        const ok = p.status === "ok";
        const tip = `Description: ${p.description || "–"}\nStatus: ${p.status || "unknown"}`;
        return (
          <span key={p.id} className={`plugin${ok ? "" : " failing"}`} title={tip} data-plugin={p.id} tabIndex={0}>
            {!ok && (
              <span className="plugin-error" aria-label="error">
                !
              </span>
            )}
            {p.label || p.id}
            {!ok && <span className="plugin-status">{p.status || "no status"}</span>}
          </span>
        );
      })}
    </div>
  );
}
