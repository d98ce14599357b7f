// Looks for moments when the graph view's on-screen copy differs from sigma's layers,
// on a large processes view (force layout), against a real `rescope launch`:
//
//   SLEEPERS=420 node e2e/copy-repro.mjs
//
// Starts SLEEPERS extra `sleep` processes to make the view large (killed at the end),
// then hovers, lets the layout and live updates run, switches themes, resizes the
// window, zooms with the buttons and pans with the mouse, watching the copy all along
// (see copy-check.mjs). Prints one line per phase; exits non-zero if the copy was seen
// stale (wrong across two checks with no draw in between).

import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { VIEWPORT, appAnswers, freePort, launchBrowser, sleep } from "../harness.mjs";
import { copyDiff, installCopyCheck, watchCopy } from "./copy-check.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const rescopeBin = process.env.RESCOPE_BIN ?? join(root, "target/debug/rescope");
const sleepers = Number(process.env.SLEEPERS ?? 420);

const port = await freePort();
const base = `http://127.0.0.1:${port}/`;
const plugins = mkdtempSync(join(tmpdir(), "rescope-copy-"));
const app = spawn(rescopeBin, ["launch", "--listen", `127.0.0.1:${port}`, "--plugins-root", plugins], { stdio: "ignore" });
const sleeps = [];
for (let i = 0; i < sleepers; i++) sleeps.push(spawn("sleep", ["900"], { stdio: "ignore" }));

let failed = false;
let browser;
try {
  await appAnswers(base, 20_000);
  browser = await launchBrowser();
  const context = await browser.newContext({ viewport: VIEWPORT });
  await installCopyCheck(context);
  const page = await context.newPage();
  page.on("pageerror", (e) => console.log(`page error: ${e.message}`));
  await page.goto(base);
  await page.waitForSelector('[data-view="processes"]');
  await page.click('[data-view="processes"]');
  await page.click('button:has-text("Show unconnected")');
  const order = await (async () => {
    for (let i = 0; i < 100; i++) {
      const n = await page.evaluate(() => window.__rescopeSigma?.getGraph().order ?? 0);
      if (n > Math.min(400, sleepers)) return n;
      await sleep(200);
    }
    throw new Error("the processes view never grew");
  })();
  const box = await page.evaluate(() => {
    const r = window.__rescopeSigma.getContainer().getBoundingClientRect();
    return { x: r.left, y: r.top, w: r.width, h: r.height };
  });
  console.log(`processes view: ${order} nodes`);

  const phase = async (name, fn) => {
    const stop = await watchCopy(page, 120);
    await fn();
    await sleep(1000);
    const log = await stop();
    const end = await copyDiff(page);
    const stale = log.stale.length > 0;
    if (stale || end.differ > 0 || end.geometry) failed = true;
    console.log(
      `${stale ? "STALE" : "ok   "} ${name}: ${log.checks} checks, ${log.mismatches} mismatched (worst ${log.worst} px), ` +
        `at the end ${end.differ} px differ${end.geometry ? `, ${end.geometry}` : ""}${stale ? `; ${JSON.stringify(log.stale.slice(0, 3))}` : ""}`,
    );
  };
  const hoverSweep = async (ms) => {
    const until = Date.now() + ms;
    while (Date.now() < until) {
      const p = await page.evaluate(() => {
        const s = window.__rescopeSigma;
        const nodes = s.getGraph().nodes();
        const d = s.framedGraphToViewport(s.getNodeDisplayData(nodes[Math.floor(Math.random() * nodes.length)]));
        return d;
      });
      if (p.x > 0 && p.y > 0 && p.x < box.w && p.y < box.h) await page.mouse.move(box.x + p.x, box.y + p.y, { steps: 3 });
      await sleep(120);
    }
    await page.mouse.move(box.x + 5, box.y + 5);
  };

  // The e2e check ui6 had: node centres (where sigma has them now) that land on drawn
  // pixels of the copy. Read together with whether a draw is pending, i.e. sigma's
  // positions have moved on since the picture was made.
  const centresShown = () =>
    page.evaluate(() => {
      const s = window.__rescopeSigma;
      const snap = document.querySelector(".sigma-gesture");
      const ctx = snap.getContext("2d");
      const r = s.getContainer().getBoundingClientRect();
      const k = snap.width / r.width;
      const bg = ctx.getImageData(0, 0, 1, 1).data;
      let shown = 0;
      let inView = 0;
      for (const n of s.getGraph().nodes()) {
        const p = s.framedGraphToViewport(s.getNodeDisplayData(n));
        if (p.x < 0 || p.y < 0 || p.x >= r.width || p.y >= r.height) continue;
        inView++;
        const px = ctx.getImageData(Math.round(p.x * k), Math.round(p.y * k), 1, 1).data;
        if (Math.abs(px[0] - bg[0]) + Math.abs(px[1] - bg[1]) + Math.abs(px[2] - bg[2]) > 20) shown++;
      }
      return { shown, inView, drawPending: s.renderFrame !== null, differ: window.__copyDiff().differ };
    });
  const samples = [];
  for (let i = 0; i < 25; i++) {
    samples.push(await centresShown());
    await sleep(100);
  }
  const fmt = (a) => a.map((x) => `${x.shown}/${x.inView}${x.drawPending ? "*" : ""}${x.differ ? ` (copy off by ${x.differ} px)` : ""}`).join(" ");
  console.log(`node centres on drawn pixels of the copy while the layout runs (* = draw pending): ${fmt(samples)}`);

  await phase("force layout and live updates, idle", () => sleep(4000));
  await phase("hovering nodes while the layout runs", () => hoverSweep(8000));
  await phase("hovering nodes, layout stopped", () => hoverSweep(5000));
  await phase("switching to the dark theme", async () => {
    await page.click(".theme-toggle");
    await sleep(300);
  });
  await phase("hovering in the dark theme", () => hoverSweep(3000));
  await phase("switching back to the light theme", async () => {
    await page.click(".theme-toggle");
    await sleep(300);
  });
  await phase("resizing the window", async () => {
    await page.setViewportSize({ width: 1200, height: 760 });
    await sleep(800);
    await page.setViewportSize({ width: 1440, height: 900 });
  });
  await phase("the stage shrinks and grows without a window resize", async () => {
    await page.evaluate(() => (document.querySelector(".stage").style.marginTop = "60px"));
    await sleep(600);
    await page.evaluate(() => (document.querySelector(".stage").style.marginTop = ""));
  });
  await phase("zoom buttons (camera animated by code)", async () => {
    await page.click('button[title="Zoom in"]');
    await sleep(400);
    await page.click('button[title="Zoom out"]');
    await sleep(400);
    await page.click('button[title="Fit to screen"]');
  });
  await phase("drag, wheel, then hover", async () => {
    await page.mouse.move(box.x + 300, box.y + 300);
    await page.mouse.down();
    for (let i = 1; i <= 10; i++) await page.mouse.move(box.x + 300 + 12 * i, box.y + 300 + 5 * i);
    await page.mouse.up();
    await page.mouse.wheel(0, -300);
    await sleep(800);
    await hoverSweep(3000);
  });
  await phase("lay out again (force layout restarts)", async () => {
    await page.click('button[title="Lay out again"]');
    await hoverSweep(4000);
  });
} catch (e) {
  failed = true;
  console.log(`error: ${e.stack ?? e}`);
} finally {
  await browser?.close();
  for (const s of sleeps) s.kill("SIGKILL");
  app.kill("SIGTERM");
}
process.exit(failed ? 1 : 0);
