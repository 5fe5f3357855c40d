package kafka.autopilot.certs_test

import rego.v1

import data.kafka.autopilot.certs

with_cert(days) := {"cluster": {"certificates": [{"secret": "c-cluster-ca-cert", "kind": "cluster-ca", "days_to_expiry": days}]}}

test_renews_29_days_before_expiry if {
	ds := certs.decisions with input as with_cert(29)
	some d in ds
	d.kind == "renew_certificate"
	d.secret == "c-cluster-ca-cert"
	d.rule == "renew_before_expiry"
}

test_leaves_a_fresh_certificate_alone if {
	count(certs.decisions) == 0 with input as with_cert(31)
}

test_alerts_when_critically_close if {
	ds := certs.decisions with input as with_cert(3)
	{d.rule | some d in ds} == {"renew_before_expiry", "certificate_expiring"}
}

test_the_renewal_window_comes_from_data if {
	count(certs.decisions) == 0 with input as with_cert(29) with data.autopilot.certs.renew_before_days as 14
}
