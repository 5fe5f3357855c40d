//! Expectations of a scenario and how they are checked against the events of a run.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One expectation: something happens within a time, or never happens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// The event must happen at most this long after the start.
    #[serde(default, with = "humantime_serde")]
    pub within: Option<Duration>,
    /// ... and no earlier than this.
    #[serde(default, with = "humantime_serde")]
    pub after: Option<Duration>,
    #[serde(default)]
    pub action: Option<Map<String, Value>>,
    #[serde(default)]
    pub outcome: Option<Map<String, Value>>,
    #[serde(default)]
    pub decision: Option<Map<String, Value>>,
    #[serde(default)]
    pub step: Option<Map<String, Value>>,
    /// An operator request (accepted or refused) from the timeline.
    #[serde(default)]
    pub request: Option<Map<String, Value>>,
    /// A broker's health state change: `{broker: 2, state: failed}`.
    #[serde(default)]
    pub broker: Option<Map<String, Value>>,
    /// No event matches (an action unless `type` says otherwise); with `within`, no event in
    /// that window.
    #[serde(default)]
    pub never: Option<Map<String, Value>>,
}

impl Expectation {
    pub(super) fn validate(&self) -> Result<(), String> {
        let targets = [&self.action, &self.outcome, &self.decision, &self.step, &self.request, &self.broker]
            .iter()
            .filter(|t| t.is_some())
            .count();
        match (&self.never, self.within, targets) {
            (Some(_), _, 0) => Ok(()),
            (Some(_), _, _) => Err("`never` takes no action, outcome, decision, step, request or broker".into()),
            (None, Some(_), 1) => Ok(()),
            (None, None, _) => {
                Err("needs `within` (with one of action, outcome, decision, step, request, broker) or `never`".into())
            }
            (None, Some(_), _) => Err("needs exactly one of action, outcome, decision, step, request, broker".into()),
        }
    }

    fn target(&self) -> (&'static str, Map<String, Value>) {
        let pick = [
            ("action", &self.action),
            ("outcome", &self.outcome),
            ("decision", &self.decision),
            ("step", &self.step),
            ("request", &self.request),
            ("broker_state", &self.broker),
        ];
        for (ty, m) in pick {
            if let Some(m) = m {
                return (ty, m.clone());
            }
        }
        let mut never = self.never.clone().unwrap_or_default();
        let ty = match never.remove("type") {
            Some(Value::String(t)) if t == "outcome" => "outcome",
            Some(Value::String(t)) if t == "decision" => "decision",
            Some(Value::String(t)) if t == "step" => "step",
            Some(Value::String(t)) if t == "request" => "request",
            Some(Value::String(t)) if t == "broker_state" => "broker_state",
            _ => "action",
        };
        (ty, never)
    }

    /// Check the expectation against a run's events (each with `at` in seconds from the start);
    /// `None` when met, otherwise why not.
    pub fn check(&self, events: &[Value]) -> Option<String> {
        let (ty, wanted) = self.target();
        let same_type: Vec<&Value> =
            events.iter().filter(|e| e.get("type").and_then(Value::as_str) == Some(ty)).collect();
        let matching: Vec<&Value> = same_type.iter().copied().filter(|e| subset(&wanted, e)).collect();
        let at = |e: &Value| e.get("at").and_then(Value::as_f64).unwrap_or(f64::MAX);
        let shown = Value::Object(wanted.clone());
        let lo = self.after.unwrap_or_default().as_secs_f64();
        let hi = self.within.map_or(f64::MAX, |w| w.as_secs_f64());
        if self.never.is_some() {
            return matching
                .iter()
                .find(|e| at(e) >= lo && at(e) <= hi)
                .map(|e| format!("expected never a {ty} matching {shown}, but one happened at {}s: {e}", at(e)));
        }
        if matching.iter().any(|e| at(e) >= lo && at(e) <= hi) {
            return None;
        }
        let window = match self.after {
            Some(a) => format!(
                "between {} and {}",
                humantime::format_duration(a),
                humantime::format_duration(self.within.unwrap_or_default())
            ),
            None => format!("within {}", humantime::format_duration(self.within.unwrap_or_default())),
        };
        let seen = if matching.is_empty() {
            let kinds: Vec<String> = same_type.iter().take(5).map(|e| e.to_string()).collect();
            if kinds.is_empty() {
                format!("no {ty} happened at all")
            } else {
                format!("other {ty}s seen: {}", kinds.join("; "))
            }
        } else {
            let times: Vec<String> = matching.iter().map(|e| format!("{}s", at(e))).collect();
            format!("it happened at {}", times.join(", "))
        };
        Some(format!("expected a {ty} matching {shown} {window}, but {seen}"))
    }
}

/// Every key of `wanted` is in `actual` with an equal value (numbers by value).
fn subset(wanted: &Map<String, Value>, actual: &Value) -> bool {
    wanted.iter().all(|(k, v)| actual.get(k).is_some_and(|a| equal(v, a)))
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Object(x), _) => subset(x, b),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn exp(yaml: &str) -> Expectation {
        let e: Expectation = serde_yaml::from_str(yaml).unwrap();
        e.validate().unwrap();
        e
    }

    fn events() -> Vec<Value> {
        vec![
            json!({"at": 300.0, "type": "action", "kind": "scale_brokers", "from": 3, "to": 5}),
            json!({"at": 900.0, "type": "outcome", "kind": "scale_brokers", "result": "succeeded"}),
        ]
    }

    #[test]
    fn within_and_after_bound_the_match() {
        assert_eq!(exp("{within: 7m, action: {kind: scale_brokers, to: 5}}").check(&events()), None);
        let late = exp("{within: 4m, action: {kind: scale_brokers, to: 5}}").check(&events()).unwrap();
        assert!(late.contains("within 4m") && late.contains("300s"), "{late}");
        let early = exp("{after: 6m, within: 20m, action: {kind: scale_brokers}}").check(&events()).unwrap();
        assert!(early.contains("between 6m and 20m"), "{early}");
    }

    #[test]
    fn never_names_the_offending_event() {
        assert_eq!(exp("{never: {kind: scale_brokers, to: 2}}").check(&events()), None);
        let hit = exp("{never: {type: outcome, result: succeeded}}").check(&events()).unwrap();
        assert!(hit.contains("900s"), "{hit}");
    }

    #[test]
    fn malformed_expectations_are_refused() {
        let e: Expectation = serde_yaml::from_str("{within: 5m}").unwrap();
        assert!(e.validate().is_err());
        let e: Expectation = serde_yaml::from_str("{never: {kind: x}, action: {kind: y}}").unwrap();
        assert!(e.validate().is_err());
    }

    #[test]
    fn never_within_a_window_ignores_later_events() {
        assert_eq!(exp("{within: 800s, never: {type: outcome, result: succeeded}}").check(&events()), None);
        assert!(exp("{within: 900s, never: {type: outcome, result: succeeded}}").check(&events()).is_some());
    }
}
