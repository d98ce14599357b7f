// Where the time of pan/zoom frames goes: opens a view of a simulated host in headless
// Chromium (software WebGL), waits for the layout to settle, then runs the same
// scripted drag-then-wheel gesture as ui-perf.mjs with a Chrome trace running, and
// prints every frame interval over a threshold with what ran in it (real sigma draws,
// main-thread tasks and their biggest inner events).
//
//   node bench/ui-gesture-profile.mjs [processes] [runs]   default: 200 1
//   RESCOPE_BIN=../target/release/rescope                  the binary
//   RESCOPE_UI_DIR=dist                                    the UI build to serve
//   SLOW_MS=40                                             frames reported (default 40)
//   TRACE_OUT=/tmp/gesture.json                            keep the last trace

import { writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { VIEWPORT, feedReport, launchBrowser, processesViewUrl, simulatedReport, sleep, startApp } from "../harness.mjs";
import { gesture, settledFrames } from "./gesture-script.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const bin = process.env.RESCOPE_BIN ?? join(root, "target/release/rescope");
const n = Number(process.argv[2] ?? 200);
const runs = Number(process.argv[3] ?? 1);
const slowMs = Number(process.env.SLOW_MS ?? 40);

const scratch = mkdtempSync(join(tmpdir(), "rescope-uigesture-"));
const app = await startApp(bin);
const base = app.base;

// Records each real sigma draw (start, end on the page's clock).
const probe = () => {
  window.__draws = [];
  const watch = () => {
    const s = window.__rescopeSigma;
    if (!s) return void setTimeout(watch, 50);
    let t0 = 0;
    s.on("beforeRender", () => (t0 = performance.now()));
    s.on("afterRender", () => window.__draws.push([t0, performance.now()]));
  };
  watch();
};

let browser;
try {
  const stopFeeding = await feedReport(base, simulatedReport(bin, n, scratch), n);
  browser = await launchBrowser();
  for (let run = 0; run < runs; run++) {
    const page = await browser.newPage({ viewport: VIEWPORT });
    await page.addInitScript(probe);
    await page.goto(processesViewUrl(base));
    await page.waitForFunction(() => window.__rescopeLastRender?.order > 0, null, { timeout: 60_000 });
    await sleep(n > 400 ? 9000 : 3000);

    const cdp = await page.context().newCDPSession(page);
    const events = [];
    cdp.on("Tracing.dataCollected", (e) => events.push(...e.value));
    const done = new Promise((r) => cdp.once("Tracing.tracingComplete", r));
    await cdp.send("Tracing.start", {
      transferMode: "ReportEvents",
      traceConfig: { includedCategories: ["devtools.timeline", "disabled-by-default-devtools.timeline", "v8.execute", "blink", "gpu", "toplevel", "cc", "viz"] },
    });
    await sleep(300);
    const clockOffset = await page.evaluate(() => performance.timeOrigin);
    const out = await page.evaluate(gesture, 3000);
    const draws = await page.evaluate(() => window.__draws);
    await cdp.send("Tracing.end");
    await done;

    const frames = settledFrames(out);
    const sorted = [...frames].sort((a, b) => a - b);
    const p = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * (sorted.length - 1) + 0.5))];
    console.log(`\nrun ${run + 1}: ${frames.length} frames, p50 ${p(0.5).toFixed(1)} p95 ${p(0.95).toFixed(1)} max ${sorted.at(-1).toFixed(1)} ms; ${draws.filter(([a]) => a >= out.ticks[0]).length} real draws during the gesture`);
    // Trace timestamps are µs on a monotonic clock; find the page clock's zero from a
    // main-thread event matched by the first tick (the rAF callback).
    const main = events.find((e) => e.name === "thread_name" && e.args?.name === "CrRendererMain");
    const onMain = events.filter((e) => main && e.pid === main.pid && e.tid === main.tid && e.ph === "X");
    const rafs = onMain.filter((e) => e.name === "FireAnimationFrame").sort((a, b) => a.ts - b.ts);
    // Align: the last FireAnimationFrame at or before the last tick.
    const zero = rafs.length ? rafs.at(-1).ts / 1000 - out.ticks.at(-1) : 0;
    void clockOffset;
    for (let i = 1; i < out.ticks.length; i++) {
      const dt = out.ticks[i] - out.ticks[i - 1];
      if (dt < slowMs) continue;
      const from = (out.ticks[i - 1] + zero) * 1000;
      const to = (out.ticks[i] + zero) * 1000;
      const inDraws = draws.filter(([a, b]) => b > out.ticks[i - 1] && a < out.ticks[i]).map(([a, b]) => Math.round(b - a));
      const tasks = onMain
        .filter((e) => e.name === "RunTask" && e.ts + e.dur > from && e.ts < to && e.dur > 3000)
        .map((t) => {
          const inner = onMain
            .filter((e) => e !== t && e.ts >= t.ts && e.ts + e.dur <= t.ts + t.dur && e.dur > 2000 && e.name !== "RunTask")
            .sort((a, b) => b.dur - a.dur)
            .slice(0, 4)
            .map((e) => `${e.name}${e.args?.data?.functionName ? `(${e.args.data.functionName})` : ""} ${Math.round(e.dur / 1000)}`);
          return `task ${Math.round(t.dur / 1000)} [${inner.join(", ")}]`;
        });
      console.log(`  frame ${i} (${out.phase[i]}) ${dt.toFixed(1)} ms: draws ${JSON.stringify(inDraws)}; ${tasks.join("; ") || "no main-thread task > 3 ms"}`);
    }
    if (process.env.TRACE_OUT) writeFileSync(process.env.TRACE_OUT, JSON.stringify({ traceEvents: events }));
    await page.close();
  }
  stopFeeding();
} finally {
  await browser?.close();
  app.stop();
  rmSync(scratch, { recursive: true, force: true });
}
