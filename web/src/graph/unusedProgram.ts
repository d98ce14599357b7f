// Sigma 3 merges its default programs (a "circle" node program, a "line" edge
// program) into whatever programs it is given and compiles every one of them when the
// renderer is made, used or not. On software WebGL each compile and link blocks the
// page until the GPU process answers, so the unused ones cost the first draw about
// as much as the ones it needs. This stands in for them: it compiles nothing and draws
// nothing. A node or edge given one of those types is simply not drawn.

/** The part of a sigma program the renderer calls. */
export default class UnusedProgram {
  constructor(_gl?: unknown, _pickingBuffer?: unknown, _renderer?: unknown) {}
  kill(): void {}
  reallocate(_capacity: number): void {}
  process(_offset: number, _index: number, _data: unknown): void {}
  render(_params: unknown): void {}
}
