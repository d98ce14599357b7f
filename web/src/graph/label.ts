/**
 * Cutting node labels to the room under a node. Process and image labels are often
 * paths (`/usr/lib/chromium/chromium`, `docker.io/library/nginx:1.27`), whose start says
 * little; those keep their last segment instead of their start.
 */

/** The width of a text in pixels, as the canvas will draw it. */
export type Measure = (text: string) => number;

/**
 * Where the last segment of the path a label starts with begins (its slash), or -1.
 * The path is the label's first word (a command line's program); kernel threads
 * (`[kworker/0:1]`) are not paths.
 */
function lastSegmentStart(text: string): number {
  if (text.startsWith("[")) return -1;
  const space = text.indexOf(" ");
  const word = space < 0 ? text : text.slice(0, space);
  return word.lastIndexOf("/", word.length - 2);
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
 * The label as it fits in `px`: whole if it fits; a closing `(group)` kept whole while
 * the text before it is cut; one that starts with a path as `…/last and the rest` (or
 * without the `…/`, cut at the end, when even that is too wide); anything else cut at
 * its end.
 */
export function cutLabel(measure: Measure, text: string, px: number): string {
  if (measure(text) <= px) return text;
  // A closing group such as the PID in `host (1234)` is what tells nodes apart: the
  // text before it is cut instead.
  const group = /^(.*\S) (\([^()]+\))$/.exec(text);
  if (group) {
    const suffix = ` ${group[2]}`;
    const head = cutLabel(measure, group[1], px - measure(suffix));
    if (head) return `${head}${suffix}`;
  }
  const slash = lastSegmentStart(text);
  if (slash > 0) {
    const tail = `…${text.slice(slash)}`;
    if (measure(tail) <= px) return tail;
    return cutEnd(measure, text.slice(slash + 1), px);
  }
  return cutEnd(measure, text, px);
}
