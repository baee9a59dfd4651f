//! Limits that alert rules apply while they fire (a quota's `action = "throttle"` or
//! `"block"`): the rules set them here, and the limits are resolved from here with the
//! configured ones each interval.

use crate::config::limits::Limit;
use crate::locks::lock;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
pub struct Throttles {
    active: Arc<Mutex<BTreeMap<String, Limit>>>,
}

impl Throttles {
    /// The rule `limit.name` fired: its limit applies from the next interval.
    pub fn start(&self, limit: Limit) {
        lock(&self.active).insert(limit.name.clone(), limit);
    }

    /// The rule's period ended (or the rule is gone): its limit is lifted.
    pub fn end(&self, rule: &str) {
        lock(&self.active).remove(rule);
    }

    /// Lifts the limits of rules no longer configured to apply one.
    pub fn keep_only(&self, rules: &[&str]) {
        lock(&self.active).retain(|rule, _| rules.contains(&rule.as_str()));
    }

    pub fn active(&self) -> Vec<Limit> {
        lock(&self.active).values().cloned().collect()
    }
}
