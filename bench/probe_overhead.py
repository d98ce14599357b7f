#!/usr/bin/env python3
"""Measures what the Rescope probe costs on a loaded host.

Builds a load (idle `sleep` processes and established loopback TCP connections), runs
`rescope probe` at its default intervals for a while publishing to a local app, and
samples the probe's /proc/<pid>/stat and status every second. Prints average and peak
CPU (percent of one core), RSS, report sizes and per-tick build time.

Scenarios (issue: probe performance budget):
  scope  300 extra sleep processes, 2,000 established loopback connections
         (4,000 sockets) -- the load the real Weave Scope probe was measured under.
  busy   1,000 processes and 10,000 connections.
  idle   no extra load.

With --compare OTHER_BINARY, both probes run at once under the same load, each
publishing to its own sink: on a machine shared with other work, a paired run is the
fair way to tell two builds apart (run it a few times).

Containers (issue: containers performance budget):
  --containers N   also run N containers (`sleep` in the busybox test image, made with
                   `docker import` from the host's static busybox if missing), labelled
                   rescope-bench=probe-overhead and removed at the end.
  --docker-pair    run the binary twice at once, with Docker and with
                   --probe.docker=false, on the same containers: the difference is what
                   the Docker part costs. --repeat K does K paired runs and prints each
                   difference and their mean.

  bench/probe-overhead --scenario idle --containers 50 --docker-pair --repeat 5 --seconds 60

Only loopback addresses are used. Standard library only.
"""

import argparse
import gzip
import http.server
import json
import re
import os
import resource
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCENARIOS = {
    "idle": (0, 0),
    "scope": (300, 2000),
    "busy": (1000, 10000),
}


class SinkApp(http.server.ThreadingHTTPServer):
    """The smallest app a probe publishes to: answers the handshake, keeps sizes."""

    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a probe stopped mid-connection is expected at the end of a run

    def __init__(self):
        super().__init__(("127.0.0.1", 0), SinkHandler)
        self.reports = []  # (time, gzip bytes, raw bytes)
        self.lock = threading.Lock()


class SinkHandler(http.server.BaseHTTPRequestHandler):
    # Keep-alive, as real apps (Go's net/http in Scope, hyper in Rescope) do: with
    # HTTP/1.0 every publish would open a new TCP connection, which the probe then
    # sees and reports as a change of the host's sockets.
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/api"):
            body = json.dumps({"id": "bench-sink", "version": "bench"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        raw = len(body)
        if "gzip" in self.headers.get("Content-Encoding", ""):
            try:
                raw = len(gzip.decompress(body))
            except OSError:
                pass
        with self.server.lock:
            self.server.reports.append((time.time(), len(body), raw))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def raise_fd_limit(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(target, soft), max(target, hard)))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def connection_holder(n):
    """A child process holding n established loopback connections (2n sockets)."""
    raise_fd_limit(2 * n + 256)
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(4096)
    port = server.getsockname()[1]
    clients, accepted = [], []
    for _ in range(n):
        c = socket.create_connection(("127.0.0.1", port))
        clients.append(c)
        a, _ = server.accept()
        accepted.append(a)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    signal.sigwait([signal.SIGTERM, signal.SIGINT])


def start_load(processes, connections):
    children = []
    for _ in range(processes):
        children.append(subprocess.Popen(["sleep", "3600"]))
    # Split connections over a few holders so each stays under common fd limits.
    per = 2500
    remaining = connections
    while remaining > 0:
        n = min(per, remaining)
        p = subprocess.Popen([sys.executable, __file__, "--hold", str(n)], stdout=subprocess.PIPE, text=True)
        if p.stdout.readline().strip() != "ready":
            raise SystemExit("connection holder failed to start")
        children.append(p)
        remaining -= n
    return children


def stop(children):
    for c in children:
        try:
            c.terminate()
        except ProcessLookupError:
            pass
    for c in children:
        try:
            c.wait(timeout=5)
        except subprocess.TimeoutExpired:
            c.kill()


BUSYBOX_IMAGE = "rescope-test/busybox:latest"
BENCH_LABEL = "rescope-bench=probe-overhead"


def docker(*args, check=True):
    out = subprocess.run(["docker", *args], capture_output=True, text=True)
    if check and out.returncode != 0:
        raise SystemExit(f"docker {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout.strip()


def ensure_busybox_image():
    if subprocess.run(["docker", "image", "inspect", BUSYBOX_IMAGE], capture_output=True).returncode == 0:
        return
    busybox = next((p for p in ["/bin/busybox", "/usr/bin/busybox"] if os.path.exists(p)), None)
    if busybox is None:
        raise SystemExit("no static busybox on this machine (apt-get install busybox-static)")
    script = (f"set -e; d=$(mktemp -d); mkdir -p $d/bin; cp {busybox} $d/bin/busybox; "
              "for a in sh sleep httpd nc echo cat; do ln -s busybox $d/bin/$a; done; "
              f"tar -C $d -c . | docker import - {BUSYBOX_IMAGE} >/dev/null; rm -rf $d")
    subprocess.run(["sh", "-c", script], check=True)


def start_containers(n):
    """n running containers; returns their IDs."""
    if n == 0:
        return []
    ensure_busybox_image()
    ids = []
    for i in range(n):
        ids.append(docker("run", "-d", "--label", BENCH_LABEL, "--name", f"rescope-bench-{os.getpid()}-{i}",
                          BUSYBOX_IMAGE, "sleep", "3600"))
    return ids


def remove_containers(ids):
    for i in range(0, len(ids), 25):
        docker("rm", "-f", *ids[i:i + 25], check=False)


def pids_of(name):
    out = subprocess.run(["pidof", name], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


class CpuOf:
    """CPU of other processes (the Docker daemon) over a run, percent of one core."""

    def __init__(self, pids):
        self.pids = pids
        self.start = self.ticks()
        self.t = time.time()

    def ticks(self):
        total = 0
        for pid in self.pids:
            try:
                total += proc_sample(pid)[0]
            except OSError:
                pass
        return total

    def percent(self, clk):
        return round((self.ticks() - self.start) / clk / (time.time() - self.t) * 100.0, 2)


def proc_sample(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    rss_kb = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
    return ticks, rss_kb


def host_sample():
    """What else is on the host right now: processes, TCP sockets (in use and
    TIME-WAIT, this network namespace, IPv4 and IPv6) and the load average. A run
    whose figures stand out can be checked against these."""
    tcp = {"inuse": 0, "tw": 0}
    for name in ("/proc/net/sockstat", "/proc/net/sockstat6"):
        try:
            with open(name) as f:
                for line in f:
                    if line.startswith(("TCP:", "TCP6:")):
                        words = line.split()[1:]
                        for key, value in zip(words[::2], words[1::2]):
                            if key in tcp:
                                tcp[key] += int(value)
        except OSError:
            pass
    with open("/proc/loadavg") as f:
        load = float(f.read().split()[0])
    processes = sum(1 for d in os.listdir("/proc") if d.isdigit())
    return {"processes": processes, "tcp_in_use": tcp["inuse"], "tcp_time_wait": tcp["tw"], "load1": load}


def host_range(samples):
    """Lowest and highest of each host figure over a run."""
    if not samples:
        return {}
    return {key: [min(s[key] for s in samples), max(s[key] for s in samples)] for key in samples[0]}


def scrape(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.read().decode()
    except OSError:
        return ""


def histogram_mean(text, name):
    total = count = None
    for line in text.splitlines():
        if line.startswith(name + "_sum"):
            total = float(line.split()[-1])
        elif line.startswith(name + "_count"):
            count = float(line.split()[-1])
    if total is None or not count:
        return None
    return total / count


class RunningProbe:
    """One probe under measurement, with its own sink app and metrics port."""

    def __init__(self, binary, index, args, extra_args=()):
        self.binary = binary
        self.extra_args = list(extra_args)
        self.app = SinkApp()
        threading.Thread(target=self.app.serve_forever, daemon=True).start()
        self.app_url = f"http://127.0.0.1:{self.app.server_address[1]}"
        self.metrics_port = 4941 + index
        logs = os.path.join(ROOT, "target")
        os.makedirs(logs, exist_ok=True)
        self.log_path = os.path.join(logs, f"probe-overhead-{args.scenario}{'-' + str(index) if index else ''}.log")
        self.log = open(self.log_path, "w")
        target = ["--publish-stdout"] if args.stdout else [self.app_url]
        self.proc = subprocess.Popen(
            [binary, "probe", "--http-listen", f"127.0.0.1:{self.metrics_port}", *args.probe_args, *self.extra_args,
             *target],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        self.samples = []
        self.metrics = ""
        self.debug_report = ""

    def start_sampling(self):
        self.last_ticks, _ = proc_sample(self.proc.pid)
        self.last_t = time.time()

    def sample(self, clk):
        if self.proc.poll() is not None:
            raise SystemExit(f"probe exited with {self.proc.returncode}; see {self.log_path}")
        ticks, rss = proc_sample(self.proc.pid)
        now = time.time()
        self.samples.append(((ticks - self.last_ticks) / clk / (now - self.last_t) * 100.0, rss))
        self.last_ticks, self.last_t = ticks, now

    def scrape(self):
        self.metrics = scrape(f"http://127.0.0.1:{self.metrics_port}/metrics")
        self.debug_report = scrape(f"http://127.0.0.1:{self.metrics_port}/debug/report")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.app.shutdown()

    def figures(self, args):
        cpu = [c for c, _ in self.samples]
        rss = [r for _, r in self.samples]
        with self.app.lock:
            reports = list(self.app.reports)
        largest = max(reports, key=lambda r: r[1]) if reports else (0, 0, 0)
        figures = {
            "binary": self.binary,
            "probe_args": [*args.probe_args, *self.extra_args],
            "scenario": args.scenario,
            "containers": args.containers,
            "seconds": args.seconds,
            "cpu_percent_avg": round(statistics.mean(cpu), 2) if cpu else None,
            "cpu_percent_max": round(max(cpu), 2) if cpu else None,
            "rss_mib_avg": round(statistics.mean(rss) / 1024, 1) if rss else None,
            "rss_mib_max": round(max(rss) / 1024, 1) if rss else None,
            "reports_received": len(reports),
            "largest_report_gzip_kb": round(largest[1] / 1024, 1),
            "largest_report_raw_kb": round(largest[2] / 1024, 1),
            "spy_tick_ms_avg": None,
        }
        if self.debug_report:
            # A recent spy report, encoded as a full report is published.
            enc = subprocess.run([self.binary, "report", "convert", "--to", "msgpack", "--gzip", "-", "-o", "/dev/stdout"],
                                 input=self.debug_report.encode(), capture_output=True)
            if enc.returncode == 0:
                figures["spy_report_gzip_msgpack_kb"] = round(len(enc.stdout) / 1024, 1)
            nodes = {}
            try:
                doc = json.loads(self.debug_report)
                for key, top in doc.items():
                    if isinstance(top, dict) and top.get("nodes"):
                        nodes[key] = len(top["nodes"])
            except ValueError:
                pass
            figures["spy_report_nodes"] = nodes
        tick = histogram_mean(self.metrics, "rescope_probe_spy_duration_seconds")
        if tick is not None:
            figures["spy_tick_ms_avg"] = round(tick * 1000, 2)
        # Per reporter: where a tick's time goes (the process walk is the rest).
        per = {}
        for line in self.metrics.splitlines():
            m = re.match(r'rescope_probe_reporter_duration_seconds_(sum|count)\{reporter="([^"]+)"\} (\S+)', line)
            if m:
                per.setdefault(m.group(2), {})[m.group(1)] = float(m.group(3))
        figures["reporter_ms_avg"] = {
            k: round(v["sum"] / v["count"] * 1000, 2) for k, v in sorted(per.items()) if v.get("count")
        }
        return figures


def run_once(args, probe_specs, clk):
    """One run of the probes in probe_specs [(binary, extra args)] at once."""
    probes = []
    daemon = CpuOf(pids_of("dockerd") + pids_of("containerd")) if args.containers else None
    try:
        for i, (binary, extra) in enumerate(probe_specs):
            probes.append(RunningProbe(binary, i, args, extra))
        time.sleep(3)  # start-up (first full walk) is not steady state
        if daemon:
            daemon = CpuOf(daemon.pids)
        for p in probes:
            p.start_sampling()
        host = [host_sample()]
        for _ in range(args.seconds):
            time.sleep(1)
            for p in probes:
                p.sample(clk)
            host.append(host_sample())
        for p in probes:
            p.scrape()
        daemon_cpu = daemon.percent(clk) if daemon else None
    finally:
        for p in probes:
            p.stop()
    results = [p.figures(args) for p in probes]
    for r in results:
        r["host_min_max"] = host_range(host)
    if daemon_cpu is not None:
        for r in results:
            r["dockerd_and_containerd_cpu_percent_avg"] = daemon_cpu
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", choices=sorted(SCENARIOS), default="scope")
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/rescope"))
    ap.add_argument("--compare", metavar="BINARY",
                    help="also run this binary's probe at the same time, under the same load (each with its own "
                         "sink app): a paired comparison that a noisy machine disturbs far less than two runs in turn")
    ap.add_argument("--containers", type=int, default=0, help="also run this many containers (see above)")
    ap.add_argument("--docker-pair", action="store_true",
                    help="run the binary with Docker and with --probe.docker=false at once (see above)")
    ap.add_argument("--repeat", type=int, default=1, help="paired runs to make (the probes restart for each)")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--stdout", action="store_true",
                    help="run the probe with --publish-stdout (to /dev/null) instead of publishing to the sink app")
    ap.add_argument("--hold", type=int, help=argparse.SUPPRESS)
    ap.add_argument("probe_args", nargs="*", help="extra arguments for rescope probe")
    args = ap.parse_args()
    if args.hold:
        connection_holder(args.hold)
        return

    procs, conns = SCENARIOS[args.scenario]
    raise_fd_limit(8192)
    specs = [(args.binary, [])]
    if args.compare:
        specs.append((args.compare, []))
    if args.docker_pair:
        specs.append((args.binary, ["--probe.docker=false"]))
    print(f"scenario {args.scenario}: {procs} extra processes, {conns} connections, {args.containers} containers")
    containers = []
    load = []
    clk = os.sysconf("SC_CLK_TCK")
    runs = []
    try:
        containers = start_containers(args.containers)
        load = start_load(procs, conns)
        for rep in range(args.repeat):
            # Alternate which probe starts first (and gets the first metrics port).
            order = specs if rep % 2 == 0 else specs[::-1]
            results = run_once(args, order, clk)
            if rep % 2 == 1:
                results = results[::-1]
            runs.append(results)
            if args.repeat > 1:
                cpus = ", ".join(f"{r['cpu_percent_avg']} %" for r in results)
                print(f"run {rep + 1}/{args.repeat}: CPU {cpus}", flush=True)
    finally:
        stop(load)
        remove_containers(containers)

    if args.repeat == 1:
        out = runs[0][0] if len(runs[0]) == 1 else runs[0]
    else:
        out = {"runs": runs}
    if len(specs) == 2:
        diffs = [round(r[0]["cpu_percent_avg"] - r[1]["cpu_percent_avg"], 2) for r in runs]
        summary = {
            "first": specs[0][0] + " " + " ".join(specs[0][1]),
            "second": specs[1][0] + " " + " ".join(specs[1][1]),
            "cpu_percent_avg_first": [r[0]["cpu_percent_avg"] for r in runs],
            "cpu_percent_avg_second": [r[1]["cpu_percent_avg"] for r in runs],
            "cpu_difference_first_minus_second": diffs,
            "cpu_difference_mean": round(statistics.mean(diffs), 2),
        }
        if len(diffs) > 1:
            summary["cpu_difference_stdev"] = round(statistics.stdev(diffs), 2)
        if args.repeat == 1:
            out = {"runs": runs}
        out["summary"] = summary
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
