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

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { VIEWPORT, drawnAt, feedReport, launchBrowser, median, processesView, processesViewUrl, simulatedReport, sleep, startApp } from "../harness.mjs";

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

const scratch = mkdtempSync(join(tmpdir(), "rescope-firstdraw-"));
const report = simulatedReport(bin, n, scratch);

const apps = [];
const feeders = [];
try {
  for (const dir of dirs) {
    const app = await startApp(bin, { uiDir: dir });
    const a = { dir, app, times: [], total: 0 };
    apps.push(a);
    feeders.push(await feedReport(app.base, report, n));
    for (let i = 0; i < 100 && !(a.total > n); i++) {
      a.total = Object.keys(await processesView(app.base)).length;
      if (!(a.total > n)) await sleep(100);
    }
  }
  for (let r = 0; r < runs; r++) {
    for (const a of apps) {
      const browser = await launchBrowser();
      try {
        const page = await browser.newPage({ viewport: VIEWPORT });
        await page.goto(processesViewUrl(a.app.base));
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
  feeders.forEach((stop) => stop());
  for (const a of apps) a.app.stop();
  rmSync(scratch, { recursive: true, force: true });
}
