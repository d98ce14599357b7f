// First draw of a view in fresh headless Chromium browsers (software WebGL), for one
// or more builds of the UI compared turn by turn: each build is served by its own
// `rescope app` (RESCOPE_UI_DIR) fed the same simulated report, and the runs
// alternate between them, so a noisy machine slows every build alike.
//
//   node bench/ui-first-draw.mjs [--processes N] [--runs R] [dist…]    default: 200, 10, ../dist
//   RESCOPE_BIN=../target/release/rescope
//
// Prints each build's times (ms from navigation until a frame with every node of the
// view was drawn) and their median.

import { spawn, execFileSync } from "node:child_process";
import { readFileSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const bin = process.env.RESCOPE_BIN ?? join(root, "target/release/rescope");
const args = process.argv.slice(2);
let n = 200;
let runs = 10;
const dirs = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--processes") n = Number(args[++i]);
  else if (args[i] === "--runs") runs = Number(args[++i]);
  else dirs.push(resolve(args[i]));
}
if (dirs.length === 0) dirs.push(join(here, "../dist"));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const freePort = () =>
  new Promise((res) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const p = s.address().port;
      s.close(() => res(p));
    });
  });
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const scratch = mkdtempSync(join(tmpdir(), "rescope-firstdraw-"));
const file = join(scratch, "sim.msgpack.gz");
execFileSync(bin, ["bench", "report", "--processes", String(n), "--endpoints", String(n * 2), "--containers", "20", "--hostname", `sim-${n}`, "--seed", String(n), "-o", file]);
const report = readFileSync(file);

// Waits for the first frame with `total` nodes and returns its time (ms after
// navigation), reading the page's record over a bare CDP session: playwright's
// waitForFunction would first inject its helper scripts, whose compile and run
// (~100 ms on this machine) land in the middle of the load being measured.
async function drawnAt(page, total, timeoutMs = 60_000) {
  const cdp = await page.context().newCDPSession(page);
  const expression = `(r => (r && r.order >= ${total} ? r.t : 0))(window.__rescopeLastRender)`;
  const end = Date.now() + timeoutMs;
  try {
    while (Date.now() < end) {
      const { result } = await cdp.send("Runtime.evaluate", { expression, returnByValue: true });
      if (result?.value) return result.value;
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    await cdp.detach().catch(() => {});
  }
  throw new Error(`no frame with ${total} nodes within ${timeoutMs} ms`);
}

const apps = [];
const feeders = [];
try {
  for (const dir of dirs) {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}/`;
    const child = spawn(bin, ["app", "--listen", `127.0.0.1:${port}`, "--window", "30s"], {
      stdio: "ignore",
      env: { ...process.env, RESCOPE_UI_DIR: dir },
    });
    apps.push({ dir, base, child, times: [] });
  }
  for (const a of apps) {
    for (let i = 0; i < 100; i++) {
      try {
        if ((await fetch(`${a.base}api`)).ok) break;
      } catch {
        /* not up yet */
      }
      await sleep(100);
    }
    const post = () =>
      fetch(`${a.base}api/report`, {
        method: "POST",
        headers: { "Content-Type": "application/msgpack", "Content-Encoding": "gzip", "X-Scope-Probe-ID": `sim-${n}` },
        body: report,
      });
    await post();
    feeders.push(setInterval(() => post().catch(() => {}), 3000));
    for (let i = 0; i < 100 && !(a.total > n); i++) {
      a.total = Object.keys((await (await fetch(`${a.base}api/topology/processes?unconnected=show`)).json()).nodes).length;
      if (!(a.total > n)) await sleep(100);
    }
  }
  const state = encodeURIComponent(JSON.stringify({ topologyId: "processes", topologyOptions: { processes: { unconnected: ["show"] } } }));
  for (let r = 0; r < runs; r++) {
    for (const a of apps) {
      const browser = await chromium.launch({
        executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
        args: ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"],
      });
      try {
        const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
        await page.goto(`${a.base}#!/state/${state}`);
        const drawnMs = await drawnAt(page, a.total);
        a.times.push(Math.round(drawnMs));
      } finally {
        await browser.close();
      }
    }
  }
  for (const a of apps)
    console.log(`${a.dir}: ${a.total} nodes drawn after ${a.times.join(", ")} ms; median ${median(a.times)} ms over ${a.times.length} fresh browsers`);
} finally {
  feeders.forEach(clearInterval);
  for (const a of apps) a.child.kill("SIGTERM");
  rmSync(scratch, { recursive: true, force: true });
}
