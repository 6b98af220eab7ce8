//! Candidates beside the live version: the canary (a sticky share of
//! traffic) and the shadow (copies of live traffic, off the response path).
//! The routing itself is in [`crate::serving::traffic`].

use std::sync::Arc;

use super::{Admin, AdminError, Swap};
use crate::serving::traffic::{Canary, RouteKey, Shadow, ShadowStats};
use crate::version::plugin::PluginVersion;

impl Admin {
    /// The live version of `name` and the gated candidate `version`, which
    /// must differ.
    fn candidate(&self, name: &str, version: &str) -> Result<Arc<PluginVersion>, AdminError> {
        let live = self
            .registry
            .get(name)
            .ok_or_else(|| AdminError::Conflict(format!("{name} has no live version")))?;
        let candidate = self.ensure_loaded(name, version)?;
        if Arc::ptr_eq(&live, &candidate) {
            return Err(AdminError::Conflict(format!("{name}@{version} is already live")));
        }
        Ok(candidate)
    }

    /// Sends `percent` of `name`'s routing keys to `version` (gated first).
    pub fn start_canary(
        &self,
        name: &str,
        version: &str,
        percent: u8,
        key: RouteKey,
    ) -> Result<(), AdminError> {
        let _op = self.op();
        if percent > 100 {
            return Err(AdminError::Invalid(format!("percent = {percent} must be between 0 and 100")));
        }
        let version = self.candidate(name, version)?;
        let canary = Arc::new(Canary { version, percent, key });
        self.registry.update(name, |e| e.canary = Some(canary.clone()));
        Ok(())
    }

    /// Makes the canary's version live (and ends the canary).
    pub fn promote_canary(&self, name: &str) -> Result<Swap, AdminError> {
        let _op = self.op();
        let canary = self.running_canary(name)?;
        self.activate_locked(name, &canary.version.manifest().version)
    }

    /// Ends the canary; all traffic goes to the live version again.
    pub fn abort_canary(&self, name: &str) -> Result<(), AdminError> {
        let _op = self.op();
        self.running_canary(name)?;
        self.registry.update(name, |e| e.canary = None);
        Ok(())
    }

    fn running_canary(&self, name: &str) -> Result<Arc<Canary>, AdminError> {
        self.registry
            .entry(name)
            .and_then(|e| e.canary)
            .ok_or_else(|| AdminError::Conflict(format!("{name} has no canary running")))
    }

    /// Runs `version` (gated first) on copies of `name`'s live traffic, at
    /// most `max_in_flight` copies at once.
    pub fn start_shadow(&self, name: &str, version: &str, max_in_flight: usize) -> Result<(), AdminError> {
        let _op = self.op();
        if max_in_flight == 0 || max_in_flight > 1024 {
            return Err(AdminError::Invalid(format!(
                "max_in_flight = {max_in_flight} must be between 1 and 1024"
            )));
        }
        let version = self.candidate(name, version)?;
        let shadow = Arc::new(Shadow::new(version, max_in_flight));
        self.registry.update(name, |e| e.shadow = Some(shadow.clone()));
        Ok(())
    }

    /// Ends the shadow; returns its final counts.
    pub fn stop_shadow(&self, name: &str) -> Result<ShadowStats, AdminError> {
        let _op = self.op();
        let shadow = self
            .registry
            .entry(name)
            .and_then(|e| e.shadow)
            .ok_or_else(|| AdminError::Conflict(format!("{name} has no shadow running")))?;
        self.registry.update(name, |e| e.shadow = None);
        Ok(shadow.stats())
    }
}
