#!/usr/bin/env python3
"""Write Kafka files for `autopilot plan` at benchmark size: 100 brokers in 3 racks, 100,000
partitions of replication factor 3, rack-aware like Kafka's own assignment.

    python3 benches/plan_files.py OUTDIR [--skewed]

writes OUTDIR/current.json (reassignment JSON), OUTDIR/brokers.json and OUTDIR/log-dirs.json
(`kafka-log-dirs.sh --describe` output with sizes from 1 to 1000 MiB). Deterministic.
"""
import json
import random
import sys
from pathlib import Path

BROKERS, RACKS, PARTITIONS, RF, PER_TOPIC = 100, 3, 100_000, 3, 100


def main() -> None:
    out = Path(sys.argv[1])
    skewed = "--skewed" in sys.argv[2:]
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(42)
    racks = [[b for b in range(1, BROKERS + 1) if (b - 1) % RACKS == r] for r in range(RACKS)]
    cursor = [[0] * RF for _ in range(RACKS)]
    partitions, sizes = [], {}
    for i in range(PARTITIONS):
        replicas = []
        for j in range(RF):
            rack = racks[(i + j) % RACKS]
            if skewed:
                weights = [1 + k % 4 for k in range(len(rack))]
                replicas.append(rng.choices(rack, weights)[0])
            else:
                replicas.append(rack[cursor[(i + j) % RACKS][j] % len(rack)])
                cursor[(i + j) % RACKS][j] += 1
        topic, number = f"topic-{i // PER_TOPIC:04d}", i % PER_TOPIC
        partitions.append({"topic": topic, "partition": number, "replicas": replicas})
        sizes[f"{topic}-{number}"] = (rng.randrange(1000) + 1) << 20
    (out / "current.json").write_text(json.dumps({"version": 1, "partitions": partitions}))
    brokers = [{"id": b, "rack": f"rack-{(b - 1) % RACKS}"} for b in range(1, BROKERS + 1)]
    (out / "brokers.json").write_text(json.dumps(brokers))
    hosted = {b: [] for b in range(1, BROKERS + 1)}
    for p in partitions:
        for r in p["replicas"]:
            name = f"{p['topic']}-{p['partition']}"
            hosted[r].append({"partition": name, "size": sizes[name], "offsetLag": 0, "isFuture": False})
    dirs = {
        "version": 1,
        "brokers": [
            {"broker": b, "logDirs": [{"logDir": "/var/lib/kafka/data", "error": None, "partitions": ps}]}
            for b, ps in hosted.items()
        ],
    }
    (out / "log-dirs.json").write_text(
        "Querying brokers for log directories information\n"
        f"Received log directory information from brokers {','.join(map(str, hosted))}\n"
        + json.dumps(dirs) + "\n"
    )


if __name__ == "__main__":
    main()
