# Backups: which topics are due for a backup, and which backups retention deletes.
#
# Input: input.backups = null when the catalog is unknown (no backup storage, or it could not be
# read): then nothing is decided. Otherwise {entries: [{id, topic, created_at, completed_at,
# running, complete, age_seconds, ...}], topics: {NAME: {last_completed_at, age_seconds,
# complete, running}}}. Schedules are in data.autopilot.backup.schedules; a topic is selected by
# exact names or `prefix*` patterns, minus `exclude`. The first schedule that selects a topic
# owns it.
package kafka.autopilot.backup

import rego.v1

schedules := object.get(data.autopilot, ["backup", "schedules"], [])

matches(pattern, name) if {
	not endswith(pattern, "*")
	pattern == name
}

matches(pattern, name) if {
	endswith(pattern, "*")
	startswith(name, trim_suffix(pattern, "*"))
}

selects(s, name) if {
	some p in s.topics
	matches(p, name)
	not excluded(s, name)
}

excluded(s, name) if {
	some p in object.get(s, "exclude", [])
	matches(p, name)
}

# The schedule that owns a topic: the first one selecting it.
owner(name) := i if {
	indices := [j | some j, s in schedules; selects(s, name)]
	count(indices) > 0
	i := min(indices)
}

catalog := input.backups

last(name) := catalog.topics[name]

never_backed_up(name) if not last(name).last_completed_at

decisions contains d if {
	catalog != null
	some t in input.cluster.topics
	i := owner(t.name)
	s := schedules[i]
	not last(t.name).running
	never_backed_up(t.name)
	d := {
		"kind": "backup_topic",
		"topic": t.name,
		"compression": object.get(s, "compression", "lz4"),
		"rule": "backup_first",
		"message": sprintf("topic %v has no complete backup (schedule %v)", [t.name, s.name]),
	}
}

decisions contains d if {
	catalog != null
	some t in input.cluster.topics
	i := owner(t.name)
	s := schedules[i]
	not last(t.name).running
	age := last(t.name).age_seconds
	age >= s.every_seconds
	d := {
		"kind": "backup_topic",
		"topic": t.name,
		"compression": object.get(s, "compression", "lz4"),
		"rule": "backup_due",
		"message": sprintf("topic %v was last backed up %vh ago; schedule %v runs every %vh", [
			t.name, round(age / 36) / 100, s.name, round(s.every_seconds / 36) / 100,
		]),
	}
}

# Beyond the newest keep_last complete backups of a topic: expired. (Timestamps are RFC 3339
# strings of one width, so they compare in time order.)
decisions contains d if {
	catalog != null
	some e in catalog.entries
	e.complete
	s := schedules[owner(e.topic)]
	newer := count([x |
		some x in catalog.entries
		x.topic == e.topic
		x.complete
		x.completed_at > e.completed_at
	])
	newer >= s.keep_last
	d := {
		"kind": "expire_backup",
		"id": e.id,
		"rule": "backup_retention_count",
		"message": sprintf("backup %v of %v is beyond the %v kept by schedule %v", [e.id, e.topic, s.keep_last, s.name]),
	}
}

# Older than max_age_seconds: expired (the newest complete backup is always kept: the planner
# refuses to delete it).
decisions contains d if {
	catalog != null
	some e in catalog.entries
	e.complete
	s := schedules[owner(e.topic)]
	e.age_seconds > s.max_age_seconds
	d := {
		"kind": "expire_backup",
		"id": e.id,
		"rule": "backup_retention_age",
		"message": sprintf("backup %v of %v is %v days old; schedule %v keeps %v days", [
			e.id, e.topic, round(e.age_seconds / 864) / 100, s.name, s.max_age_seconds / 86400,
		]),
	}
}

# Interrupted backups (not running, not complete) are resumed rather than started anew: the
# agent's backup job resumes the incomplete backup of the same topic.
