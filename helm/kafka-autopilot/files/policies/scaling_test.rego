package kafka.autopilot.scaling_test

import rego.v1

import data.kafka.autopilot.scaling

# A 3-broker cluster at cpu 80% / memory 85% whose high conditions have held for `held` seconds.
loaded(held) := {
	"cluster": {
		"complete": true,
		"node_pool": {"replicas": 3},
		"utilisation": {"cpu": {"avg_5m": 0.80}, "memory": {"avg_5m": 0.85}},
		"conditions": {
			"cpu_high": {"holds": true, "held_seconds": held},
			"memory_high": {"holds": true, "held_seconds": held},
			"cpu_low": {"holds": false, "held_seconds": 0},
			"memory_low": {"holds": false, "held_seconds": 0},
		},
		"partitions": {"under_replicated": 0},
		"reassignments": [],
		"max_replication_factor": 3,
		"max_min_insync_replicas": 2,
	},
	"agent": {"operation": null, "seconds_since_last": {}},
}

# A 5-broker cluster at cpu 12% / memory 33% whose low conditions have held for `held` seconds.
idle(held) := {
	"cluster": {
		"complete": true,
		"node_pool": {"replicas": 5},
		"utilisation": {"cpu": {"avg_5m": 0.12}, "memory": {"avg_5m": 0.33}},
		"conditions": {
			"cpu_high": {"holds": false, "held_seconds": 0},
			"memory_high": {"holds": false, "held_seconds": 0},
			"cpu_low": {"holds": true, "held_seconds": held},
			"memory_low": {"holds": true, "held_seconds": held},
		},
		"partitions": {"under_replicated": 0},
		"reassignments": [],
		"max_replication_factor": 3,
		"max_min_insync_replicas": 2,
	},
	"agent": {"operation": null, "seconds_since_last": {}},
}

scale_targets(decisions) := {d.to | some d in decisions; d.kind == "scale_brokers"}

test_scales_3_to_5_once_load_held_5_minutes if {
	ds := scaling.decisions with input as loaded(300)
	scale_targets(ds) == {5}
	some d in ds
	d.rule == "scale_up_sustained_load"
}

test_no_scale_before_5_minutes if {
	ds := scaling.decisions with input as loaded(299)
	count(ds) == 0
}

test_step_bounded_by_max_step if {
	hot := json.patch(loaded(600), [{"op": "replace", "path": "/cluster/utilisation/cpu/avg_5m", "value": 0.99}])
	ds := scaling.decisions with input as hot
	scale_targets(ds) == {5}
}

test_bounded_by_max_brokers if {
	big := json.patch(loaded(600), [{"op": "replace", "path": "/cluster/node_pool/replicas", "value": 11}])
	ds := scaling.decisions with input as big
	scale_targets(ds) == {12}
}

test_capped_cluster_notifies_instead if {
	full := json.patch(loaded(600), [{"op": "replace", "path": "/cluster/node_pool/replicas", "value": 12}])
	ds := scaling.decisions with input as full
	scale_targets(ds) == set()
	some d in ds
	d.kind == "notify"
	d.rule == "scale_up_capped"
}

test_no_scaling_on_stale_data if {
	stale := json.patch(loaded(600), [{"op": "replace", "path": "/cluster/complete", "value": false}])
	ds := scaling.decisions with input as stale
	count(ds) == 0
}

test_no_scaling_while_an_operation_runs if {
	busy := json.patch(loaded(600), [{"op": "replace", "path": "/agent/operation", "value": "reassign_partitions"}])
	ds := scaling.decisions with input as busy
	count(ds) == 0
}

test_no_scaling_while_under_replicated if {
	urp := json.patch(loaded(600), [{"op": "replace", "path": "/cluster/partitions/under_replicated", "value": 4}])
	ds := scaling.decisions with input as urp
	count(ds) == 0
	why := scaling.blocked with input as urp
	why["4 partitions are under-replicated"]
}

test_no_scaling_during_cooldown if {
	cool := json.patch(loaded(600), [{"op": "replace", "path": "/agent/seconds_since_last", "value": {"scale_brokers": 600}}])
	cool_ds := scaling.decisions with input as cool
	count(cool_ds) == 0
	warm := json.patch(loaded(600), [{"op": "replace", "path": "/agent/seconds_since_last", "value": {"scale_brokers": 901}}])
	warm_ds := scaling.decisions with input as warm
	scale_targets(warm_ds) == {5}
}

test_scales_5_to_3_once_idle_held_10_minutes if {
	ds := scaling.decisions with input as idle(600)
	scale_targets(ds) == {3}
	early := scaling.decisions with input as idle(599)
	count(early) == 0
}

test_scale_down_never_below_replication_needs if {
	rf5 := json.patch(idle(900), [{"op": "replace", "path": "/cluster/max_replication_factor", "value": 5}])
	rf5_ds := scaling.decisions with input as rf5
	count(rf5_ds) == 0
	isr := json.patch(idle(900), [{"op": "replace", "path": "/cluster/max_min_insync_replicas", "value": 3}])
	isr_ds := scaling.decisions with input as isr
	scale_targets(isr_ds) == {4}
}

test_thresholds_come_from_data if {
	ds := scaling.decisions with input as loaded(120) with data.autopilot.scaling.scale_up.hold_seconds as 120
	scale_targets(ds) == {5}
}

test_bounded_by_the_broker_quota if {
	quota := json.patch(loaded(600), [{"op": "add", "path": "/cluster/broker_quota", "value": 4}])
	ds := scaling.decisions with input as quota
	scale_targets(ds) == {4}
}

test_at_the_quota_notifies_instead if {
	quota := json.patch(loaded(600), [{"op": "add", "path": "/cluster/broker_quota", "value": 3}])
	ds := scaling.decisions with input as quota
	scale_targets(ds) == set()
	some d in ds
	d.rule == "scale_up_capped"
	contains(d.message, "broker quota 3")
}

test_null_quota_means_max_brokers if {
	open := json.patch(loaded(600), [{"op": "add", "path": "/cluster/broker_quota", "value": null}])
	scaling.ceiling == 12 with input as open
}

test_target_from_utilisation_not_one_at_a_time if {
	# 3 brokers at 80% cpu and 85% memory against targets 55% / 65%: ceil(3 * 0.85 / 0.65) = 4
	# by memory, ceil(3 * 0.80 / 0.55) = 5 by cpu; the larger wins, in one step.
	scaling.needed == 5 with input as loaded(300)
	mild := json.patch(loaded(300), [{"op": "replace", "path": "/cluster/utilisation/cpu/avg_5m", "value": 0.76}])
	scaling.needed == 5 with input as mild
	with_memory := json.patch(mild, [{"op": "replace", "path": "/cluster/utilisation/memory/avg_5m", "value": 0.81}])
	scaling.needed == 5 with input as with_memory
}

test_no_scaling_while_partitions_move if {
	moving := json.patch(loaded(600), [{"op": "replace", "path": "/cluster/reassignments", "value": [{"topic": "t", "partition": 0}]}])
	ds := scaling.decisions with input as moving
	count(ds) == 0
	why := scaling.blocked with input as moving
	why["partitions are being reassigned"]
}

test_scale_down_bounded_by_max_step if {
	big := json.patch(idle(600), [{"op": "replace", "path": "/cluster/node_pool/replicas", "value": 10}])
	ds := scaling.decisions with input as big
	scale_targets(ds) == {8}
}

test_no_scale_down_at_the_floor if {
	small := json.patch(idle(900), [{"op": "replace", "path": "/cluster/node_pool/replicas", "value": 3}])
	ds := scaling.decisions with input as small
	count(ds) == 0
}

test_high_cpu_alone_is_not_enough if {
	cpu_only := json.patch(loaded(600), [{"op": "replace", "path": "/cluster/conditions/memory_high/held_seconds", "value": 0}])
	ds := scaling.decisions with input as cpu_only
	count(ds) == 0
}
