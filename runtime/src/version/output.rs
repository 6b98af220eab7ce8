//! Checking what a guest answered: a score must be finite, its reasons
//! bounded in number and size. Used by the row path ([`crate::version::plugin`])
//! and the frame path (`version/frame.rs`) alike.

use crate::sandbox::bindings::types;
use crate::sandbox::error::CallError;

/// One scored row.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// The score, finite.
    pub score: f64,
    /// Reason codes with signed weights, as the plugin ordered them.
    pub reasons: Vec<(String, f64)>,
    /// Set when `score` is the manifest's declared fallback, answered in place
    /// of this error (see [`crate::version::manifest::FallbackPolicy`]).
    pub fallback: Option<CallError>,
    /// Input fields the plugin does not declare that were sent anyway and
    /// ignored; only with `[inputs] undeclared = "report"` (the default
    /// refuses them).
    pub undeclared: Vec<String>,
}

impl Scored {
    /// What the plugin itself answered: the error a fallback stands in for is
    /// an error here. For checks that must see the plugin, not the policy
    /// (golden vectors, shadow comparisons).
    pub fn into_plugin_result(self) -> Result<Scored, CallError> {
        match self.fallback {
            Some(e) => Err(e),
            None => Ok(self),
        }
    }
}

/// The most reason codes a score may carry.
pub const MAX_REASONS: usize = 256;
/// The longest reason code, in bytes.
pub const MAX_REASON_CODE_BYTES: usize = 256;

/// A score with `n` > [`MAX_REASONS`] reasons (also checked by the frame path
/// before it builds them).
pub(crate) fn too_many_reasons(n: usize) -> CallError {
    CallError::InvalidOutput { message: format!("{n} reasons returned; at most {MAX_REASONS} are accepted") }
}

/// A reason code of `len` > [`MAX_REASON_CODE_BYTES`] bytes.
pub(crate) fn code_too_long(len: usize) -> CallError {
    CallError::InvalidOutput {
        message: format!(
            "a reason code of {len} bytes returned; at most {MAX_REASON_CODE_BYTES} are accepted"
        ),
    }
}

/// Validates a score: it must be finite, and so must every reason weight; at
/// most [`MAX_REASONS`] reasons of at most [`MAX_REASON_CODE_BYTES`] each.
pub(crate) fn scored(s: types::ScoreResult) -> Result<Scored, CallError> {
    if s.reasons.len() > MAX_REASONS {
        return Err(too_many_reasons(s.reasons.len()));
    }
    if let Some(r) = s.reasons.iter().find(|r| r.code.len() > MAX_REASON_CODE_BYTES) {
        return Err(code_too_long(r.code.len()));
    }
    if !s.value.is_finite() {
        return Err(CallError::InvalidOutput {
            message: format!("score is {}, not a finite number", s.value),
        });
    }
    if let Some(r) = s.reasons.iter().find(|r| !r.weight.is_finite()) {
        return Err(CallError::InvalidOutput {
            message: format!("reason `{}` has weight {}", r.code, r.weight),
        });
    }
    Ok(Scored {
        score: s.value,
        reasons: s.reasons.into_iter().map(|r| (r.code, r.weight)).collect(),
        fallback: None,
        undeclared: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::error::ErrorKind;

    #[test]
    fn non_finite_scores_and_weights_are_invalid_output() {
        let score = |value: f64, weight: f64| types::ScoreResult {
            value,
            reasons: vec![types::Reason { code: "x".into(), weight }],
        };
        for (v, w) in [(f64::NAN, 1.0), (f64::INFINITY, 1.0), (0.5, f64::NEG_INFINITY)] {
            assert_eq!(scored(score(v, w)).unwrap_err().kind(), ErrorKind::InvalidOutput);
        }
        assert_eq!(scored(score(0.5, -2.0)).unwrap().score, 0.5);
    }
}
