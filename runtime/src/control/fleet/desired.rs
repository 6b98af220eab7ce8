//! The fleet's intent for one plugin, and every change an operator makes to
//! it, as pure functions: a [`DesiredState`] and what the replicas report
//! ([`ReplicaStatus`]) in, the next state or a [`Refusal`] naming each
//! replica and its reason out. No I/O here: the etcd key holding the state
//! is changed with a compare-and-swap on its revision by the caller, so two
//! operators racing from one revision cannot both win.
//!
//! Versions are digests (`sha256:…` of the OCI manifest, see
//! [`super::artifact`]). A change that makes a version serve — activating the
//! staged one, starting a canary or a shadow, promoting — is refused unless
//! every live replica reports that digest loaded and gated: a bad version
//! goes live nowhere. A rollback needs no readiness: the previous versions
//! stay loaded on every replica.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How many earlier live versions a plugin's state keeps for rollback, unless told otherwise.
pub const DEFAULT_KEEP_PREVIOUS: usize = 4;

/// The fleet's intent for one plugin: one etcd key, changed only as a whole.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredState {
    /// Bumped by every change: what replicas report as applied.
    pub generation: u64,
    /// `<registry>/<repository>` the digests are pulled from.
    pub repository: String,
    /// The digest every call goes to (unless the canary takes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<String>,
    /// Earlier live digests, newest first: the rollback targets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous: Vec<String>,
    /// A digest replicas pull and gate ahead of activation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged: Option<String>,
    /// A candidate taking a sticky share of traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryIntent>,
    /// A candidate run on a copy of live traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<String>,
    /// digest → the version it packs (`0.2.0`), for people reading the state.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub versions: BTreeMap<String, String>,
}

/// A fleet-wide canary: the same routing key picks the same version on every replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryIntent {
    /// The candidate.
    pub digest: String,
    /// Its share of routing keys, 1–100.
    pub percent: u8,
    /// The routing key: `header:<name>` or a field name.
    pub key: String,
}

/// What one replica reports about one plugin (under its lease, with the generation it applied).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginStatus {
    /// The generation of the plugin's state this replica has applied.
    pub generation: u64,
    /// The digest it serves.
    #[serde(default)]
    pub live: Option<String>,
    /// Digests pulled, unpacked and past the gate: ready to serve.
    #[serde(default)]
    pub loaded: Vec<String>,
    /// Digests that failed, with the step and the reason.
    #[serde(default)]
    pub failed: BTreeMap<String, String>,
}

/// A replica's report: its id and, per plugin, what it has.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    /// Unique in the fleet (host and port by default).
    pub id: String,
    /// Per plugin name.
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginStatus>,
}

/// Why a change was refused. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// Activation or promotion with nothing staged or no canary.
    #[error("{plugin} has no {what}")]
    Nothing {
        /// The plugin.
        plugin: String,
        /// `staged version`, `canary`, `previous version`, `shadow`.
        what: &'static str,
    },
    /// The version is already what the change would make it.
    #[error("{plugin}: {digest} is already {role}")]
    Already {
        /// The plugin.
        plugin: String,
        /// The digest.
        digest: String,
        /// `live`, `the canary`.
        role: &'static str,
    },
    /// No replica has reported: nobody could check the version.
    #[error("{plugin}: no replica is reporting, so none has gated {digest}")]
    NoReplicas {
        /// The plugin.
        plugin: String,
        /// The digest.
        digest: String,
    },
    /// Some replicas have not gated the version: each named with its reason.
    #[error(
        "{plugin}: {digest} is not ready on {} of {total} replica(s): {}",
        replicas.len(),
        replicas.iter().map(|(id, why)| format!("{id} ({why})")).collect::<Vec<_>>().join(", ")
    )]
    NotReady {
        /// The plugin.
        plugin: String,
        /// The digest.
        digest: String,
        /// Replica id → why it is not ready (`failed gate: …`, `not reported yet`).
        replicas: Vec<(String, String)>,
        /// How many replicas report.
        total: usize,
    },
    /// A canary share outside 1–100.
    #[error("{plugin}: a canary share of {percent}% must be between 1 and 100")]
    Percent {
        /// The plugin.
        plugin: String,
        /// As asked.
        percent: u32,
    },
}

impl DesiredState {
    /// The state of a plugin the fleet has not seen, pulled from `repository`.
    pub fn new(repository: impl Into<String>) -> Self {
        Self { repository: repository.into(), ..Self::default() }
    }

    /// Every digest replicas should hold: live, canary, shadow, staged and the rollback targets.
    pub fn wanted(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        let candidates =
            [self.live.as_deref(), self.canary.as_ref().map(|c| c.digest.as_str()), self.shadow.as_deref()];
        for d in candidates
            .into_iter()
            .flatten()
            .chain(self.staged.as_deref())
            .chain(self.previous.iter().map(String::as_str))
        {
            if !out.contains(&d) {
                out.push(d);
            }
        }
        out
    }

    fn next(&self) -> Self {
        Self { generation: self.generation + 1, ..self.clone() }
    }

    /// Stages `digest` (version `version`): replicas pull and gate it; nothing serves it yet.
    pub fn stage(&self, plugin: &str, digest: &str, version: &str) -> Result<Self, Refusal> {
        if self.live.as_deref() == Some(digest) {
            return Err(Refusal::Already { plugin: plugin.into(), digest: digest.into(), role: "live" });
        }
        let mut next = self.next();
        next.staged = Some(digest.into());
        next.versions.insert(digest.into(), version.into());
        Ok(next)
    }

    /// Makes the staged digest live, if every replica reports it gated; the
    /// old live digest becomes the newest rollback target (at most `keep` are kept).
    pub fn activate(&self, plugin: &str, replicas: &[ReplicaStatus], keep: usize) -> Result<Self, Refusal> {
        let digest =
            self.staged.clone().ok_or(Refusal::Nothing { plugin: plugin.into(), what: "staged version" })?;
        ready_everywhere(plugin, &digest, replicas)?;
        let mut next = self.next();
        next.staged = None;
        next.make_live(digest, keep);
        Ok(next)
    }

    fn make_live(&mut self, digest: String, keep: usize) {
        if let Some(old) = self.live.replace(digest.clone()) {
            self.previous.retain(|d| *d != old && *d != digest);
            self.previous.insert(0, old);
        }
        self.previous.retain(|d| *d != digest);
        self.previous.truncate(keep);
        if self.canary.as_ref().is_some_and(|c| c.digest == digest) {
            self.canary = None;
        }
        if self.shadow.as_deref() == Some(digest.as_str()) {
            self.shadow = None;
        }
        let keep: Vec<String> = self.wanted().into_iter().map(str::to_owned).collect();
        self.versions.retain(|d, _| keep.contains(d));
    }

    /// Makes the newest rollback target live again, at once: the previous
    /// versions stay loaded on every replica, so no readiness is needed.
    /// The version rolled back from is dropped, not kept as a target.
    pub fn rollback(&self, plugin: &str) -> Result<Self, Refusal> {
        let Some(target) = self.previous.first().cloned() else {
            return Err(Refusal::Nothing { plugin: plugin.into(), what: "previous version" });
        };
        let mut next = self.next();
        next.previous.remove(0);
        if next.shadow.as_deref() == Some(target.as_str()) {
            next.shadow = None;
        }
        next.live = Some(target);
        next.canary = None;
        let keep: Vec<String> = next.wanted().into_iter().map(str::to_owned).collect();
        next.versions.retain(|d, _| keep.contains(d));
        Ok(next)
    }

    /// Starts (or moves) a canary of `digest` for `percent`% of routing keys,
    /// if every replica reports it gated (a replica without it would break
    /// the key's stickiness).
    pub fn canary(
        &self,
        plugin: &str,
        digest: &str,
        percent: u32,
        key: &str,
        replicas: &[ReplicaStatus],
    ) -> Result<Self, Refusal> {
        if !(1..=100).contains(&percent) {
            return Err(Refusal::Percent { plugin: plugin.into(), percent });
        }
        if self.live.as_deref() == Some(digest) {
            return Err(Refusal::Already { plugin: plugin.into(), digest: digest.into(), role: "live" });
        }
        ready_everywhere(plugin, digest, replicas)?;
        let mut next = self.next();
        next.canary = Some(CanaryIntent { digest: digest.into(), percent: percent as u8, key: key.into() });
        Ok(next)
    }

    /// Makes the canary live (it was already gated everywhere to start).
    pub fn promote(&self, plugin: &str, replicas: &[ReplicaStatus], keep: usize) -> Result<Self, Refusal> {
        let canary = self.canary.clone().ok_or(Refusal::Nothing { plugin: plugin.into(), what: "canary" })?;
        ready_everywhere(plugin, &canary.digest, replicas)?;
        let mut next = self.next();
        if next.staged.as_deref() == Some(canary.digest.as_str()) {
            next.staged = None;
        }
        next.make_live(canary.digest, keep);
        Ok(next)
    }

    /// Stops the canary: every key goes to live again.
    pub fn abort(&self, plugin: &str) -> Result<Self, Refusal> {
        if self.canary.is_none() {
            return Err(Refusal::Nothing { plugin: plugin.into(), what: "canary" });
        }
        let mut next = self.next();
        next.canary = None;
        Ok(next)
    }

    /// Shadows `digest` (gated everywhere first), or stops the shadow with `None`.
    pub fn shadow(
        &self,
        plugin: &str,
        digest: Option<&str>,
        replicas: &[ReplicaStatus],
    ) -> Result<Self, Refusal> {
        match digest {
            Some(d) if self.live.as_deref() == Some(d) => {
                return Err(Refusal::Already { plugin: plugin.into(), digest: d.into(), role: "live" });
            }
            Some(d) => ready_everywhere(plugin, d, replicas)?,
            None if self.shadow.is_none() => {
                return Err(Refusal::Nothing { plugin: plugin.into(), what: "shadow" });
            }
            None => {}
        }
        let mut next = self.next();
        next.shadow = digest.map(str::to_owned);
        Ok(next)
    }

    /// Whether every replica has applied this generation and serves its live digest.
    pub fn converged(&self, plugin: &str, replicas: &[ReplicaStatus]) -> bool {
        !replicas.is_empty()
            && replicas.iter().all(|r| {
                r.plugins.get(plugin).is_some_and(|p| p.generation >= self.generation && p.live == self.live)
            })
    }
}

/// `Ok` if every replica reports `digest` loaded; otherwise every one that
/// does not, with its reason.
fn ready_everywhere(plugin: &str, digest: &str, replicas: &[ReplicaStatus]) -> Result<(), Refusal> {
    if replicas.is_empty() {
        return Err(Refusal::NoReplicas { plugin: plugin.into(), digest: digest.into() });
    }
    let not_ready: Vec<(String, String)> = replicas
        .iter()
        .filter_map(|r| {
            let status = r.plugins.get(plugin);
            if status.is_some_and(|p| p.loaded.iter().any(|d| d == digest)) {
                return None;
            }
            let why = match status.and_then(|p| p.failed.get(digest)) {
                Some(reason) => reason.clone(),
                None => "not reported yet".to_owned(),
            };
            Some((r.id.clone(), why))
        })
        .collect();
    if not_ready.is_empty() {
        Ok(())
    } else {
        Err(Refusal::NotReady {
            plugin: plugin.into(),
            digest: digest.into(),
            replicas: not_ready,
            total: replicas.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:aaaa";
    const B: &str = "sha256:bbbb";
    const C: &str = "sha256:cccc";

    fn replica(id: &str, loaded: &[&str], failed: &[(&str, &str)]) -> ReplicaStatus {
        let status = PluginStatus {
            generation: 0,
            live: None,
            loaded: loaded.iter().map(|d| d.to_string()).collect(),
            failed: failed.iter().map(|(d, why)| (d.to_string(), why.to_string())).collect(),
        };
        ReplicaStatus { id: id.into(), plugins: BTreeMap::from([("p".to_owned(), status)]) }
    }

    fn live(digest: &str) -> DesiredState {
        let staged = DesiredState::new("127.0.0.1:5000/scorehost/p").stage("p", digest, "1").unwrap();
        staged.activate("p", &[replica("r1", &[digest], &[])], DEFAULT_KEEP_PREVIOUS).unwrap()
    }

    #[test]
    fn a_shadow_never_equals_live() {
        let ready = [replica("r1", &[A, B], &[])];
        let s = live(A);
        assert!(matches!(s.shadow("p", Some(A), &ready), Err(Refusal::Already { role: "live", .. })));
        // Stage B, shadow it, activate it: the shadow of B ends as B goes live.
        let s = s.stage("p", B, "2").unwrap().shadow("p", Some(B), &ready).unwrap();
        let s = s.activate("p", &ready, DEFAULT_KEEP_PREVIOUS).unwrap();
        assert_eq!((s.live.as_deref(), s.shadow.as_deref()), (Some(B), None));
        // Shadowing the rollback target, then rolling back to it: the same.
        let s = s.shadow("p", Some(A), &ready).unwrap().rollback("p").unwrap();
        assert_eq!((s.live.as_deref(), s.shadow.as_deref()), (Some(A), None));
    }

    #[test]
    fn activation_needs_every_replica_ready_and_names_the_ones_that_are_not() {
        let s = live(A).stage("p", B, "2").unwrap();
        let replicas = [
            replica("r1", &[A, B], &[]),
            replica("r2", &[A], &[(B, "gate: 1 of 3 golden vector(s) failed")]),
            replica("r3", &[A], &[]),
        ];
        let e = s.activate("p", &replicas, 4).unwrap_err();
        assert_eq!(
            e,
            Refusal::NotReady {
                plugin: "p".into(),
                digest: B.into(),
                replicas: vec![
                    ("r2".into(), "gate: 1 of 3 golden vector(s) failed".into()),
                    ("r3".into(), "not reported yet".into())
                ],
                total: 3,
            }
        );
        assert!(e.to_string().contains("r2 (gate: 1 of 3"), "{e}");
        assert_eq!(
            s.activate("p", &[], 4).unwrap_err(),
            Refusal::NoReplicas { plugin: "p".into(), digest: B.into() }
        );

        let ready = [replica("r1", &[A, B], &[]), replica("r2", &[A, B], &[])];
        let next = s.activate("p", &ready, 4).unwrap();
        assert_eq!(
            (next.live.as_deref(), next.previous.as_slice(), next.staged.as_deref()),
            (Some(B), &[A.to_owned()][..], None)
        );
        assert_eq!(next.generation, s.generation + 1);
    }

    #[test]
    fn rollback_is_one_step_back_and_needs_no_readiness() {
        let ready = |d: &str| [replica("r1", &[A, B, C, d], &[])];
        let s = live(A);
        let s = s.stage("p", B, "2").unwrap().activate("p", &ready(B), 4).unwrap();
        let s = s.stage("p", C, "3").unwrap().activate("p", &ready(C), 4).unwrap();
        assert_eq!(s.previous, [B, A]);
        let back = s.rollback("p").unwrap();
        assert_eq!((back.live.as_deref(), back.previous.as_slice()), (Some(B), &[A.to_owned()][..]));
        let back = back.rollback("p").unwrap();
        assert_eq!((back.live.as_deref(), back.previous.len()), (Some(A), 0));
        assert!(matches!(back.rollback("p"), Err(Refusal::Nothing { what: "previous version", .. })));
        assert!(!back.versions.contains_key(C), "a version nothing refers to is forgotten");
    }

    #[test]
    fn rollback_targets_are_bounded() {
        let mut s = live("sha256:0");
        for i in 1..10 {
            let d = format!("sha256:{i}");
            s = s
                .stage("p", &d, &i.to_string())
                .unwrap()
                .activate("p", &[replica("r", &[&d], &[])], 3)
                .unwrap();
        }
        assert_eq!(s.previous, ["sha256:8", "sha256:7", "sha256:6"]);
        assert_eq!(s.wanted().len(), 4);
        assert_eq!(s.versions.len(), 4);
    }

    #[test]
    fn canary_and_shadow_are_gated_everywhere_and_promote_makes_the_canary_live() {
        let s = live(A);
        let partly = [replica("r1", &[A, B], &[]), replica("r2", &[A], &[])];
        assert!(matches!(s.canary("p", B, 10, "customer_id", &partly), Err(Refusal::NotReady { .. })));
        assert!(matches!(
            s.canary("p", B, 0, "customer_id", &partly),
            Err(Refusal::Percent { percent: 0, .. })
        ));
        assert!(matches!(s.canary("p", A, 10, "customer_id", &partly), Err(Refusal::Already { .. })));
        let ready = [replica("r1", &[A, B], &[]), replica("r2", &[A, B], &[])];
        let c = s.canary("p", B, 10, "customer_id", &ready).unwrap();
        assert_eq!(c.canary.as_ref().map(|c| (c.digest.as_str(), c.percent)), Some((B, 10)));
        assert_eq!(c.abort("p").unwrap().canary, None);
        let promoted = c.promote("p", &ready, 4).unwrap();
        assert_eq!((promoted.live.as_deref(), promoted.canary.as_ref()), (Some(B), None));
        assert_eq!(promoted.previous, [A]);

        assert!(matches!(s.shadow("p", Some(B), &partly), Err(Refusal::NotReady { .. })));
        let shadowed = s.shadow("p", Some(B), &ready).unwrap();
        assert_eq!(shadowed.wanted(), [A, B]);
        assert_eq!(shadowed.shadow("p", None, &[]).unwrap().shadow, None);
    }

    #[test]
    fn convergence_is_every_replica_at_the_generation_serving_live() {
        let s = live(A);
        let mut r1 = replica("r1", &[A], &[]);
        assert!(!s.converged("p", std::slice::from_ref(&r1)));
        let status = r1.plugins.get_mut("p").unwrap();
        status.generation = s.generation;
        status.live = Some(A.into());
        assert!(s.converged("p", std::slice::from_ref(&r1)));
        assert!(!s.converged("p", &[]));
    }

    #[test]
    fn the_state_round_trips_as_json_and_refuses_unknown_fields() {
        let s = live(A).stage("p", B, "2").unwrap();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<DesiredState>(&json).unwrap(), s);
        assert!(
            serde_json::from_str::<DesiredState>(r#"{"generation":1,"repository":"r","lve":"x"}"#).is_err()
        );
    }
}
