//! [`Health`]: a connector telling its query whether it reaches what it reads or writes,
//! for readiness checks (`/readyz`) to report the truth.

use std::sync::Arc;

use crate::runtime::QueryMetrics;

/// One connector of a query (`source sensors`, `sink`), reporting whether it reaches its
/// broker or database. A connector that never reports counts as reachable.
#[derive(Debug, Clone)]
pub struct Health {
    component: Arc<str>,
    metrics: Arc<QueryMetrics>,
}

impl Health {
    /// The health of `component`, recorded in `metrics`.
    pub fn new(component: impl Into<Arc<str>>, metrics: Arc<QueryMetrics>) -> Self {
        Self {
            component: component.into(),
            metrics,
        }
    }

    /// The connector cannot reach what it needs, for `reason`.
    pub fn unreachable(&self, reason: impl Into<String>) {
        self.metrics.set_unreachable(&self.component, reason.into());
    }

    /// The connector reaches what it needs (again).
    pub fn reachable(&self) {
        self.metrics.set_reachable(&self.component);
    }
}
