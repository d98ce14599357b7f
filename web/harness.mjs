// What the UI's benchmarks (bench/) and end-to-end checks (e2e/) need to get a real
// browser in front of a real Rescope app: a free loopback port, `rescope app` serving a
// given UI build and fed a simulated host, headless Chromium with software WebGL, and
// the moment a view is drawn. One place, so every script measures the same way.

import { spawn, execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { chromium } from "playwright-core";

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The median of a list of numbers. */
export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** A loopback port nothing listens on right now. */
export function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
    s.on("error", rej);
  });
}

/** Polls `fn` until it returns something truthy; throws, naming `what`, after `timeoutMs`. */
export async function until(what, fn, timeoutMs = 20_000, everyMs = 200) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await sleep(everyMs);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ""}`);
}

/** Waits until the app at `base` answers `GET api`. */
export function appAnswers(base, timeoutMs = 20_000) {
  return until("GET /api", async () => (await fetch(`${base}api`)).ok, timeoutMs, 100);
}

/**
 * Headless Chromium with software WebGL (SwiftShader), the worst case a user could
 * meet and the one every figure in docs/performance.md is measured with.
 * `CHROMIUM` overrides the binary (default /usr/bin/chromium).
 */
export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"],
  });
}

/**
 * A deadline for a step that may never finish (a page.evaluate in a browser that died,
 * say: playwright gives those no timeout). `arm(what, ms)` starts or restarts it; when
 * it passes, it prints what was running, calls `cleanup` (close the browser, stop the
 * app) and ends the process with status 1 so a bench never hangs. `stop()` disarms it.
 */
export function watchdog(cleanup) {
  let timer;
  const stop = () => clearTimeout(timer);
  const arm = (what, ms) => {
    stop();
    timer = setTimeout(async () => {
      console.error(`no result after ${ms} ms while ${what}: giving up`);
      try {
        await Promise.race([cleanup(), sleep(5000)]);
      } finally {
        process.exit(1);
      }
    }, ms);
  };
  return { arm, stop };
}

/** The window size every benchmark and check uses. */
export const VIEWPORT = { width: 1440, height: 900 };

/**
 * `rescope app` on a free port, serving the UI build in `uiDir` (any binary serves a
 * directory named by RESCOPE_UI_DIR; without one, the environment's or the built-in
 * UI). Resolves once it answers. `stop()` ends it.
 */
export async function startApp(bin, { uiDir } = {}) {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}/`;
  const env = uiDir ? { ...process.env, RESCOPE_UI_DIR: uiDir } : process.env;
  const child = spawn(bin, ["app", "--listen", `127.0.0.1:${port}`, "--window", "30s"], { stdio: "ignore", env });
  const app = { base, port, child, stop: () => child.kill("SIGTERM") };
  try {
    await appAnswers(base);
  } catch (e) {
    app.stop();
    throw e;
  }
  return app;
}

/**
 * A simulated host's report (`rescope bench report`): `n` processes, 2n endpoints,
 * 20 containers, host `sim-<n>`, the same for a given `n` every time. Written under
 * `dir`; returns its gzip'd msgpack bytes.
 */
export function simulatedReport(bin, n, dir) {
  const file = join(dir, `sim-${n}.msgpack.gz`);
  execFileSync(bin, ["bench", "report", "--processes", String(n), "--endpoints", String(n * 2), "--containers", "20", "--hostname", `sim-${n}`, "--seed", String(n), "-o", file]);
  return readFileSync(file);
}

/** Posts a report to the app as probe `probeId` would. */
export async function postReport(base, body, probeId) {
  const res = await fetch(`${base}api/report`, {
    method: "POST",
    headers: { "Content-Type": "application/msgpack", "Content-Encoding": "gzip", "X-Scope-Probe-ID": probeId },
    body,
  });
  if (!res.ok) throw new Error(`POST /api/report: ${res.status} ${await res.text()}`);
}

/**
 * Feeds `body` to the app now and every 3 s after (as a probe would), as `sim-<n>`.
 * Returns a function that stops feeding.
 */
export async function feedReport(base, body, n) {
  await postReport(base, body, `sim-${n}`);
  const timer = setInterval(() => postReport(base, body, `sim-${n}`).catch(() => {}), 3000);
  return () => clearInterval(timer);
}

/** The processes view with unconnected processes shown, as a page URL of the app at `base`. */
export function processesViewUrl(base) {
  const state = encodeURIComponent(JSON.stringify({ topologyId: "processes", topologyOptions: { processes: { unconnected: ["show"] } } }));
  return `${base}#!/state/${state}`;
}

/** The processes view's nodes (unconnected shown), as the app renders it now. */
export async function processesView(base) {
  return (await (await fetch(`${base}api/topology/processes?unconnected=show`)).json()).nodes ?? {};
}

/**
 * Waits for the first frame with at least `total` nodes and returns its time (ms after
 * navigation: the page's `__rescopeLastRender`, set after each sigma draw), read over
 * a bare CDP session: playwright's waitForFunction would first inject its helper
 * scripts, whose compile and run (~100 ms on this machine) land in the middle of the
 * load being measured.
 */
export async function drawnAt(page, total, timeoutMs = 60_000) {
  const cdp = await page.context().newCDPSession(page);
  const expression = `(r => (r && r.order >= ${total} ? r.t : 0))(window.__rescopeLastRender)`;
  const end = Date.now() + timeoutMs;
  try {
    while (Date.now() < end) {
      const { result } = await cdp.send("Runtime.evaluate", { expression, returnByValue: true });
      if (result?.value) return result.value;
      await sleep(50);
    }
  } finally {
    await cdp.detach().catch(() => {});
  }
  throw new Error(`no frame with ${total} nodes within ${timeoutMs} ms`);
}
