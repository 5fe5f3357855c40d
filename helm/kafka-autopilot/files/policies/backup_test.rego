package kafka.autopilot.backup_test

import rego.v1

import data.kafka.autopilot.backup

cfg := {"autopilot": {"backup": {"schedules": [
	{"name": "hourly", "topics": ["orders", "pay*"], "exclude": ["payments-dlq"], "every_seconds": 3600, "keep_last": 2, "max_age_seconds": 86400, "compression": "zstd"},
	{"name": "daily", "topics": ["*"], "exclude": ["_*"], "every_seconds": 86400, "keep_last": 7, "max_age_seconds": 2592000},
]}}}

topics := [{"name": n} | some n in ["orders", "payments", "payments-dlq", "audit", "_schemas"]]

entry(id, topic, completed, age) := {
	"id": id, "topic": topic, "created_at": completed, "completed_at": completed,
	"running": false, "complete": true, "age_seconds": age,
}

catalog(entries, topics_summary) := {"entries": entries, "topics": topics_summary}

run(backups) := ds if {
	ds := backup.decisions with input as {"cluster": {"topics": topics}, "backups": backups}
		with data.autopilot as cfg.autopilot
}

kinds(ds, kind) := {[d.topic, d.rule] | some d in ds; d.kind == kind}

test_no_catalog_no_decision if {
	count(run(null)) == 0
}

test_everything_selected_is_backed_up_first_internal_topics_excluded if {
	ds := run(catalog([], {}))
	kinds(ds, "backup_topic") == {
		["orders", "backup_first"], ["payments", "backup_first"],
		["payments-dlq", "backup_first"], ["audit", "backup_first"],
	}
}

test_first_matching_schedule_owns_the_topic if {
	ds := run(catalog([], {}))
	some d in ds
	d.topic == "orders"
	d.compression == "zstd"
	some e in ds
	e.topic == "audit"
	e.compression == "lz4"
}

test_due_after_the_interval_not_before if {
	fresh := {"orders": {"age_seconds": 3599, "running": false, "last_completed_at": "2026-11-21T10:00:00.000Z", "complete": 1}}
	not ["orders", "backup_due"] in kinds(run(catalog([], fresh)), "backup_topic")
	old := {"orders": {"age_seconds": 3600, "running": false, "last_completed_at": "2026-11-21T10:00:00.000Z", "complete": 1}}
	["orders", "backup_due"] in kinds(run(catalog([], old)), "backup_topic")
}

test_never_while_running if {
	running := {"orders": {"age_seconds": null, "running": true, "complete": 0}}
	ds := run(catalog([], running))
	not ["orders", "backup_first"] in kinds(ds, "backup_topic")
}

test_retention_keeps_the_newest_keep_last if {
	es := [
		entry("o1", "orders", "2026-11-21T08:00:00.000Z", 10800),
		entry("o2", "orders", "2026-11-21T09:00:00.000Z", 7200),
		entry("o3", "orders", "2026-11-21T10:00:00.000Z", 3600),
	]
	ds := run(catalog(es, {"orders": {"age_seconds": 3600, "running": true, "last_completed_at": "2026-11-21T10:00:00.000Z", "complete": 3}}))
	{d.id | some d in ds; d.kind == "expire_backup"} == {"o1"}
}

test_retention_by_age if {
	es := [entry("a1", "audit", "2026-10-01T00:00:00.000Z", 2592001), entry("a2", "audit", "2026-11-20T00:00:00.000Z", 86400)]
	ds := run(catalog(es, {"audit": {"age_seconds": 86400, "running": false, "last_completed_at": "2026-11-20T00:00:00.000Z", "complete": 2}}))
	{d.id | some d in ds; d.kind == "expire_backup"} == {"a1"}
}

test_incomplete_backups_are_not_expired if {
	partial := object.union(entry("o9", "orders", null, 999999), {"complete": false, "completed_at": null})
	ds := run(catalog([partial], {"orders": {"running": false, "complete": 0}}))
	count({d | some d in ds; d.kind == "expire_backup"}) == 0
}
