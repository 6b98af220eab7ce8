//! This replica's report in etcd: published under a lease after every
//! change, the lease kept alive by a task of its own, revoked at shutdown.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Replica, Reporting};

impl Replica {
    /// Publishes the status under the lease, granting one first if needed.
    pub(super) async fn publish(&self) {
        let mut reporting = self.report.lock().await;
        self.publish_locked(&mut reporting).await;
    }

    async fn publish_locked(&self, reporting: &mut Reporting) {
        if self.leaving.load(Ordering::Relaxed) {
            return;
        }
        let lease = match reporting.lease {
            Some(l) => l,
            None => match self.etcd.grant(self.config.lease_ttl).await {
                Ok(l) => {
                    *reporting = Reporting { lease: Some(l), keeper: None };
                    l
                }
                Err(e) => {
                    tracing::warn!("fleet: cannot report this replica's status: {e}");
                    return;
                }
            },
        };
        if let Err(e) = self.etcd.report(&self.status(), lease).await {
            tracing::warn!("fleet: cannot report this replica's status: {e}");
            // The lease may be gone (expired while cut off): grant a new one next time.
            *reporting = Reporting::default();
        }
    }

    /// Every third of the lease's TTL: renews it, bounded by the etcd
    /// timeout; if it is gone (expired while cut off) or etcd does not
    /// answer, grants a new one and reports again.
    pub(super) async fn keep_reporting(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.config.lease_ttl / 3).await;
            if self.leaving.load(Ordering::Relaxed) {
                return;
            }
            let mut reporting = self.report.lock().await;
            let alive = match reporting.lease {
                Some(l) => {
                    let renewed = tokio::time::timeout(
                        self.config.etcd_timeout,
                        self.etcd.keep_alive(l, &mut reporting.keeper),
                    )
                    .await;
                    matches!(renewed, Ok(Ok(true)))
                }
                None => false,
            };
            if !alive {
                *reporting = Reporting::default();
                self.publish_locked(&mut reporting).await;
            }
        }
    }

    /// Withdraws this replica's report (revokes its lease) and reports
    /// nothing more. Called at shutdown, so an activation in the meantime
    /// does not wait for a replica that is gone.
    pub async fn leave(&self) {
        self.leaving.store(true, Ordering::Relaxed);
        let lease = match tokio::time::timeout(Duration::from_secs(1), self.report.lock()).await {
            Ok(mut reporting) => reporting.lease.take(),
            Err(_) => None,
        };
        if let Some(lease) = lease {
            match tokio::time::timeout(Duration::from_secs(1), self.etcd.revoke(lease)).await {
                Ok(Ok(())) => tracing::info!("fleet: report withdrawn"),
                Ok(Err(e)) => tracing::warn!("fleet: withdrawing the report: {e}"),
                Err(_) => tracing::warn!("fleet: withdrawing the report timed out"),
            }
        }
    }
}
