// The UI's state lives in the URL hash so that a link reproduces what someone sees.
// The encoding is Weave Scope's: `#!/state/<json>` with `/` written as `<SLASH>` and
// `%` as `<PERCENT>`, so links keep working through proxies that decode slashes.

export type ViewOptions = Record<string, Record<string, string[]>>;

export interface UrlState {
  topologyId?: string;
  topologyOptions?: ViewOptions;
  selectedNodeId?: string;
  searchQuery?: string;
  pinnedSearches?: string[];
  gridMode?: boolean;
  pinnedMetricType?: string;
}

const PREFIX = "#!/state/";

export function encodeState(state: UrlState): string {
  const clean: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(state)) {
    if (v === undefined || v === "" || v === false) continue;
    if (Array.isArray(v) && v.length === 0) continue;
    if (typeof v === "object" && v !== null && !Array.isArray(v) && Object.keys(v).length === 0)
      continue;
    clean[k] = v;
  }
  const json = JSON.stringify(clean).replace(/%/g, "<PERCENT>").replace(/\//g, "<SLASH>");
  return PREFIX + encodeURIComponent(json);
}

/** Reads the state from a hash; anything unreadable gives an empty state, never an error. */
export function decodeState(hash: string): UrlState {
  if (!hash.startsWith(PREFIX)) return {};
  let json: string;
  try {
    json = decodeURIComponent(hash.slice(PREFIX.length));
  } catch {
    return {};
  }
  json = json.replace(/<SLASH>/g, "/").replace(/<PERCENT>/g, "%");
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch {
    return {};
  }
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) return {};
  const o = raw as Record<string, unknown>;
  const out: UrlState = {};
  if (typeof o.topologyId === "string") out.topologyId = o.topologyId;
  if (typeof o.selectedNodeId === "string") out.selectedNodeId = o.selectedNodeId;
  if (typeof o.searchQuery === "string") out.searchQuery = o.searchQuery;
  if (typeof o.gridMode === "boolean") out.gridMode = o.gridMode;
  if (typeof o.pinnedMetricType === "string") out.pinnedMetricType = o.pinnedMetricType;
  if (Array.isArray(o.pinnedSearches))
    out.pinnedSearches = o.pinnedSearches.filter((s): s is string => typeof s === "string");
  if (o.topologyOptions && typeof o.topologyOptions === "object") {
    const opts: ViewOptions = {};
    for (const [view, groups] of Object.entries(o.topologyOptions as Record<string, unknown>)) {
      if (!groups || typeof groups !== "object") continue;
      const g: Record<string, string[]> = {};
      for (const [id, v] of Object.entries(groups as Record<string, unknown>)) {
        // Scope wrote single values as strings in older links and as arrays later.
        if (typeof v === "string") g[id] = [v];
        else if (Array.isArray(v)) g[id] = v.filter((x): x is string => typeof x === "string");
      }
      opts[view] = g;
    }
    out.topologyOptions = opts;
  }
  return out;
}
