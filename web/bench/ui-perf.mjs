// Measures the web UI in headless Chromium (software WebGL) against `rescope app` fed
// with a simulated host's report of a chosen size:
//   - time from navigation to the first frame with the whole view drawn,
//   - frame times while panning and zooming (after the layout settles and during it),
//     every frame from the gesture's first to its last (the real draw at its end),
//   - the gzip size of the bundle.
//
//   node bench/ui-perf.mjs [processes…]        default: 200 5000
//   RESCOPE_BIN=../target/release/rescope      the binary (release recommended)
//
// Prints one line per view size and a JSON summary at the end.

import { readdirSync, readFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { VIEWPORT, drawnAt, feedReport, launchBrowser, processesView, processesViewUrl, simulatedReport, sleep, startApp, watchdog } from "../harness.mjs";
import { gesture, settledFrames } from "./gesture-script.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const bin = process.env.RESCOPE_BIN ?? join(root, "target/release/rescope");
const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
if (sizes.length === 0) sizes.push(200, 5000);

const scratch = mkdtempSync(join(tmpdir(), "rescope-uiperf-"));
const app = await startApp(bin);
const base = app.base;

function pct(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(p * (s.length - 1) + 0.5))] : NaN;
}

// Frame times of a scripted pan (drag) then zoom (wheel steps), pointer events sent to
// the graph the way a mouse sends them, one per frame; from the gesture's first frame
// to the frame after the real draw that ends it (see gesture-script.mjs).
async function frames(page, ms) {
  const out = await page.evaluate(gesture, ms);
  const dts = settledFrames(out);
  // The frames a drag or a wheel run starts in: the first two of each.
  const w = out.phase.indexOf("wheel") - 1;
  dts.starts = [dts[0], dts[1], dts[w], dts[w + 1]].filter((x) => x !== undefined);
  return dts;
}

const results = {};
let browser;
// Every size gets a few minutes (a 5,000-node page takes well under one); a browser
// that dies mid-measure ends the run with an error instead of leaving it waiting.
const deadline = watchdog(async () => {
  app.stop();
  await browser?.close();
});
try {
  browser = await launchBrowser();
  for (const n of sizes) {
    deadline.arm(`measuring the ${n}-process view`, 180_000);
    const stopFeeding = await feedReport(base, simulatedReport(bin, n, scratch), n);
    // The view: this host's processes, once the app shows them (it renders a new
    // report a moment after it arrives).
    let view = {};
    let expected = 0;
    for (let i = 0; i < 100 && expected < n; i++) {
      if (i > 0) await sleep(100);
      view = await processesView(base);
      expected = Object.values(view).filter((x) => x.labelMinor?.startsWith(`sim-${n}`) || x.pseudo).length;
    }
    const total = Object.keys(view).length;

    const page = await browser.newPage({ viewport: VIEWPORT });
    await page.goto(processesViewUrl(base));
    const drawnMs = await drawnAt(page, total);
    const firstDrawMs = drawnMs;
    const during = await frames(page, 2000);
    await sleep(7000);
    const settled = await frames(page, 3000);
    await page.screenshot({ path: join(scratch, `graph-${n}.png`) });
    await page.close();
    stopFeeding();
    results[n] = {
      nodes: total,
      this_host: expected,
      first_draw_ms: Math.round(firstDrawMs),
      frame_ms_settled: {
        frames: settled.length,
        p50: +pct(settled, 0.5).toFixed(1),
        p95: +pct(settled, 0.95).toFixed(1),
        max: +Math.max(...settled).toFixed(1),
        // The slowest of the frames the drag and the wheel run start in.
        starts_max: +Math.max(...settled.starts).toFixed(1),
      },
      frame_ms_during_layout: { p50: +pct(during, 0.5).toFixed(1), p95: +pct(during, 0.95).toFixed(1) },
    };
    console.log(`${total} nodes: drawn ${results[n].first_draw_ms} ms after navigation; pan/zoom frames p50 ${results[n].frame_ms_settled.p50} ms, p95 ${results[n].frame_ms_settled.p95} ms, slowest start ${results[n].frame_ms_settled.starts_max} ms, ${settled.length} frames (during layout p95 ${results[n].frame_ms_during_layout.p95} ms)`);
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
  deadline.stop();
  await browser?.close();
  app.stop();
  rmSync(scratch, { recursive: true, force: true });
}
