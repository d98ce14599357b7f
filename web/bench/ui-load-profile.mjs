// Where a cold load of the UI spends its time: opens a view of a simulated host in a
// fresh headless Chromium (software WebGL) with a Chrome trace running, and prints the
// milestones from navigation to the first frame with every node drawn (HTML, bundle,
// API requests, websocket, first WebGL draw) and the main thread's longest tasks.
//
//   node bench/ui-load-profile.mjs [processes] [runs]     default: 200 1
//   RESCOPE_BIN=../target/release/rescope                 the binary
//   TRACE_OUT=/tmp/load.json                              keep the last trace
//   TRACE_CATEGORIES=viz,skia                             more trace categories
//   HOT=20                                                hot functions listed per task

import { writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { VIEWPORT, drawnAt, feedReport, launchBrowser, processesView, processesViewUrl, simulatedReport, startApp } from "../harness.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const bin = process.env.RESCOPE_BIN ?? join(root, "target/release/rescope");
const n = Number(process.argv[2] ?? 200);
const runs = Number(process.argv[3] ?? 1);

const scratch = mkdtempSync(join(tmpdir(), "rescope-uiload-"));
const app = await startApp(bin);
const base = app.base;

// Timestamps (ms after navigation) of the page's own steps, recorded from inside it.
const probe = () => {
  const log = (window.__loadLog = []);
  const mark = (what) => log.push([Math.round(performance.now()), what]);
  const realFetch = window.fetch;
  window.fetch = function (input, init) {
    const url = String(input instanceof Request ? input.url : input);
    mark(`fetch ${url.slice(0, 60)}`);
    return realFetch.call(this, input, init).then((r) => {
      mark(`fetch answered ${url.slice(0, 60)}`);
      return r;
    });
  };
  const RealWs = window.WebSocket;
  window.WebSocket = class extends RealWs {
    constructor(url, p) {
      super(url, p);
      mark(`ws open ${String(url).replace(/^.*\/api/, "api").slice(0, 50)}`);
      this.addEventListener("open", () => mark("ws connected"));
      let first = true;
      this.addEventListener("message", (e) => {
        if (first) mark(`ws first message (${e.data.length} bytes)`);
        first = false;
      });
    }
  };
  const realGetContext = HTMLCanvasElement.prototype.getContext;
  HTMLCanvasElement.prototype.getContext = function (kind, ...rest) {
    const t0 = performance.now();
    const ctx = realGetContext.call(this, kind, ...rest);
    if (kind.startsWith("webgl")) mark(`getContext(${kind}) took ${Math.round(performance.now() - t0)} ms`);
    return ctx;
  };
  for (const C of [WebGL2RenderingContext, WebGLRenderingContext]) {
    for (const name of ["linkProgram", "compileShader", "getProgramParameter", "getShaderParameter", "readPixels", "texImage2D"]) {
      const orig = C.prototype[name];
      C.prototype[name] = function (...a) {
        const t0 = performance.now();
        const out = orig.apply(this, a);
        const s = (window.__glCalls ??= {});
        const c = (s[name] ??= [0, 0]);
        c[0]++;
        c[1] += performance.now() - t0;
        return out;
      };
    }
  }
  document.addEventListener("DOMContentLoaded", () => mark("DOMContentLoaded"));
};

let browser;
try {
  const stopFeeding = await feedReport(base, simulatedReport(bin, n, scratch), n);
  const total = Object.keys(await processesView(base)).length;
  const draws = [];
  for (let run = 0; run < runs; run++) {
    browser = await launchBrowser();
    const page = await browser.newPage({ viewport: VIEWPORT });
    await page.addInitScript(probe);
    const cdp = await page.context().newCDPSession(page);
    const events = [];
    cdp.on("Tracing.dataCollected", (e) => events.push(...e.value));
    const done = new Promise((r) => cdp.once("Tracing.tracingComplete", r));
    await cdp.send("Profiler.enable");
    await cdp.send("Profiler.setSamplingInterval", { interval: 500 });
    await cdp.send("Profiler.start");
    await cdp.send("Tracing.start", {
      transferMode: "ReportEvents",
      traceConfig: {
        includedCategories: ["devtools.timeline", "disabled-by-default-devtools.timeline", "v8", "v8.execute", "blink", "loading", "gpu", "toplevel", "netlog", "blink.user_timing", ...(process.env.TRACE_CATEGORIES ?? "").split(",").filter(Boolean)],
      },
    });
    await page.goto(processesViewUrl(base));
    const drawnMs = await drawnAt(page, total);
    const firstDraw = Math.round(drawnMs);
    draws.push(firstDraw);
    const { profile } = await cdp.send("Profiler.stop");
    await cdp.send("Tracing.end");
    await done;
    // Sample times on the trace's clock, and each sample's function.
    const byId = new Map(profile.nodes.map((x) => [x.id, x]));
    const samples = [];
    let ts = profile.startTime;
    profile.samples.forEach((id, i) => {
      ts += profile.timeDeltas[i];
      const f = byId.get(id).callFrame;
      samples.push([ts, profile.timeDeltas[i], `${f.functionName || "(anon)"}@${f.url.replace(/^.*\//, "")}:${f.lineNumber}`]);
    });
    const hot = (from, to) => {
      const c = new Map();
      for (const [t, d, f] of samples) if (t >= from && t <= to) c.set(f, (c.get(f) ?? 0) + d / 1000);
      return [...c.entries()].sort((a, b) => b[1] - a[1]).slice(0, Number(process.env.HOT ?? 6)).map(([f, k]) => `${f} ~${Math.round(k)}`);
    };
    const info = await page.evaluate(() => ({
      log: window.__loadLog,
      resources: performance.getEntriesByType("resource").map((r) => [
        r.name.replace(/^https?:\/\/[^/]+\//, "").slice(0, 50),
        Math.round(r.startTime),
        Math.round(r.responseStart),
        Math.round(r.responseEnd),
        r.transferSize,
      ]),
      nav: (() => {
        const e = performance.getEntriesByType("navigation")[0];
        return { responseEnd: Math.round(e.responseEnd), domInteractive: Math.round(e.domInteractive), domContentLoaded: Math.round(e.domContentLoadedEventEnd) };
      })(),
      gl: window.__glCalls,
      paints: performance.getEntriesByType("paint").map((p) => [p.name, Math.round(p.startTime)]),
    }));
    console.log(`\nrun ${run + 1}: ${total} nodes drawn ${firstDraw} ms after navigation`);
    console.log("navigation:", info.nav, "paints:", info.paints);
    console.log("WebGL calls (count, ms):", JSON.stringify(info.gl));
    for (const r of info.resources) console.log(`  resource ${r[0]}: start ${r[1]} firstbyte ${r[2]} end ${r[3]} (${r[4]} B)`);
    for (const [t, what] of info.log) console.log(`  ${String(t).padStart(5)} ${what}`);

    // The renderer's main thread: its longest tasks and what ran inside them.
    const navStart = events.find((e) => e.name === "navigationStart" || e.name === "NavigationTiming")?.ts
      ?? Math.min(...events.filter((e) => e.name === "ResourceSendRequest").map((e) => e.ts));
    const main = events.find((e) => e.name === "thread_name" && e.args?.name === "CrRendererMain");
    const onMain = events.filter((e) => main && e.pid === main.pid && e.tid === main.tid && e.ph === "X");
    const tasks = onMain.filter((e) => e.name === "RunTask" && e.dur > 15_000).sort((a, b) => a.ts - b.ts);
    console.log("  main-thread tasks over 15 ms (start, duration; biggest inner events):");
    for (const t of tasks) {
      const inner = onMain
        .filter((e) => e !== t && e.ts >= t.ts && e.ts + e.dur <= t.ts + t.dur && e.dur > 4000 && e.name !== "RunTask")
        .sort((a, b) => b.dur - a.dur)
        .slice(0, 6)
        .map((e) => `${e.name}${e.args?.data?.url ? `(${e.args.data.url.replace(/^.*\//, "")})` : e.args?.data?.functionName ? `(${e.args.data.functionName})` : ""} ${Math.round(e.dur / 1000)}`);
      console.log(`    ${String(Math.round((t.ts - navStart) / 1000)).padStart(5)} +${Math.round(t.dur / 1000)}: ${inner.join(", ")}`);
      console.log(`           hot: ${hot(t.ts, t.ts + t.dur).join(", ")}`);
    }
    if (process.env.TRACE_OUT) writeFileSync(process.env.TRACE_OUT, JSON.stringify({ traceEvents: events }));
    await browser.close();
    browser = undefined;
  }
  stopFeeding();
  const sorted = [...draws].sort((a, b) => a - b);
  console.log(`\nfirst draw over ${runs} fresh browsers: ${draws.join(", ")} ms; median ${sorted[Math.floor(sorted.length / 2)]} ms`);
} finally {
  await browser?.close();
  app.stop();
  rmSync(scratch, { recursive: true, force: true });
}
