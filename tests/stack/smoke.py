#!/usr/bin/env python3
"""Smoke checks of a running test stack (scripts/stack.sh up), with the Python standard library.

    python3 tests/stack/smoke.py [--stack-dir .stack]

Checks Prometheus (live and backfilled history of the agent's queries), the exporter (values
file re-read per scrape), tansu (TCP and a Kafka ApiVersions exchange), and the Kubernetes
emulator (discovery, selectors, NotFound, patches, server-side apply, status and scale
subresources, PUT conflicts, watch, delete, CA secrets, reset). Leaves the emulator reset to its
fixtures and the values file as it found it. Prints one line per check and
'N passed, N failed' at the end; exit 1 if any failed.
"""
import argparse
import base64
import json
import os
import queue
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

RESULTS = []


def check(name, cond, detail=""):
    RESULTS.append(bool(cond))
    print(f"{'ok  ' if cond else 'FAIL'} {name}{': ' + str(detail) if detail != '' else ''}", flush=True)
    return cond


def http(method, url, body=None, ctype="application/json", timeout=10):
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw.strip().startswith((b"{", b"[")) else raw.decode()
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode()


def read_env(stack_dir):
    env = {}
    with open(os.path.join(stack_dir, "env"), encoding="utf-8") as f:
        for line in f:
            if "=" in line and not line.startswith("#"):
                k, v = line.rstrip("\n").split("=", 1)
                env[k] = v
    return env


# ------------------------------------------------------------------------------------------------

def prom_query(prom, q):
    code, body = http("GET", f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": q}))
    if code != 200 or body.get("status") != "success":
        return None
    return {r["metric"].get("pod", r["metric"].get("persistentvolumeclaim", "")): float(r["value"][1])
            for r in body["data"]["result"]}


def near(values, want, tol, n=3):
    return values is not None and len(values) == n and all(abs(v - want) <= tol for v in values.values())


def check_prometheus(env):
    prom = env["AUTOPILOT_TEST_PROMETHEUS_URL"]
    sel = 'namespace="kafka",container="kafka"'
    cpu = (f'sum by (pod) (rate(container_cpu_usage_seconds_total{{{sel}}}[1m])) / '
           f'sum by (pod) (kube_pod_container_resource_limits{{{sel},resource="cpu"}})')
    mem = (f'sum by (pod) (container_memory_working_set_bytes{{{sel}}}) / '
           f'sum by (pod) (kube_pod_container_resource_limits{{{sel},resource="memory"}})')
    disk = ('sum by (persistentvolumeclaim) (kubelet_volume_stats_used_bytes{namespace="kafka"}) / '
            'sum by (persistentvolumeclaim) (kubelet_volume_stats_capacity_bytes{namespace="kafka"})')
    net = ('sum by (pod) (rate(container_network_receive_bytes_total{namespace="kafka",interface="eth0"}[1m]) + '
           'rate(container_network_transmit_bytes_total{namespace="kafka",interface="eth0"}[1m])) / 1250000000')
    urp = 'sum by (pod) (kafka_server_replicamanager_underreplicatedpartitions{namespace="kafka",strimzi_io_cluster="prod-kafka-01"})'
    r = prom_query(prom, cpu)
    check("prometheus: cpu ratio now ~0.8 for 3 pods", near(r, 0.8, 0.01), r)
    r = prom_query(prom, f"min_over_time(({cpu})[10m:15s])")
    check("prometheus: min_over_time(cpu[10m:15s]) ~0.8 (history is there)", near(r, 0.8, 0.01), r)
    r = prom_query(prom, f"avg_over_time(({cpu})[10m:15s])")
    check("prometheus: avg_over_time(cpu[10m:15s]) ~0.8", near(r, 0.8, 0.01), r)
    r = prom_query(prom, f"count_over_time(({cpu})[10m:15s])")
    check("prometheus: the 10m subquery has 40 points per pod (no gap)", near(r, 40, 1), r)
    r = prom_query(prom, mem)
    check("prometheus: memory ratio 0.85", near(r, 0.85, 0.001), r)
    r = prom_query(prom, f"min_over_time(({mem})[10m:15s])")
    check("prometheus: min_over_time(memory[10m:15s]) 0.85", near(r, 0.85, 0.001), r)
    r = prom_query(prom, disk)
    check("prometheus: disk ratio 0.3", near(r, 0.3, 0.001), r)
    r = prom_query(prom, net)
    check("prometheus: network ratio ~0.2", near(r, 0.2, 0.01), r)
    r = prom_query(prom, f"min_over_time(({net})[10m:15s])")
    check("prometheus: min_over_time(network[10m:15s]) ~0.2", near(r, 0.2, 0.01), r)
    r = prom_query(prom, urp)
    check("prometheus: under-replicated partitions 0", near(r, 0, 0), r)
    code, body = http("GET", f"{prom}/api/v1/targets")
    t = body["data"]["activeTargets"] if code == 200 else []
    jobs = {x["labels"]["job"]: x for x in t}
    check("prometheus: two targets: the exporter (up) and the agent's port (job autopilot-agent)",
          len(t) == 2 and jobs.get("autopilot-test-exporter", {}).get("health") == "up"
          and jobs.get("autopilot-agent", {}).get("scrapeUrl", "").endswith(
              env["AUTOPILOT_TEST_ALERTMANAGER_WEBHOOK_URL"].split("/api/")[0].split("//")[1] + "/metrics"),
          [(x["labels"], x["health"]) for x in t])
    code, body = http("GET", f"{prom}/api/v1/alertmanagers")
    am = body["data"]["activeAlertmanagers"] if code == 200 else []
    check("prometheus: sends alerts to the local alertmanager",
          [a["url"] for a in am] == [env["AUTOPILOT_TEST_ALERTMANAGER_URL"] + "/api/v2/alerts"], am)


def check_exporter(env):
    url = env["AUTOPILOT_TEST_EXPORTER_URL"] + "/metrics"
    path = env["AUTOPILOT_TEST_EXPORTER_VALUES"]
    with open(path, encoding="utf-8") as f:
        original = f.read()
    try:
        doc = json.loads(original)
        doc["clusters"][0]["brokers"]["1"]["memory"] = 0.5
        doc["clusters"][0]["brokers"]["2"]["down"] = True
        with open(path, "w", encoding="utf-8") as f:
            json.dump(doc, f)
        _, text = http("GET", url)
        want = 'container_memory_working_set_bytes{namespace="kafka",pod="prod-kafka-01-brokers-1",container="kafka"} 8589934592'
        check("exporter: values file re-read on scrape (memory 0.5)", want in text)
        check("exporter: a broker with down: true exports nothing", "prod-kafka-01-brokers-2" not in text)
    finally:
        with open(path, "w", encoding="utf-8") as f:
            f.write(original)
    _, text = http("GET", url)
    check("exporter: back to the original values", "prod-kafka-01-brokers-2" in text)


def check_kafka(env):
    host, port = env["AUTOPILOT_TEST_KAFKA_BOOTSTRAP"].rsplit(":", 1)
    try:
        s = socket.create_connection((host, int(port)), timeout=5)
    except OSError as e:
        check("tansu: TCP connect", False, e)
        return
    check("tansu: TCP connect", True, f"{host}:{port}")
    # ApiVersions v0: size, api_key 18, api_version 0, correlation id, client id.
    client = b"smoke"
    req = struct.pack(">hhih", 18, 0, 7, len(client)) + client
    s.sendall(struct.pack(">i", len(req)) + req)
    s.settimeout(5)
    buf = b""
    while len(buf) < 4 or len(buf) < 4 + struct.unpack(">i", buf[:4])[0]:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    s.close()
    corr, err, n = struct.unpack(">ihi", buf[4:14])
    apis = {}
    for i in range(n):
        k, lo, hi = struct.unpack(">hhh", buf[14 + 6 * i:20 + 6 * i])
        apis[k] = (lo, hi)
    check("tansu: ApiVersions answered", corr == 7 and err == 0 and n > 0, f"{n} APIs advertised")
    names = {0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata", 19: "CreateTopics", 32: "DescribeConfigs",
             33: "AlterConfigs", 37: "CreatePartitions", 43: "ElectLeaders", 44: "IncrementalAlterConfigs",
             45: "AlterPartitionReassignments", 46: "ListPartitionReassignments", 35: "DescribeLogDirs",
             60: "DescribeCluster", 21: "DeleteRecords"}
    print("     advertised: " + ", ".join(f"{names[k]}({k})" for k in sorted(names) if k in apis))
    print("     not advertised: " + (", ".join(f"{names[k]}({k})" for k in sorted(names) if k not in apis) or "-"))


# ------------------------------------------------------------------------------------------------

class Watch:
    """A watch stream read in a thread; events land in a queue."""

    def __init__(self, url):
        self.q = queue.Queue()
        self.resp = urllib.request.urlopen(url, timeout=30)
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        try:
            for line in self.resp:
                if line.strip():
                    self.q.put(json.loads(line))
        except Exception as e:  # closed
            self.q.put({"type": "CLOSED", "error": str(e)})

    def next(self, timeout=5):
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self):
        try:
            self.resp.close()
        except Exception:
            pass


def not_after_days(pem):
    with tempfile.NamedTemporaryFile("wb", suffix=".pem", delete=False) as f:
        f.write(pem)
        name = f.name
    try:
        out = subprocess.run(["openssl", "x509", "-in", name, "-noout", "-enddate", "-subject"],
                             capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(name)
    end = out.split("notAfter=")[1].split("\n")[0].strip()
    t = time.mktime(time.strptime(end, "%b %d %H:%M:%S %Y GMT")) - time.timezone
    return (t - time.time()) / 86400, out.strip().replace("\n", "; ")


def check_kube(env):
    kube = env["AUTOPILOT_TEST_KUBE_URL"]
    ns = f"{kube}/api/v1/namespaces/kafka"
    knp = f"{kube}/apis/kafka.strimzi.io/v1beta2/namespaces/kafka/kafkanodepools"
    apo = f"{kube}/apis/autopilot.kafka.io/v1alpha1/namespaces/kafka/autopilotoperations"
    code, body = http("POST", f"{kube}/_test/reset")
    check("kube: POST /_test/reset", code == 200 and body.get("objects") == 15, body.get("message"))

    # Discovery
    _, body = http("GET", f"{kube}/api")
    check("kube: GET /api", body.get("kind") == "APIVersions" and body.get("versions") == ["v1"], body)
    _, body = http("GET", f"{kube}/api/v1")
    names = [r["name"] for r in body.get("resources", [])]
    check("kube: GET /api/v1 groupVersion v1", body.get("groupVersion") == "v1" and "pods" in names, body.get("groupVersion"))
    _, body = http("GET", f"{kube}/apis")
    groups = sorted(g["name"] for g in body.get("groups", []))
    check("kube: GET /apis lists the groups", {"coordination.k8s.io", "events.k8s.io", "kafka.strimzi.io",
                                               "autopilot.kafka.io"} <= set(groups), groups)
    _, body = http("GET", f"{kube}/apis/autopilot.kafka.io/v1alpha1")
    names = [r["name"] for r in body.get("resources", [])]
    check("kube: GET /apis/autopilot.kafka.io/v1alpha1", body.get("groupVersion") == "autopilot.kafka.io/v1alpha1"
          and "autopilotoperations" in names and "autopilotoperations/status" in names, names)

    # Lists and selectors
    def pods(q=""):
        code, body = http("GET", f"{ns}/pods{q}")
        return code, body, sorted(p["metadata"]["name"] for p in body.get("items", []))
    code, body, names = pods("?" + urllib.parse.urlencode({"labelSelector": "strimzi.io/cluster=prod-kafka-01,strimzi.io/pool-name=brokers"}))
    check("kube: list pods, labelSelector matches 3", code == 200 and len(names) == 3 and body["metadata"].get("resourceVersion"), names)
    _, _, names = pods("?" + urllib.parse.urlencode({"labelSelector": "strimzi.io/pool-name=controllers"}))
    check("kube: list pods, labelSelector filters out all", names == [], names)
    _, _, names = pods("?" + urllib.parse.urlencode({"labelSelector": "strimzi.io/pool-name in (brokers),!nope,strimzi.io/kind!=Other"}))
    check("kube: set-based and negative selectors", len(names) == 3, names)
    _, _, names = pods("?" + urllib.parse.urlencode({"fieldSelector": "metadata.name=prod-kafka-01-brokers-1"}))
    check("kube: fieldSelector metadata.name", names == ["prod-kafka-01-brokers-1"], names)
    _, body = http("GET", f"{ns}/pods/prod-kafka-01-brokers-0")
    m = body["metadata"]
    check("kube: objects carry uid, creationTimestamp, generation, resourceVersion",
          all(m.get(k) for k in ("uid", "creationTimestamp", "generation", "resourceVersion")), {k: m.get(k) for k in ("uid", "resourceVersion")})
    check("kube: pod fixture shape", body["spec"]["containers"][0]["name"] == "kafka" and body["status"]["phase"] == "Running"
          and body["status"]["containerStatuses"][0]["restartCount"] == 0
          and body["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "data-0-prod-kafka-01-brokers-0", "")
    _, body = http("GET", f"{ns}/persistentvolumeclaims/data-0-prod-kafka-01-brokers-2")
    check("kube: PVC Bound 100Gi", body.get("status", {}).get("phase") == "Bound"
          and body["status"]["capacity"]["storage"] == "100Gi", body.get("status"))

    # NotFound
    code, body = http("GET", f"{ns}/pods/nope")
    check("kube: GET missing -> 404 Status NotFound", code == 404 and body.get("kind") == "Status"
          and body.get("reason") == "NotFound" and body.get("code") == 404 and body.get("status") == "Failure", body)
    code, body = http("GET", f"{apo}/nope")
    check("kube: GET missing custom resource -> NotFound", code == 404 and body.get("reason") == "NotFound", body.get("message"))

    # Merge patch, JSON patch, generation
    code, body = http("PATCH", f"{knp}/brokers", {"spec": {"replicas": 5}}, "application/merge-patch+json")
    check("kube: merge-patch KafkaNodePool spec.replicas=5", code == 200 and body["spec"]["replicas"] == 5, code)
    _, body = http("GET", f"{knp}/brokers")
    check("kube: read back spec.replicas 5, generation 2", body["spec"]["replicas"] == 5 and body["metadata"]["generation"] == 2
          and body["spec"]["roles"] == ["broker"], body["metadata"]["generation"])
    code, body = http("PATCH", f"{knp}/brokers", [{"op": "test", "path": "/spec/replicas", "value": 5},
                                                  {"op": "replace", "path": "/spec/replicas", "value": 4}],
                      "application/json-patch+json")
    check("kube: JSON patch (test + replace) -> 4", code == 200 and body["spec"]["replicas"] == 4, code)
    code, body = http("PATCH", f"{knp}/brokers", [{"op": "test", "path": "/spec/replicas", "value": 99}],
                      "application/json-patch+json")
    check("kube: JSON patch failed test -> 422", code == 422, body.get("reason"))
    code, body = http("GET", f"{knp}/brokers/scale")
    check("kube: kafkanodepools/scale reads spec.replicas", code == 200 and body.get("kind") == "Scale"
          and body["spec"]["replicas"] == 4 and body["status"]["replicas"] == 3, body.get("spec"))

    # PUT replace and conflicts
    _, cur = http("GET", f"{knp}/brokers")
    stale = json.loads(json.dumps(cur))
    stale["metadata"]["resourceVersion"] = str(int(cur["metadata"]["resourceVersion"]) - 1)
    stale["spec"]["replicas"] = 7
    code, body = http("PUT", f"{knp}/brokers", stale)
    check("kube: PUT with stale resourceVersion -> 409 Conflict", code == 409 and body.get("reason") == "Conflict", body.get("message"))
    cur["spec"]["replicas"] = 6
    code, body = http("PUT", f"{knp}/brokers", cur)
    check("kube: PUT with current resourceVersion -> 200", code == 200 and body["spec"]["replicas"] == 6
          and int(body["metadata"]["resourceVersion"]) > int(cur["metadata"]["resourceVersion"]), code)
    code, body = http("POST", f"{knp}", {"apiVersion": "kafka.strimzi.io/v1beta2", "kind": "KafkaNodePool",
                                        "metadata": {"name": "brokers"}, "spec": {"replicas": 1}})
    check("kube: create existing -> 409 AlreadyExists", code == 409 and body.get("reason") == "AlreadyExists", body.get("message"))

    # Server-side apply creates, then updates; status subresource
    op = {"apiVersion": "autopilot.kafka.io/v1alpha1", "kind": "AutopilotOperation",
          "metadata": {"name": "scale-up-1", "labels": {"autopilot.kafka.io/cluster": "prod-kafka-01"}},
          "spec": {"cluster": "prod-kafka-01", "action": "scale-up", "fromBrokers": 3, "toBrokers": 5},
          "status": {"phase": "Ignored"}}
    code, body = http("PATCH", f"{apo}/scale-up-1?fieldManager=autopilot&force=true", op, "application/apply-patch+yaml")
    check("kube: server-side apply creates a new AutopilotOperation (201)", code == 201 and body["spec"]["toBrokers"] == 5
          and "status" not in body and body["metadata"].get("uid"), code)
    code, body = http("PATCH", f"{apo}/scale-up-1?fieldManager=autopilot",
                      {**op, "spec": {"cluster": "prod-kafka-01", "action": "scale-up", "fromBrokers": 3}},
                      "application/apply-patch+yaml")
    check("kube: apply again without a field removes it (field ownership)", code == 200 and "toBrokers" not in body["spec"], body.get("spec"))
    code, body = http("PATCH", f"{apo}/scale-up-1/status", {"status": {"phase": "Running", "step": "add-brokers"}},
                      "application/merge-patch+json")
    check("kube: merge-patch .../status updates .status", code == 200 and body["status"]["phase"] == "Running", body.get("status"))
    gen = body["metadata"]["generation"]
    code, body = http("PATCH", f"{apo}/scale-up-1/status?fieldManager=autopilot",
                      {"apiVersion": "autopilot.kafka.io/v1alpha1", "kind": "AutopilotOperation",
                       "metadata": {"name": "scale-up-1"}, "status": {"phase": "Succeeded"}}, "application/apply-patch+yaml")
    check("kube: apply on .../status", code == 200 and body["status"]["phase"] == "Succeeded"
          and body["metadata"]["generation"] == gen, body.get("status"))
    code, body = http("PATCH", f"{apo}/scale-up-1", {"status": {"phase": "Hacked"}, "spec": {"note": "x"}},
                      "application/merge-patch+json")
    check("kube: the main endpoint ignores .status changes", body["status"]["phase"] == "Succeeded"
          and body["spec"]["note"] == "x", body.get("status"))
    code, body = http("GET", f"{apo}?labelSelector=" + urllib.parse.quote("autopilot.kafka.io/cluster=prod-kafka-01"))
    check("kube: list AutopilotOperations by label", len(body.get("items", [])) == 1, len(body.get("items", [])))

    # Watch
    _, lst = http("GET", knp)
    w = Watch(f"{knp}?watch=true&resourceVersion={lst['metadata']['resourceVersion']}&timeoutSeconds=20")
    time.sleep(0.3)
    http("PATCH", f"{knp}/brokers", {"spec": {"replicas": 8}}, "application/merge-patch+json")
    ev = w.next()
    check("kube: watch from resourceVersion yields MODIFIED after a patch", ev is not None and ev["type"] == "MODIFIED"
          and ev["object"]["spec"]["replicas"] == 8, ev and (ev["type"], ev["object"]["metadata"]["resourceVersion"]))
    w.close()
    w = Watch(f"{ns}/pods?watch=true&labelSelector=" + urllib.parse.quote("strimzi.io/pool-name=brokers") + "&timeoutSeconds=20")
    added = [w.next() for _ in range(3)]
    check("kube: watch without resourceVersion starts with ADDED for each object",
          [e and e["type"] for e in added] == ["ADDED"] * 3, [e and e["object"]["metadata"]["name"] for e in added])
    code, body = http("DELETE", f"{ns}/pods/prod-kafka-01-brokers-2")
    check("kube: delete pod returns the object", code == 200 and body["metadata"]["name"] == "prod-kafka-01-brokers-2", code)
    ev = w.next()
    check("kube: watch sees DELETED", ev is not None and ev["type"] == "DELETED", ev and ev["type"])
    w.close()
    code, body = http("GET", f"{ns}/pods/prod-kafka-01-brokers-2")
    check("kube: the deleted pod is gone", code == 404 and body.get("reason") == "NotFound", code)

    # Strimzi-shaped fixtures
    _, k = http("GET", f"{kube}/apis/kafka.strimzi.io/v1beta2/namespaces/kafka/kafkas/prod-kafka-01")
    check("kube: Kafka prod-kafka-01 Ready, 3.9.0, node pools + KRaft",
          k["spec"]["kafka"]["version"] == "3.9.0" and k["status"]["kafkaVersion"] == "3.9.0"
          and {"type": "Ready", "status": "True"}.items() <= k["status"]["conditions"][0].items()
          and k["metadata"]["annotations"] == {"strimzi.io/node-pools": "enabled", "strimzi.io/kraft": "enabled"}, "")
    for name, days in (("prod-kafka-01-cluster-ca-cert", 200), ("prod-kafka-01-clients-ca-cert", 20)):
        _, s = http("GET", f"{ns}/secrets/{name}")
        pem = base64.b64decode(s["data"]["ca.crt"])
        left, info = not_after_days(pem)
        check(f"kube: {name} holds a real CA certificate valid ~{days} days", pem.startswith(b"-----BEGIN CERTIFICATE-----")
              and days - 2 < left <= days + 0.01 and s["metadata"]["annotations"]["strimzi.io/ca-cert-generation"] == "0",
              f"{left:.2f} days; {info}")

    code, body = http("POST", f"{kube}/_test/reset")
    _, _, names = pods()
    _, b = http("GET", f"{knp}/brokers")
    code2, _ = http("GET", f"{apo}/scale-up-1")
    check("kube: reset restores the fixtures", len(names) == 3 and b["spec"]["replicas"] == 3 and code2 == 404, names)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stack-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".stack"))
    args = ap.parse_args()
    env = read_env(args.stack_dir)
    check_prometheus(env)
    check_exporter(env)
    check_kafka(env)
    check_kube(env)
    passed = sum(RESULTS)
    print(f"{passed} passed, {len(RESULTS) - passed} failed")
    return 0 if passed == len(RESULTS) else 1


if __name__ == "__main__":
    sys.exit(main())
