#!/usr/bin/env python3
"""Request latency of the Rescope app under a publishing probe.

Starts `rescope app` on a loopback port, publishes a real Scope probe's report of a
loaded host (testdata/scope/published/load-full.msgpack.gz: 442 processes, 4,019
endpoints, 22 containers) every publish interval as a probe would, and meanwhile asks
for the views a UI asks for. Prints median and 95th percentile latency per request.
Standard library only; loopback only.
"""

import argparse
import os
import statistics
import subprocess
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPORT = os.path.join(ROOT, "testdata/scope/published/load-full.msgpack.gz")
REQUESTS = {
    "processes": "/api/topology/processes",
    "hosts": "/api/topology/hosts",
    "host details": "/api/topology/hosts/vm%3B%3Chost%3E",
    "topology list": "/api/topology",
}


def publish(base, body, stop, interval):
    while not stop.is_set():
        req = urllib.request.Request(
            base + "/api/report",
            data=body,
            headers={
                "Content-Type": "application/msgpack",
                "Content-Encoding": "gzip",
                "X-Scope-Probe-ID": "bench-probe",
            },
        )
        urllib.request.urlopen(req, timeout=10).read()
        stop.wait(interval)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--port", type=int, default=4949)
    ap.add_argument("--interval", type=float, default=3.0, help="publish interval (s)")
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/rescope"))
    args = ap.parse_args()
    base = f"http://127.0.0.1:{args.port}"
    app = subprocess.Popen([args.binary, "app", "--listen", f"127.0.0.1:{args.port}"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            try:
                urllib.request.urlopen(base + "/api", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        body = open(REPORT, "rb").read()
        stop = threading.Event()
        publisher = threading.Thread(target=publish, args=(base, body, stop, args.interval), daemon=True)
        publisher.start()
        time.sleep(1)
        times = {name: [] for name in REQUESTS}
        deadline = time.time() + args.seconds
        while time.time() < deadline:
            for name, path in REQUESTS.items():
                started = time.perf_counter()
                urllib.request.urlopen(base + path, timeout=10).read()
                times[name].append((time.perf_counter() - started) * 1000)
            time.sleep(0.25)
        stop.set()
    finally:
        app.terminate()
        app.wait(timeout=10)
    print(f"{'request':<16}{'n':>6}{'median ms':>12}{'p95 ms':>10}")
    for name, t in times.items():
        t.sort()
        p95 = t[int(len(t) * 0.95) - 1] if t else 0
        print(f"{name:<16}{len(t):>6}{statistics.median(t):>12.2f}{p95:>10.2f}")


if __name__ == "__main__":
    main()
