import { hash } from "./layout";

// How nodes look: one white silhouette per shape (the WebGL program tints it with the
// node's colour), colours per rank so nodes of the same image or name share a hue, and a
// heat scale for the metric chosen in the metric selector.

function polygon(sides: number, rotation: number, r = 44): string {
  const pts: string[] = [];
  for (let i = 0; i < sides; i++) {
    const a = rotation + (i * 2 * Math.PI) / sides;
    pts.push(`${(50 + r * Math.cos(a)).toFixed(1)},${(50 + r * Math.sin(a)).toFixed(1)}`);
  }
  return `<polygon points="${pts.join(" ")}"/>`;
}

const CLOUD =
  '<path d="M26 78 C8 78 6 56 20 52 C16 36 34 26 44 34 C50 18 74 20 76 38 C92 38 96 56 86 64 C90 76 80 80 72 78 Z"/>';
const CYLINDER =
  '<path d="M14 24 C14 12 86 12 86 24 L86 76 C86 88 14 88 14 76 Z"/>';
const SHEET = '<path d="M20 8 L64 8 L84 28 L84 92 L20 92 Z"/>';

const SHAPES: Record<string, string> = {
  circle: '<circle cx="50" cy="50" r="44"/>',
  square: '<rect x="10" y="10" width="80" height="80" rx="10"/>',
  triangle: polygon(3, -Math.PI / 2, 48),
  pentagon: polygon(5, -Math.PI / 2),
  hexagon: polygon(6, 0, 46),
  heptagon: polygon(7, -Math.PI / 2, 46),
  octagon: polygon(8, Math.PI / 8, 46),
  cloud: CLOUD,
  cylinder: CYLINDER,
  dottedcylinder: CYLINDER,
  storagesheet: SHEET,
  sheet: SHEET,
  dottedtriangle: polygon(3, -Math.PI / 2, 48),
  camera: '<rect x="10" y="28" width="60" height="44" rx="6"/><polygon points="70,50 92,32 92,68"/>',
};

export const SHAPE_NAMES = Object.keys(SHAPES);

const cache = new Map<string, string>();

/** A data URL of the shape's silhouette; `stack` draws it as a pile of three. */
export function shapeImage(shape: string | undefined, stack = false): string {
  const key = `${shape ?? "circle"}/${stack}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const body = SHAPES[shape ?? "circle"] ?? SHAPES.circle;
  const inner = stack
    ? `<g transform="translate(8,-8) scale(0.84)" opacity="0.55">${body}</g><g transform="translate(4,-4) scale(0.88)" opacity="0.75">${body}</g><g transform="translate(0,6) scale(0.88)">${body}</g>`
    : body;
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="128" height="128" viewBox="0 0 100 100"><g fill="white">${inner}</g></svg>`;
  const url = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`;
  cache.set(key, url);
  return url;
}

/** `#rrggbb` for a hue (degrees), saturation and lightness (0–1): WebGL takes hex. */
export function hslHex(h: number, s: number, l: number): string {
  const k = (n: number) => (n + h / 30) % 12;
  const a = s * Math.min(l, 1 - l);
  const f = (n: number) => l - a * Math.max(-1, Math.min(k(n) - 3, Math.min(9 - k(n), 1)));
  const hex = (x: number) => Math.round(x * 255).toString(16).padStart(2, "0");
  return `#${hex(f(0))}${hex(f(8))}${hex(f(4))}`;
}

/** A stable, readable colour per rank (image, command name…). */
export function rankColor(rank: string, dark: boolean): string {
  const hue = Math.round(hash(rank || "?") * 360);
  return dark ? hslHex(hue, 0.55, 0.62) : hslHex(hue, 0.6, 0.48);
}

export function pseudoColor(dark: boolean): string {
  return dark ? "#6b7280" : "#9ca3af";
}

/** Green → amber → red for a fraction in [0, 1]. */
export function heatColor(fraction: number): string {
  const f = Math.max(0, Math.min(1, Number.isFinite(fraction) ? fraction : 0));
  return hslHex(Math.round(140 - 140 * f), 0.75, 0.48 - f * 0.08);
}

/** Shape codes understood by the node shader (graph/shapeProgram.ts). Scope's shape names map onto these. */
const SHAPE_CODES: Record<string, number> = {
  circle: 0,
  square: 1,
  triangle: 2,
  dottedtriangle: 2,
  pentagon: 3,
  hexagon: 4,
  heptagon: 5,
  octagon: 6,
  cloud: 7,
  cylinder: 8,
  dottedcylinder: 8,
  storagesheet: 9,
  sheet: 9,
  camera: 1,
};

/** The shader's code for a shape name, plus 16 for a stacked (grouped) node. */
export function shapeCode(shape: string | undefined, stack = false): number {
  return (SHAPE_CODES[shape ?? "circle"] ?? 0) + (stack ? 16 : 0);
}

