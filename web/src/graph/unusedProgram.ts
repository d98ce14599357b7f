// Sigma 3 merges its default programs (a "circle" node program; "arrow" and "line"
// edge programs) into whatever programs it is given and compiles every one of them
// when the renderer is made, used or not. On software WebGL each compile and link
// blocks the page until the GPU process answers, so the unused ones cost the first
// draw about as much as the ones it needs. `UnusedProgram` stands in for them: it
// compiles nothing and draws nothing (a node or edge of such a type is not drawn).

/** The part of a sigma program the renderer calls. */
export default class UnusedProgram {
  constructor(_gl?: unknown, _pickingBuffer?: unknown, _renderer?: unknown) {}
  kill(): void {}
  reallocate(_capacity: number): void {}
  process(_offset: number, _index: number, _data: unknown): void {}
  render(_params: unknown): void {}
}

/** `programs`, with every default of sigma's that it does not set replaced by `UnusedProgram`. */
export function withoutDefaults<P>(programs: Record<string, P>, defaults: Record<string, unknown>): Record<string, P> {
  const out: Record<string, P> = {};
  for (const type of Object.keys(defaults)) out[type] = UnusedProgram as unknown as P;
  return { ...out, ...programs };
}
