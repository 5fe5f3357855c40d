"""Shared model of the synthetic Kafka metrics served by exporter.py and written by backfill.py.

Both scripts must produce the same series with the same label sets, and counters that are
continuous between the backfilled history and the live scrape, so the model lives here once.
Python standard library only.
"""
import json
import os
import tempfile

JOB = "autopilot-test-exporter"

# Counters integrated over time: key -> function(cluster, broker) giving the rate per second.
COUNTER_KEYS = ("cpu", "rx", "tx")


def load_values(path):
    """Read the values file; return the list of clusters (an empty list if the file is unreadable)."""
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    clusters = doc.get("clusters", [])
    if not isinstance(clusters, list):
        raise ValueError("values file: 'clusters' must be a list")
    return clusters


def live_brokers(cluster):
    """Yield (broker_id, broker_values) of brokers that export metrics (present and not down)."""
    brokers = cluster.get("brokers") or {}
    for bid in sorted(brokers, key=lambda b: (len(str(b)), str(b))):
        b = brokers[bid]
        if not isinstance(b, dict) or b.get("down"):
            continue
        yield str(bid), b


def names(cluster, bid):
    name = cluster["name"]
    pool = cluster.get("pool", "brokers")
    pod = f"{name}-{pool}-{bid}"
    pvc = f"data-0-{name}-{pool}-{bid}"
    return name, cluster.get("namespace", "kafka"), pod, pvc


def counter_rates(cluster, b):
    """Per-second growth of each counter for one broker."""
    cores = float(cluster.get("cpu_cores", 4))
    net = float(cluster.get("network_bytes_per_sec", 1250000000))
    n = float(b.get("network", 0.0))
    return {
        "cpu": float(b.get("cpu", 0.0)) * cores,
        "rx": n * net / 2.0,
        "tx": n * net / 2.0,
    }


def state_key(cluster, bid):
    return f"{cluster.get('namespace', 'kafka')}/{cluster['name']}/{bid}"


def samples(cluster, bid, b, counters, instance):
    """Return [(metric_name, labels_dict, value)] for one live broker.

    `counters` is {"cpu": seconds, "rx": bytes, "tx": bytes} for this broker.
    Labels include job and instance exactly as Prometheus stores the live scrape
    (the exporter leaves them out; Prometheus adds them from the target).
    """
    name, ns, pod, pvc = names(cluster, bid)
    cores = float(cluster.get("cpu_cores", 4))
    mem = float(cluster.get("memory_bytes", 17179869184))
    disk = float(cluster.get("disk_bytes", 107374182400))
    base = {"namespace": ns}
    if instance is not None:
        base = {"instance": instance, "job": JOB, **base}
    kafka = {**base, "pod": pod, "container": "kafka"}
    out = [
        ("container_cpu_usage_seconds_total", kafka, counters["cpu"]),
        ("kube_pod_container_resource_limits", {**kafka, "resource": "cpu", "unit": "core"}, cores),
        ("container_memory_working_set_bytes", kafka, float(b.get("memory", 0.0)) * mem),
        ("kube_pod_container_resource_limits", {**kafka, "resource": "memory", "unit": "byte"}, mem),
        ("kubelet_volume_stats_used_bytes", {**base, "persistentvolumeclaim": pvc}, float(b.get("disk", 0.0)) * disk),
        ("kubelet_volume_stats_capacity_bytes", {**base, "persistentvolumeclaim": pvc}, disk),
        ("container_network_receive_bytes_total", {**base, "pod": pod, "interface": "eth0"}, counters["rx"]),
        ("container_network_transmit_bytes_total", {**base, "pod": pod, "interface": "eth0"}, counters["tx"]),
        ("kafka_server_replicamanager_underreplicatedpartitions",
         {**base, "strimzi_io_cluster": name, "pod": pod}, float(b.get("under_replicated", 0))),
        ("kafka_server_replicamanager_underminisrpartitioncount",
         {**base, "strimzi_io_cluster": name, "pod": pod}, float(b.get("under_min_isr", 0))),
        ("kafka_controller_kafkacontroller_offlinepartitionscount",
         {**base, "strimzi_io_cluster": name, "pod": pod}, float(b.get("offline", 0))),
    ]
    return out


TYPES = {
    "container_cpu_usage_seconds_total": ("counter", "Cumulative cpu time consumed in seconds."),
    "kube_pod_container_resource_limits": ("gauge", "The number of requested limit resource by a container."),
    "container_memory_working_set_bytes": ("gauge", "Current working set in bytes."),
    "kubelet_volume_stats_used_bytes": ("gauge", "Number of used bytes in the volume."),
    "kubelet_volume_stats_capacity_bytes": ("gauge", "Capacity in bytes of the volume."),
    "container_network_receive_bytes_total": ("counter", "Cumulative count of bytes received."),
    "container_network_transmit_bytes_total": ("counter", "Cumulative count of bytes transmitted."),
    "kafka_server_replicamanager_underreplicatedpartitions": ("gauge", "Under-replicated partitions."),
    "kafka_server_replicamanager_underminisrpartitioncount": ("gauge", "Partitions under min.insync.replicas."),
    "kafka_controller_kafkacontroller_offlinepartitionscount": ("gauge", "Partitions without a leader."),
}


def escape(v):
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def fmt_labels(labels):
    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels.items()) + "}"


def fmt_value(v):
    if float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v))


def read_state(path, with_writer=False):
    try:
        with open(path, encoding="utf-8") as f:
            st = json.load(f)
        out = float(st["time"]), dict(st["counters"])
        writer = st.get("writer", "exporter")
    except (OSError, ValueError, KeyError, TypeError):
        out, writer = (None, {}), None
    return (*out, writer) if with_writer else out


def write_state(path, t, counters, writer="exporter"):
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".state.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"time": t, "writer": writer, "counters": counters}, f, sort_keys=True)
    os.replace(tmp, path)
