#!/usr/bin/env python3
"""Synthetic Kafka-on-Kubernetes metrics exporter for the local test stack.

Serves, in the Prometheus text format, the cAdvisor / kube-state-metrics / kubelet / Kafka JMX
series the agent's Prometheus adapter queries, with values taken from a JSON values file that is
re-read on every scrape (and every second), so tests can change the load while the stack runs.

Counters (cpu seconds, network bytes) are integrated over time inside this process, so they stay
continuous when the values change; they are saved to a state file every second and loaded at
start (backfill.py writes the same file, so the live counters continue the backfilled history).

    exporter.py --values FILE --state FILE [--host 127.0.0.1] [--port 19100]

GET /metrics, GET /-/healthy. Python standard library only.
"""
import argparse
import http.server
import os
import signal
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import metrics_model as mm  # noqa: E402


class Model:
    def __init__(self, values_path, state_path):
        self.values_path = values_path
        self.state_path = state_path
        self.lock = threading.Lock()
        self.clusters = []
        self.error = None
        self.counters, self.last = {}, None
        self.adopt()
        self.reload()  # rates in force since the state was saved: the current file's
        if self.last is None:
            self.last = time.time()
        self.advance(time.time())

    def adopt(self):
        """Take the counters from the state file (at start, or when backfill.py rewrote it)."""
        t, counters, writer = mm.read_state(self.state_path, with_writer=True)
        self.counters = {k: {c: float(v.get(c, 0.0)) for c in mm.COUNTER_KEYS} for k, v in counters.items()}
        self.last = t
        return writer

    def backfilled(self):
        """True when backfill.py has rewritten the state file since this process last saved it."""
        try:
            with open(self.state_path, encoding="utf-8") as f:
                return '"writer": "backfill"' in f.read()
        except OSError:
            return False

    def reload(self):
        try:
            self.clusters = mm.load_values(self.values_path)
            self.error = None
        except (OSError, ValueError) as e:  # keep the last good values
            self.error = f"{type(e).__name__}: {e}"

    def advance(self, now):
        """Integrate the counters of live brokers from self.last to now at the current rates.

        dt is negative only right after a backfill, whose history ends a few seconds ahead:
        the counters then sit on the same straight line as the backfilled samples."""
        dt = now - self.last
        for cluster in self.clusters:
            for bid, b in mm.live_brokers(cluster):
                key = mm.state_key(cluster, bid)
                cur = self.counters.setdefault(key, {c: 0.0 for c in mm.COUNTER_KEYS})
                for c, rate in mm.counter_rates(cluster, b).items():
                    cur[c] = max(0.0, cur[c] + rate * dt)
        self.last = now

    def tick(self):
        """Integrate with the rates in force so far, then pick up the values file anew."""
        with self.lock:
            if self.backfilled():  # the history now ends at the backfill's counters: continue those
                self.adopt()
            self.advance(time.time())
            self.reload()

    def save(self):
        with self.lock:
            if self.backfilled():
                self.adopt()
                self.advance(time.time())
            mm.write_state(self.state_path, self.last, self.counters)

    def render(self):
        self.tick()
        with self.lock:
            families = {}
            for cluster in self.clusters:
                for bid, b in mm.live_brokers(cluster):
                    counters = self.counters[mm.state_key(cluster, bid)]
                    for name, labels, value in mm.samples(cluster, bid, b, counters, instance=None):
                        families.setdefault(name, []).append((labels, value))
        lines = []
        for name, rows in families.items():
            typ, help_ = mm.TYPES[name]
            lines.append(f"# HELP {name} {help_}")
            lines.append(f"# TYPE {name} {typ}")
            for labels, value in rows:
                lines.append(f"{name}{mm.fmt_labels(labels)} {mm.fmt_value(value)}")
        if self.error:
            lines.append(f"# values file error (last good values served): {self.error}")
        return ("\n".join(lines) + "\n").encode()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--values", required=True)
    ap.add_argument("--state", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=19100)
    args = ap.parse_args()

    model = Model(args.values, args.state)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body, ctype, code = model.render(), "text/plain; version=0.0.4; charset=utf-8", 200
            elif path in ("/-/healthy", "/-/ready"):
                body, ctype, code = b"Exporter is Healthy.\n", "text/plain", 200
            else:
                body, ctype, code = b"not found\n", "text/plain", 404
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *a):  # keep the log quiet: one line per non-200 only
            pass

    def ticker():
        while True:
            time.sleep(1.0)
            try:
                model.tick()
                model.save()
            except Exception as e:  # never let the ticker die
                print(f"exporter: tick failed: {e}", file=sys.stderr, flush=True)

    threading.Thread(target=ticker, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    srv = http.server.ThreadingHTTPServer((args.host, args.port), Handler)
    print(f"exporter: serving http://{args.host}:{args.port}/metrics from {args.values}", flush=True)
    try:
        srv.serve_forever()
    finally:
        model.save()


if __name__ == "__main__":
    main()
