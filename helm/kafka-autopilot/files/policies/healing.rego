# Healing: failed brokers, storage, ISR and evictions.
#
# Input: the agent's snapshot (see README "Policy input"); thresholds in data.autopilot.healing.
# Output: `decisions`, a set of objects with `kind`, the kind's fields, `rule` and `message`.
# The agent runs one operation per cluster at a time, in kind order (volumes, pods, leaders,
# replicas), and every action kind has a cooldown, so one decision per problem is enough here.
package kafka.autopilot.healing

import rego.v1

cfg := data.autopilot.healing

pool := [b | some b in input.cluster.brokers; b.pool_member]

failed := {b.id | some b in pool; b.state == "failed"}

# Many brokers down at once is a network partition or a platform outage, not broker trouble:
# replacing pods or moving data would make it worse. Alert instead (Cruise Control stops at 10
# brokers or 40% of them).
mass_failure if count(failed) >= cfg.max_failed_brokers

mass_failure if {
	count(failed) >= 2
	count(failed) / count(pool) >= cfg.max_failed_fraction
}

decisions contains d if {
	mass_failure
	d := {
		"kind": "notify",
		"severity": "critical",
		"rule": "mass_broker_failure",
		"message": sprintf("%v of %v brokers failed at once (%v): a partition or platform outage, no automatic healing; check the nodes and the network", [
			count(failed), count(pool), sort(failed),
		]),
	}
}

# A broker that goes down again and again is not fixed by replacing its pod: tell a human and
# leave it alone.
flapping(b) if b.outages_last_hour >= cfg.flapping_outages

decisions contains d if {
	some b in pool
	flapping(b)
	d := {
		"kind": "notify",
		"severity": "warning",
		"rule": "flapping_broker",
		"message": sprintf("broker %v went down %v times in the last hour; not replaced automatically", [b.id, b.outages_last_hour]),
	}
}

# Every failed broker is reported at once: the first action follows detection (heartbeat timeout)
# in the same tick. The message is stable so the notification cooldown keeps it to one.
why_failed(b) := "absent from Kafka's metadata" if not b.registered

else := "its pod is not ready"

decisions contains d if {
	not mass_failure
	some b in pool
	b.state == "failed"
	d := {
		"kind": "notify",
		"severity": "warning",
		"rule": "broker_failed",
		"message": sprintf("broker %v failed: %v past the heartbeat timeout", [b.id, why_failed(b)]),
	}
}

# 1. Leadership leaves a failed broker (the controller normally moves it; elect where it did not).
decisions contains d if {
	not mass_failure
	some b in pool
	b.state == "failed"
	b.leaders > 0
	d := {
		"kind": "elect_leaders",
		"rule": "failed_broker_leadership",
		"message": sprintf("broker %v failed %vs ago and still leads %v partitions", [b.id, round(b.state_seconds), b.leaders]),
	}
}

# 2. A broker failed past the grace period: delete its stuck pod so Strimzi replaces it.
decisions contains d if {
	not mass_failure
	some b in pool
	b.state == "failed"
	b.state_seconds >= cfg.replace_after_seconds
	b.state_seconds < cfg.rereplicate_after_seconds
	not flapping(b)
	not volume_unavailable(b.id)
	d := {
		"kind": "replace_pod",
		"broker": b.id,
		"rule": "replace_failed_broker",
		"message": sprintf("broker %v failed %vs ago (grace %vs): replacing its pod", [b.id, round(b.state_seconds), cfg.replace_after_seconds]),
	}
}

# 3. Still down after the longer grace: restore the replication factor on the healthy brokers.
decisions contains d if {
	not mass_failure
	some b in pool
	b.state == "failed"
	b.state_seconds >= cfg.rereplicate_after_seconds
	b.replicas > 0
	d := {
		"kind": "reassign_partitions",
		"from_brokers": [b.id],
		"rule": "rereplicate_lost_broker",
		"message": sprintf("broker %v down for %vs: moving its %v replicas to healthy brokers", [b.id, round(b.state_seconds), b.replicas]),
	}
}

# Storage. A volume not Bound for the configured time: grow it when the disk was full (the
# usual cause), otherwise replace it so Strimzi provisions a new one and Kafka re-replicates.
volume_unavailable(id) if {
	some p in input.cluster.pvcs
	p.broker == id
	p.unavailable_seconds >= cfg.storage.unavailable_seconds
}

broker(id) := b if {
	some b in input.cluster.brokers
	b.id == id
}

disk_full(id) if {
	is_number(broker(id).disk.current)
	broker(id).disk.current >= cfg.storage.full_fraction
}

grown := ceil(input.cluster.node_pool.storage_bytes * cfg.storage.growth_factor)

decisions contains d if {
	not mass_failure
	some p in input.cluster.pvcs
	p.unavailable_seconds >= cfg.storage.unavailable_seconds
	not disk_full(p.broker)
	d := {
		"kind": "replace_volume",
		"broker": p.broker,
		"rule": "replace_failed_volume",
		"message": sprintf("volume %v of broker %v is %v for %vs: replacing it", [p.name, p.broker, p.phase, round(p.unavailable_seconds)]),
	}
}

decisions contains d if {
	not mass_failure
	some p in input.cluster.pvcs
	p.unavailable_seconds >= cfg.storage.unavailable_seconds
	disk_full(p.broker)
	grown <= cfg.storage.max_bytes
	d := {
		"kind": "resize_volume",
		"broker": p.broker,
		"to_bytes": grown,
		"rule": "grow_full_volume",
		"message": sprintf("volume %v of broker %v is %v with the disk full: growing the node pool's volumes to %v bytes", [p.name, p.broker, p.phase, grown]),
	}
}

# Disk filling: expand before full, from the usage trend.
hours_to_full(b) := (1 - b.disk.current) / b.disk.slope_per_hour if {
	is_number(b.disk.current)
	is_number(b.disk.slope_per_hour)
	b.disk.slope_per_hour > 0
}

filling(b) if {
	is_number(b.disk.current)
	b.disk.current >= cfg.storage.expand_at
}

filling(b) if hours_to_full(b) < cfg.storage.horizon_hours

# Volumes grow together (the node pool has one storage size): one decision, for the fullest.
filling_brokers := [b | some b in pool; b.state == "healthy"; filling(b)]

fullest := b if {
	count(filling_brokers) > 0
	top := max([x.disk.current | some x in filling_brokers])
	some b in filling_brokers
	b.disk.current == top
	b.id == min([y.id | some y in filling_brokers; y.disk.current == top])
}

decisions contains d if {
	not mass_failure
	b := fullest
	grown <= cfg.storage.max_bytes
	d := {
		"kind": "resize_volume",
		"broker": b.id,
		"to_bytes": grown,
		"rule": "expand_filling_disk",
		"message": sprintf("broker %v disk at %v%%, growing %v%%/h: expanding volumes to %v bytes", [
			b.id, round(b.disk.current * 100), round(object.get(b.disk, "slope_per_hour", 0) * 100), grown,
		]),
	}
}

decisions contains d if {
	some b in pool
	filling(b)
	grown > cfg.storage.max_bytes
	d := {
		"kind": "notify",
		"severity": "critical",
		"rule": "disk_filling_at_max_size",
		"message": sprintf("broker %v disk at %v%% and volumes cannot grow past %v bytes", [b.id, round(b.disk.current * 100), cfg.storage.max_bytes]),
	}
}

# ISR below min.insync.replicas: alert at once; move the replica of a slow (up but out of sync)
# broker to a healthy one and judge the repair against the SLA. A dead broker's replicas are
# handled by the broker rules above.
under_min := [p | some p in input.cluster.problem_partitions; p.under_min_isr]

decisions contains d if {
	some p in under_min
	d := {
		"kind": "notify",
		"severity": "critical",
		"rule": "isr_below_min",
		"message": sprintf("partition %v-%v has ISR %v of replicas %v, below min.insync.replicas: producers with acks=all fail", [
			p.topic, p.partition, p.isr, p.replicas,
		]),
	}
}

slow(id) if {
	b := broker(id)
	b.registered
	b.state != "failed"
	b.state != "suspect"
	b.out_of_sync_replicas > 0
	b.out_of_sync_seconds >= cfg.isr.slow_after_seconds
}

decisions contains d if {
	not mass_failure
	some id in {r | some p in under_min; some r in p.replicas; not r in p.isr}
	slow(id)
	parts := [{"topic": p.topic, "partition": p.partition} | some p in under_min; id in p.replicas; not id in p.isr]
	d := {
		"kind": "replace_replicas",
		"broker": id,
		"partitions": parts,
		"sla": cfg.isr.sla,
		"rule": "replace_slow_replica",
		"message": sprintf("broker %v is up but out of sync on %v partitions below min.insync.replicas: moving those replicas", [id, count(parts)]),
	}
}

# An evicted broker pod: follow its rescheduling, check it comes back on its volume, and
# restore leadership.
decisions contains d if {
	some b in pool
	b.pod.reason == "Evicted"
	d := {
		"kind": "recover_pod",
		"broker": b.id,
		"rule": "recover_evicted_pod",
		"message": sprintf("pod %v of broker %v evicted from node %v (node pressure): following its rescheduling", [b.pod.name, b.id, b.pod.node]),
	}
}

# Alerts from Alertmanager (they trigger an immediate evaluation): critical ones are relayed to
# the operators with the cluster's name. The agent acts on its own observations, never on an
# alert alone: the alert only makes it look now.
decisions contains d if {
	some a in input.alerts
	a.status == "firing"
	object.get(a.labels, "severity", "") == "critical"
	d := {
		"kind": "notify",
		"severity": "critical",
		"rule": "alert_firing",
		"message": sprintf("Alertmanager: %v is firing for %v", [a.name, input.cluster.name]),
	}
}
