// The scripted pan/zoom gesture of the UI benchmarks, run inside the page.
//
// A drag (button down, one move per frame along an ellipse) for 60% of `ms`, the
// button released, then one wheel step per frame (zooming in and out in turns of ten)
// until `ms`. Input stops there, but the recording goes on until the view has been
// drawn for real after the last input (the gesture's last frame, which the UI draws
// once the camera is still) and one frame more, so the gesture's first and last
// frames are both counted. A "frame" is the interval between two
// requestAnimationFrame callbacks: the main thread's work plus anything that held
// back the next frame (compositing, presenting on software GL).
//
// Returns `{ ticks, phase, inputEnd, finalDraw }`: each callback's time (the page's
// performance.now()), what the gesture was doing in the interval ending there ("drag",
// "wheel" or "end"), and when input stopped and the final draw happened.
export function gesture(ms) {
  const target = document.querySelector(".sigma-mouse");
  const r = target.getBoundingClientRect();
  const cx = r.left + r.width / 2;
  const cy = r.top + r.height / 2;
  const mouse = (type, x, y) =>
    new MouseEvent(type, { clientX: x, clientY: y, bubbles: true, cancelable: true, button: 0, buttons: type === "mouseup" ? 0 : 1 });
  const lastDraw = () => window.__rescopeLastRender?.t ?? 0;
  const ticks = [];
  const phase = [];
  let i = 0;
  let dragging = true;
  let inputEnd = 0;
  let finalDraw = 0;
  let current = "drag";
  return new Promise((done) => {
    const tick = (now) => {
      ticks.push(now);
      phase.push(current);
      if (ticks.length === 1) {
        // The first callback only starts the clock: the button goes down here and the
        // first interval is the one the first move lands in.
        target.dispatchEvent(mouse("mousedown", cx, cy));
        requestAnimationFrame(tick);
        return;
      }
      i++;
      const elapsed = now - ticks[0];
      if (elapsed < ms * 0.6) {
        target.dispatchEvent(mouse("mousemove", cx + 150 * Math.cos(i / 8), cy + 100 * Math.sin(i / 8)));
      } else if (elapsed < ms) {
        if (dragging) {
          document.dispatchEvent(mouse("mouseup", cx, cy));
          dragging = false;
        }
        current = "wheel";
        const deltaY = Math.floor(i / 10) % 2 ? 100 : -100;
        target.dispatchEvent(new WheelEvent("wheel", { clientX: cx, clientY: cy, deltaY, bubbles: true, cancelable: true }));
      } else {
        if (!inputEnd) inputEnd = now;
        current = "end";
        if (finalDraw) return done({ ticks, phase, inputEnd, finalDraw });
        if (lastDraw() > inputEnd) finalDraw = lastDraw();
        // Give up on the final draw after 3 s (counted as it is).
        if (now - inputEnd > 3000) return done({ ticks, phase, inputEnd, finalDraw: 0 });
      }
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  });
}

/** The frame intervals (ms) of a recorded gesture, first to last. */
export function settledFrames(out) {
  const dts = [];
  for (let i = 1; i < out.ticks.length; i++) dts.push(out.ticks[i] - out.ticks[i - 1]);
  return dts;
}
