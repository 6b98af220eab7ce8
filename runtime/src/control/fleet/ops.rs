//! The operator's side of a fleet: read every plugin's state and every
//! replica's report, and change one plugin's state — stage, activate,
//! rollback, canary, promote, abort, shadow. Each change reads the state,
//! applies one transition of [`super::desired`] and writes it back with a
//! compare-and-swap on the revision it read, so a change based on a stale
//! read is refused, never silently merged.
//!
//! Shared by `scorehost fleet …` and the admin API's `/admin/v1/fleet/…`
//! routes, which hold a [`FleetControl`] (the etcd one, behind the `etcd`
//! feature, is implemented for [`super::etcd::FleetStore`]).

use std::collections::BTreeMap;

use serde::Serialize;

use super::desired::{DesiredState, Refusal, ReplicaStatus};

/// One change to a plugin's fleet state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetOp {
    /// Stage a version: `<registry>/<repo>:<tag>` (resolved to a digest once,
    /// now) or `<registry>/<repo>@sha256:…`; replicas pull and gate it.
    Stage {
        /// The reference.
        reference: String,
        /// Speak plain HTTP to the registry.
        plain_http: bool,
    },
    /// Make the staged version live, if every replica reports it gated.
    Activate {
        /// Earlier live versions kept for rollback.
        keep_versions: usize,
    },
    /// Make the previous live version live again (no registry needed).
    Rollback,
    /// Send a sticky share of routing keys to a version, fleet-wide.
    Canary {
        /// The candidate's digest.
        digest: String,
        /// Share of routing keys, 1–100.
        percent: u32,
        /// `header:<name>` or a field name.
        key: String,
    },
    /// Make the canary live.
    Promote {
        /// Earlier live versions kept for rollback.
        keep_versions: usize,
    },
    /// Stop the canary.
    Abort,
    /// Shadow a version on a copy of live traffic; `None` stops the shadow.
    Shadow {
        /// The candidate's digest.
        digest: Option<String>,
    },
}

/// Why a fleet change was not made. Nothing was written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetOpError {
    /// The transition is not allowed now (nothing staged, replicas not
    /// ready — each named with its reason).
    #[error("refused: {0}")]
    Refused(#[from] Refusal),
    /// Someone else changed the plugin's state since it was read.
    #[error("{0}")]
    Conflict(String),
    /// etcd or the registry could not be reached.
    #[error("{0}")]
    Unavailable(String),
    /// The request names no such plugin, or a bad reference.
    #[error("{0}")]
    Invalid(String),
    /// A key in etcd holds something that is not a valid state.
    #[error("{0}")]
    Corrupt(String),
}

/// A change made: the plugin, the key's new revision and the new state.
#[derive(Debug, Clone, Serialize)]
pub struct Changed {
    /// The plugin.
    pub plugin: String,
    /// The key's revision after the write.
    pub revision: i64,
    /// The state written.
    pub state: DesiredState,
}

/// One plugin in [`FleetStatus`].
#[derive(Debug, Clone, Serialize)]
pub struct PluginFleetStatus {
    /// The key's revision.
    pub revision: i64,
    /// Whether every replica has applied this generation and serves its live digest.
    pub converged: bool,
    /// The desired state.
    pub state: DesiredState,
}

/// Every plugin's desired state and every replica's report.
#[derive(Debug, Clone, Serialize)]
pub struct FleetStatus {
    /// The etcd revision read at.
    pub revision: i64,
    /// Per plugin.
    pub plugins: BTreeMap<String, PluginFleetStatus>,
    /// Every replica reporting now.
    pub replicas: Vec<ReplicaStatus>,
}

/// Reads and changes the fleet's desired state.
#[async_trait::async_trait]
pub trait FleetControl: Send + Sync {
    /// Every plugin's state, every replica's report, convergence.
    async fn status(&self) -> Result<FleetStatus, FleetOpError>;
    /// Applies `op` to `plugin`'s state with a compare-and-swap.
    async fn change(&self, plugin: &str, op: FleetOp) -> Result<Changed, FleetOpError>;
}

#[cfg(feature = "etcd")]
mod on_etcd {
    use super::*;
    use crate::control::fleet::etcd::{EtcdError, FleetStore};
    use crate::control::fleet::registry::RegistryClient;

    impl From<EtcdError> for FleetOpError {
        fn from(e: EtcdError) -> Self {
            match e {
                EtcdError::Conflict { .. } => FleetOpError::Conflict(e.to_string()),
                EtcdError::Corrupt { .. } => FleetOpError::Corrupt(e.to_string()),
                _ => FleetOpError::Unavailable(e.to_string()),
            }
        }
    }

    #[async_trait::async_trait]
    impl FleetControl for FleetStore {
        async fn status(&self) -> Result<FleetStatus, FleetOpError> {
            let (plugins, revision) = self.plugins().await?;
            let replicas = self.replicas().await?;
            let plugins = plugins
                .into_iter()
                .map(|(name, v)| {
                    let converged = v.value.converged(&name, &replicas);
                    (name, PluginFleetStatus { revision: v.revision, converged, state: v.value })
                })
                .collect();
            Ok(FleetStatus { revision, plugins, replicas })
        }

        async fn change(&self, plugin: &str, op: FleetOp) -> Result<Changed, FleetOpError> {
            crate::control::store::check_name(plugin).map_err(|e| FleetOpError::Invalid(e.to_string()))?;
            let read = self.plugin(plugin).await?;
            let replicas = self.replicas().await?;
            let state = transition(plugin, read.value.as_ref(), &op, &replicas).await?;
            let revision = self.put_if(plugin, read.revision, &state).await?;
            Ok(Changed { plugin: plugin.to_owned(), revision, state })
        }
    }

    /// The next state, from the state read (`None`: the fleet has no such plugin yet).
    async fn transition(
        plugin: &str,
        state: Option<&DesiredState>,
        op: &FleetOp,
        replicas: &[ReplicaStatus],
    ) -> Result<DesiredState, FleetOpError> {
        let existing = || {
            state.ok_or_else(|| {
                FleetOpError::Invalid(format!("the fleet has no plugin `{plugin}`: stage a version first"))
            })
        };
        Ok(match op {
            FleetOp::Stage { reference, plain_http } => {
                let (repository, digest, version) = resolve(reference, *plain_http).await?;
                let base = match state {
                    Some(s) if s.repository != repository => {
                        return Err(FleetOpError::Invalid(format!(
                            "{plugin} is pulled from {}, not {repository}",
                            s.repository
                        )));
                    }
                    Some(s) => s.clone(),
                    None => DesiredState::new(repository),
                };
                base.stage(plugin, &digest, &version)?
            }
            FleetOp::Activate { keep_versions } => existing()?.activate(plugin, replicas, *keep_versions)?,
            FleetOp::Rollback => existing()?.rollback(plugin)?,
            FleetOp::Canary { digest, percent, key } => {
                crate::serving::traffic::RouteKey::parse(key)
                    .map_err(|e| FleetOpError::Invalid(e.to_string()))?;
                existing()?.canary(plugin, digest, *percent, key, replicas)?
            }
            FleetOp::Promote { keep_versions } => existing()?.promote(plugin, replicas, *keep_versions)?,
            FleetOp::Abort => existing()?.abort(plugin)?,
            FleetOp::Shadow { digest } => existing()?.shadow(plugin, digest.as_deref(), replicas)?,
        })
    }

    /// `<registry>/<repo>@sha256:…` as given, or `<registry>/<repo>:<tag>`
    /// resolved to the digest it points at now: (repository, digest, version
    /// label — the tag, or the digest's first 12 hex digits).
    async fn resolve(reference: &str, plain_http: bool) -> Result<(String, String, String), FleetOpError> {
        if let Some((repository, digest)) = reference.split_once('@') {
            let hex = digest.strip_prefix("sha256:").unwrap_or("");
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                return Err(FleetOpError::Invalid(format!(
                    "`{digest}` is not a sha256 digest (sha256: and 64 lowercase hex digits)"
                )));
            }
            return Ok((repository.to_owned(), digest.to_owned(), hex[..12].to_owned()));
        }
        let (repository, tag) = reference
            .rsplit_once(':')
            .filter(|(repo, tag)| repo.contains('/') && !tag.contains('/'))
            .ok_or_else(|| {
                FleetOpError::Invalid(format!(
                    "`{reference}` is neither <registry>/<repo>:<tag> nor <registry>/<repo>@<digest>"
                ))
            })?;
        let digest = RegistryClient::new(plain_http).resolve(reference).await.map_err(|e| match e {
            crate::control::fleet::registry::RegistryError::Registry { .. } => {
                FleetOpError::Unavailable(e.to_string())
            }
            other => FleetOpError::Invalid(other.to_string()),
        })?;
        Ok((repository.to_owned(), digest, tag.to_owned()))
    }
}
