#!/usr/bin/env python3
"""Checks of the Helm chart helm/kafka-autopilot, run by tests/helm.rs with the stack's venv.

Helm's own Go code (helm-python-sdk: lint, schema validation, rendering), Kubernetes' schemas
(kubernetes-validate --strict) and the agent itself (`autopilot check-config`) judge the chart:

  check_chart.py --binary target/debug/autopilot --part core
      lint; the schema against bad values; renders of several value sets validated as Kubernetes
      objects; RBAC exactly as derived from the agent's code; the security context, mounts,
      probes and checksum; PrometheusRule, dashboards, NetworkPolicy, PDB; the chart's copies
      of rules/, policies/ and the CRD up to date; the schema in step with agent/config.rs;
      check-config on every render that uses no API-security key.
  check_chart.py --binary ... --part api-security
      check-config on renders that use the API's auth, TLS, mTLS, rate limit, Alertmanager
      labels and backups keys.

Prints one line per check and exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "kafka-autopilot"
RELEASE, NAMESPACE = "kafka-autopilot", "kafka-autopilot"
KUBE_VERSION = "1.33"  # k8s-openapi's feature in Cargo.toml

try:
    import helm_python as helm
    import kubernetes_validate
    import yaml
except ImportError as e:  # the Rust test turns this into its own message too
    print(f"missing Python package ({e}): run scripts/stack.sh up", file=sys.stderr)
    sys.exit(3)


class Failed(Exception):
    pass


def check(cond: bool, message: str) -> None:
    if not cond:
        raise Failed(message)


# ---------------------------------------------------------------------------------------------
# Value sets

SECRET_SUFFIXES = ("-cluster-ca-cert", "-clients-ca-cert")


def cluster(name, namespace, *, kafka=None, pool="brokers", backend="real", port=9092, prom="http://prometheus.monitoring.svc:9090"):
    c = {"name": name, "namespace": namespace, "node_pool": pool, "backend": backend}
    if kafka:
        c["kafka"] = kafka
    if backend == "real":
        c["bootstrap_servers"] = [f"{kafka or name}-kafka-bootstrap.{namespace}.svc:{port}"]
        c["prometheus"] = {"url": prom}
    return c


def value_sets() -> dict[str, dict]:
    """Named value sets (overrides of values.yaml). Those under api-security use keys the agent
    gained with its API security work."""
    several = {
        "config": {
            "region": "us-east-2",
            "clusters": [
                cluster("orders", "kafka-a", kafka="orders-kafka", pool="pool-a", port=9093),
                cluster("payments", "kafka-a", pool="brokers"),
                cluster("logs", "kafka-b", pool="big", prom="https://thanos.example.org"),
                cluster("sandbox", "sandbox", backend="simulated"),
            ],
            "notifications": [{"name": "ops", "url": "https://hooks.example.org/T0/B0/x", "kinds": ["scale_brokers", "notify"]}],
        },
    }
    return {
        "core": {
            "defaults": {},
            "monitoring": {"serviceMonitor": {"enabled": True, "labels": {"release": "kps"}},
                           "prometheusRule": {"enabled": True}, "dashboards": {"folder": "Kafka"}},
            "cluster-wide": {"rbac": {"clusterWide": True}, **copy.deepcopy(several)},
            "several-namespaces": {**copy.deepcopy(several), "rbac": {"namespaces": ["kafka-a", "kafka-b", "kafka-c"]},
                                   "podAntiAffinity": "hard"},
            "single-file-journal": {"replicas": 1, "leaderElection": {"enabled": False}, "journal": {"type": "file"},
                                    "auditLog": {"enabled": True}, "networkPolicy": {"enabled": False},
                                    "podDisruptionBudget": {"enabled": False},
                                    "config": {"dry_run": False, "limits": {"default_cooldown": "20m",
                                                                            "replication_throttle": False}}},
        },
        "api-security": {
            "auth-mtls": {
                "api": {
                    "auth": {"jwt": {"enabled": True, "algorithm": "ES256", "secretName": "autopilot-jwt",
                                     "issuer": "https://issuer.example.org", "audience": "kafka-autopilot",
                                     "rolesClaim": "groups"},
                             "webhookToken": {"enabled": True, "secretName": "autopilot-webhook"}},
                    "tls": {"enabled": True, "secretName": "autopilot-tls",
                            "clientCA": {"enabled": True, "secretName": "autopilot-client-ca"}},
                    "rateLimit": {"enabled": True, "perSecond": 5, "burst": 10},
                },
                "config": {"alertmanager": {"cluster_labels": ["cluster", "namespace"]}},
                "serviceMonitor": {"enabled": True, "tlsConfig": {"insecureSkipVerify": False}},
            },
            "tls-hs256": {
                "api": {"auth": {"jwt": {"enabled": True, "algorithm": "HS256", "secretName": "autopilot-jwt",
                                         "secretKey": "hmac"}},
                        "tls": {"enabled": True, "secretName": "autopilot-tls"}},
            },
            "backups": {"backups": {"enabled": True, "existingClaim": "autopilot-backups", "concurrency": 3,
                                    "idleTimeout": "45s"}},
        },
    }


# ---------------------------------------------------------------------------------------------
# Rendering

class Render:
    def __init__(self, chart, overrides: dict, chart_dir: Path = CHART):
        self.overrides = overrides
        self.values = chart.merge_values(overrides)
        out = chart.render(overrides, name=RELEASE, namespace=NAMESPACE, is_install=True)
        self.files = out
        self.notes = next((t for k, t in out.items() if k.endswith("NOTES.txt")), "")
        self.docs = []
        for path, text in sorted(out.items()):
            if not path.endswith((".yaml", ".yml")):
                continue
            for d in yaml.safe_load_all(text):
                if d:
                    d["__template"] = path
                    self.docs.append(d)

    def of(self, kind):
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind, name=None):
        found = [d for d in self.of(kind) if name is None or d["metadata"]["name"] == name]
        check(len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}")
        return found[0]

    def config_text(self):
        return self.one("ConfigMap", f"{RELEASE}-config")["data"]["config.yaml"]

    def config(self):
        return yaml.safe_load(self.config_text())

    def deployment(self):
        return self.one("Deployment")


def chart_files(chart, directory: str, suffix: str = "") -> dict[str, str]:
    """The files of a directory of the chart as Helm loaded them (a snapshot: other people may be
    editing the working tree meanwhile), by base name."""
    return {f["name"][len(directory) + 1:]: f["data"] for f in chart.files
            if f["name"].startswith(directory + "/") and "/" not in f["name"][len(directory) + 1:]
            and f["name"].endswith(suffix)}


def strip(doc):
    return {k: v for k, v in doc.items() if k != "__template"}


# ---------------------------------------------------------------------------------------------
# Expected RBAC, derived from the agent's code (see the comments in templates/rbac.yaml)

def expected_own_rules(values):
    rules = []
    if values["leaderElection"]["enabled"]:
        lease = values["leaderElection"]["lease"] or f"kafka-autopilot-{values['config']['region']}"
        rules += [("coordination.k8s.io", "leases", (), ("create",)),
                  ("coordination.k8s.io", "leases", (lease,), ("get", "update"))]
    if values["journal"]["type"] == "kubernetes":
        rules += [("autopilot.kafka.io", "autopilotoperations", (), ("create", "delete", "get", "list", "patch")),
                  ("autopilot.kafka.io", "autopilotoperations/status", (), ("patch",))]
    return sorted(rules)


def expected_strimzi_rules(clusters):
    real = [c for c in clusters if c["backend"] == "real"]
    kafkas = sorted({c.get("kafka") or c["name"] for c in real})
    pools = sorted({c["node_pool"] for c in real})
    rules = [("", "pods", (), ("delete", "get", "list")),
             ("", "persistentvolumeclaims", (), ("delete", "list")),
             ("events.k8s.io", "events", (), ("create", "patch"))]
    if real:
        rules += [("kafka.strimzi.io", "kafkas", tuple(kafkas), ("get",)),
                  ("kafka.strimzi.io", "kafkanodepools", tuple(pools), ("get", "patch")),
                  ("", "secrets", tuple(sorted(k + s for k in kafkas for s in SECRET_SUFFIXES)), ("get", "patch"))]
    return sorted(rules)


def rule_tuples(role):
    out = []
    for r in role.get("rules") or []:
        check(set(r) <= {"apiGroups", "resources", "resourceNames", "verbs"}, f"unexpected rule fields {r}")
        check(len(r["apiGroups"]) == 1 and len(r["resources"]) == 1, f"one group and resource per rule: {r}")
        for field in ("apiGroups", "resources", "resourceNames", "verbs"):
            check("*" not in json.dumps(r.get(field, [])), f"wildcard in {role['kind']} {role['metadata']['name']}: {r}")
        out.append((r["apiGroups"][0], r["resources"][0], tuple(sorted(r.get("resourceNames", []))), tuple(sorted(r["verbs"]))))
    return sorted(out)


def agent_kubernetes_resources():
    """The Kubernetes resources the agent's code uses: Api<T> types, Strimzi resources by plural,
    its journal CRD, and the Event recorder."""
    kinds = {"Pod": "pods", "PersistentVolumeClaim": "persistentvolumeclaims", "Secret": "secrets",
             "Lease": "leases", "DynamicObject": None}
    used = set()
    for path in (REPO / "agent").rglob("*.rs"):
        text = path.read_text()
        text = text.split("#[cfg(test)]")[0]
        for kind in re.findall(r"\bApi<(\w+)>", text):
            check(kind in kinds, f"{path.relative_to(REPO)} uses Api<{kind}>: give the chart's RBAC a rule for it "
                                 "and add it to tests/helm/check_chart.py")
            if kinds[kind]:
                used.add(kinds[kind])
        used.update(p for _, p in re.findall(r'strimzi\("(\w+)", "(\w+)"\)', text))
        if "Recorder::new" in text:
            used.add("events")
        if "Api::namespaced_with" in text and 'PLURAL: &str = "' in text:
            used.add(re.search(r'PLURAL: &str = "(\w+)"', text).group(1))
    return used


# ---------------------------------------------------------------------------------------------
# Checks

class Checker:
    def __init__(self, binary: Path):
        self.binary = binary
        self.results: list[tuple[str, bool, str]] = []
        self.chart = helm.Chart.load(str(CHART))
        self.renders: dict[str, Render] = {}
        self.tmp = Path(tempfile.mkdtemp(prefix="helm-check-"))

    def run(self, name, fn, *args):
        try:
            fn(*args)
            self.results.append((name, True, ""))
            print(f"ok    {name}", flush=True)
        except Failed as e:
            self.results.append((name, False, str(e)))
            print(f"FAIL  {name}: {e}", flush=True)
        except Exception as e:  # a crash is a failure with its traceback
            self.results.append((name, False, f"{type(e).__name__}: {e}"))
            print(f"FAIL  {name}: {type(e).__name__}: {e}", flush=True)
            traceback.print_exc()

    def render(self, name, overrides):
        if name not in self.renders:
            self.renders[name] = Render(self.chart, overrides)
        return self.renders[name]

    # --- repository copies ---------------------------------------------------------------

    def sync_is_current(self):
        r = subprocess.run([str(REPO / "scripts" / "sync-chart.sh"), "--check"], capture_output=True, text=True)
        check(r.returncode == 0, f"run scripts/sync-chart.sh: {r.stderr.strip()}")
        # And independently of the script: each source file has its identical copy, and no other.
        pairs = [(sorted(p for p in (REPO / "rules").glob("*.yaml") if not p.name.endswith(("_test.yaml", ".test.yaml"))),
                  CHART / "files" / "rules"),
                 (sorted(list((REPO / "policies").glob("*.rego")) + [REPO / "policies" / "data.yaml"]),
                  CHART / "files" / "policies"),
                 (sorted((REPO / "deploy" / "crds").glob("*.yaml")), CHART / "crds")]
        for sources, dest in pairs:
            have = sorted(p.name for p in dest.glob("*")) if dest.is_dir() else []
            check(have == [p.name for p in sources], f"{dest.relative_to(REPO)} holds {have}, its sources are "
                                                     f"{[p.name for p in sources]}: run scripts/sync-chart.sh")
            for p in sources:
                check((dest / p.name).read_bytes() == p.read_bytes(),
                      f"{dest.relative_to(REPO)}/{p.name} differs from {p.relative_to(REPO)}: run scripts/sync-chart.sh")
        version = re.search(r'^version\s*=\s*"([^"]+)"', (REPO / "Cargo.toml").read_text(), re.M).group(1)
        check(self.chart.metadata.get("appVersion") == version,
              f"Chart.yaml appVersion {self.chart.metadata.get('appVersion')} is not Cargo.toml's {version}: run scripts/sync-chart.sh")
        check(self.chart.metadata.get("apiVersion") == "v2", "Chart.yaml apiVersion must be v2")

    # --- lint and schema -----------------------------------------------------------------

    def lint(self):
        for name, overrides in [("defaults", None)] + list(value_sets()["core"].items()):
            report = helm.lint(str(CHART), overrides, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}.0")
            bad = [m for m in report["messages"] if m["severity"] >= 2] + [{"error": e} for e in report["errors"]]
            check(not bad, f"helm lint ({name}): {bad}")

    def schema_rejects_bad_values(self):
        self.chart.validate_schema(self.chart.values)
        bad = {
            "a string for replicas": {"replicas": "2"},
            "an unknown top-level key": {"replicaCount": 2},
            "an unknown key in the agent config": {"config": {"regoin": "x"}},
            "a key the chart sets itself": {"config": {"journal_path": "/tmp/j.json"}},
            "an unknown key in a cluster": {"config": {"clusters": [dict(cluster("c", "kafka"), brokers=3)]}},
            "a bad JWT algorithm": {"api": {"auth": {"jwt": {"algorithm": "PS512"}}}},
            "a bad backend": {"config": {"clusters": [dict(cluster("c", "kafka"), backend="fake")]}},
            "a bad journal type": {"journal": {"type": "configmap"}},
            "a bad anti-affinity": {"podAntiAffinity": "strict"},
            "an unknown action kind in cooldowns": {"config": {"limits": {"cooldowns": {"scale": "1m"}}}},
            "a duration that is not one": {"config": {"interval": "soon"}},
            "a cluster name that is not a Kubernetes name": {"config": {"clusters": [cluster("Prod_Kafka", "kafka")]}},
            "zero replicas": {"replicas": 0},
            "a policy file with a bad name": {"policies": {"files": {"../x.rego": "package x"}}},
        }
        for what, overrides in bad.items():
            try:
                self.chart.validate_schema(self.chart.merge_values(overrides))
            except helm.HelmValuesError:
                pass
            else:
                raise Failed(f"values.schema.json accepts {what}: {overrides}")
            try:
                self.chart.render(overrides, name=RELEASE, namespace=NAMESPACE)
            except helm.HelmError:
                pass
            else:
                raise Failed(f"rendering accepts {what}")

    def template_refuses_bad_combinations(self):
        bad = {
            "two replicas without leader election": {"leaderElection": {"enabled": False}},
            "two replicas with a file journal": {"journal": {"type": "file"}},
            "JWT without its Secret": {"api": {"auth": {"jwt": {"enabled": True}}}},
            "mTLS without TLS": {"api": {"tls": {"clientCA": {"enabled": True, "secretName": "ca"}}}},
            "backups without a claim": {"backups": {"enabled": True}},
            "rbac.namespaces missing a cluster's namespace": {"rbac": {"namespaces": ["other"]}},
        }
        for what, overrides in bad.items():
            try:
                self.chart.render(overrides, name=RELEASE, namespace=NAMESPACE)
            except helm.HelmRenderError:
                pass
            else:
                raise Failed(f"the chart renders {what}")

    def schema_follows_agent_config(self):
        """values.schema.json's config mirrors agent/config.rs's Raw* structs (deny_unknown_fields):
        every key the schema allows is one the agent reads, and every key the agent reads is in
        the schema or set by the chart."""
        src = (REPO / "agent" / "config.rs").read_text()
        structs = {}
        for m in re.finditer(r"(?:pub )?struct (\w+) \{(.*?)\n\}", src, re.S):
            structs[m.group(1)] = set(re.findall(r"^\s+(?:pub )?(\w+):", m.group(2), re.M))
        schema = self.chart.schema
        cfg = schema["properties"]["config"]
        cl = cfg["properties"]["clusters"]["items"]
        chart_sets = {"RawConfig": {"api", "journal_path", "audit_log", "leader_election", "kubernetes_journal", "backups"},
                      "RawPolicy": {"dir"}}
        nodes = {"RawConfig": cfg, "RawPolicy": cfg["properties"]["policy"], "RawLimits": cfg["properties"]["limits"],
                 "RawWebhook": cfg["properties"]["notifications"]["items"],
                 "RawAlertmanager": cfg["properties"]["alertmanager"], "RawCluster": cl,
                 "RawPrometheus": cl["properties"]["prometheus"], "RawKafka": cl["properties"]["kafka_client"],
                 "RawKubernetes": cl["properties"]["kubernetes"]}
        for struct, node in nodes.items():
            check(struct in structs, f"agent/config.rs has no struct {struct} any more: update the chart")
            check(node.get("additionalProperties") is False, f"schema node for {struct} must set additionalProperties false")
            allowed = set(node["properties"])
            fields = structs[struct]
            check(allowed <= fields, f"the schema allows {sorted(allowed - fields)} under {struct}, which the agent rejects")
            missing = fields - allowed - chart_sets.get(struct, set())
            check(not missing, f"the agent reads {sorted(missing)} under {struct}: add them to values.schema.json "
                               "(and values.yaml/helm/README.md)")
        kinds = re.findall(r'=> "(\w+)"', re.search(r"action_kinds! \{(.*?)\n\}", (REPO / "agent" / "plan.rs").read_text(), re.S).group(1))
        check(cfg["properties"]["limits"]["properties"]["cooldowns"]["propertyNames"]["enum"] == kinds,
              f"limits.cooldowns kinds in the schema differ from agent/plan.rs: {kinds}")
        check(cfg["properties"]["notifications"]["items"]["properties"]["kinds"]["items"]["enum"] == kinds,
              f"notifications kinds in the schema differ from agent/plan.rs: {kinds}")
        # The keys the chart renders itself are keys of the agent's structs.
        full = self.render("auth-mtls", value_sets()["api-security"]["auth-mtls"]).config()
        full_b = self.render("backups", value_sets()["api-security"]["backups"]).config()
        for struct, got in [("RawApi", full["api"]), ("RawAuth", full["api"]["auth"]), ("JwtConfig", full["api"]["auth"]["jwt"]),
                            ("TlsConfig", full["api"]["tls"]), ("RateLimit", full["api"]["rate_limit"]),
                            ("RawLeaderElection", full["leader_election"]), ("RawKubernetesJournal", full["kubernetes_journal"]),
                            ("RawBackups", full_b["backups"])]:
            check(struct in structs, f"agent/config.rs has no struct {struct}: the chart renders it")
            check(set(got) <= structs[struct], f"the chart renders {sorted(set(got) - structs[struct])} under {struct}, "
                                               "which the agent rejects")
        for struct, got in [("RawApi", full["api"]), ("RawAuth", full["api"]["auth"]), ("JwtConfig", full["api"]["auth"]["jwt"]),
                            ("TlsConfig", full["api"]["tls"]), ("RateLimit", full["api"]["rate_limit"])]:
            check(set(got) == structs[struct], f"the agent reads {sorted(structs[struct] - set(got))} under {struct}, "
                                               "which the chart cannot set")

    # --- every render ----------------------------------------------------------------------

    def kubernetes_valid(self, name):
        r = self.renders[name]
        check(r.docs, "nothing rendered")
        unknown = []
        for d in r.docs + [yaml.safe_load(c["data"]) for c in self.chart.crds]:
            obj = strip(d)
            try:
                kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                unknown.append(f"{obj['kind']} {obj['apiVersion']}")
            except kubernetes_validate.ValidationError as e:
                path = "/".join(str(p) for p in e.path)
                raise Failed(f"{obj['kind']} {obj['metadata']['name']} ({d.get('__template')}): {path}: {e.message}")
        allowed = {"ServiceMonitor monitoring.coreos.com/v1", "PrometheusRule monitoring.coreos.com/v1"}
        check(set(unknown) <= allowed, f"no Kubernetes schema for {set(unknown) - allowed}")
        if unknown:
            print(f"      ({name}: custom resources not validated by schema: {sorted(set(unknown))})")
        # Every object is namespaced where it belongs, and names are unique per kind.
        seen = set()
        for d in r.docs:
            key = (d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"])
            check(key not in seen, f"duplicate {key}")
            seen.add(key)
            if d["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
                check(d["metadata"].get("namespace"), f"{d['kind']} {d['metadata']['name']} has no namespace")

    def rbac(self, name):
        r = self.renders[name]
        v = r.values
        sa = r.one("ServiceAccount")["metadata"]["name"]
        if expected_own_rules(v):
            own = r.one("Role", RELEASE)
            check(own["metadata"]["namespace"] == NAMESPACE, "the agent's Role is in the release namespace")
            check(rule_tuples(own) == expected_own_rules(v), f"own-namespace Role rules {rule_tuples(own)} != {expected_own_rules(v)}")
        else:
            check(not [x for x in r.of("Role") + r.of("RoleBinding") if x["metadata"]["name"] == RELEASE],
                  "no Role in the release namespace without leader election and the Kubernetes journal")
        clusters = v["config"]["clusters"]
        real_ns = sorted({c["namespace"] for c in clusters if c["backend"] == "real"})
        bindings = r.of("RoleBinding") + r.of("ClusterRoleBinding")
        for b in bindings:
            check(b["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}], f"binding subjects {b['subjects']}")
            role = next((x for x in r.of(b["roleRef"]["kind"]) if x["metadata"]["name"] == b["roleRef"]["name"]
                         and x["metadata"].get("namespace") == b["metadata"].get("namespace")), None)
            check(role is not None, f"{b['kind']} {b['metadata']['name']} binds a role that is not rendered")
        if v["rbac"]["clusterWide"]:
            check(len(r.of("Role")) == (1 if expected_own_rules(v) else 0), "clusterWide: only the agent's own Role is namespaced")
            cr = r.one("ClusterRole")
            check(rule_tuples(cr) == expected_strimzi_rules(clusters), f"ClusterRole rules {rule_tuples(cr)}")
            r.one("ClusterRoleBinding")
        else:
            check(not r.of("ClusterRole") and not r.of("ClusterRoleBinding"), "no cluster-scoped RBAC unless rbac.clusterWide")
            namespaces = sorted(v["rbac"]["namespaces"]) or real_ns
            kafka_roles = {x["metadata"]["namespace"]: x for x in r.of("Role") if x["metadata"]["name"] == f"{RELEASE}-kafka"}
            check(sorted(kafka_roles) == namespaces, f"Strimzi Roles in {sorted(kafka_roles)}, expected {namespaces}")
            for ns, role in kafka_roles.items():
                want = expected_strimzi_rules([c for c in clusters if c["namespace"] == ns])
                check(rule_tuples(role) == want, f"Role in {ns}: {rule_tuples(role)} != {want}")
                check(any(b["metadata"]["namespace"] == ns and b["roleRef"]["name"] == f"{RELEASE}-kafka" for b in r.of("RoleBinding")),
                      f"no RoleBinding in {ns}")
        # Every Kubernetes resource the agent's code uses is granted somewhere.
        granted = {t[1].split("/")[0] for role in r.of("Role") + r.of("ClusterRole") for t in rule_tuples(role)}
        needed = agent_kubernetes_resources()
        if not v["leaderElection"]["enabled"]:
            needed.discard("leases")
        if v["journal"]["type"] != "kubernetes":
            needed.discard("autopilotoperations")
        missing = needed - granted
        check(not missing, f"the agent uses {sorted(missing)} but no rule grants it")

    def deployment(self, name):
        r = self.renders[name]
        v = r.values
        d = r.deployment()
        spec = d["spec"]["template"]["spec"]
        check(d["spec"]["replicas"] == v["replicas"], "replicas")
        (c,) = spec["containers"]
        sc = c["securityContext"]
        for k, want in [("runAsNonRoot", True), ("readOnlyRootFilesystem", True), ("allowPrivilegeEscalation", False),
                        ("privileged", False)]:
            check(sc.get(k) == want, f"container securityContext.{k} must be {want}: {sc}")
        check(sc.get("capabilities", {}).get("drop") == ["ALL"] and not sc["capabilities"].get("add"), f"capabilities {sc.get('capabilities')}")
        check(sc.get("seccompProfile") == {"type": "RuntimeDefault"}, "seccompProfile RuntimeDefault")
        psc = spec["securityContext"]
        check(psc.get("runAsNonRoot") is True and psc.get("seccompProfile") == {"type": "RuntimeDefault"}, f"pod securityContext {psc}")
        check(isinstance(sc.get("runAsUser"), int) and sc["runAsUser"] > 0, "a non-root uid")
        check(c["args"] == ["run", "--config", "/etc/kafka-autopilot/config/config.yaml"], f"args {c['args']}")
        env = {e["name"]: e for e in c["env"]}
        check(env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name", "POD_NAME from the downward API")
        check(c["resources"].get("requests") and c["resources"].get("limits"), "resources")
        # Volumes: read-only config and policies (directory mounts), writable emptyDirs only where the agent writes.
        mounts = {m["name"]: m for m in c["volumeMounts"]}
        vols = {x["name"]: x for x in spec["volumes"]}
        check(all("subPath" not in m and "subPathExpr" not in m for m in mounts.values()), "no subPath mounts (hot reload)")
        check(mounts["policies"]["mountPath"] == "/etc/kafka-autopilot/policies" and mounts["policies"].get("readOnly"), "policies mount")
        check(vols["policies"]["configMap"]["name"] == f"{RELEASE}-policies", "policies ConfigMap volume")
        check(mounts["config"].get("readOnly") and vols["config"]["configMap"]["name"] == f"{RELEASE}-config", "config mount")
        writable = sorted(m["mountPath"] for m in mounts.values() if not m.get("readOnly"))
        want_writable = []
        cfg = r.config()
        if v["journal"]["type"] == "file":
            want_writable.append(os.path.dirname(cfg["journal_path"]))
            check("kubernetes_journal" not in cfg, "file journal")
        else:
            check(cfg["kubernetes_journal"] == {"namespace": NAMESPACE}, "the Kubernetes journal in the release namespace")
        if v["auditLog"]["enabled"]:
            want_writable.append(os.path.dirname(cfg["audit_log"]))
        if v["backups"]["enabled"]:
            want_writable.append(cfg["backups"]["dir"])
        check(writable == sorted(want_writable), f"writable mounts {writable}, the agent writes to {sorted(want_writable)}")
        for m in mounts.values():
            if not m.get("readOnly"):
                vol = vols[m["name"]]
                check("emptyDir" in vol or "persistentVolumeClaim" in vol, f"writable volume {m['name']} is {vol}")
        for vol in vols.values():
            if "secret" in vol:
                check(mounts[vol["name"]].get("readOnly"), f"secret volume {vol['name']} mounted read-only")
        # Leader election.
        if v["leaderElection"]["enabled"]:
            check(cfg["leader_election"]["namespace"] == NAMESPACE, "Lease in the release namespace")
        else:
            check("leader_election" not in cfg, "no leader election")
        # Probes on the API port, at the agent's health endpoints.
        port = c["ports"][0]
        check(port["name"] == "api" and port["containerPort"] == v["api"]["port"], "container port")
        check(cfg["api"]["listen"].endswith(f":{v['api']['port']}"), "api.listen on the port")
        mtls = v["api"]["tls"]["enabled"] and v["api"]["tls"]["clientCA"]["enabled"]
        for probe, path in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")]:
            p = c[probe]
            if mtls:
                check(p.get("tcpSocket") == {"port": "api"}, f"{probe} with mTLS is a TCP check")
            else:
                scheme = "HTTPS" if v["api"]["tls"]["enabled"] else "HTTP"
                check(p.get("httpGet") == {"path": path, "port": "api", "scheme": scheme}, f"{probe}: {p}")
        http_src = (REPO / "agent" / "http.rs").read_text()
        for path in ("/healthz", "/readyz", "/metrics"):
            check(f'.route("{path}"' in http_src, f"agent/http.rs serves no {path}")
        # Spread over nodes.
        aff = spec.get("affinity", {}).get("podAntiAffinity", {})
        if v["podAntiAffinity"] == "hard":
            check(aff["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"] == "kubernetes.io/hostname", "hard anti-affinity")
        elif v["podAntiAffinity"] == "soft":
            check(aff["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname",
                  "soft anti-affinity")
        sel = d["spec"]["selector"]["matchLabels"]
        for t in spec.get("topologySpreadConstraints", []):
            check(t["labelSelector"]["matchLabels"] == sel, "spread constraints select the agent's pods")
        check(d["spec"]["template"]["metadata"]["annotations"]["checksum/config"], "checksum/config")

    def configmaps(self, name):
        r = self.renders[name]
        data = r.one("ConfigMap", f"{RELEASE}-policies")["data"]
        want = {n: t for n, t in chart_files(self.chart, "files/policies").items()
                if n.endswith((".rego", ".yaml", ".yml", ".json")) and not n.endswith("_test.rego")}
        want.update(r.values["policies"]["files"])
        check(data == want, f"policies ConfigMap holds {sorted(data)}, expected {sorted(want)}")
        check(not any(k.endswith("_test.rego") for k in data), "no policy tests in the ConfigMap")
        cfg = r.config()
        check(cfg["policy"]["dir"] == "../policies", "policy.dir next to the config directory")
        throttle = r.values["config"].get("limits", {}).get("replication_throttle")
        if throttle is False:
            check(cfg["limits"]["replication_throttle"] is None, "replication_throttle false renders as null (no throttle)")

    def service_and_monitoring(self, name):
        r = self.renders[name]
        v = r.values
        svc = r.one("Service")
        sel = r.deployment()["spec"]["selector"]["matchLabels"]
        check(svc["spec"]["selector"] == sel, "Service selects the agent's pods")
        (port,) = svc["spec"]["ports"]
        check(port["port"] == v["api"]["port"] and port["targetPort"] == "api", f"Service port {port}")
        sms = r.of("ServiceMonitor")
        if v["serviceMonitor"]["enabled"]:
            (sm,) = sms
            (ep,) = sm["spec"]["endpoints"]
            check(ep["port"] == port["name"] and ep["path"] == "/metrics", f"ServiceMonitor endpoint {ep}")
            check(ep["scheme"] == ("https" if v["api"]["tls"]["enabled"] else "http"), "scrape scheme")
            check(sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items(), "ServiceMonitor selects the Service")
            for k, val in v["serviceMonitor"]["labels"].items():
                check(sm["metadata"]["labels"].get(k) == val, f"ServiceMonitor label {k}")
            # Prometheus' job label comes from the Service label named by jobLabel, and the
            # rules select the agent by job: they must agree.
            job = svc["metadata"]["labels"].get(sm["spec"].get("jobLabel", ""))
            check(job == v["serviceMonitor"]["jobName"], f"the scrape job would be {job!r}")
            for text in chart_files(self.chart, "files/rules", ".yaml").values():
                for op, pattern in re.findall(r'\bjob\s*(=~|=)\s*"([^"]*)"', text):
                    ok = re.fullmatch(pattern, job) if op == "=~" else pattern == job
                    check(ok, f"files/rules select job{op}{pattern!r}, which the ServiceMonitor's job {job!r} does not match")
        else:
            check(not sms, "no ServiceMonitor unless enabled")
        pdbs = r.of("PodDisruptionBudget")
        if v["podDisruptionBudget"]["enabled"]:
            (pdb,) = pdbs
            check(pdb["spec"]["selector"]["matchLabels"] == sel, "PDB selects the agent's pods")
            check(pdb["spec"].get("maxUnavailable") == 1 or pdb["spec"].get("minAvailable") == 1, f"PDB {pdb['spec']}")
        else:
            check(not pdbs, "no PDB unless enabled")

    def network_policy(self, name):
        r = self.renders[name]
        v = r.values
        nps = r.of("NetworkPolicy")
        if not v["networkPolicy"]["enabled"]:
            check(not nps, "no NetworkPolicy unless enabled")
            return
        (np,) = nps
        spec = np["spec"]
        check(spec["podSelector"]["matchLabels"] == r.deployment()["spec"]["selector"]["matchLabels"], "NetworkPolicy selects the agent")
        check(sorted(spec["policyTypes"]) == ["Egress", "Ingress"], "both directions")
        check([p for rule in spec["ingress"] for p in rule["ports"]] == [{"port": "api", "protocol": "TCP"}], "ingress: the API port only")
        egress_ports = {(p["port"], p["protocol"]) for rule in spec["egress"] for p in rule["ports"]}
        check({(53, "UDP"), (53, "TCP"), (443, "TCP")} <= egress_ports, f"DNS and the Kubernetes API: {egress_ports}")
        real = [c for c in v["config"]["clusters"] if c["backend"] == "real"]
        for c in real:
            for b in c["bootstrap_servers"]:
                port = int(b.rsplit(":", 1)[1])
                rule = next((x for x in spec["egress"] if {"port": port, "protocol": "TCP"} in x["ports"] and x.get("to")
                             and any(t.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") == c["namespace"]
                                     for t in x["to"])), None)
                check(rule is not None, f"no egress to Kafka {b} in namespace {c['namespace']}")
            url = c["prometheus"]["url"]
            m = re.match(r"^(https?)://[^/:]+(?::(\d+))?", url)
            port = int(m.group(2) or (443 if m.group(1) == "https" else 80))
            check((port, "TCP") in egress_ports, f"no egress to Prometheus {url}")
        for n in v["config"].get("notifications") or []:
            m = re.match(r"^(https?)://[^/:]+(?::(\d+))?", n["url"])
            check((int(m.group(2) or (443 if m.group(1) == "https" else 80)), "TCP") in egress_ports, f"no egress to webhook {n['name']}")

    def check_config(self, name):
        r = self.renders[name]
        d = self.tmp / name
        (d / "config").mkdir(parents=True)
        (d / "policies").mkdir()
        (d / "config" / "config.yaml").write_text(r.config_text())
        for k, text in r.one("ConfigMap", f"{RELEASE}-policies")["data"].items():
            (d / "policies" / k).write_text(text)
        out = subprocess.run([str(self.binary), "check-config", "--config", str(d / "config" / "config.yaml")],
                             capture_output=True, text=True, env={**os.environ, "AUTOPILOT_LOG": "error"})
        if out.returncode != 0:
            new_keys = re.search(r"unknown field `(auth|tls|rate_limit|alertmanager|backups)`", out.stderr + out.stdout)
            hint = (" (the agent does not know this key yet: its API security config has not landed)" if new_keys else "")
            raise Failed(f"autopilot check-config rejects the rendered config{hint}:\n{out.stderr.strip()}\n--- config.yaml\n{r.config_text()}")
        check("# config ok" in out.stdout, f"check-config said {out.stdout[-300:]}")

    def checksum_rolls_on_config_only(self):
        base = self.render("defaults", {})
        a = base.deployment()["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        changed = Render(self.chart, {"config": {"interval": "45s"}})
        b = changed.deployment()["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        check(a != b, "a config change does not change checksum/config")
        policies = Render(self.chart, {"policies": {"files": {"extra.rego": "package kafka.autopilot.extra\n"}}})
        c = policies.deployment()["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        check(a == c, "a policy change rolls the pods (it should be hot-reloaded)")
        check("extra.rego" in policies.one("ConfigMap", f"{RELEASE}-policies")["data"], "policies.files adds a file")

    # --- rules and dashboards ----------------------------------------------------------------

    def prometheus_rule(self):
        """The PrometheusRule holds every group of files/rules/*.yaml, of the chart as it is and of
        a copy with one more rule file (so the template is exercised even while rules/ is empty)."""
        def expected(chart):
            groups = []
            for _, text in sorted(chart_files(chart, "files/rules", ".yaml").items()):
                groups += yaml.safe_load(text).get("groups") or []
            return groups

        def rendered(chart):
            r = Render(chart, {"prometheusRule": {"enabled": True, "labels": {"release": "kps"}}})
            rules = r.of("PrometheusRule")
            if not rules:
                return None, r
            (pr,) = rules
            check(pr["metadata"]["labels"].get("release") == "kps", "prometheusRule.labels")
            return pr["spec"]["groups"], r

        want = expected(self.chart)
        got, r = rendered(self.chart)
        if want:
            check(got == want, "the PrometheusRule's groups differ from files/rules/*.yaml")
            alerts = {x["alert"] for g in want for x in g.get("rules", []) if "alert" in x}
            have = {x["alert"] for g in got for x in g.get("rules", []) if "alert" in x}
            check(alerts <= have, f"alerts missing from the PrometheusRule: {sorted(alerts - have)}")
            print(f"      (PrometheusRule: {len(want)} groups, {len(alerts)} alerts)")
        else:
            check(got is None, "a PrometheusRule without rule files")
            print("      (files/rules/ is empty: no PrometheusRule rendered)")
        check(not Render(self.chart, {}).of("PrometheusRule"), "no PrometheusRule unless enabled")
        copy_dir = self.tmp / "chart-copy" / "kafka-autopilot"
        shutil.copytree(CHART, copy_dir)
        (copy_dir / "files" / "rules").mkdir(parents=True, exist_ok=True)
        (copy_dir / "files" / "rules" / "zz-check.yaml").write_text(
            "groups:\n  - name: zz-check\n    rules:\n      - alert: ZzCheck\n        expr: vector(1) > 0\n        for: 5m\n"
            "        labels: {severity: warning}\n        annotations:\n          summary: 'value {{ $value }}'\n"
            "      - record: zz:check\n        expr: sum(up)\n")
        (copy_dir / "dashboards").mkdir(exist_ok=True)
        (copy_dir / "dashboards" / "Zz_Check.json").write_text('{"title": "zz check", "panels": []}\n')
        with helm.Chart.load(str(copy_dir)) as chart:
            got, r = rendered(chart)
            check(got == expected(chart), "the PrometheusRule of the copy with one more rule file is wrong")
            check(any(g["name"] == "zz-check" and g["rules"][0]["annotations"]["summary"] == "value {{ $value }}" for g in got),
                  "rule annotations are not passed through verbatim")
            cm = [d for d in r.of("ConfigMap") if d["metadata"]["name"] == f"{RELEASE}-dashboard-zz-check"]
            check(len(cm) == 1 and cm[0]["data"] == {"Zz_Check.json": '{"title": "zz check", "panels": []}\n'},
                  "a dashboards/*.json file becomes a ConfigMap with its content")
            (copy_dir / "dashboards" / "broken.json").write_text("{not json")
        with helm.Chart.load(str(copy_dir)) as chart:
            try:
                chart.render({}, name=RELEASE, namespace=NAMESPACE)
            except helm.HelmRenderError:
                pass
            else:
                raise Failed("a dashboard that is not JSON renders")

    def dashboards(self):
        r = self.render("monitoring", value_sets()["core"]["monitoring"])
        v = r.values["dashboards"]
        files = chart_files(self.chart, "dashboards", ".json")
        cms = [d for d in r.of("ConfigMap") if d["metadata"]["labels"].get(v["label"]) == v["labelValue"]]
        check(len(cms) == len(files), f"{len(cms)} dashboard ConfigMaps for {len(files)} dashboards/*.json")
        by_key = {k: (cm, text) for cm in cms for k, text in cm["data"].items()}
        for name, text in files.items():
            check(name in by_key and by_key[name][1] == text, f"dashboard {name} not rendered verbatim")
            check(by_key[name][0]["metadata"].get("annotations", {}).get("grafana_folder") == "Kafka", "grafana_folder")
            json.loads(text)
        print(f"      (dashboards: {len(files)})")
        off = Render(self.chart, {"dashboards": {"enabled": False}})
        check(not [d for d in off.of("ConfigMap") if v["label"] in d["metadata"]["labels"]], "no dashboards unless enabled")

    # --- driver ----------------------------------------------------------------------------

    def core(self):
        self.run("chart copies of rules/, policies/, the CRD and the version are current", self.sync_is_current)
        self.run("helm lint --strict", self.lint)
        self.run("values.schema.json rejects bad values", self.schema_rejects_bad_values)
        self.run("templates refuse inconsistent values", self.template_refuses_bad_combinations)
        for name, overrides in value_sets()["core"].items():
            self.render_and_check(name, overrides, ("policies ConfigMap", self.configmaps))
        self.run("schema in step with agent/config.rs and agent/plan.rs", self.schema_follows_agent_config)
        self.run("checksum/config rolls on config changes only", self.checksum_rolls_on_config_only)
        self.run("PrometheusRule from files/rules", self.prometheus_rule)
        self.run("dashboard ConfigMaps", self.dashboards)

    def api_security(self):
        for name, overrides in value_sets()["api-security"].items():
            self.render_and_check(name, overrides, ("secrets mounted where the config points", self.secret_mounts))

    def render_and_check(self, name, overrides, extra):
        """Render one value set and run the checks every render gets, plus `extra` (title, check)."""
        self.run(f"render {name}", self.render, name, overrides)
        if name not in self.renders:
            return
        self.run(f"{name}: kubernetes-validate --strict", self.kubernetes_valid, name)
        self.run(f"{name}: RBAC exact, no wildcards", self.rbac, name)
        self.run(f"{name}: Deployment (security context, mounts, probes, spread)", self.deployment, name)
        self.run(f"{name}: {extra[0]}", extra[1], name)
        self.run(f"{name}: Service, ServiceMonitor, PDB", self.service_and_monitoring, name)
        self.run(f"{name}: NetworkPolicy", self.network_policy, name)
        self.run(f"{name}: autopilot check-config", self.check_config, name)

    def secret_mounts(self, name):
        r = self.renders[name]
        v = r.values
        cfg = r.config()
        c = r.deployment()["spec"]["template"]["spec"]["containers"][0]
        vols = {x["name"]: x for x in r.deployment()["spec"]["template"]["spec"]["volumes"]}
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}

        def served(path, secret, key):
            d, f = os.path.split(path)
            m = mounts.get(d)
            check(m is not None, f"{path}: nothing mounted at {d}")
            vol = vols[m["name"]]
            check(vol.get("secret", {}).get("secretName") == secret, f"{path}: volume {vol}")
            check({"key": key, "path": f} in vol["secret"]["items"], f"{path}: key {key} not projected as {f}")

        api = v["api"]
        if api["auth"]["jwt"]["enabled"]:
            jwt = cfg["api"]["auth"]["jwt"]
            check(jwt["algorithm"] == api["auth"]["jwt"]["algorithm"], "JWT algorithm")
            served(jwt["key_file"], api["auth"]["jwt"]["secretName"], api["auth"]["jwt"]["secretKey"])
        if api["auth"]["webhookToken"]["enabled"]:
            served(cfg["api"]["auth"]["webhook_token_file"], api["auth"]["webhookToken"]["secretName"], api["auth"]["webhookToken"]["secretKey"])
        if api["tls"]["enabled"]:
            served(cfg["api"]["tls"]["cert_file"], api["tls"]["secretName"], api["tls"]["certKey"])
            served(cfg["api"]["tls"]["key_file"], api["tls"]["secretName"], api["tls"]["keyKey"])
            if api["tls"]["clientCA"]["enabled"]:
                served(cfg["api"]["tls"]["client_ca_file"], api["tls"]["clientCA"]["secretName"], api["tls"]["clientCA"]["secretKey"])
            else:
                check("client_ca_file" not in cfg["api"]["tls"], "no client CA without mTLS")

    def summary(self) -> int:
        failed = [r for r in self.results if not r[1]]
        print(f"helm chart: {len(self.results) - len(failed)} passed, {len(failed)} failed")
        for name, _, message in failed:
            print(f"\n--- {name}\n{message}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        return 1 if failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", required=True, type=Path, help="the autopilot binary (for check-config)")
    ap.add_argument("--part", choices=["core", "api-security"], default="core")
    args = ap.parse_args()
    if not args.binary.is_file():
        print(f"no autopilot binary at {args.binary}", file=sys.stderr)
        return 2
    checker = Checker(args.binary)
    if args.part == "core":
        checker.core()
    else:
        checker.api_security()
    return checker.summary()


if __name__ == "__main__":
    sys.exit(main())
