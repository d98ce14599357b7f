import type { ApiInfo, ControlResponse, NodeDetails, OptionGroup, TopologyDesc } from "./types";

// Every request is relative to the page, so the app may be served under a prefix.

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Turns an error body into one readable line: JSON strings are unquoted. */
export function errorText(body: string, status: number): string {
  const trimmed = body.trim();
  if (!trimmed) return `HTTP ${status}`;
  try {
    const v = JSON.parse(trimmed);
    if (typeof v === "string") return v;
    if (v && typeof v === "object" && typeof v.error === "string") return v.error;
  } catch {
    /* not JSON: use the text as it is */
  }
  return trimmed;
}

/**
 * Requests the page started before the bundle ran (`index.html` asks for the API info
 * and the view list at once, so they load in parallel with the code). Each is used
 * once, by the first request for the same path; later ones go to the network.
 */
type Early = Record<string, Promise<Response> | undefined>;

function takeEarly(path: string): Promise<Response> | undefined {
  const early = (globalThis as { __rescopeEarly?: Early }).__rescopeEarly;
  const res = early?.[path];
  if (res) delete early[path];
  return res;
}

async function request<T>(path: string, init?: RequestInit): Promise<T> {
  const res = await ((init ? undefined : takeEarly(path)) ?? fetch(path, init));
  const text = await res.text();
  if (!res.ok) throw new HttpError(res.status, errorText(text, res.status));
  return (text ? JSON.parse(text) : {}) as T;
}

export const getApi = () => request<ApiInfo>("api");

export const getTopologies = (query: string) =>
  request<TopologyDesc[]>(`api/topology${query ? `?${query}` : ""}`);

export const getDetails = (view: string, nodeId: string, query: string) =>
  request<{ node: NodeDetails }>(
    `api/topology/${encodeURIComponent(view)}/${encodeURIComponent(nodeId)}${query ? `?${query}` : ""}`,
  );

export function postControl(
  probeId: string,
  nodeId: string,
  control: string,
  args?: Record<string, string>,
): Promise<ControlResponse> {
  return request<ControlResponse>(
    `api/control/${encodeURIComponent(probeId)}/${encodeURIComponent(nodeId)}/${control}`,
    {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: args ? JSON.stringify(args) : undefined,
    },
  );
}

export async function deletePipe(pipeId: string): Promise<void> {
  await fetch(`api/pipe/${encodeURIComponent(pipeId)}`, { method: "DELETE" });
}

/** A websocket URL for a path relative to the page. */
export function wsUrl(path: string, base: string = document.baseURI): string {
  const u = new URL(path, base);
  u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
  return u.toString();
}

/** The view ID from a topology URL: `/api/topology/containers-by-image` → `containers-by-image`. */
export function viewIdOf(t: Pick<TopologyDesc, "url">): string {
  return t.url.slice(t.url.lastIndexOf("/") + 1);
}

/** All views, top-level first and each followed by its sub-views. */
export function flattenTopologies(list: readonly TopologyDesc[]): TopologyDesc[] {
  const out: TopologyDesc[] = [];
  for (const t of list) {
    out.push(t);
    for (const s of t.sub_topologies ?? []) out.push(s);
  }
  return out;
}

/** The selected values of one option group; the group's default when nothing was chosen. */
export function selectedValues(group: OptionGroup, chosen: Record<string, string[]> | undefined): string[] {
  const v = chosen?.[group.id];
  if (v) return v;
  return group.defaultValue ? group.defaultValue.split(",") : [];
}

/** The query string a view is rendered with: every option group with its value. */
export function optionsQuery(
  groups: readonly OptionGroup[] | null | undefined,
  chosen: Record<string, string[]> | undefined,
): string {
  const params = new URLSearchParams();
  for (const g of groups ?? []) params.set(g.id, selectedValues(g, chosen).join(","));
  return params.toString();
}
