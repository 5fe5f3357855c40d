# Certificates: renew Strimzi's CA and listener certificates before they expire.
#
# Input: input.cluster.certificates[_] = {secret, kind, not_after, days_to_expiry}; thresholds in
# data.autopilot.certs. Renewal annotates the secret with `strimzi.io/force-renew`; the agent
# then waits for a later notAfter.
package kafka.autopilot.certs

import rego.v1

cfg := data.autopilot.certs

decisions contains d if {
	some c in input.cluster.certificates
	c.days_to_expiry < cfg.renew_before_days
	d := {
		"kind": "renew_certificate",
		"secret": c.secret,
		"rule": "renew_before_expiry",
		"message": sprintf("%v certificate in %v expires in %v days (renewal %v days before)", [
			c.kind, c.secret, round(c.days_to_expiry), cfg.renew_before_days,
		]),
	}
}

decisions contains d if {
	some c in input.cluster.certificates
	c.days_to_expiry < cfg.critical_days
	d := {
		"kind": "notify",
		"severity": "critical",
		"rule": "certificate_expiring",
		"message": sprintf("%v certificate in %v expires in %v days", [c.kind, c.secret, round(c.days_to_expiry * 10) / 10]),
	}
}
