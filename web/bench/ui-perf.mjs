// Measures the web UI in headless Chromium (software WebGL) against `rescope app` fed
// with a simulated host's report of a chosen size:
//   - time from navigation to the first frame with the whole view drawn,
//   - frame times while panning and zooming (after the layout settles and during it),
//   - the gzip size of the bundle.
//
//   node bench/ui-perf.mjs [processes…]        default: 200 5000
//   RESCOPE_BIN=../target/release/rescope      the binary (release recommended)
//
// Prints one line per view size and a JSON summary at the end.

import { spawn, execFileSync } from "node:child_process";
import { readdirSync, readFileSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const bin = process.env.RESCOPE_BIN ?? join(root, "target/release/rescope");
const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
if (sizes.length === 0) sizes.push(200, 5000);

const port = await new Promise((res) => {
  const s = createServer();
  s.listen(0, "127.0.0.1", () => {
    const p = s.address().port;
    s.close(() => res(p));
  });
});
const base = `http://127.0.0.1:${port}/`;
const scratch = mkdtempSync(join(tmpdir(), "rescope-uiperf-"));
const app = spawn(bin, ["app", "--listen", `127.0.0.1:${port}`, "--window", "30s"], { stdio: "ignore" });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function post(file, probe) {
  const res = await fetch(`${base}api/report`, {
    method: "POST",
    headers: { "Content-Type": "application/msgpack", "Content-Encoding": "gzip", "X-Scope-Probe-ID": probe },
    body: readFileSync(file),
  });
  if (!res.ok) throw new Error(`POST /api/report: ${res.status} ${await res.text()}`);
}

function pct(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(p * (s.length - 1) + 0.5))] : NaN;
}

// Frame times while the user pans (drags the stage) and then zooms (wheel steps), with
// pointer events dispatched to the graph the way a mouse sends them, one per frame.
async function frames(page, ms) {
  return page.evaluate(async (ms) => {
    const target = document.querySelector(".sigma-mouse");
    const r = target.getBoundingClientRect();
    const cx = r.left + r.width / 2;
    const cy = r.top + r.height / 2;
    const mouse = (type, x, y) =>
      new MouseEvent(type, { clientX: x, clientY: y, bubbles: true, cancelable: true, button: 0, buttons: type === "mouseup" ? 0 : 1 });
    const times = [];
    let last = performance.now();
    const start = last;
    let i = 0;
    let dragging = true;
    target.dispatchEvent(mouse("mousedown", cx, cy));
    await new Promise((done) => {
      const tick = (now) => {
        times.push(now - last);
        last = now;
        i++;
        if (now - start < ms * 0.6) {
          target.dispatchEvent(mouse("mousemove", cx + 150 * Math.cos(i / 8), cy + 100 * Math.sin(i / 8)));
        } else {
          if (dragging) {
            document.dispatchEvent(mouse("mouseup", cx, cy));
            dragging = false;
          }
          const deltaY = Math.floor(i / 10) % 2 ? 100 : -100;
          target.dispatchEvent(new WheelEvent("wheel", { clientX: cx, clientY: cy, deltaY, bubbles: true, cancelable: true }));
        }
        if (now - start < ms) requestAnimationFrame(tick);
        else done();
      };
      requestAnimationFrame(tick);
    });
    return times.slice(1);
  }, ms);
}

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

const results = {};
let browser;
try {
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(`${base}api`)).ok) break;
    } catch {
      /* not up yet */
    }
    await sleep(100);
  }
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"],
  });
  for (const n of sizes) {
    const file = join(scratch, `sim-${n}.msgpack.gz`);
    execFileSync(bin, ["bench", "report", "--processes", String(n), "--endpoints", String(n * 2), "--containers", "20", "--hostname", `sim-${n}`, "--seed", String(n), "-o", file]);
    await post(file, `sim-${n}`);
    const feeder = setInterval(() => post(file, `sim-${n}`).catch(() => {}), 3000);
    // The view: this host's processes, once the app shows them (it renders a new
    // report a moment after it arrives).
    let view = {};
    let expected = 0;
    for (let i = 0; i < 100 && expected < n; i++) {
      if (i > 0) await sleep(100);
      view = (await (await fetch(`${base}api/topology/processes?unconnected=show`)).json()).nodes ?? {};
      expected = Object.values(view).filter((x) => x.labelMinor?.startsWith(`sim-${n}`) || x.pseudo).length;
    }
    const total = Object.keys(view).length;

    const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    const state = encodeURIComponent(JSON.stringify({ topologyId: "processes", topologyOptions: { processes: { unconnected: ["show"] } } }));
    await page.goto(`${base}#!/state/${state}`);
    const drawnMs = await drawnAt(page, total);
    const firstDrawMs = drawnMs;
    const during = await frames(page, 2000);
    await sleep(7000);
    const settled = await frames(page, 3000);
    await page.screenshot({ path: join(scratch, `graph-${n}.png`) });
    await page.close();
    clearInterval(feeder);
    results[n] = {
      nodes: total,
      this_host: expected,
      first_draw_ms: Math.round(firstDrawMs),
      frame_ms_settled: { p50: +pct(settled, 0.5).toFixed(1), p95: +pct(settled, 0.95).toFixed(1), max: +Math.max(...settled).toFixed(1) },
      frame_ms_during_layout: { p50: +pct(during, 0.5).toFixed(1), p95: +pct(during, 0.95).toFixed(1) },
    };
    console.log(`${total} nodes: drawn ${results[n].first_draw_ms} ms after navigation; pan/zoom frames p50 ${results[n].frame_ms_settled.p50} ms, p95 ${results[n].frame_ms_settled.p95} ms (during layout p95 ${results[n].frame_ms_during_layout.p95} ms)`);
    // Let this host's report expire from the view before the next size.
    await fetch(`${base}api/report`).catch(() => {});
  }
  const assets = join(here, "../dist/assets");
  let gz = 0;
  for (const f of readdirSync(assets)) if (/\.(js|css)$/.test(f)) gz += gzipSync(readFileSync(join(assets, f))).length;
  results.bundle_gzip_kb = Math.round(gz / 1024);
  console.log(`bundle: ${results.bundle_gzip_kb} kB gzip`);
  console.log(JSON.stringify(results));
} finally {
  await browser?.close();
  app.kill("SIGTERM");
  rmSync(scratch, { recursive: true, force: true });
}
