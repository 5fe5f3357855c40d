#!/usr/bin/env python3
"""Write the recent history of the test exporter's series into an empty Prometheus data dir.

From the values file, generate OpenMetrics samples for the last --minutes (15) at --step (5 s)
intervals ending --lead (5 s) after now, with exactly the labels Prometheus stores for the live
scrape (job and instance included), then run
`promtool tsdb create-blocks-from openmetrics FILE DATADIR`.

Why a 5 s step and a 5 s lead: rate() extrapolates less when the first sample of its window is
further from the window's start than 1.1 average intervals, so a history spaced 15 s joined to a
5 s scrape, or a join gap longer than the scrape interval, makes rate(...[1m]) dip by up to a
third for a minute after `up`. Spacing the history like the scrape (5 s) and ending it just after
Prometheus' first scrape keeps every interval at 5 s: Prometheus drops the scrapes that are older
than the newest block ("out of bounds"), so the first stored scrape follows the last backfilled
sample by at most one scrape interval.

Counters end at the values the exporter continues from: if the exporter's state file exists,
its counters (extrapolated to now at the current rates) are the end values; otherwise each
counter ends at one hour of growth. The end values are written back to the state file, so an
exporter started afterwards continues exactly where the history stops.

    backfill.py --values FILE --state FILE --data DIR --instance 127.0.0.1:19100 [--promtool promtool]

Timestamps are written in seconds (promtool takes milliseconds as seconds, silently).
"""
import argparse
import os
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import metrics_model as mm  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--values", required=True)
    ap.add_argument("--state", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--instance", required=True, help="host:port of the exporter target, as in prometheus.yml")
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--step", type=int, default=5, help="seconds between samples: the scrape interval")
    ap.add_argument("--lead", type=int, default=5, help="seconds past now where the history ends")
    ap.add_argument("--promtool", default="promtool")
    ap.add_argument("--out", help="where to write the OpenMetrics file (default: DATA/../backfill.om)")
    args = ap.parse_args()

    clusters = mm.load_values(args.values)
    end = int(time.time()) + args.lead
    steps = int(args.minutes * 60 // args.step)
    times = [end - (steps - i) * args.step for i in range(steps + 1)]  # ascending, last == end

    st_time, st_counters = mm.read_state(args.state)
    end_counters = {}
    series = {}  # (name, labels tuple) -> [(t, v)]
    order = []
    for cluster in clusters:
        for bid, b in mm.live_brokers(cluster):
            key = mm.state_key(cluster, bid)
            rates = mm.counter_rates(cluster, b)
            if key in st_counters and st_time is not None:
                dt = max(0.0, end - st_time)
                cend = {c: float(st_counters[key].get(c, 0.0)) + rates[c] * dt for c in mm.COUNTER_KEYS}
            else:
                cend = {c: rates[c] * 3600.0 for c in mm.COUNTER_KEYS}
            end_counters[key] = cend
            for t in times:
                back = end - t
                counters = {c: max(0.0, cend[c] - rates[c] * back) for c in mm.COUNTER_KEYS}
                for name, labels, value in mm.samples(cluster, bid, b, counters, instance=args.instance):
                    sk = (name, tuple(sorted(labels.items())))
                    if sk not in series:
                        series[sk] = []
                        order.append(sk)
                    series[sk].append((t, value))
    # Keep counters of brokers that are down now (they come back where they stopped).
    for key, v in st_counters.items():
        end_counters.setdefault(key, v)

    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.data.rstrip("/"))), "backfill.om")
    lines = []
    for name in mm.TYPES:  # group by family, as OpenMetrics wants
        fam = [sk for sk in order if sk[0] == name]
        if not fam:
            continue
        typ, help_ = mm.TYPES[name]
        # Plain "unknown" families: OpenMetrics counters would need the family name without _total.
        lines.append(f"# HELP {name} {help_}")
        for sk in fam:
            labels = dict(sk[1])
            for t, v in series[sk]:
                lines.append(f"{name}{mm.fmt_labels(labels)} {mm.fmt_value(v)} {t}")
    lines.append("# EOF")
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")

    os.makedirs(args.data, exist_ok=True)
    res = subprocess.run([args.promtool, "tsdb", "create-blocks-from", "openmetrics", out, args.data],
                         capture_output=True, text=True)
    if res.returncode != 0:
        sys.stderr.write(res.stdout + res.stderr)
        sys.exit(f"backfill: promtool failed with exit code {res.returncode}")
    mm.write_state(args.state, float(end), end_counters, writer="backfill")
    print(f"backfill: {len(series)} series x {len(times)} samples from {times[0]} to {end} "
          f"({args.step}s step) into {args.data}")


if __name__ == "__main__":
    main()
