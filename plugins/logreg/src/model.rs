//! The logistic-regression arithmetic, free of the SDK: the plugin, the native
//! baseline of `benches/` and the `wasmtime serve` component of
//! `benches/wasi-http-logreg` all run exactly this code, so the benchmarks
//! compare the platform around it and not three implementations of it.

/// The logistic function.
pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Scores the feature vector `xs` (one value per weight, in weight order; NaN
/// is a missing feature and contributes nothing) and returns P = σ(intercept +
/// Σ wᵢxᵢ). `contributions` is cleared and filled with every `(i, wᵢxᵢ)`,
/// largest magnitude first: the reason codes, for the caller to cut to its
/// top n.
pub fn score(intercept: f64, weights: &[f64], xs: &[f64], contributions: &mut Vec<(usize, f64)>) -> f64 {
    contributions.clear();
    let mut z = intercept;
    for (i, (&w, &x)) in weights.iter().zip(xs).enumerate() {
        if x.is_nan() {
            continue;
        }
        z += w * x;
        contributions.push((i, w * x));
    }
    contributions.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
    sigmoid(z)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_values_contribute_nothing_and_reasons_are_ordered() {
        let mut c = Vec::new();
        let p = score(-1.0, &[2.0, -0.5, 9.0], &[1.0, 4.0, f64::NAN], &mut c);
        assert!((p - sigmoid(-1.0)).abs() < 1e-15);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].0, 0);
        assert_eq!(c[1], (1, -2.0));
    }
}
