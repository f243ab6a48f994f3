//! `monitoringStats`: the original design's six monitoring figures
//! (moderator and above), read through [`super::service::monitoring_stats`].

use async_graphql::{Context, Object, SimpleObject};

use super::service::{self, MonitoringStats};
use crate::auth::Role;
use crate::auth::guard::{ContextExt, RoleGuard};

/// Monitoring figures, computed from maintained counters and index-only
/// counts (no table scan, whatever the amount of stored data).
#[derive(SimpleObject)]
#[graphql(name = "MonitoringStats")]
pub struct GqlMonitoringStats {
    /// Events stored now.
    pub total_events: u64,
    /// Metric samples stored now.
    pub total_metrics: u64,
    /// Alerts that are firing (instances: one per rule and label set).
    pub active_alerts: u64,
    /// Incidents that are open or investigating.
    pub open_incidents: u64,
    /// Events received in the last hour (counted per minute, so up to a
    /// minute more than an hour), including ones deleted since.
    pub events_last_hour: u64,
    /// Metric samples received in the last hour (counted per minute),
    /// including ones deleted since.
    pub metrics_last_hour: u64,
}

impl From<MonitoringStats> for GqlMonitoringStats {
    fn from(s: MonitoringStats) -> Self {
        GqlMonitoringStats {
            total_events: s.total_events,
            total_metrics: s.total_metrics,
            active_alerts: s.active_alerts,
            open_incidents: s.open_incidents,
            events_last_hour: s.events_last_hour,
            metrics_last_hour: s.metrics_last_hour,
        }
    }
}

/// Statistics queries.
#[derive(Default)]
pub struct StatsQuery;

#[Object]
impl StatsQuery {
    /// The monitoring figures of the original design (moderator and above).
    #[graphql(guard = "RoleGuard::new(Role::Moderator)")]
    async fn monitoring_stats(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<GqlMonitoringStats> {
        Ok(service::monitoring_stats(&ctx.state().db).await?.into())
    }
}
