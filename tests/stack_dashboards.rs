//! The Grafana dashboards shipped in the chart (`helm/kafka-autopilot/dashboards/*.json`).
//!
//! Static checks need nothing running: valid dashboard JSON, unique panel ids, every panel and
//! target on the `datasource` variable, every `$var` defined, units set, rates over
//! `$__rate_interval`, and the agent dashboard covering every metric in `agent/telemetry.rs`.
//!
//! The live check needs `scripts/stack.sh up` (whose Prometheus scrapes job `autopilot-agent` on
//! the webhook port): it starts `autopilot run` on three simulated clusters that act at once,
//! waits until Prometheus has scraped it, resolves each dashboard's template variables the way
//! Grafana does, and runs every panel's expression as an instant query. Every expression must
//! parse; every expression whose metrics all have series in Prometheus must return series.
//! Run with `--nocapture` for the per-dashboard report.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use support::stack::Stack;

const DASHBOARDS: [(&str, &str); 2] =
    [("agent-overview.json", "kafka-autopilot-agent"), ("cluster-health.json", "kafka-autopilot-cluster-health")];
/// Grafana's built-in variables, as the test substitutes them.
const BUILTINS: [(&str, &str); 3] = [("__rate_interval", "1m"), ("__interval", "15s"), ("__range", "15m")];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load(file: &str) -> Value {
    let path = root().join("helm/kafka-autopilot/dashboards").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()))
}

fn ds() -> Value {
    json!({"type": "prometheus", "uid": "${datasource}"})
}

// ---------------------------------------------------------------------------------------------
// Reading dashboards and PromQL

/// Every panel, those inside collapsed rows included.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

/// (panel title, refId, expr) of every target.
fn exprs(d: &Value) -> Vec<(String, String, String)> {
    panels(d)
        .into_iter()
        .flat_map(|p| {
            p["targets"].as_array().into_iter().flatten().map(move |t| {
                (
                    p["title"].as_str().unwrap_or_default().to_owned(),
                    t["refId"].as_str().unwrap_or_default().to_owned(),
                    t["expr"].as_str().unwrap_or_default().to_owned(),
                )
            })
        })
        .collect()
}

fn variables(d: &Value) -> Vec<&Value> {
    d["templating"]["list"].as_array().map(|l| l.iter().collect()).unwrap_or_default()
}

fn variable_query(v: &Value) -> String {
    v["query"]["query"].as_str().or(v["query"].as_str()).or(v["definition"].as_str()).unwrap_or_default().to_owned()
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Names of the template variables a string uses: `$name`, `${name}`, `${name:format}`.
fn vars_used(s: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        let name: String = if let Some(r) = rest.strip_prefix('{') {
            r.chars().take_while(|&c| c != '}' && c != ':').collect()
        } else {
            rest.chars().take_while(|&c| is_ident(c)).collect()
        };
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

/// `s` with each `$name` / `${name}` found in `values` replaced; others left as they are.
fn substitute(s: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        let (name, len) = if let Some(r) = rest.strip_prefix('{') {
            let end = r.find('}').map_or(r.len(), |e| e + 2);
            (r.chars().take_while(|&c| c != '}' && c != ':').collect::<String>(), end)
        } else {
            let n: String = rest.chars().take_while(|&c| is_ident(c)).collect();
            let l = n.len();
            (n, l)
        };
        match values.get(&name) {
            Some(v) => {
                out.push_str(v);
                rest = &rest[len..];
            }
            None => out.push('$'),
        }
    }
    out.push_str(rest);
    out
}

/// Skip a quoted string starting at `i` (the quote); the index after it.
fn skip_string(b: &[char], i: usize) -> usize {
    let q = b[i];
    let mut j = i + 1;
    while j < b.len() && b[j] != q {
        if b[j] == '\\' && q != '`' {
            j += 1;
        }
        j += 1;
    }
    j + 1
}

/// Index after the bracket closing the one at `i`, strings skipped.
fn skip_group(b: &[char], i: usize) -> usize {
    let (open, close) = (
        b[i],
        match b[i] {
            '(' => ')',
            '[' => ']',
            _ => '}',
        },
    );
    let mut depth = 0;
    let mut j = i;
    while j < b.len() {
        match b[j] {
            '"' | '\'' | '`' => {
                j = skip_string(b, j);
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
        j += 1;
    }
    b.len()
}

const AGGREGATIONS: [&str; 14] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
const LABEL_LISTS: [&str; 6] = ["by", "without", "on", "ignoring", "group_left", "group_right"];
const KEYWORDS: [&str; 8] = ["and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"];

/// Metric names a PromQL expression selects (label matchers, label lists, strings, ranges and
/// function names skipped).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let b: Vec<char> = expr.chars().collect();
    let mut out = BTreeSet::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&b, i);
        } else if c == '{' || c == '[' {
            i = skip_group(&b, i);
        } else if c == '#' {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c.is_ascii_digit() || c == '.' {
            while i < b.len() && (is_ident(b[i]) || b[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < b.len() && (is_ident(b[i]) || b[i] == ':') {
                i += 1;
            }
            let word: String = b[start..i].iter().collect();
            let mut j = i;
            while j < b.len() && b[j].is_whitespace() {
                j += 1;
            }
            let next = b.get(j).copied();
            let lower = word.to_ascii_lowercase();
            if LABEL_LISTS.contains(&lower.as_str()) {
                if next == Some('(') {
                    i = skip_group(&b, j);
                }
            } else if next == Some('(')
                || AGGREGATIONS.contains(&lower.as_str()) && next != Some('{')
                || KEYWORDS.contains(&lower.as_str())
            {
                // a function, an aggregation followed by its label list, or an operator
            } else {
                out.insert(word);
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Contents of every `[...]` range selector, and of those inside `rate(...)` / `irate(...)`.
fn ranges(expr: &str) -> (Vec<String>, Vec<String>) {
    let b: Vec<char> = expr.chars().collect();
    let mut all = Vec::new();
    let mut in_rate = Vec::new();
    let mut rate_ends: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            '"' | '\'' | '`' => {
                i = skip_string(&b, i);
                continue;
            }
            '[' => {
                let end = skip_group(&b, i);
                let inner: String = b[i + 1..end.saturating_sub(1)].iter().collect();
                if rate_ends.iter().any(|&e| i < e) {
                    in_rate.push(inner.clone());
                }
                all.push(inner);
                i = end;
                continue;
            }
            '(' => {
                let before: String = b[..i].iter().collect::<String>();
                let before = before.trim_end();
                let word: String =
                    before.chars().rev().take_while(|&c| is_ident(c)).collect::<String>().chars().rev().collect();
                if word == "rate" || word == "irate" {
                    rate_ends.push(skip_group(&b, i));
                }
            }
            _ => {}
        }
        i += 1;
    }
    (all, in_rate)
}

/// Metric names `agent/telemetry.rs` defines (`pub const X: &str = "autopilot_...";`).
fn telemetry_metrics() -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join("agent/telemetry.rs")).unwrap();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("pub const "))
        .filter_map(|l| l.split_once("&str = \"").map(|(_, v)| v.trim_end_matches("\";").to_owned()))
        .filter(|n| n.starts_with("autopilot_"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Static checks

/// Every problem found in one dashboard; empty when it is fine.
fn problems(file: &str, uid: &str, d: &Value) -> Vec<String> {
    let mut p = Vec::new();
    let mut bad = |m: String| p.push(format!("{file}: {m}"));
    if d["uid"] != uid {
        bad(format!("uid is {}, want the stable {uid:?}", d["uid"]));
    }
    if !d["id"].is_null() {
        bad("`id` must be null (Grafana assigns it)".into());
    }
    if d.get("__inputs").is_some() {
        bad("`__inputs` breaks sidecar provisioning: use the `datasource` variable".into());
    }
    if d["title"].as_str().is_none_or(str::is_empty) {
        bad("no title".into());
    }
    if !d["tags"].as_array().is_some_and(|t| t.contains(&json!("kafka-autopilot"))) {
        bad("tags lack \"kafka-autopilot\"".into());
    }
    if !d["schemaVersion"].as_u64().is_some_and(|v| (36..=41).contains(&v)) {
        bad(format!("schemaVersion {} (want 36..=41)", d["schemaVersion"]));
    }

    // Template variables.
    let vars = variables(d);
    let names: BTreeSet<String> = vars.iter().filter_map(|v| v["name"].as_str().map(str::to_owned)).collect();
    if names.len() != vars.len() {
        bad("template variable names are not unique".into());
    }
    if !vars.iter().any(|v| v["name"] == "datasource" && v["type"] == "datasource" && v["query"] == "prometheus") {
        bad("no `datasource` variable of type datasource for prometheus".into());
    }
    let known = |n: &str| names.contains(n) || BUILTINS.iter().any(|(b, _)| *b == n) || n == "__range_s";
    for v in &vars {
        let name = v["name"].as_str().unwrap_or_default();
        match v["type"].as_str() {
            Some("datasource") => {}
            Some("query") => {
                if v["datasource"] != ds() {
                    bad(format!("variable {name}: datasource {} is not the variable", v["datasource"]));
                }
                let q = variable_query(v);
                if !q.starts_with("label_values(") {
                    bad(format!("variable {name}: query {q:?} is not label_values(...)"));
                }
                for u in vars_used(&q) {
                    if !known(&u) || u == name {
                        bad(format!("variable {name}: its query uses undefined ${u}"));
                    }
                }
            }
            t => bad(format!("variable {name}: type {t:?} is not checked by this test")),
        }
    }

    // Every datasource reference in the document is the variable (the built-in annotation aside).
    fn walk<'a>(v: &'a Value, path: String, out: &mut Vec<(String, &'a Value)>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if k == "datasource" {
                        out.push((path.clone(), x));
                    }
                    walk(x, format!("{path}/{k}"), out);
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    walk(x, format!("{path}/{i}"), out);
                }
            }
            _ => {}
        }
    }
    let mut refs = Vec::new();
    walk(d, String::new(), &mut refs);
    for (path, r) in refs {
        let builtin = path.starts_with("/annotations") && r["uid"] == "-- Grafana --";
        if *r != ds() && !builtin {
            bad(format!("{path}: datasource {r} (want {{\"type\":\"prometheus\",\"uid\":\"${{datasource}}\"}})"));
        }
    }

    // Panels.
    let all = panels(d);
    if all.is_empty() {
        bad("no panels".into());
    }
    let mut ids = BTreeSet::new();
    for panel in &all {
        let title = panel["title"].as_str().unwrap_or_default();
        match panel["id"].as_u64() {
            Some(id) if ids.insert(id) => {}
            Some(id) => bad(format!("panel id {id} ({title}) is not unique")),
            None => bad(format!("panel {title:?} has no id")),
        }
        let g = &panel["gridPos"];
        let (x, w, h) = (g["x"].as_u64(), g["w"].as_u64(), g["h"].as_u64());
        if !matches!((x, w, h), (Some(x), Some(w), Some(h)) if w > 0 && h > 0 && x + w <= 24) || g["y"].is_null() {
            bad(format!("panel {title:?}: gridPos {g} does not fit the 24-column grid"));
        }
        if panel["type"] == "row" {
            continue;
        }
        if title.is_empty() {
            bad(format!("panel {} has no title", panel["id"]));
        }
        for u in vars_used(title) {
            if !known(&u) {
                bad(format!("panel {title:?}: title uses undefined ${u}"));
            }
        }
        if panel["datasource"] != ds() {
            bad(format!("panel {title:?}: datasource {} is not the variable", panel["datasource"]));
        }
        if panel["fieldConfig"]["defaults"]["unit"].as_str().is_none_or(str::is_empty) {
            bad(format!("panel {title:?}: no unit"));
        }
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            bad(format!("panel {title:?}: no targets"));
        }
        let mut refs = BTreeSet::new();
        for t in &targets {
            let r = t["refId"].as_str().unwrap_or_default();
            if r.is_empty() || !refs.insert(r.to_owned()) {
                bad(format!("panel {title:?}: refId {r:?} missing or repeated"));
            }
            if t["datasource"] != ds() {
                bad(format!("panel {title:?} {r}: datasource {} is not the variable", t["datasource"]));
            }
            let expr = t["expr"].as_str().unwrap_or_default();
            if expr.trim().is_empty() {
                bad(format!("panel {title:?} {r}: empty expr"));
            }
            if expr.contains("[[") {
                bad(format!("panel {title:?} {r}: deprecated [[var]] syntax"));
            }
            for u in vars_used(expr).into_iter().chain(vars_used(t["legendFormat"].as_str().unwrap_or_default())) {
                if !known(&u) {
                    bad(format!("panel {title:?} {r}: uses undefined ${u}"));
                }
            }
            let (all, in_rate) = ranges(expr);
            for range in &all {
                if !["$__rate_interval", "$__range", "$__interval"].contains(&range.as_str()) {
                    bad(format!("panel {title:?} {r}: range [{range}] is not $__rate_interval/$__range/$__interval"));
                }
            }
            for range in &in_rate {
                if range != "$__rate_interval" {
                    bad(format!("panel {title:?} {r}: rate over [{range}], not [$__rate_interval]"));
                }
            }
            if metric_names(expr).is_empty() && !expr.contains("vector(") {
                bad(format!("panel {title:?} {r}: selects no metric: {expr}"));
            }
        }
    }
    p
}

#[test]
fn the_dashboards_are_well_formed() {
    let mut all = Vec::new();
    for (file, uid) in DASHBOARDS {
        all.extend(problems(file, uid, &load(file)));
    }
    assert!(all.is_empty(), "{} problem(s):\n{}", all.len(), all.join("\n"));
}

#[test]
fn the_agent_dashboard_shows_every_agent_metric() {
    let d = load("agent-overview.json");
    let used: BTreeSet<String> = exprs(&d).iter().flat_map(|(_, _, e)| metric_names(e)).collect();
    let base = |m: &str| ["_bucket", "_sum", "_count"].iter().find_map(|s| m.strip_suffix(s)).unwrap_or(m).to_owned();
    let used_base: BTreeSet<String> = used.iter().map(|m| base(m)).collect();
    let defined = telemetry_metrics();
    assert!(defined.len() >= 25, "agent/telemetry.rs metrics not found: {defined:?}");
    let missing: Vec<&String> = defined.iter().filter(|m| !used_base.contains(*m)).collect();
    assert!(missing.is_empty(), "agent metrics no panel shows: {missing:?}");
    let unknown: Vec<&String> = used_base.iter().filter(|m| *m != "up" && !defined.contains(*m)).collect();
    assert!(unknown.is_empty(), "the agent dashboard queries metrics agent/telemetry.rs does not define: {unknown:?}");
}

#[test]
fn the_checks_catch_broken_dashboards() {
    let (file, uid) = DASHBOARDS[0];
    let good = load(file);
    assert!(problems(file, uid, &good).is_empty());
    let broken = |f: &dyn Fn(&mut Value), want: &str| {
        let mut d = good.clone();
        f(&mut d);
        let p = problems(file, uid, &d);
        assert!(p.iter().any(|m| m.contains(want)), "expected a problem containing {want:?}, got {p:?}");
    };
    let first_graph =
        |d: &mut Value| -> usize { d["panels"].as_array().unwrap().iter().position(|p| p["type"] != "row").unwrap() };
    broken(&|d| d["panels"][2]["id"] = d["panels"][1]["id"].clone(), "is not unique");
    broken(
        &|d| {
            let i = first_graph(d);
            d["panels"][i]["targets"][0]["datasource"] = json!({"type": "prometheus", "uid": "P1809F7CD0C75ACF3"});
        },
        "is not the variable",
    );
    broken(
        &|d| {
            let i = first_graph(d);
            d["panels"][i]["targets"][0]["expr"] = json!("sum(rate(autopilot_ticks_total{cluster=~\"$nope\"}[5m]))");
        },
        "undefined $nope",
    );
    broken(
        &|d| {
            let i = first_graph(d);
            d["panels"][i]["targets"][0]["expr"] = json!("sum(rate(autopilot_ticks_total[$__range]))");
        },
        "not [$__rate_interval]",
    );
    broken(
        &|d| d["templating"]["list"].as_array_mut().unwrap().retain(|v| v["name"] != "datasource"),
        "no `datasource`",
    );
    broken(
        &|d| {
            let i = first_graph(d);
            d["panels"][i]["fieldConfig"]["defaults"].as_object_mut().unwrap().remove("unit");
        },
        "no unit",
    );

    assert_eq!(
        metric_names(
            "histogram_quantile(0.99, sum by (cluster, le) (rate(autopilot_tick_duration_seconds_bucket{job=~\"$job\"}[1m]))) \
             / on (cluster) group_left (pod) max(up) or vector(0)"
        ),
        ["autopilot_tick_duration_seconds_bucket", "up"].iter().map(|s| (*s).to_owned()).collect()
    );
    assert_eq!(vars_used("a{x=\"$b\",y=~\"${c:regex}\"}[$__range]"), ["__range", "b", "c"].map(String::from).into());
}

// ---------------------------------------------------------------------------------------------
// Against the stack

/// The agent under test, killed when dropped (also when the test panics).
struct Agent {
    child: Child,
    port: u16,
    dir: PathBuf,
    tmp: Option<tempfile::TempDir>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Kept for the post-mortem when the test fails.
        if std::thread::panicking() {
            if let Some(t) = self.tmp.take() {
                println!("agent config, log and audit kept in {}", t.keep().display());
            }
        }
    }
}

impl Agent {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }
}

/// The webhook port of the stack (`AUTOPILOT_TEST_ALERTMANAGER_WEBHOOK_URL` in its env file),
/// which Prometheus's job `autopilot-agent` scrapes.
fn webhook_addr(stack: &Stack) -> String {
    let env = std::env::var_os("AUTOPILOT_TEST_STACK_ENV").map_or_else(|| stack.dir.join("env"), PathBuf::from);
    let text = std::fs::read_to_string(&env).unwrap();
    let url = text
        .lines()
        .find_map(|l| l.trim().trim_start_matches("export ").strip_prefix("AUTOPILOT_TEST_ALERTMANAGER_WEBHOOK_URL="))
        .unwrap_or_else(|| panic!("{} has no AUTOPILOT_TEST_ALERTMANAGER_WEBHOOK_URL", env.display()));
    url.trim().trim_matches('"').trim_start_matches("http://").split('/').next().unwrap().to_owned()
}

/// A webhook receiver answering 200 to everything, for the agent's notifications.
fn receiver() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            let mut buf = [0u8; 16384];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    port
}

const TIMING: &str = "timing: {broker_join: 1s, pod_restart: 2s, eviction_reschedule: 2s, volume_provision: 2s, \
                      certificate_renewal: 2s, reassignment_throughput: 512Mi}";

/// Three simulated clusters that give the agent something to do at once: certificates 5 days
/// from expiry (renewals and critical notifications), an evicted pod (pod recovery, broker
/// states), and a quiet cluster the test scales by hand (partition moves).
fn start_agent(addr: &str, hook: u16) -> Agent {
    let tmp = tempfile::Builder::new().prefix("stack-dashboards-").tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    for e in std::fs::read_dir(root().join("policies")).unwrap().flatten() {
        if e.path().is_file() {
            std::fs::copy(e.path(), policies.join(e.file_name())).unwrap();
        }
    }
    let sim = |name: &str, extra: &str, timeline: &str| {
        format!(
            "name: {name}\ndescription: dashboards test\ncluster:\n  name: {name}\n  brokers: 3\n  racks: [a, b, c]\n  \
             broker: {{cpu_cores: 4, memory: 16Gi, disk: 1Ti}}\n  topics:\n    - {{name: orders, partitions: 12, \
             replication_factor: 3, min_insync_replicas: 2, partition_size: 256Mi}}\n  {TIMING}\n{extra}\
             timeline:\n  - {{at: 0s, load: {{cpu: 0.50, memory: 0.60}}}}\n{timeline}run_for: 60m\n"
        )
    };
    std::fs::write(dir.join("dash-certs.yaml"), sim("dash-certs", "  certificate_days: 5\n", "")).unwrap();
    std::fs::write(
        dir.join("dash-evicted.yaml"),
        sim("dash-evicted", "", "  - {at: 0s, fault: {kind: pod_evicted, broker: 1}}\n"),
    )
    .unwrap();
    // With simulated backup storage: the backup policy schedules every topic at once.
    std::fs::write(
        dir.join("dash-manual.yaml"),
        sim("dash-manual", "  backups: true\n  backup_bytes_per_second: 10Gi\n", ""),
    )
    .unwrap();
    let cluster = |name: &str| {
        format!(
            "  - {{name: {name}, namespace: kafka, node_pool: brokers, backend: simulated, simulation: {name}.yaml, \
             cost_per_broker_hour: 0.5}}\n"
        )
    };
    let config = format!(
        "region: dashboards\ninterval: 1s\ndry_run: false\njournal_path: journal.json\naudit_log: audit.jsonl\n\
         policy: {{dir: policies, reload_interval: 200ms}}\n\
         limits: {{max_data_age: 30s, default_cooldown: 1s, actions_per_minute: 60, concurrent_actions: 3}}\n\
         api: {{listen: \"{addr}\"}}\n\
         notifications: [{{name: dashboards-test, url: \"http://127.0.0.1:{hook}/hook\", \
         kinds: [notify, renew_certificate, scale_brokers], timeout: 2s}}]\n\
         clusters:\n{}{}{}",
        cluster("dash-certs"),
        cluster("dash-evicted"),
        cluster("dash-manual")
    );
    std::fs::write(dir.join("config.yaml"), config).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_autopilot"))
        .args(["--log-format", "json", "run", "--config"])
        .arg(dir.join("config.yaml"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("agent.log")).unwrap())
        .spawn()
        .unwrap();
    let port = addr.rsplit(':').next().unwrap().parse().unwrap();
    Agent { child, port, dir, tmp: Some(tmp) }
}

struct Http {
    client: reqwest::Client,
    prometheus: String,
}

impl Http {
    async fn get_text(&self, url: &str) -> Option<String> {
        let r = self.client.get(url).send().await.ok()?;
        r.text().await.ok()
    }

    async fn post(&self, url: &str, body: &Value) -> (u16, String) {
        let r = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    }

    /// Prometheus API call: Ok(data) or Err(the error Prometheus gave).
    async fn api(&self, path: &str, params: &[(&str, String)]) -> Result<Value, String> {
        let url = reqwest::Url::parse_with_params(&format!("{}{path}", self.prometheus), params).unwrap();
        let r = self.client.get(url).send().await.map_err(|e| format!("request failed: {e}"))?;
        let v: Value = r.json().await.map_err(|e| format!("not JSON: {e}"))?;
        if v["status"] == "success" {
            Ok(v["data"].clone())
        } else {
            Err(format!("{}: {}", v["errorType"].as_str().unwrap_or("?"), v["error"].as_str().unwrap_or("?")))
        }
    }

    async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let data = self.api("/api/v1/query", &[("query", expr.to_owned())]).await?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// One number from an instant query answering one series.
    async fn scalar(&self, expr: &str) -> Option<f64> {
        let r = self.query(expr).await.ok()?;
        r.first()?["value"][1].as_str()?.parse().ok()
    }
}

fn metric(body: &str, line_prefix: &str) -> Option<f64> {
    body.lines().find_map(|l| l.strip_prefix(line_prefix)).and_then(|v| v.trim().parse().ok())
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

async fn wait_for<T: std::fmt::Debug, F: std::future::Future<Output = (bool, T)>>(
    what: &str,
    limit: Duration,
    agent: &Agent,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let (ok, seen) = check().await;
        if ok {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}; last seen: {seen:?}\nagent log (tail):\n{}",
            agent.log().lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Series the agent must export, and Prometheus hold, before the queries run: what the core
/// panels (ticks, tick duration, decisions, actions, data age) and most others read.
const AGENT_SERIES: [&str; 19] = [
    "autopilot_ticks_total{cluster=\"dash-certs\",cause=\"interval\"}",
    "autopilot_tick_duration_seconds_bucket{cluster=\"dash-certs\",le=\"+Inf\"}",
    "autopilot_policy_evaluation_duration_seconds_bucket{le=\"+Inf\"}",
    "autopilot_decisions_total{cluster=\"dash-certs\",package=\"kafka.autopilot.certs\",rule=\"renew_before_expiry\",kind=\"renew_certificate\"}",
    "autopilot_decisions_deferred_total{cluster=\"dash-certs\",kind=\"renew_certificate\"}",
    "autopilot_actions_total{cluster=\"dash-certs\",kind=\"notify\",outcome=\"emitted\"}",
    "autopilot_data_age_seconds{cluster=\"dash-certs\",source=\"metrics\"}",
    "autopilot_data_stale{cluster=\"dash-certs\",source=\"metrics\"}",
    "autopilot_broker_state{cluster=\"dash-evicted\",broker=\"1\",state=\"healthy\"}",
    "autopilot_certificate_days_to_expiry{cluster=\"dash-certs\"",
    "autopilot_operations_in_flight{cluster=\"dash-manual\"}",
    "autopilot_reassignments_pending{cluster=\"dash-manual\"}",
    "autopilot_requests_total{cluster=\"dash-manual\",kind=\"scale_brokers\",result=\"accepted\"}",
    "autopilot_requests_total{cluster=\"dash-evicted\",kind=\"scale_brokers\",result=\"refused\"}",
    "autopilot_policy_reloads_total{result=\"ok\"}",
    "autopilot_notifications_total{receiver=\"dashboards-test\",result=\"sent\"}",
    "autopilot_triggers_total{cluster=\"dash-manual\"}",
    "autopilot_alerts_received_total{result=\"triggered\"}",
    "autopilot_backup_last_success_timestamp_seconds{cluster=\"dash-manual\",topic=\"orders\"}",
];

/// Grafana's formatting of a multi-value variable in a Prometheus query: values regex-escaped,
/// one as it is, several as `(a|b)`.
fn regex_values(values: &[String]) -> String {
    let esc: Vec<String> = values
        .iter()
        .map(|v| {
            v.chars().map(|c| if "\\^$*+?.()|{}[]'".contains(c) { format!("\\\\{c}") } else { c.to_string() }).collect()
        })
        .collect();
    if esc.len() == 1 {
        esc[0].clone()
    } else {
        format!("({})", esc.join("|"))
    }
}

/// Resolve a dashboard's template variables in order, as Grafana would on load: `label_values`
/// asked of Prometheus over the last 5 minutes, "All" for variables that offer it, the first
/// value (sorted) otherwise.
async fn resolve(http: &Http, file: &str, d: &Value) -> BTreeMap<String, String> {
    let mut values: BTreeMap<String, String> =
        BUILTINS.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    for v in variables(d) {
        if v["type"] != "query" {
            continue;
        }
        let name = v["name"].as_str().unwrap().to_owned();
        let q = substitute(&variable_query(v), &values);
        let inner = q.strip_prefix("label_values(").and_then(|r| r.strip_suffix(')')).unwrap();
        let (selector, label) = inner.rsplit_once(',').map_or(("", inner), |(s, l)| (s, l));
        let (selector, label) = (selector.trim(), label.trim());
        let now = unix_now();
        let found: BTreeSet<String> = if selector.is_empty() {
            let data = http.api(&format!("/api/v1/label/{label}/values"), &[]).await;
            data.unwrap_or_else(|e| panic!("{file}: variable {name}: {e}"))
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        } else {
            let params = [
                ("match[]", selector.to_owned()),
                ("start", format!("{:.3}", now - 300.0)),
                ("end", format!("{now:.3}")),
            ];
            let data = http.api("/api/v1/series", &params).await;
            data.unwrap_or_else(|e| panic!("{file}: variable {name}: query {q:?}: {e}"))
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s[label].as_str().map(str::to_owned))
                .collect()
        };
        let found: Vec<String> = found.into_iter().collect();
        let value = if v["includeAll"] == true {
            match v["allValue"].as_str() {
                Some(all) if !all.is_empty() => all.to_owned(),
                _ if found.is_empty() => ".*".to_owned(),
                _ => regex_values(&found),
            }
        } else {
            found.first().cloned().unwrap_or_else(|| panic!("{file}: variable {name} ({q}) has no values"))
        };
        values.insert(name, value);
    }
    values
}

#[derive(Debug, Default)]
struct Report {
    panels: usize,
    exprs: usize,
    with_data: usize,
    /// (panel, refId, metrics without series)
    parse_only: Vec<(String, String, Vec<String>)>,
    failures: Vec<String>,
}

async fn run_dashboard(http: &Http, file: &str, present: &mut BTreeMap<String, bool>) -> Report {
    let d = load(file);
    let values = resolve(http, file, &d).await;
    let mut report = Report { panels: panels(&d).iter().filter(|p| p["type"] != "row").count(), ..Report::default() };
    for (title, refid, expr) in exprs(&d) {
        report.exprs += 1;
        let q = substitute(&expr, &values);
        if q.contains('$') {
            report.failures.push(format!("{title} {refid}: variables left after substitution: {q}"));
            continue;
        }
        let result = match http.query(&q).await {
            Ok(r) => r,
            Err(e) => {
                report.failures.push(format!("{title} {refid}: does not run: {e}\n    {q}"));
                continue;
            }
        };
        let mut missing = Vec::new();
        for m in metric_names(&expr) {
            if !present.contains_key(&m) {
                let n = http.scalar(&format!("count({{__name__=\"{m}\"}})")).await.unwrap_or(0.0);
                present.insert(m.clone(), n > 0.0);
            }
            if !present[&m] {
                missing.push(m);
            }
        }
        if !missing.is_empty() {
            // Parsed; whatever came back (e.g. `or vector(0)`) proves nothing more.
            report.parse_only.push((title, refid, missing));
        } else if result.is_empty() {
            report
                .failures
                .push(format!("{title} {refid}: every metric has series, but no series came back:\n    {q}"));
        } else {
            report.with_data += 1;
        }
    }
    println!(
        "{file}: {} panels, {} expressions: {} returned series, {} parsed only (a metric has no series in the stack)",
        report.panels,
        report.exprs,
        report.with_data,
        report.parse_only.len()
    );
    for (title, refid, missing) in &report.parse_only {
        println!("    parse only: {title} {refid} (no series of {})", missing.join(", "));
    }
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_query_runs_against_the_stack_prometheus() {
    let started = Instant::now();
    let stack = Stack::get();
    let addr = webhook_addr(&stack);
    let http = Http {
        client: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap(),
        prometheus: stack.prometheus.clone(),
    };

    // Prometheus must scrape the agent: the job `scripts/stack.sh up` configures.
    let targets = http.api("/api/v1/targets", &[("state", "active".to_owned())]).await.unwrap();
    let scraped =
        targets["activeTargets"].as_array().into_iter().flatten().any(|t| {
            t["labels"]["job"] == "autopilot-agent" && t["scrapeUrl"].as_str().is_some_and(|u| u.contains(&addr))
        });
    assert!(
        scraped,
        "the stack's Prometheus has no scrape job `autopilot-agent` for {addr}: run `scripts/stack.sh up` \
         (it reloads Prometheus with the job)"
    );
    if let Err(e) = TcpListener::bind(&addr) {
        panic!("{addr} (the stack's webhook port, where Prometheus scrapes the agent) is taken: {e}; another test runs an agent or listener there");
    }

    let hook = receiver();
    let agent = start_agent(&addr, hook);
    let base = format!("http://127.0.0.1:{}", agent.port);
    wait_for("the agent's first ticks", Duration::from_secs(20), &agent, || async {
        let body = http.get_text(&format!("{base}/metrics")).await.unwrap_or_default();
        let ticks = metric(&body, "autopilot_ticks_total{cluster=\"dash-manual\",cause=\"interval\"}");
        (ticks.is_some_and(|n| n >= 1.0), ticks)
    })
    .await;

    // Operator requests: one accepted (partition moves follow), one refused.
    let (status, body) =
        http.post(&format!("{base}/api/v1/clusters/dash-manual/scale"), &json!({"desired_brokers": 4})).await;
    assert!((200..300).contains(&status), "scaling dash-manual to 4: {status} {body}");
    let (status, body) =
        http.post(&format!("{base}/api/v1/clusters/dash-evicted/scale"), &json!({"desired_brokers": 1})).await;
    assert!((400..500).contains(&status), "scaling dash-evicted to 1 must be refused: {status} {body}");
    // An alert from Alertmanager: the cluster is evaluated at once (a trigger).
    let alert = json!({"version": "4", "status": "firing", "receiver": "agent", "alerts": [{"status": "firing",
        "fingerprint": "dashboards-1", "labels": {"alertname": "KafkaOfflinePartitions", "severity": "critical",
        "strimzi_io_cluster": "dash-manual", "namespace": "kafka"}}]});
    let (status, body) = http.post(&format!("{base}/api/v1/alertmanager"), &alert).await;
    assert!(status == 200 && body.contains("dash-manual"), "the webhook: {status} {body}");

    // A broken policy file, kept out (an error and a failed reload), then removed (a good reload).
    let broken = agent.dir.join("policies/zz_dashboards_broken.rego");
    std::fs::write(
        &broken,
        "package kafka.autopilot.zz_broken\n\nimport rego.v1\n\ndecisions contains d if { d := }\n",
    )
    .unwrap();
    wait_for("the broken policy to be kept out", Duration::from_secs(10), &agent, || async {
        let body = http.get_text(&format!("{base}/metrics")).await.unwrap_or_default();
        let healthy = metric(&body, "autopilot_policy_healthy");
        (healthy == Some(0.0), healthy)
    })
    .await;
    std::fs::remove_file(&broken).unwrap();

    wait_for("every agent series the panels need", Duration::from_secs(30), &agent, || async {
        let body = http.get_text(&format!("{base}/metrics")).await.unwrap_or_default();
        let missing: Vec<&str> = AGENT_SERIES.iter().copied().filter(|s| !body.contains(s)).collect();
        let healthy = metric(&body, "autopilot_policy_healthy") == Some(1.0);
        (missing.is_empty() && healthy, (missing, healthy))
    })
    .await;

    // Two scrapes after every series exists, so rates over them have two samples.
    let ready_at = unix_now();
    wait_for("Prometheus to scrape the agent twice more", Duration::from_secs(20), &agent, || async {
        let t = http.scalar("timestamp(up{job=\"autopilot-agent\"} == 1)").await;
        (t.is_some_and(|t| t >= ready_at + 2.2), t)
    })
    .await;
    for s in AGENT_SERIES {
        let selector = if s.ends_with('}') { s.to_owned() } else { format!("{s}}}") };
        let n = http.query(&selector).await.unwrap().len();
        assert!(n > 0, "Prometheus has no {selector} although the agent exports it");
    }

    let mut present = BTreeMap::new();
    let mut failures = Vec::new();
    let mut reports = BTreeMap::new();
    for (file, _) in DASHBOARDS {
        let r = run_dashboard(&http, file, &mut present).await;
        failures.extend(r.failures.iter().map(|f| format!("{file}: {f}")));
        reports.insert(file, r);
    }
    println!("checked in {:.1}s", started.elapsed().as_secs_f64());
    assert!(failures.is_empty(), "{} failing expression(s):\n{}", failures.len(), failures.join("\n"));

    // Only what this run cannot produce is left without data: repair SLAs (ISR repairs take
    // minutes), source and journal errors, and the backup jobs' metrics (jobs need a Kafka
    // broker: tests/stack_backup.rs runs them).
    let agent_report = &reports["agent-overview.json"];
    let no_data: BTreeSet<&str> =
        agent_report.parse_only.iter().flat_map(|(_, _, m)| m.iter().map(String::as_str)).collect();
    let expected = [
        "autopilot_backup_bytes_total",
        "autopilot_backup_compression_ratio",
        "autopilot_backup_errors_total",
        "autopilot_backup_job_duration_seconds_bucket",
        "autopilot_backup_jobs_running",
        "autopilot_backup_jobs_total",
        "autopilot_backup_messages_total",
        "autopilot_backup_stored_bytes_total",
        "autopilot_backup_throughput_bytes_per_second",
        "autopilot_repair_sla_total",
        "autopilot_source_errors_total",
        "autopilot_journal_errors_total",
    ];
    let unexpected: Vec<&&str> = no_data.iter().filter(|m| !expected.contains(m)).collect();
    assert!(unexpected.is_empty(), "agent metrics without series in Prometheus: {unexpected:?}");
    // The exporter's series (brokers, under-replicated partitions, CPU, memory, disk, network).
    let health = &reports["cluster-health.json"];
    assert!(health.with_data >= 13, "cluster health: only {} of {} with data", health.with_data, health.exprs);
}
