package kafka.autopilot.healing_test

import rego.v1

import data.kafka.autopilot.healing

broker(id, state, seconds) := {
	"id": id,
	"pool_member": true,
	"registered": state != "failed",
	"state": state,
	"state_seconds": seconds,
	"leaders": 0,
	"replicas": 4,
	"out_of_sync_replicas": 0,
	"outages_last_hour": 1,
	"out_of_sync_seconds": 0,
	"disk": {"current": 0.40, "slope_per_hour": 0.001},
	"pod": {"name": sprintf("c-brokers-%v", [id]), "reason": null, "node": "n1", "pvc": sprintf("data-0-c-brokers-%v", [id])},
}

healthy(id) := broker(id, "healthy", 3600)

cluster(brokers) := {
	"cluster": {
		"complete": true,
		"brokers": brokers,
		"node_pool": {"replicas": count(brokers), "storage_bytes": 1099511627776},
		"pvcs": [{"name": sprintf("data-0-c-brokers-%v", [b.id]), "broker": b.id, "phase": "Bound", "unavailable_seconds": 0} | some b in brokers],
		"problem_partitions": [],
	},
	"agent": {"operation": null, "seconds_since_last": {}},
}

kinds(ds) := {d.kind | some d in ds}

rules(ds) := {d.rule | some d in ds}

test_a_healthy_cluster_needs_nothing if {
	ds := healing.decisions with input as cluster([healthy(0), healthy(1), healthy(2)])
	count(ds) == 0
}

test_failed_broker_is_replaced_after_the_grace if {
	early := healing.decisions with input as cluster([healthy(0), healthy(1), broker(2, "failed", 30)])
	rules(early) == {"broker_failed"}
	ds := healing.decisions with input as cluster([healthy(0), healthy(1), broker(2, "failed", 60)])
	some d in ds
	d.kind == "replace_pod"
	d.broker == 2
	d.rule == "replace_failed_broker"
}

test_leadership_leaves_a_failed_broker if {
	leading := json.patch(broker(2, "failed", 5), [{"op": "replace", "path": "/leaders", "value": 3}])
	ds := healing.decisions with input as cluster([healthy(0), healthy(1), leading])
	rules(ds) == {"broker_failed", "failed_broker_leadership"}
}

test_a_long_failure_rereplicates_instead if {
	ds := healing.decisions with input as cluster([healthy(0), healthy(1), broker(2, "failed", 600)])
	some d in ds
	d.kind == "reassign_partitions"
	d.from_brokers == [2]
	not "replace_pod" in kinds(ds)
}

test_two_of_three_failing_is_an_outage_not_a_repair if {
	ds := healing.decisions with input as cluster([healthy(0), broker(1, "failed", 120), broker(2, "failed", 120)])
	kinds(ds) == {"notify"}
	some d in ds
	d.rule == "mass_broker_failure"
	contains(d.message, "2 of 3 brokers failed")
}

test_ten_failed_brokers_stop_healing_in_a_big_cluster if {
	ids := numbers.range(0, 39)
	brokers := array.concat([b | some i in ids; i < 10; b := broker(i, "failed", 120)], [b | some i in ids; i >= 10; b := healthy(i)])
	ds := healing.decisions with input as cluster(brokers)
	kinds(ds) == {"notify"}
}

test_a_flapping_broker_is_reported_not_replaced if {
	flappy := json.patch(broker(2, "failed", 90), [{"op": "replace", "path": "/outages_last_hour", "value": 4}])
	ds := healing.decisions with input as cluster([healthy(0), healthy(1), flappy])
	rules(ds) == {"broker_failed", "flapping_broker"}
}

test_a_lost_volume_is_replaced_after_60s if {
	input_doc := json.patch(cluster([healthy(0), healthy(1), broker(2, "failed", 90)]), [
		{"op": "replace", "path": "/cluster/pvcs/2/phase", "value": "Lost"},
		{"op": "replace", "path": "/cluster/pvcs/2/unavailable_seconds", "value": 60},
	])
	ds := healing.decisions with input as input_doc
	some d in ds
	d.kind == "replace_volume"
	d.broker == 2
	not "replace_pod" in kinds(ds)
	early := json.patch(input_doc, [{"op": "replace", "path": "/cluster/pvcs/2/unavailable_seconds", "value": 59}])
	not "replace_volume" in kinds(healing.decisions) with input as early
}

test_a_full_disk_grows_the_volume_instead if {
	full := json.patch(broker(2, "failed", 90), [{"op": "replace", "path": "/disk/current", "value": 0.97}])
	input_doc := json.patch(cluster([healthy(0), healthy(1), full]), [
		{"op": "replace", "path": "/cluster/pvcs/2/phase", "value": "Pending"},
		{"op": "replace", "path": "/cluster/pvcs/2/unavailable_seconds", "value": 120},
	])
	ds := healing.decisions with input as input_doc
	some d in ds
	d.kind == "resize_volume"
	d.to_bytes == 1649267441664
	not "replace_volume" in kinds(ds)
}

test_a_filling_disk_is_expanded_from_its_trend if {
	# 60% used, +2%/h: full in 20 h, inside the 24 h horizon.
	trending := json.patch(healthy(1), [{"op": "replace", "path": "/disk", "value": {"current": 0.60, "slope_per_hour": 0.02}}])
	ds := healing.decisions with input as cluster([healthy(0), trending, healthy(2)])
	some d in ds
	d.rule == "expand_filling_disk"
	d.broker == 1
	slow_growth := json.patch(healthy(1), [{"op": "replace", "path": "/disk", "value": {"current": 0.60, "slope_per_hour": 0.01}}])
	count(healing.decisions) == 0 with input as cluster([healthy(0), slow_growth, healthy(2)])
}

test_a_disk_at_the_size_limit_alerts if {
	full := json.patch(healthy(1), [{"op": "replace", "path": "/disk/current", "value": 0.9}])
	ds := healing.decisions with input as cluster([healthy(0), full, healthy(2)]) with data.autopilot.healing.storage.max_bytes as 1
	rules(ds) == {"disk_filling_at_max_size"}
}

under_min_isr_on(id) := json.patch(
	cluster([healthy(0), json.patch(broker(1, "healthy", 3600), [
		{"op": "replace", "path": "/out_of_sync_replicas", "value": 1},
		{"op": "replace", "path": "/out_of_sync_seconds", "value": 120},
	]), healthy(2)]),
	[{"op": "replace", "path": "/cluster/problem_partitions", "value": [{
		"topic": "orders", "partition": 3, "replicas": [id, 0, 2], "isr": [0], "under_min_isr": true, "under_replicated": true, "offline": false,
	}]}],
)

test_isr_below_min_alerts_and_moves_the_slow_replica if {
	ds := healing.decisions with input as under_min_isr_on(1)
	"isr_below_min" in rules(ds)
	some d in ds
	d.kind == "replace_replicas"
	d.broker == 1
	d.partitions == [{"topic": "orders", "partition": 3}]
	d.sla == "10m"
}

test_a_briefly_slow_broker_only_alerts if {
	ds := healing.decisions with input as under_min_isr_on(1) with data.autopilot.healing.isr.slow_after_seconds as 300
	rules(ds) == {"isr_below_min"}
}

test_an_evicted_pod_is_followed if {
	evicted := json.patch(broker(1, "suspect", 10), [{"op": "replace", "path": "/pod/reason", "value": "Evicted"}])
	ds := healing.decisions with input as cluster([healthy(0), evicted, healthy(2)])
	some d in ds
	d.kind == "recover_pod"
	d.broker == 1
}

test_critical_alerts_are_relayed_and_warnings_are_not if {
	alerts := [
		{"name": "KafkaOfflinePartitions", "status": "firing", "labels": {"severity": "critical"}},
		{"name": "KafkaUnderReplicatedPartitions", "status": "firing", "labels": {"severity": "warning"}},
	]
	inp := object.union(cluster([healthy(0), healthy(1), healthy(2)]), {"alerts": alerts})
	ds := healing.decisions with input as object.union(inp, {"cluster": object.union(inp.cluster, {"name": "eu-1"})})
	relayed := [x | some x in ds; x.rule == "alert_firing"]
	count(relayed) == 1
	relayed[0].kind == "notify"
	relayed[0].message == "Alertmanager: KafkaOfflinePartitions is firing for eu-1"
}
