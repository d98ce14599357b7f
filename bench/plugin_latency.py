#!/usr/bin/env python3
"""Measures how fast plugins come and go, end to end, through `rescope launch`.

For each round: start the iowait plugin on a socket in the probe's plugin directory
and time, from the moment its socket appears, (a) until the app's `/api` lists it and
(b) until its metric is in the host's details; then stop it and time (c) until `/api`
no longer lists it.

    cargo build --release -p rescope -p rescope-iowait
    python3 bench/plugin_latency.py [--rounds 10] [--standalone]

`--standalone` runs `rescope app` and `rescope probe` as two processes, the probe
publishing over HTTP as on a real fleet, instead of `rescope launch`.

Prints each round and the median and worst of each figure. Loopback only.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


def wait(pred, timeout=30.0, step=0.02):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if pred():
                return time.monotonic() - start
        except OSError:
            pass
        time.sleep(step)
    raise TimeoutError("condition not met in %.0f s" % timeout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "target", "release"))
    ap.add_argument("--standalone", action="store_true", help="rescope app + rescope probe over HTTP")
    args = ap.parse_args()

    rescope = os.path.join(args.bin_dir, "rescope")
    iowait = os.path.join(args.bin_dir, "rescope-iowait")
    for b in (rescope, iowait):
        if not os.access(b, os.X_OK):
            sys.exit(f"{b} not built: cargo build --release -p rescope -p rescope-iowait")

    scratch = tempfile.mkdtemp(prefix="rescope-plugin-latency-")
    os.chmod(scratch, 0o755)
    plugins = os.path.join(scratch, "plugins")
    os.mkdir(plugins, 0o755)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(os.path.join(scratch, "rescope.log"), "w")
    if args.standalone:
        procs = [
            subprocess.Popen([rescope, "app", "--listen", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=log),
            subprocess.Popen([rescope, "probe", "--plugins-root", plugins, base], stdout=subprocess.DEVNULL, stderr=log),
        ]
    else:
        procs = [
            subprocess.Popen(
                [rescope, "launch", "--listen", f"127.0.0.1:{port}", "--plugins-root", plugins],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        ]
    listed, in_details, gone = [], [], []
    try:
        wait(lambda: get(f"{base}/api")["hostname"] is not None)
        hosts = lambda: get(f"{base}/api/topology/hosts")["nodes"]
        wait(lambda: len(hosts()) > 0)
        host_id = next(iter(hosts()))

        def plugin_ids():
            return {p["id"] for p in get(f"{base}/api").get("plugins") or []}

        def has_metric():
            node = get(f"{base}/api/topology/hosts/{urllib.request.quote(host_id, safe='')}")["node"]
            return any(m.get("id") == "iowait" for m in node.get("metrics") or [])

        for i in range(args.rounds):
            time.sleep(1.3 + 0.37 * i % 1.1)  # start at different points of the probe's cycle
            sock = os.path.join(plugins, "iowait", "iowait.sock")
            plugin = subprocess.Popen(
                [iowait, "--plugins-root", plugins],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                wait(lambda: os.path.exists(sock), step=0.001)
                t0 = time.monotonic()
                wait(lambda: "iowait" in plugin_ids())
                a = time.monotonic() - t0
                wait(has_metric)
                b = time.monotonic() - t0
            finally:
                plugin.send_signal(signal.SIGTERM)
                plugin.wait(timeout=10)
            t1 = time.monotonic()
            wait(lambda: "iowait" not in plugin_ids())
            c = time.monotonic() - t1
            listed.append(a)
            in_details.append(b)
            gone.append(c)
            print(f"round {i + 1}: listed in /api after {a * 1000:.0f} ms, metric in details after {b * 1000:.0f} ms, gone {c * 1000:.0f} ms after stop")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(scratch, ignore_errors=True)

    def fig(xs):
        return f"median {statistics.median(xs) * 1000:.0f} ms, worst {max(xs) * 1000:.0f} ms"

    print(f"new plugin listed in /api:      {fig(listed)}   (budget 1 s)")
    print(f"its metric in the host details: {fig(in_details)}   (budget 2 s)")
    print(f"stopped plugin gone from /api:  {fig(gone)}   (budget 5 s)")


if __name__ == "__main__":
    main()
