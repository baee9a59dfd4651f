//! What an engine runs with: each optional part it could use, whether it does, and
//! what is lost where it does not. Decided once at start; reported by `check`, the log,
//! the page, `/api/v1/status` and Prometheus.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureState {
    /// In use (possibly in a substitute form, which `how` names).
    Used,
    /// The kernel has it, but refused to load or attach it (its security policy).
    Refused,
    /// The kernel does not have it (too old, built without it), or it was switched off.
    Absent,
}

impl FeatureState {
    pub fn as_str(self) -> &'static str {
        match self {
            FeatureState::Used => "used",
            FeatureState::Refused => "refused",
            FeatureState::Absent => "absent",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feature {
    /// A stable name (metrics label), e.g. `socket_counts`.
    pub name: String,
    pub state: FeatureState,
    /// Used: how (e.g. "tcx", "raw tracepoints"); otherwise why not.
    pub detail: String,
    /// What is lost without it; empty when used in full.
    pub loses: String,
}

impl Feature {
    pub fn used(name: &str, how: impl Into<String>) -> Feature {
        Feature {
            name: name.into(),
            state: FeatureState::Used,
            detail: how.into(),
            loses: String::new(),
        }
    }

    pub fn degraded(
        name: &str,
        state: FeatureState,
        why: impl Into<String>,
        loses: impl Into<String>,
    ) -> Feature {
        Feature {
            name: name.into(),
            state,
            detail: why.into(),
            loses: loses.into(),
        }
    }

    /// Whether something is lost: not used, or used in a lesser form.
    pub fn is_degraded(&self) -> bool {
        !self.loses.is_empty()
    }

    /// The line without the name (`check` shows the name beside it).
    pub fn describe_state(&self) -> String {
        let line = self.describe();
        line.strip_prefix(&format!("{}: ", self.name))
            .unwrap_or(&line)
            .to_string()
    }

    /// One line for `check` and the log.
    pub fn describe(&self) -> String {
        match (self.state, self.loses.is_empty()) {
            (FeatureState::Used, true) => format!("{}: used ({})", self.name, self.detail),
            (FeatureState::Used, false) => {
                format!("{}: used as {}: {}", self.name, self.detail, self.loses)
            }
            (state, _) => format!(
                "{}: {} ({}): {}",
                self.name,
                state.as_str(),
                self.detail,
                self.loses
            ),
        }
    }
}

/// The engine that counts and its features, as it started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineStatus {
    /// `ebpf` or `capture`.
    pub engine: String,
    /// Why the default engine is not the one counting, if it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
    pub features: Vec<Feature>,
}

impl EngineStatus {
    pub fn degraded(&self) -> impl Iterator<Item = &Feature> {
        self.features.iter().filter(|f| f.is_degraded())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_what_is_used_and_what_is_lost() {
        let used = Feature::used("socket_counts", "socket storage iterator");
        assert_eq!(
            used.describe(),
            "socket_counts: used (socket storage iterator)"
        );
        assert!(!used.is_degraded());
        let refused = Feature::degraded(
            "socket_counts",
            FeatureState::Refused,
            "refused by the kernel's security policy",
            "each packet updates a counter map",
        );
        assert!(refused.is_degraded());
        assert_eq!(
            refused.describe(),
            "socket_counts: refused (refused by the kernel's security policy): each packet updates a counter map"
        );
        let status = EngineStatus {
            engine: "ebpf".into(),
            fallback_reason: None,
            features: vec![used, refused],
        };
        assert_eq!(status.degraded().count(), 1);
        let json = serde_json::to_string(&status).unwrap();
        assert!(json.contains("\"state\":\"refused\""), "{json}");
    }
}
