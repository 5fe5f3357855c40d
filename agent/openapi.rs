//! The OpenAPI 3.1 document of the agent's API (`GET /api/v1/openapi.json`). Written by hand
//! from the same route table the router is checked against ([`crate::http::ROUTES`]).

use serde_json::{json, Map, Value};

/// (method, path, summary, request body schema, role needed)
const OPERATIONS: &[(&str, &str, &str, Option<&str>, &str)] = &[
    ("get", "/metrics", "The agent's metrics (Prometheus text format).", None, "none"),
    ("get", "/healthz", "Liveness: the process answers.", None, "none"),
    ("get", "/readyz", "Readiness: policies are loaded.", None, "none"),
    ("get", "/api/v1/openapi.json", "This document.", None, "none"),
    ("get", "/api/v1/clusters", "Every cluster with its status and when it was last observed.", None, "viewer"),
    ("get", "/api/v1/clusters/{name}/health", "Health report: status and reasons, brokers, partition replica status, certificates, operations, recent events and one-hour trends.", None, "viewer"),
    ("post", "/api/v1/clusters/{name}/scale", "Ask for the node pool to be scaled; validated, then run as an operation.", Some("ScaleRequest"), "operator"),
    ("get", "/api/v1/operations", "Operations, newest first (?cluster= to filter).", None, "viewer"),
    ("get", "/api/v1/operations/{id}", "One operation with its steps.", None, "viewer"),
    ("get", "/api/v1/decisions", "What the policies decided and why, and what came of it (?cluster=, ?limit=).", None, "viewer"),
    ("post", "/api/v1/alertmanager", "Alertmanager webhook (payload version 4): queues an evaluation of each cluster the new alerts name.", Some("AlertmanagerPayload"), "webhook token"),
    ("post", "/api/v1/clusters/{name}/backups", "Back up a topic (a job).", Some("BackupRequest"), "operator"),
    ("get", "/api/v1/backups", "Backups in storage.", None, "viewer"),
    ("get", "/api/v1/backups/{id}", "One backup's manifest.", None, "viewer"),
    ("post", "/api/v1/backups/{id}/restore", "Restore a backup into a topic (a job).", Some("RestoreRequest"), "operator"),
    ("post", "/api/v1/migrations", "Copy a topic to another topic or cluster, verified per partition (a job).", Some("MigrationRequest"), "operator"),
    ("post", "/api/v1/clusters/{name}/drain", "Watch a consumer group drain (a job).", Some("DrainRequest"), "operator"),
    ("get", "/api/v1/jobs", "Backup, restore, migration and drain jobs.", None, "viewer"),
    ("get", "/api/v1/jobs/{id}", "One job with its progress.", None, "viewer"),
];

fn schemas() -> Value {
    let duration = json!({"type": "string", "description": "humantime duration, e.g. 300s, 5m"});
    json!({
        "ScaleRequest": {"type": "object", "required": ["desired_brokers"], "additionalProperties": false,
            "properties": {"desired_brokers": {"type": "integer", "minimum": 1}, "drain_timeout": duration}},
        "BackupRequest": {"type": "object", "required": ["topic"], "additionalProperties": false,
            "properties": {"topic": {"type": "string"},
                "compression": {"type": "string", "enum": ["none", "gzip", "snappy", "lz4", "zstd"], "default": "lz4"},
                "max_messages": {"type": "integer", "minimum": 1}}},
        "RestoreRequest": {"type": "object", "required": ["to_topic"], "additionalProperties": false,
            "properties": {"to_topic": {"type": "string"}, "cluster": {"type": "string"}, "dry_run": {"type": "boolean"}}},
        "MigrationRequest": {"type": "object", "required": ["from", "to"], "additionalProperties": false,
            "properties": {"from": {"type": "string", "description": "CLUSTER/TOPIC"}, "to": {"type": "string", "description": "CLUSTER/TOPIC"}}},
        "DrainRequest": {"type": "object", "required": ["group", "timeout"], "additionalProperties": false,
            "properties": {"group": {"type": "string"}, "max_lag": {"type": "integer", "minimum": 0}, "timeout": duration}},
        "AlertmanagerPayload": {"type": "object", "required": ["version", "alerts"],
            "properties": {"version": {"const": "4"}, "status": {"type": "string"}, "receiver": {"type": "string"},
                "alerts": {"type": "array", "items": {"type": "object", "required": ["status", "labels", "fingerprint"],
                    "properties": {"status": {"enum": ["firing", "resolved"]}, "labels": {"type": "object"},
                        "annotations": {"type": "object"}, "fingerprint": {"type": "string"}}}}}},
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    })
}

fn responses(method: &str, role: &str) -> Value {
    let error =
        json!({"description": "", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let mut r = Map::new();
    let ok = if method == "post" && role != "webhook token" { "202" } else { "200" };
    r.insert(ok.into(), json!({"description": "OK"}));
    if role != "none" {
        for (code, what) in
            [("401", "missing or invalid credentials"), ("403", "role not allowed"), ("429", "rate limit exceeded")]
        {
            let mut e = error.clone();
            e["description"] = what.into();
            r.insert(code.into(), e);
        }
    }
    if method == "post" {
        for (code, what) in [
            ("400", "invalid request"),
            ("404", "unknown cluster, backup or job"),
            ("409", "refused: conflicts with what runs"),
        ] {
            let mut e = error.clone();
            e["description"] = what.into();
            r.insert(code.into(), e);
        }
    }
    Value::Object(r)
}

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for (method, path, summary, body, role) in OPERATIONS {
        let mut op = json!({"summary": summary, "responses": responses(method, role), "x-role": role});
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        if let Some(schema) = body {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
        }
        op["security"] = match *role {
            "none" => json!([]),
            "webhook token" => json!([{"webhookToken": []}]),
            _ => json!([{"bearer": []}]),
        };
        let entry = paths.entry((*path).to_owned()).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "kafka-autopilot", "version": env!("CARGO_PKG_VERSION"),
            "description": "Health reports, operations, decisions, backups and the Alertmanager webhook of one agent (one region). Roles: viewer reads, operator also changes."},
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "webhookToken": {"type": "http", "scheme": "bearer", "description": "api.auth.webhook_token_file"},
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_and_nothing_else() {
        let doc = document();
        let documented: Vec<(String, String)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(p, ops)| ops.as_object().unwrap().keys().map(move |m| (m.clone(), p.clone())))
            .collect();
        let mut routes: Vec<(String, String)> =
            crate::http::ROUTES.iter().map(|(m, p)| ((*m).to_owned(), (*p).to_owned())).collect();
        let mut documented_sorted = documented.clone();
        routes.sort();
        documented_sorted.sort();
        assert_eq!(documented_sorted, routes);
        for (_, _, _, body, _) in OPERATIONS {
            if let Some(b) = body {
                assert!(doc["components"]["schemas"][b].is_object(), "schema {b} is defined");
            }
        }
    }
}
