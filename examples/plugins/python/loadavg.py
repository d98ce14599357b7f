#!/usr/bin/env python3
"""A Rescope (and Weave Scope) plugin in plain Python, standard library only.

Reports the host's 5- and 15-minute load averages as metrics on the host node, and
offers one control, "Pin load", that pins a note onto the host's metadata (switched off
by running it again). Run it as root next to a probe:

    sudo python3 loadavg.py            # socket: /var/run/scope/plugins/loadavg/loadavg.sock
    PLUGINS_ROOT=/tmp/plugins python3 loadavg.py

The probe finds the socket within a second; the plugin then shows in the PLUGINS list
and its metrics in the host's details.
"""

import http.server
import json
import os
import shutil
import signal
import socket
import socketserver
import sys
import threading
import time
from datetime import datetime, timezone

PLUGIN_ID = "loadavg"
ROOT = os.environ.get("PLUGINS_ROOT", "/var/run/scope/plugins")
HOSTNAME = os.environ.get("SCOPE_HOSTNAME") or socket.gethostname()
HOST_NODE = f"{HOSTNAME};<host>"
CONTROL = "pin-load"

state = {"pinned": False}
lock = threading.Lock()


def now():
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def report():
    with open("/proc/loadavg") as f:
        load5, load15 = (float(v) for v in f.read().split()[1:3])
    cpus = os.cpu_count() or 1
    ts = now()
    metric = lambda v: {"samples": [{"date": ts, "value": v}], "min": 0, "max": float(cpus)}
    with lock:
        pinned = state["pinned"]
    latest = {"loadavg_pinned": {"timestamp": ts, "value": "pinned" if pinned else "not pinned"}}
    return {
        "Host": {
            "nodes": {
                HOST_NODE: {
                    "metrics": {"loadavg_5": metric(load5), "loadavg_15": metric(load15)},
                    # `active_controls` lists the controls this node offers now.
                    "latest": dict(latest, active_controls={"timestamp": ts, "value": CONTROL}),
                }
            },
            "metric_templates": {
                "loadavg_5": {"id": "loadavg_5", "label": "Load (5m)", "format": "", "group": "load", "priority": 12.0},
                "loadavg_15": {"id": "loadavg_15", "label": "Load (15m)", "format": "", "group": "load", "priority": 13.0},
            },
            "metadata_templates": {
                "loadavg_pinned": {"id": "loadavg_pinned", "label": "Load pin", "priority": 20.0, "from": "latest"},
            },
            "controls": {
                CONTROL: {"id": CONTROL, "human": "Pin load", "icon": "fa fa-thumbtack", "rank": 20},
            },
        },
        "Plugins": [
            {
                "id": PLUGIN_ID,
                "label": "Load average",
                "description": "5 and 15 minute load averages of the host",
                "interfaces": ["reporter", "controller"],
                "api_version": "1",
            }
        ],
    }


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.split("?")[0] == "/report":
            self.reply(200, report())
        else:
            self.reply(404, {"error": "not found"})

    def do_POST(self):
        if self.path.split("?")[0] != "/control":
            return self.reply(404, {"error": "not found"})
        length = int(self.headers.get("Content-Length", "0"))
        request = json.loads(self.rfile.read(length) or b"{}")
        if request.get("Control") != CONTROL:
            return self.reply(200, {"error": f"unknown control {request.get('Control')!r}"})
        with lock:
            state["pinned"] = not state["pinned"]
        # A shortcut report makes the change visible at once.
        self.reply(200, {"shortcutReport": report()})

    # A Unix socket has no client address; keep the handler happy.
    def address_string(self):
        return "plugin"


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def main():
    directory = os.path.join(ROOT, PLUGIN_ID)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = os.path.join(directory, PLUGIN_ID + ".sock")
    if os.path.exists(path):
        os.remove(path)
    server = Server(path, Handler)

    def stop(*_):
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"{PLUGIN_ID}: listening on {path} for host {HOST_NODE}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
