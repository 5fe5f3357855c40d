# Scaling: how many brokers the cluster needs.
#
# Input: the agent's snapshot (see README "Policy input"); thresholds in data.autopilot.scaling.
# Output: `decisions`, a set of objects with `kind`, the kind's fields, `rule` and `message`.
package kafka.autopilot.scaling

import rego.v1

cfg := data.autopilot.scaling

current := input.cluster.node_pool.replicas

# Seconds a named condition has held on the cluster-wide mean; 0 when unknown.
held(name) := s if {
	s := input.cluster.conditions[name].held_seconds
} else := 0

# Why no scaling decision may be made now. Scaling needs complete, fresh data and a quiet cluster.
blocked contains "data is stale or incomplete" if not input.cluster.complete

blocked contains "an operation is in flight" if input.agent.operation != null

blocked contains sprintf("%v partitions are under-replicated", [n]) if {
	n := input.cluster.partitions.under_replicated
	n > 0
}

blocked contains "partitions are being reassigned" if count(input.cluster.reassignments) > 0

blocked contains "scaling cooldown" if input.agent.seconds_since_last.scale_brokers < cfg.cooldown_seconds

# Brokers needed to bring the 5-minute mean utilisation to the targets.
needed := n if {
	cpu := input.cluster.utilisation.cpu.avg_5m
	memory := input.cluster.utilisation.memory.avg_5m
	n := ceil(current * max([cpu / cfg.target_cpu, memory / cfg.target_memory]))
}

# Most brokers allowed: max_brokers, and the cluster's broker quota where the agent's config
# sets one (input.cluster.broker_quota).
ceiling := min([cfg.max_brokers, input.cluster.broker_quota]) if {
	is_number(input.cluster.broker_quota)
} else := cfg.max_brokers

# Fewest brokers the topics allow: every replica on its own broker, and one broker to spare
# above min.insync.replicas so a broker loss keeps producers writing.
floor := max([cfg.min_brokers, input.cluster.max_replication_factor, input.cluster.max_min_insync_replicas + 1])

sustained_high if {
	held("cpu_high") >= cfg.scale_up.hold_seconds
	held("memory_high") >= cfg.scale_up.hold_seconds
}

sustained_low if {
	held("cpu_low") >= cfg.scale_down.hold_seconds
	held("memory_low") >= cfg.scale_down.hold_seconds
}

scale_up_target := min([needed, current + cfg.max_step, ceiling])

scale_down_target := max([needed, current - cfg.max_step, floor])

pct(x) := round(x * 100)

decisions contains d if {
	count(blocked) == 0
	sustained_high
	scale_up_target > current
	d := {
		"kind": "scale_brokers",
		"to": scale_up_target,
		"rule": "scale_up_sustained_load",
		"message": sprintf("cpu %v%% and memory %v%% (5m mean) above thresholds for %vs; %v brokers needed, step to %v", [
			pct(input.cluster.utilisation.cpu.avg_5m),
			pct(input.cluster.utilisation.memory.avg_5m),
			min([held("cpu_high"), held("memory_high")]),
			needed,
			scale_up_target,
		]),
	}
}

decisions contains d if {
	count(blocked) == 0
	sustained_low
	scale_down_target < current
	d := {
		"kind": "scale_brokers",
		"to": scale_down_target,
		"rule": "scale_down_sustained_idle",
		"message": sprintf("cpu %v%% and memory %v%% (5m mean) below thresholds for %vs; %v brokers suffice (floor %v)", [
			pct(input.cluster.utilisation.cpu.avg_5m),
			pct(input.cluster.utilisation.memory.avg_5m),
			min([held("cpu_low"), held("memory_low")]),
			needed,
			floor,
		]),
	}
}

# Overloaded but already at the ceiling: tell a human.
decisions contains d if {
	input.cluster.complete
	sustained_high
	current >= ceiling
	d := {
		"kind": "notify",
		"severity": "warning",
		"rule": "scale_up_capped",
		"message": sprintf("load needs %v brokers but the ceiling is %v (max_brokers %v, broker quota %v)", [
			needed, ceiling, cfg.max_brokers, object.get(input.cluster, "broker_quota", null),
		]),
	}
}
