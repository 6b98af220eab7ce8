//! An XGBoost JSON tree-ensemble evaluator, shared by the gbdt plugin and the
//! native benchmark (so wasm-vs-native compares the very same code).
//!
//! Reads what `Booster.save_model("model.json")` writes in XGBoost 1.x to 3.x
//! (gbtree booster, numerical splits) and predicts exactly as XGBoost does: the
//! input is rounded to f32, a split goes left when `x < split_condition`, a
//! missing value (NaN) follows the node's default branch, leaf values are summed
//! in f32 starting from the base margin.

use serde::Deserialize;
use serde_json::Value;

/// What the model's output means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objective {
    /// `binary:logistic`: sigmoid of the margin, a probability.
    BinaryLogistic,
    /// `reg:squarederror`: the margin itself.
    SquaredError,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    /// Index of the left child within the tree, or -1 for a leaf.
    left: i32,
    right: i32,
    feature: u32,
    /// Split threshold; the leaf value for leaves.
    value: f32,
    default_left: bool,
    /// Mean leaf value under this node, weighted by hessian (for reason codes).
    mean: f64,
}

/// A parsed ensemble, ready to predict.
#[derive(Debug, Clone)]
pub struct Ensemble {
    /// Feature names in model order (`f0`, `f1`, … when the model has none).
    pub feature_names: Vec<String>,
    /// The objective.
    pub objective: Objective,
    base_margin: f32,
    trees: Vec<Vec<Node>>,
}

/// Why a model file could not be used; the message names the offending part.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ModelError> {
    Err(ModelError(msg.into()))
}

#[derive(Deserialize)]
struct RawTree {
    left_children: Vec<i32>,
    right_children: Vec<i32>,
    split_indices: Vec<u32>,
    split_conditions: Vec<f64>,
    default_left: Vec<Value>,
    #[serde(default)]
    split_type: Vec<u8>,
    #[serde(default)]
    sum_hessian: Vec<f64>,
}

/// A number XGBoost may write as a number, a string ("5E-1") or a one-element
/// vector string ("[5E-1]", XGBoost 3.x).
fn number(v: &Value, what: &str) -> Result<f64, ModelError> {
    match v {
        Value::Number(n) => n.as_f64().map_or_else(|| err(format!("{what} is not a number")), Ok),
        Value::String(s) => {
            let s = s.trim().trim_start_matches('[').trim_end_matches(']');
            let first = s.split(',').next().unwrap_or("").trim();
            first.parse().or_else(|_| err(format!("{what} = {s:?} is not a number")))
        }
        Value::Array(a) if a.len() == 1 => number(&a[0], what),
        _ => err(format!("{what} has an unexpected shape")),
    }
}

impl Ensemble {
    /// Parses an XGBoost JSON model.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ModelError> {
        let doc: Value = serde_json::from_slice(bytes).or_else(|e| err(format!("not JSON: {e}")))?;
        let learner = &doc["learner"];
        if learner.is_null() {
            return err(
                "no `learner` object: not an XGBoost JSON model (save it with Booster.save_model(\"model.json\"))",
            );
        }
        let objective = match learner["objective"]["name"].as_str() {
            Some("binary:logistic") => Objective::BinaryLogistic,
            Some("reg:squarederror") | Some("reg:linear") => Objective::SquaredError,
            Some(other) => {
                return err(format!(
                    "objective `{other}` is not supported (binary:logistic, reg:squarederror)"
                ));
            }
            None => return err("learner.objective.name is missing"),
        };
        let params = &learner["learner_model_param"];
        let num_class = params.get("num_class").map(|v| number(v, "num_class")).transpose()?.unwrap_or(0.0);
        if num_class > 1.0 {
            return err(format!("multi-class models ({num_class} classes) are not supported"));
        }
        let num_feature = number(&params["num_feature"], "learner_model_param.num_feature")? as usize;
        let base_score = number(&params["base_score"], "learner_model_param.base_score")?;
        let base_margin = match objective {
            Objective::BinaryLogistic => {
                if !(base_score > 0.0 && base_score < 1.0) {
                    return err(format!("base_score {base_score} is not a probability"));
                }
                -(1.0 / base_score - 1.0).ln()
            }
            Objective::SquaredError => base_score,
        } as f32;

        let booster = &learner["gradient_booster"];
        match booster["name"].as_str() {
            Some("gbtree") => {}
            Some(other) => return err(format!("booster `{other}` is not supported (gbtree only)")),
            None => return err("learner.gradient_booster.name is missing"),
        }
        let raw_trees: Vec<RawTree> = serde_json::from_value(booster["model"]["trees"].clone())
            .or_else(|e| err(format!("gradient_booster.model.trees: {e}")))?;
        let trees = raw_trees
            .into_iter()
            .enumerate()
            .map(|(i, t)| tree(t, num_feature).map_err(|ModelError(m)| ModelError(format!("tree {i}: {m}"))))
            .collect::<Result<Vec<_>, _>>()?;

        let feature_names: Vec<String> = match learner.get("feature_names").and_then(Value::as_array) {
            Some(names) if !names.is_empty() => {
                names.iter().map(|n| n.as_str().unwrap_or("").to_owned()).collect()
            }
            _ => (0..num_feature).map(|i| format!("f{i}")).collect(),
        };
        if feature_names.len() != num_feature {
            return err(format!("{} feature names for {num_feature} features", feature_names.len()));
        }
        Ok(Ensemble { feature_names, objective, base_margin, trees })
    }

    /// The raw margin for one row of features in model order (NaN = missing).
    pub fn margin(&self, x: &[f64]) -> f32 {
        let mut sum = self.base_margin;
        for tree in &self.trees {
            sum += tree[leaf(tree, x)].value;
        }
        sum
    }

    /// The prediction: a probability for `binary:logistic`, the value for regression.
    pub fn predict(&self, x: &[f64]) -> f64 {
        self.link(self.margin(x))
    }

    /// What the plugin computes per row, and the native benchmark with it:
    /// the prediction, and in `reasons` the `top` largest per-feature path
    /// contributions (`(feature index, contribution)`, largest magnitude
    /// first, ties in feature order; none when `top` is 0). One walk down
    /// each tree gives both. Allocates nothing for models of up to
    /// [`STACK_FEATURES`] features when `reasons` has room for `top`.
    pub fn explain(&self, x: &[f64], top: usize, reasons: &mut Vec<(usize, f64)>) -> f64 {
        reasons.clear();
        if top == 0 {
            return self.predict(x);
        }
        let n = self.feature_names.len();
        let mut on_stack = [0.0; STACK_FEATURES];
        let mut on_heap = Vec::new();
        let contributions = if n <= STACK_FEATURES {
            &mut on_stack[..n]
        } else {
            on_heap.resize(n, 0.0);
            &mut on_heap[..]
        };
        let margin = self.walk(x, contributions);
        top_k(contributions, top, reasons);
        self.link(margin)
    }

    /// Per-feature contributions to the margin along each tree's decision path
    /// (the approximate method of XGBoost's `pred_contribs`), indexed by feature.
    pub fn contributions(&self, x: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; self.feature_names.len()];
        self.walk(x, &mut out);
        out
    }

    /// The margin, adding each split's contribution to `out` on the way down.
    fn walk(&self, x: &[f64], out: &mut [f64]) -> f32 {
        let mut sum = self.base_margin;
        for tree in &self.trees {
            let mut n = 0usize;
            while tree[n].left >= 0 {
                let next = step(&tree[n], x);
                out[tree[n].feature as usize] += tree[next].mean - tree[n].mean;
                n = next;
            }
            sum += tree[n].value;
        }
        sum
    }

    /// The objective's link function: margin → prediction.
    fn link(&self, margin: f32) -> f64 {
        let m = f64::from(margin);
        match self.objective {
            Objective::BinaryLogistic => 1.0 / (1.0 + (-m).exp()),
            Objective::SquaredError => m,
        }
    }

    /// Number of trees.
    pub fn len(&self) -> usize {
        self.trees.len()
    }

    /// Whether the ensemble has no trees.
    pub fn is_empty(&self) -> bool {
        self.trees.is_empty()
    }
}

/// Models with at most this many features keep their per-row contributions
/// on the stack in [`Ensemble::explain`] (512 bytes); wider ones allocate.
pub const STACK_FEATURES: usize = 64;

/// The `top` non-zero entries of `contributions` with the largest magnitude,
/// largest first, into `out` (cleared by the caller). Equal magnitudes keep
/// feature order, as a stable sort would: a candidate goes after every kept
/// entry that is at least as large. O(features × top), no allocation beyond
/// `out` growing to `top`.
fn top_k(contributions: &[f64], top: usize, out: &mut Vec<(usize, f64)>) {
    for (i, &c) in contributions.iter().enumerate() {
        if c == 0.0 {
            continue;
        }
        let magnitude = c.abs();
        let at =
            out.iter().position(|&(_, kept)| magnitude.total_cmp(&kept.abs()).is_gt()).unwrap_or(out.len());
        if at < top {
            if out.len() == top {
                out.pop();
            }
            out.insert(at, (i, c));
        }
    }
}

#[inline]
fn step(node: &Node, x: &[f64]) -> usize {
    let v = x.get(node.feature as usize).copied().unwrap_or(f64::NAN);
    let left = if v.is_nan() { node.default_left } else { (v as f32) < node.value };
    (if left { node.left } else { node.right }) as usize
}

#[inline]
fn leaf(tree: &[Node], x: &[f64]) -> usize {
    let mut n = 0usize;
    while tree[n].left >= 0 {
        n = step(&tree[n], x);
    }
    n
}

fn tree(t: RawTree, num_feature: usize) -> Result<Vec<Node>, ModelError> {
    let n = t.left_children.len();
    if n == 0 {
        return err("has no nodes");
    }
    let same =
        [t.right_children.len(), t.split_indices.len(), t.split_conditions.len(), t.default_left.len()];
    if same.iter().any(|&len| len != n) {
        return err("node arrays have different lengths");
    }
    if t.split_type.iter().any(|&s| s != 0) {
        return err("categorical splits are not supported");
    }
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        let (l, r) = (t.left_children[i], t.right_children[i]);
        if l >= 0 && (l as usize >= n || r < 0 || r as usize >= n || l as usize <= i || r as usize <= i) {
            return err(format!("node {i} has invalid children {l}/{r}"));
        }
        if l >= 0 && t.split_indices[i] as usize >= num_feature {
            return err(format!("node {i} splits on feature {} of {num_feature}", t.split_indices[i]));
        }
        let default_left = match &t.default_left[i] {
            Value::Bool(b) => *b,
            v => v.as_u64().is_some_and(|d| d != 0),
        };
        nodes.push(Node {
            left: l,
            right: r,
            feature: t.split_indices[i],
            value: t.split_conditions[i] as f32,
            default_left,
            mean: 0.0,
        });
    }
    // Children have larger indices than their parent (checked above), so a
    // reverse sweep sees both children before the parent.
    let cover = |i: usize| t.sum_hessian.get(i).copied().unwrap_or(1.0);
    for i in (0..n).rev() {
        nodes[i].mean = if nodes[i].left < 0 {
            f64::from(nodes[i].value)
        } else {
            let (l, r) = (nodes[i].left as usize, nodes[i].right as usize);
            let (cl, cr) = (cover(l), cover(r));
            if cl + cr > 0.0 { (nodes[l].mean * cl + nodes[r].mean * cr) / (cl + cr) } else { 0.0 }
        };
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `top_k` replaced: a stable sort by magnitude, then the first `top`.
    fn sorted_top(contributions: &[f64], top: usize) -> Vec<(usize, f64)> {
        let mut all: Vec<(usize, f64)> =
            contributions.iter().copied().enumerate().filter(|(_, c)| *c != 0.0).collect();
        all.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        all.truncate(top);
        all
    }

    #[test]
    fn top_k_matches_a_stable_sort() {
        // Small integers make ties (equal and opposite magnitudes) and zeros common.
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for case in 0..2000 {
            let n = (next() % 40) as usize;
            let contributions: Vec<f64> = (0..n).map(|_| (next() % 9) as f64 - 4.0).collect();
            let top = case % 6;
            let mut out = Vec::new();
            top_k(&contributions, top, &mut out);
            assert_eq!(out, sorted_top(&contributions, top), "{contributions:?}, top {top}");
        }
    }

    #[test]
    fn top_k_ranks_nan_first_like_total_cmp() {
        let mut out = Vec::new();
        top_k(&[1.0, f64::NAN, -3.0, 0.0, -0.0], 2, &mut out);
        assert!(out[0].0 == 1 && out[0].1.is_nan());
        assert_eq!(out[1], (2, -3.0));
    }
}
