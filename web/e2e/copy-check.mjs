// Compares the picture the graph view puts on screen (the `.sigma-gesture` copy) with
// what sigma's own layers hold, in the real browser.
//
// Sigma's WebGL layers drop their drawing buffer once it has been shown, so outside
// the task that drew them they read back empty. The init script below makes every
// WebGL context keep its buffer (`preserveDrawingBuffer`), which changes nothing of
// what is drawn but lets a check made at any moment composite the layers as the
// browser would show them and compare that with the copy, pixel by pixel.

/** Runs in the page before its own scripts. */
function pageSetup() {
  const getContext = HTMLCanvasElement.prototype.getContext;
  HTMLCanvasElement.prototype.getContext = function (type, attrs) {
    if (type === "webgl" || type === "webgl2" || type === "experimental-webgl")
      return getContext.call(this, type, { ...(attrs ?? {}), preserveDrawingBuffer: true });
    return getContext.call(this, type, attrs);
  };
  let renders = 0;
  let hooked = null;
  const count = () => {
    const s = window.__rescopeSigma;
    if (s && s !== hooked) {
      hooked = s;
      s.on("afterRender", () => renders++);
    }
  };
  /**
   * How far the copy on screen is from sigma's layers: `differ` pixels (of `total`)
   * differ by more than a rounding error once the layers are composited over the
   * page's background; `geometry` is set when the copy does not cover the layers
   * exactly (moved, stretched), `transform` is the copy's CSS transform.
   */
  window.__copyDiff = () => {
    count();
    const s = window.__rescopeSigma;
    const snap = document.querySelector(".sigma-gesture");
    if (!s || !snap) return { error: "no renderer or no copy" };
    const layers = Object.entries(s.getCanvases())
      .filter(([id]) => id !== "mouse")
      .map(([, c]) => c);
    const w = layers[0].width;
    const h = layers[0].height;
    const shown = snap.style.display !== "none";
    const res = { differ: 0, total: w * h, shown, transform: snap.style.transform, renders, geometry: null };
    const a = snap.getBoundingClientRect();
    const b = layers[0].getBoundingClientRect();
    if (Math.abs(a.left - b.left) > 0.5 || Math.abs(a.top - b.top) > 0.5 || Math.abs(a.width - b.width) > 0.5 || Math.abs(a.height - b.height) > 0.5)
      res.geometry = `copy ${a.width}x${a.height}+${a.left}+${a.top}, layers ${b.width}x${b.height}+${b.left}+${b.top}`;
    if (snap.width !== w || snap.height !== h) {
      res.differ = w * h;
      res.geometry = `copy ${snap.width}x${snap.height} px, layers ${w}x${h} px`;
      return res;
    }
    let bg = "#fff";
    for (let el = s.getContainer(); el; el = el.parentElement) {
      const c = getComputedStyle(el).backgroundColor;
      if (c && c !== "transparent" && !/rgba\(.*,\s*0\)$/.test(c)) {
        bg = c;
        break;
      }
    }
    const out = document.createElement("canvas");
    out.width = w;
    out.height = h;
    const ctx = out.getContext("2d", { alpha: false });
    ctx.fillStyle = bg;
    ctx.fillRect(0, 0, w, h);
    for (const c of layers) if (c.style.visibility !== "hidden") ctx.drawImage(c, 0, 0);
    const want = ctx.getImageData(0, 0, w, h).data;
    const got = snap.getContext("2d").getImageData(0, 0, w, h).data;
    for (let i = 0; i < want.length; i += 4)
      if (Math.abs(want[i] - got[i]) + Math.abs(want[i + 1] - got[i + 1]) + Math.abs(want[i + 2] - got[i + 2]) > 12) res.differ++;
    return res;
  };
  /**
   * Checks the copy every `everyMs` until stopped; a mismatch counts as stale when the
   * next check still sees it with no draw in between (the copy stayed wrong on screen).
   */
  window.__copyWatch = (everyMs = 150) => {
    const log = { checks: 0, mismatches: 0, stale: [], worst: 0 };
    let prev = null;
    const id = setInterval(() => {
      const d = window.__copyDiff();
      if (d.error) return;
      log.checks++;
      const atRest = !window.__rescopeSigma.getCamera().isAnimated() && d.transform === "";
      const bad = d.shown && atRest && (d.differ > 0 || d.geometry);
      if (bad) {
        log.mismatches++;
        log.worst = Math.max(log.worst, d.differ);
        if (prev && prev.renders === d.renders && log.stale.length < 20)
          log.stale.push({ at: Math.round(performance.now()), differ: d.differ, geometry: d.geometry, theme: document.documentElement.dataset.theme });
      }
      prev = bad ? d : null;
    }, everyMs);
    return () => {
      clearInterval(id);
      return log;
    };
  };
}

/** Installs the check in every page of `context` (call before opening the page). */
export async function installCopyCheck(context) {
  await context.addInitScript(pageSetup);
}

/** The copy against sigma's layers right now (see `__copyDiff`). */
export function copyDiff(page) {
  return page.evaluate(() => window.__copyDiff());
}

/** Starts watching; returns a function that stops and returns the log. */
export async function watchCopy(page, everyMs = 150) {
  await page.evaluate((ms) => {
    window.__copyWatchStop = window.__copyWatch(ms);
  }, everyMs);
  return () => page.evaluate(() => window.__copyWatchStop());
}
