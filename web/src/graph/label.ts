/**
 * Cutting node labels to the room under a node. Process and image labels are often
 * paths (`/usr/lib/chromium/chromium`, `docker.io/library/nginx:1.27`), whose start says
 * little; those keep their last segment instead of their start.
 */

/** The width of a text in pixels, as the canvas will draw it. */
export type Measure = (text: string) => number;

/**
 * Where the last segment of a path-like label starts (its slash), or -1. A path has no
 * spaces; kernel threads (`[kworker/0:1]`) are not paths.
 */
function lastSegmentStart(text: string): number {
  if (text.includes(" ") || text.startsWith("[")) return -1;
  return text.lastIndexOf("/", text.length - 2);
}

/** `text` cut with an ellipsis at its end to fit `px`, or "" if not even one character fits. */
function cutEnd(measure: Measure, text: string, px: number): string {
  if (measure(text) <= px) return text;
  let lo = 0;
  let hi = text.length;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (measure(`${text.slice(0, mid)}…`) <= px) lo = mid;
    else hi = mid - 1;
  }
  return lo > 0 ? `${text.slice(0, lo)}…` : "";
}

/**
 * The label as it fits in `px`: whole if it fits; a path as `…/last` (or its last
 * segment cut at the end when even that is too wide); anything else cut at its end.
 */
export function cutLabel(measure: Measure, text: string, px: number): string {
  if (measure(text) <= px) return text;
  const slash = lastSegmentStart(text);
  if (slash > 0) {
    const tail = `…${text.slice(slash)}`;
    if (measure(tail) <= px) return tail;
    return cutEnd(measure, text.slice(slash + 1), px);
  }
  return cutEnd(measure, text, px);
}
