//! Fleet mode: one rollout for every replica. Built so far: a plugin version
//! packed as an OCI artifact ([`artifact`]) and pushed to or pulled by digest
//! from an OCI registry ([`registry`]); the fleet's intent for a plugin and
//! every operator change to it as pure, refusable transitions ([`desired`]).
//! With the `etcd` feature, `etcd` keeps that intent in etcd, one key per
//! plugin changed by compare-and-swap, and the replicas' reports under a
//! lease; and `replica`, the serving process that follows that intent
//! (pulls, gates, swaps, persists, reports). docs/fleet.md has the design.

pub mod artifact;
pub mod desired;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod ops;
pub mod registry;
#[cfg(feature = "etcd")]
pub mod replica;
