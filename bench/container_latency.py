#!/usr/bin/env python3
"""How soon a `docker run` shows in the app, and a removed container leaves it.

Starts `rescope launch` on a loopback port (probe and app in one process, default
intervals), optionally with --background N idle containers running, then N times,
after a random pause (so the runs do not fall into step with the 1 s spy interval):
`docker run -d` a container and poll /api/topology/containers every --poll seconds
until it is there (running, in the default view); after another pause, `docker rm -f`
it and poll until it is gone from the view of every container. Prints, for both,
the time from the docker command's return (the container is started, or removed) and
from its start, as median, 90th percentile and maximum.

The containers run `sleep` in the busybox test image (made with `docker import` from
the host's static busybox if missing), are labelled rescope-bench=container-latency
and are all removed at the end. Standard library only; loopback only.

  cargo build --release -p rescope && python3 bench/container_latency.py --runs 20
"""

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from probe_overhead import BUSYBOX_IMAGE, docker, ensure_busybox_image  # noqa: E402

LABEL = "rescope-bench=container-latency"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# What the UI shows by default: running containers. A new container counts as shown
# once it is there as running.
RUNNING = "/api/topology/containers?system=application&stopped=running&pseudo=hide"
# Every container in any state: a removed one counts as gone once it is not there.
ALL = "/api/topology/containers?system=all&stopped=both&pseudo=hide"


def container_ids(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        nodes = json.load(r).get("nodes") or {}
    return {k.split(";", 1)[0] for k in nodes}


def wait_until(url, predicate, poll, limit=30.0):
    """Polls a containers view until predicate(ids) holds; the time it held."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if predicate(container_ids(url)):
                return time.monotonic()
        except OSError:
            pass
        time.sleep(poll)
    raise SystemExit("the container view never showed the change")


def stats(values):
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(round(0.9 * (len(values) - 1))))]
    return {
        "median_ms": round(statistics.median(values) * 1000),
        "p90_ms": round(p90 * 1000),
        "max_ms": round(values[-1] * 1000),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--background", type=int, default=0, help="idle containers running meanwhile")
    ap.add_argument("--poll", type=float, default=0.02, help="seconds between API polls")
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/rescope"))
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()

    ensure_busybox_image()
    made = []
    app = None
    try:
        for i in range(args.background):
            made.append(docker("run", "-d", "--label", LABEL, BUSYBOX_IMAGE, "sleep", "3600"))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = open(os.path.join(ROOT, "target", "container-latency.log"), "w")
        app = subprocess.Popen([args.binary, "launch", "--listen", f"127.0.0.1:{port}"],
                               stdout=subprocess.DEVNULL, stderr=log)
        # Ready when it shows the background containers.
        wanted = {c[:64] for c in made}
        wait_until(base + ALL, lambda ids: wanted <= ids, 0.2, limit=60)
        time.sleep(2)
        appear_after_return, appear_after_start = [], []
        gone_after_return, gone_after_start = [], []
        for i in range(args.runs):
            # A random pause, so the runs do not fall into step with the spy interval.
            time.sleep(random.uniform(0.2, 1.2))
            t0 = time.monotonic()
            cid = docker("run", "-d", "--label", LABEL, BUSYBOX_IMAGE, "sleep", "3600")
            t1 = time.monotonic()
            made.append(cid)
            seen = wait_until(base + RUNNING, lambda ids: cid in ids, args.poll)
            appear_after_start.append(seen - t0)
            appear_after_return.append(seen - t1)
            time.sleep(random.uniform(0.2, 1.2))
            r0 = time.monotonic()
            docker("rm", "-f", cid)
            r1 = time.monotonic()
            made.remove(cid)
            gone = wait_until(base + ALL, lambda ids: cid not in ids, args.poll)
            gone_after_start.append(gone - r0)
            gone_after_return.append(gone - r1)
            print(f"run {i + 1}: shown {round((seen - t1) * 1000)} ms after docker run returned "
                  f"({round((t1 - t0) * 1000)} ms to run), gone {round((gone - r1) * 1000)} ms after "
                  f"docker rm -f returned ({round((r1 - r0) * 1000)} ms to remove)", flush=True)
    finally:
        if app:
            app.terminate()
            try:
                app.wait(timeout=10)
            except subprocess.TimeoutExpired:
                app.kill()
        for i in range(0, len(made), 25):
            docker("rm", "-f", *made[i:i + 25], check=False)

    out = {
        "binary": args.binary,
        "runs": args.runs,
        "background_containers": args.background,
        "shown_after_docker_run_returned": stats(appear_after_return),
        "shown_after_docker_run_started": stats(appear_after_start),
        "gone_after_docker_rm_returned": stats(gone_after_return),
        "gone_after_docker_rm_started": stats(gone_after_start),
    }
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
