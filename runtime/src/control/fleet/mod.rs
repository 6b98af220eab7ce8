//! Fleet mode: one rollout for every replica. Built so far: a plugin version
//! packed as an OCI artifact ([`artifact`]) and pushed to or pulled by digest
//! from an OCI registry ([`registry`]); the fleet's intent for a plugin and
//! every operator change to it as pure, refusable transitions ([`desired`]).
//! The etcd key that holds that intent (changed by compare-and-swap) and the
//! replicas that follow it are to come (docs/fleet-design.md).

pub mod artifact;
pub mod desired;
pub mod registry;
