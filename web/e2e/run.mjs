// End-to-end test of the web UI against a real `rescope launch` (probe and app), a real
// plugin on a Unix socket and Debian's Chromium, driven by playwright-core.
//
//   node e2e/run.mjs            uses ../target/debug/rescope and rescope-iowait
//   RESCOPE_BIN=… IOWAIT_BIN=… CHROMIUM=… override the paths
//
// Screenshots go to e2e/artifacts/. Exits non-zero with the failing step's name.

import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { VIEWPORT, appAnswers, freePort, launchBrowser, until } from "../harness.mjs";
import { copyDiff, installCopyCheck, watchCopy } from "./copy-check.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const target = process.env.CARGO_TARGET_DIR ?? join(root, "target");
const rescopeBin = process.env.RESCOPE_BIN ?? join(target, "debug/rescope");
const iowaitBin = process.env.IOWAIT_BIN ?? join(target, "debug/rescope-iowait");
const artifacts = join(here, "artifacts");
mkdirSync(artifacts, { recursive: true });

const children = [];
const scratch = mkdtempSync(join(tmpdir(), "rescope-e2e-"));
const pluginsRoot = join(scratch, "plugins");
mkdirSync(pluginsRoot, { mode: 0o755 });

function start(cmd, args, name) {
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, RUST_LOG: "info" } });
  const log = [];
  const keep = (d) => {
    log.push(d.toString());
    if (log.length > 400) log.shift();
  };
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  child.on("error", (e) => log.push(`spawn failed: ${e.message}`));
  children.push(child);
  return { child, log, name };
}

function stop(p) {
  return new Promise((res) => {
    if (p.child.exitCode !== null || p.child.signalCode !== null) return res();
    p.child.once("exit", () => res());
    p.child.kill("SIGTERM");
    setTimeout(() => p.child.kill("SIGKILL"), 5000);
  });
}

const BUSYBOX_IMAGE = "rescope-test/busybox:latest";
let containerName = null;

/** Why the containers check cannot run here, or null when it can. */
function dockerUnavailable() {
  try {
    execFileSync("docker", ["info"], { stdio: "ignore" });
  } catch {
    return "no Docker engine answers `docker info`";
  }
  if (!["/bin/busybox", "/usr/bin/busybox"].some((b) => { try { execFileSync("test", ["-x", b]); return true; } catch { return false; } }))
    return "busybox-static is not installed, so no test image can be made";
  return null;
}

/** The test image, made with `docker import` from the host's static busybox. */
function ensureBusyboxImage() {
  try {
    execFileSync("docker", ["image", "inspect", BUSYBOX_IMAGE], { stdio: "ignore" });
    return;
  } catch {
    /* make it */
  }
  const script = `set -e; d=$(mktemp -d); mkdir -p $d/bin; b=$(command -v busybox || echo /bin/busybox); cp $b $d/bin/busybox;
    for a in sh sleep echo cat; do ln -s busybox $d/bin/$a; done; tar -C $d -c . | docker import - ${BUSYBOX_IMAGE} >/dev/null; rm -rf $d`;
  execFileSync("sh", ["-c", script], { stdio: "inherit" });
}

let step = "start";
const results = [];
function pass(name, detail = "") {
  results.push(name);
  console.log(`ok  ${name}${detail ? ` (${detail})` : ""}`);
}

const port = await freePort();
const base = `http://127.0.0.1:${port}/`;
const launchArgs = ["launch", "--listen", `127.0.0.1:${port}`, "--plugins-root", pluginsRoot];
let app = start(rescopeBin, launchArgs, "rescope launch");
const plugin = start(iowaitBin, ["--plugins-root", pluginsRoot], "rescope-iowait");

let browser;
let page;
try {
  step = "the app answers";
  await appAnswers(base);

  step = "the browser opens the UI";
  browser = await launchBrowser();
  page = await browser.newPage({ viewport: VIEWPORT });
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  const t0 = Date.now();
  await page.goto(base);
  await page.waitForSelector('[data-view="processes"]', { timeout: 15_000 });
  pass(step, `${Date.now() - t0} ms to the view list`);

  step = "the processes view lists this machine's processes";
  await page.click('[data-view="processes"]');
  await page.click('button:has-text("Show unconnected")');
  const graphNodes = await until("processes in the graph", () =>
    page.evaluate(() => {
      const g = window.__rescopeSigma?.getGraph();
      return g && g.order > 5 ? g.order : 0;
    }),
  );
  const launchPid = app.child.pid;
  const ours = await page.evaluate(
    (pid) => window.__rescopeSigma.getGraph().nodes().some((id) => id.endsWith(`;${pid}`)),
    launchPid,
  );
  if (!ours) throw new Error(`rescope launch (pid ${launchPid}) is not among the ${graphNodes} process nodes`);
  await page.screenshot({ path: join(artifacts, "processes-graph.png") });
  pass(step, `${graphNodes} processes, rescope launch pid ${launchPid} among them`);

  step = "hovering a process keeps the rest of the view drawn";
  // The view on screen is an opaque copy of sigma's layers, made in the task that drew
  // them (their WebGL buffers are gone once shown); a copy made at any other moment, or
  // of a hover-only frame, would lose nodes. So every node whose centre sigma has in
  // the view must show on the copy. Checked only when no draw is pending: a layout
  // step or hover moves sigma's positions at once and draws in the next frame, and
  // until then the copy rightly shows the previous positions.
  const launchId = await page.evaluate(
    (pid) => window.__rescopeSigma.getGraph().nodes().find((id) => id.endsWith(`;${pid}`)),
    launchPid,
  );
  const centresShown = () =>
    until("a moment with no draw pending", () =>
      page.evaluate(() => {
        const s = window.__rescopeSigma;
        const snap = document.querySelector(".sigma-gesture");
        if (s.renderFrame !== null || snap?.style.display !== "" || snap.style.transform !== "") return null;
        const r = s.getContainer().getBoundingClientRect();
        const ctx = snap.getContext("2d");
        const k = snap.width / r.width;
        const bg = ctx.getImageData(0, 0, 1, 1).data;
        let shown = 0;
        let inView = 0;
        for (const n of s.getGraph().nodes()) {
          const p = s.framedGraphToViewport(s.getNodeDisplayData(n));
          if (p.x < 2 || p.y < 2 || p.x >= r.width - 2 || p.y >= r.height - 2) continue;
          inView++;
          const px = ctx.getImageData(Math.round(p.x * k), Math.round(p.y * k), 1, 1).data;
          if (Math.abs(px[0] - bg[0]) + Math.abs(px[1] - bg[1]) + Math.abs(px[2] - bg[2]) > 20) shown++;
        }
        return { shown, inView };
      }),
    );
  await until("the view shown through its copy", () =>
    page.evaluate(() => document.querySelector(".sigma-gesture")?.style.display === ""),
  );
  const before = await centresShown();
  if (before.inView < 3 || before.shown < before.inView * 0.9)
    throw new Error(`the view shows ${before.shown} of the ${before.inView} processes sigma has in it`);
  // Views over 400 nodes are laid out by a force layout for a few seconds: aim at the
  // node where it is now until the pointer lands on it.
  await until("rescope launch highlighted under the pointer", async () => {
    const p = await page.evaluate((id) => {
      const s = window.__rescopeSigma;
      const d = s.framedGraphToViewport(s.getNodeDisplayData(id));
      const r = s.getContainer().getBoundingClientRect();
      return { x: r.left + d.x, y: r.top + d.y };
    }, launchId);
    await page.mouse.move(p.x, p.y);
    await page.waitForTimeout(150);
    return page.evaluate(() => window.__rescopeSigma.getContainer().style.cursor === "pointer");
  });
  await page.waitForTimeout(300);
  // The hovered node's label box may cover a few nodes below it.
  const hovered = await centresShown();
  if (hovered.shown < hovered.inView * 0.8)
    throw new Error(`with rescope launch hovered the view shows ${hovered.shown} of the ${hovered.inView} processes sigma has in it`);
  await page.mouse.move(5, 5);
  pass(step, `${before.shown}/${before.inView} processes shown, ${hovered.shown}/${hovered.inView} while hovering`);

  step = "the table view is sortable";
  await page.click('button:has-text("Table")');
  await page.waitForSelector('[data-testid="table"] tbody tr[data-node]');
  await page.click('[data-testid="table"] th:has-text("PID")');
  const firstPids = await page.$$eval('[data-testid="table"] tbody tr[data-node]', (rows) =>
    rows.slice(0, 5).map((r) => Number(r.getAttribute("data-node").split(";")[1])),
  );
  if (firstPids.some((p, i) => i > 0 && p < firstPids[i - 1]))
    throw new Error(`rows not sorted by PID: ${firstPids}`);
  await page.screenshot({ path: join(artifacts, "processes-table.png") });
  pass(step, `first PIDs ${firstPids.join(", ")}`);

  step = "search narrows the view";
  const allRows = (await page.$$('[data-testid="table"] tbody tr[data-node]')).length;
  await page.fill('input[type="search"]', `pid:${launchPid}`);
  // Search matches substrings, so PID 2678 also finds 32678: every row left must
  // contain the PID, and the launch process must be among them.
  const narrowed = await until("the search's matches", async () => {
    const pids = await page.$$eval('[data-testid="table"] tbody tr[data-node]', (rows) =>
      rows.map((r) => r.getAttribute("data-node").split(";")[1]),
    );
    const ok =
      pids.length > 0 &&
      pids.length < allRows &&
      pids.includes(String(launchPid)) &&
      pids.every((p) => p.includes(String(launchPid)));
    return ok ? pids.length : undefined;
  });
  await page.fill('input[type="search"]', "");
  pass(step, `${narrowed} of ${allRows} rows`);

  step = "the host's details show the plugin metric with a sparkline";
  await page.click('button:has-text("Graph")');
  await page.click('[data-view="hosts"]');
  const hostId = await until("the host node", () =>
    page.evaluate(() => {
      const g = window.__rescopeSigma?.getGraph();
      return g?.nodes().find((id) => id.endsWith(";<host>"));
    }),
  );
  // Pan with a real drag and zoom with the wheel first: the view on screen is a copy of
  // the last draw, slid with a CSS transform while the mouse moves and drawn again once
  // the gesture ends; after that the copy must show the node where sigma now has it,
  // and hovering and clicking must find it there.
  await page.waitForTimeout(300);
  const box = await page.evaluate(() => {
    const r = window.__rescopeSigma.getContainer().getBoundingClientRect();
    return { x: r.left, y: r.top, w: r.width, h: r.height };
  });
  // At rest the view is shown through the copy once the page has been idle.
  await until("the view shown through its copy", () =>
    page.evaluate(() => document.querySelector(".sigma-gesture")?.style.display === ""),
  );
  await page.mouse.move(box.x + 40, box.y + 40);
  await page.mouse.down();
  const drawsBefore = await page.evaluate(() => window.__rescopeLastRender?.t ?? 0);
  for (let i = 1; i <= 8; i++) await page.mouse.move(box.x + 40 + 10 * i, box.y + 40 + 6 * i);
  const mid = await page.evaluate(() => {
    const snap = document.querySelector(".sigma-gesture");
    const nodes = document.querySelector(".sigma-nodes");
    return {
      shown: snap?.style.display === "",
      transform: snap?.style.transform ?? "",
      hidden: nodes?.style.opacity === "0",
      drawnAt: window.__rescopeLastRender?.t ?? 0,
    };
  });
  if (!mid.shown || !mid.transform.startsWith("matrix(") || !mid.hidden)
    throw new Error(`while dragging, the view is not a moved copy: ${JSON.stringify(mid)}`);
  if (mid.drawnAt !== drawsBefore) throw new Error("the drag drew the view instead of moving the copy");
  await page.mouse.up();
  // The wheel is dispatched to the page asynchronously: wait until it has arrived, the
  // zoom it started is over (the camera the same over 300 ms, not animating) and the
  // view has been drawn for real since, before working out where the host now is.
  await page.evaluate(() => {
    window.__wheeledAt = 0;
    window.__rescopeSigma
      .getCanvases()
      .mouse.addEventListener("wheel", () => (window.__wheeledAt = performance.now()), { passive: true });
  });
  await page.mouse.wheel(0, 200);
  await until("the wheel seen by the page", () => page.evaluate(() => window.__wheeledAt > 0));
  const still = () =>
    page.evaluate(() => {
      const c = window.__rescopeSigma.getCamera();
      return { ...c.getState(), animated: c.isAnimated() };
    });
  await until("the camera still after the wheel", async () => {
    const a = await still();
    await page.waitForTimeout(300);
    const b = await still();
    return !a.animated && !b.animated && ["x", "y", "ratio", "angle"].every((k) => a[k] === b[k]);
  });
  await until("the view drawn for real after the gesture", () =>
    page.evaluate(
      () => document.querySelector(".sigma-gesture")?.style.transform === "" && (window.__rescopeLastRender?.t ?? 0) > window.__wheeledAt,
    ),
  );
  // Where sigma now draws the host, and what the copy on screen shows there.
  const at = await page.evaluate((id) => {
    const s = window.__rescopeSigma;
    const d = s.getNodeDisplayData(id);
    const p = s.framedGraphToViewport(d);
    const r = s.getContainer().getBoundingClientRect();
    const snap = document.querySelector(".sigma-gesture");
    const k = snap.width / r.width;
    const px = snap.getContext("2d").getImageData(Math.round(p.x * k) - 3, Math.round(p.y * k) - 3, 7, 7).data;
    const corner = snap.getContext("2d").getImageData(0, 0, 1, 1).data;
    let differ = 0;
    for (let i = 0; i < px.length; i += 4)
      if (Math.abs(px[i] - corner[0]) + Math.abs(px[i + 1] - corner[1]) + Math.abs(px[i + 2] - corner[2]) > 60) differ++;
    return { x: r.left + p.x, y: r.top + p.y, differ };
  }, hostId);
  if (at.differ < 10) throw new Error(`after the gesture the view shows no node where the host is (${at.differ} of 49 pixels differ from the background)`);
  await page.mouse.move(at.x, at.y);
  await until("the host highlighted under the pointer", () =>
    page.evaluate(() => window.__rescopeSigma.getContainer().style.cursor === "pointer"),
  );
  await page.mouse.click(at.x, at.y);
  await page.waitForSelector('[data-testid="details"] h2:not(:has-text("Loading"))');
  await until(
    "the IO wait metric with at least two samples",
    () => page.$('[data-metric="iowait"] [data-testid="sparkline"]:not([data-samples="0"]):not([data-samples="1"])'),
    30_000,
  );
  const hash = await page.evaluate(() => location.hash);
  if (!decodeURIComponent(hash).includes(hostId.replace(/\//g, "<SLASH>")))
    throw new Error(`the URL does not carry the selection: ${hash}`);
  await page.screenshot({ path: join(artifacts, "host-details.png") });
  pass(step, hostId);

  step = "the plugin is listed with its status";
  const tip = await page.getAttribute('[data-plugin="iowait"]', "title");
  if (!tip?.includes("Status: ok")) throw new Error(`plugin tooltip: ${tip}`);
  pass(step, tip.replace(/\n/g, " / "));

  step = "a plugin control takes effect";
  const t1 = Date.now();
  await page.click('[data-control="iowait~switchToIdle"]');
  await page.waitForSelector('[data-metric="idle"]', { timeout: 10_000 });
  await page.waitForSelector('[data-control="iowait~switchToIOWait"]', { timeout: 10_000 });
  pass(step, `Idle shown ${Date.now() - t1} ms after the click`);

  step = "a host shell opens in a terminal";
  await page.click('[data-control="host_exec"]');
  await page.waitForSelector('[data-testid="terminal"][data-status="open"]', { timeout: 15_000 });
  await page.click('[data-testid="terminal"] .terminal-body');
  await page.keyboard.type("echo rescope-$((6*7))\n", { delay: 5 });
  await until("the echo output", () =>
    page.evaluate(() => {
      const b = window.__rescopeTerminal.buffer.active;
      for (let i = 0; i < b.length; i++) {
        const line = b.getLine(i)?.translateToString(true) ?? "";
        if (line.trim() === "rescope-42") return true;
      }
      return false;
    }),
  );
  await page.screenshot({ path: join(artifacts, "terminal.png") });
  pass(step);

  step = "closing the terminal closes the pipe";
  const pipeId = await page.evaluate(() => window.__rescopeStore.getState().terminal?.pipeId);
  await page.click('[data-testid="terminal"] .close');
  await page.waitForSelector('[data-testid="terminal"]', { state: "detached" });
  if (!pipeId) throw new Error("no pipe ID in the terminal state");
  await until("the pipe to be gone", async () => (await fetch(`${base}api/pipe/${pipeId}/check`)).status === 404);
  pass(step, pipeId);

  step = "a link reproduces the view";
  const url = page.url();
  const other = await browser.newPage({ viewport: VIEWPORT });
  await other.goto(url);
  await other.waitForSelector('[data-testid="details"] [data-metric="idle"]', { timeout: 15_000 });
  const current = await other.getAttribute('[data-view="hosts"]', "aria-current");
  if (current !== "page") throw new Error("the hosts view is not selected in the new page");
  await other.close();
  pass(step);

  step = "dark theme";
  await page.click('button[aria-label="Toggle theme"]');
  await page.waitForTimeout(300);
  await page.screenshot({ path: join(artifacts, "host-details-dark.png") });
  await page.click('button[aria-label="Toggle theme"]');
  pass(step);

  step = "the copy on screen always matches what sigma drew";
  // In a page whose WebGL layers keep their buffers (see copy-check.mjs) the copy is
  // compared, pixel by pixel and every 100 ms, with sigma's layers composited over the
  // page's background, while the pointer hovers nodes, the theme changes and the
  // window is resized. A copy left different across two checks with no draw in
  // between is stale: the screen shows something sigma no longer has.
  {
    const ctx = await browser.newContext({ viewport: VIEWPORT });
    await installCopyCheck(ctx);
    const p = await ctx.newPage();
    p.on("pageerror", (e) => pageErrors.push(e.message));
    await p.goto(base);
    await p.click('[data-view="processes"]');
    await p.click('button:has-text("Show unconnected")');
    await until("processes in the graph", () => p.evaluate(() => (window.__rescopeSigma?.getGraph().order ?? 0) > 5));
    await until("the view shown through its copy", () =>
      p.evaluate(() => document.querySelector(".sigma-gesture")?.style.display === ""),
    );
    const r = await p.evaluate(() => {
      const b = window.__rescopeSigma.getContainer().getBoundingClientRect();
      return { x: b.left, y: b.top, w: b.width, h: b.height };
    });
    const stop = await watchCopy(p, 100);
    let hovers = 0;
    for (let i = 0; i < 12; i++) {
      const at = await p.evaluate((i) => {
        const s = window.__rescopeSigma;
        const nodes = s.getGraph().nodes();
        return s.framedGraphToViewport(s.getNodeDisplayData(nodes[(i * 7919) % nodes.length]));
      }, i);
      if (at.x < 2 || at.y < 2 || at.x > r.w - 2 || at.y > r.h - 2) continue;
      await p.mouse.move(r.x + at.x, r.y + at.y, { steps: 2 });
      await p.waitForTimeout(250);
      if (await p.evaluate(() => window.__rescopeSigma.getContainer().style.cursor === "pointer")) hovers++;
    }
    const checks = [];
    checks.push(["hovering", await copyDiff(p)]);
    for (const theme of ["dark", "light"]) {
      await p.click('button[aria-label="Toggle theme"]');
      await p.waitForTimeout(600);
      checks.push([`${theme} theme`, await copyDiff(p)]);
    }
    await p.setViewportSize({ width: 1200, height: 760 });
    await p.waitForTimeout(600);
    checks.push(["resized", await copyDiff(p)]);
    const log = await stop();
    await ctx.close();
    if (hovers === 0) throw new Error("no node was ever highlighted under the pointer");
    if (log.stale.length) throw new Error(`the copy stayed different from sigma's layers: ${JSON.stringify(log.stale.slice(0, 3))}`);
    for (const [when, d] of checks)
      if (d.error || d.differ > 0 || d.geometry) throw new Error(`${when}: the copy differs from sigma's layers: ${JSON.stringify(d)}`);
    pass(step, `${log.checks} checks, ${hovers} nodes hovered, 2 theme switches, 1 resize`);
  }

  step = "a container shows in the containers view and its controls work";
  const containerSkip = dockerUnavailable();
  if (containerSkip) {
    console.log(`SKIPPED the containers check: ${containerSkip}`);
  } else {
    const name = `rescope-e2e-${process.pid}`;
    ensureBusyboxImage();
    containerName = name;
    execFileSync("docker", ["run", "-d", "--name", name, BUSYBOX_IMAGE, "sleep", "600"], { stdio: "ignore" });
    await page.click('[data-view="containers"]');
    const containerNode = await until(
      `container ${name} in the graph`,
      () =>
        page.evaluate((name) => {
          const g = window.__rescopeSigma?.getGraph();
          return g?.nodes().find((id) => g.getNodeAttribute(id, "label") === name);
        }, name),
      15_000,
    );
    await page.waitForTimeout(300);
    const cat = await page.evaluate((id) => {
      const s = window.__rescopeSigma;
      const p = s.framedGraphToViewport(s.getNodeDisplayData(id));
      const r = s.getContainer().getBoundingClientRect();
      return { x: r.left + p.x, y: r.top + p.y };
    }, containerNode);
    await page.mouse.click(cat.x, cat.y);
    await page.waitForSelector('[data-control="docker_stop_container"]', { timeout: 15_000 });
    await page.waitForSelector('[data-control="docker_exec_container"]');
    await page.screenshot({ path: join(artifacts, "container-details.png") });
    await page.click('[data-control="docker_stop_container"]');
    await until(
      "docker to report the container stopped",
      () => execFileSync("docker", ["inspect", "-f", "{{.State.Status}}", name]).toString().trim() === "exited",
      20_000,
    );
    // The open details follow the container's new state: start is offered instead.
    await page.waitForSelector('[data-control="docker_start_container"]', { timeout: 15_000 });
    pass(step, `${name}: stop control ran, start offered`);
  }

  step = "a lost connection is shown and recovered";
  await stop(app);
  await page.waitForSelector('[data-testid="link-lost"]', { timeout: 15_000 });
  app = start(rescopeBin, launchArgs, "rescope launch");
  await page.waitForSelector('[data-testid="link-lost"]', { state: "detached", timeout: 30_000 });
  pass(step);

  if (pageErrors.length) throw new Error(`errors in the page: ${pageErrors.join("; ")}`);
  console.log(`\nall ${results.length} UI checks passed; screenshots in ${artifacts}`);
} catch (e) {
  console.error(`\nFAILED at "${step}": ${e.message}`);
  if (page) await page.screenshot({ path: join(artifacts, "failure.png") }).catch(() => {});
  for (const p of [app, plugin]) console.error(`--- ${p.name} (last lines) ---\n${p.log.join("").split("\n").slice(-30).join("\n")}`);
  process.exitCode = 1;
} finally {
  await browser?.close();
  await Promise.all(children.map((c) => stop({ child: c })));
  if (containerName) {
    try {
      execFileSync("docker", ["rm", "-f", containerName], { stdio: "ignore" });
    } catch {
      /* already gone */
    }
  }
  rmSync(scratch, { recursive: true, force: true });
}
