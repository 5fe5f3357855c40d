//! The Helm chart `helm/kafka-autopilot`, judged by Helm's own Go code (lint, schema, render via
//! helm-python-sdk), Kubernetes' schemas (kubernetes-validate --strict) and the agent itself
//! (`autopilot check-config` on every rendered config). The checks are in
//! `tests/helm/check_chart.py`, run with the stack's Python (`scripts/stack.sh up` installs it);
//! no Kubernetes cluster is needed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The stack venv's Python, with the chart tooling importable; fails the test otherwise.
fn python() -> PathBuf {
    let py = root().join(".stack/venv/bin/python");
    assert!(py.is_file(), "no Python venv at {}: run scripts/stack.sh up", py.display());
    let probe = Command::new(&py)
        .args(["-c", "import helm_python, kubernetes_validate, yaml"])
        .current_dir(root().join("tests/helm"))
        .output()
        .unwrap();
    assert!(
        probe.status.success(),
        "helm-python-sdk or kubernetes-validate missing from {}: run scripts/stack.sh up\n{}",
        py.display(),
        String::from_utf8_lossy(&probe.stderr)
    );
    py
}

fn check_chart(part: &str) {
    let out = Command::new(python())
        .arg(root().join("tests/helm/check_chart.py"))
        .args(["--binary", env!("CARGO_BIN_EXE_autopilot"), "--part", part])
        .current_dir(root())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "chart checks ({part}) failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(" passed, 0 failed"), "no summary from check_chart.py:\n{stdout}");
}

/// Lint, schema, renders of several value sets validated as Kubernetes objects, RBAC derived
/// from the code, security context and mounts, rules, dashboards, NetworkPolicy, PDB, the
/// chart's copies of rules/, policies/ and the CRD, and check-config on each rendered config.
#[test]
fn chart_lints_renders_and_validates() {
    check_chart("core");
}

/// Renders with API auth (JWT, webhook token), TLS, mutual TLS, rate limits, Alertmanager
/// labels and backups: the secrets are mounted where the config points, and the agent accepts
/// the config.
#[test]
fn chart_api_security_renders_pass_check_config() {
    check_chart("api-security");
}
