//! The library's layers, checked from its source: each folder of
//! `runtime/src` imports only from the folders below it (state < sandbox < version <
//! serving < control < http), and no module imports, directly or round a
//! circle, a module that imports it. A reference is a `crate::…` path, or a
//! `super::sibling` path in a file at the top of a layer folder, outside
//! comments and outside the file's `#[cfg(test)]` module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layer folders, lowest first.
const LAYERS: [&str; 6] = ["state", "sandbox", "version", "serving", "control", "http"];

/// One module of the check: a layer and the file or folder directly in it
/// (`version::plugin` covers `version/plugin.rs` and `version/plugin/*`).
type Unit = (String, String);

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The unit a file belongs to, and whether it sits directly in its layer folder.
fn unit_of(relative: &Path) -> Option<(Unit, bool)> {
    let parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if parts.len() < 2 || !LAYERS.contains(&parts[0].as_str()) {
        return None; // lib.rs, proptests.rs: the crate root and its tests
    }
    let module = parts[1].trim_end_matches(".rs").to_owned();
    Some(((parts[0].clone(), module), parts.len() == 2))
}

/// The identifiers that follow `prefix` in `code`, e.g. `crate::` → `sandbox`.
fn after<'a>(code: &'a str, prefix: &str) -> impl Iterator<Item = (&'a str, &'a str)> {
    code.match_indices(prefix).map(move |(i, _)| {
        let rest = &code[i + prefix.len()..];
        let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
        (&rest[..end], &rest[end..])
    })
}

fn ident(s: &str) -> &str {
    let s = s.strip_prefix("::").unwrap_or("");
    &s[..s.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(s.len())]
}

/// The code of a file that counts: comments and the test module removed.
fn code_of(text: &str) -> String {
    let body = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    body.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every module's references to other modules, by unit.
fn references() -> BTreeMap<Unit, BTreeSet<Unit>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let units: BTreeSet<Unit> =
        files.iter().filter_map(|f| unit_of(f.strip_prefix(&src).unwrap())).map(|(u, _)| u).collect();
    let mut graph: BTreeMap<Unit, BTreeSet<Unit>> = BTreeMap::new();
    for file in &files {
        let Some((unit, top)) = unit_of(file.strip_prefix(&src).unwrap()) else { continue };
        let code = code_of(&std::fs::read_to_string(file).unwrap());
        let edges = graph.entry(unit.clone()).or_default();
        for (layer, rest) in after(&code, "crate::") {
            let target = (layer.to_owned(), ident(rest).to_owned());
            if LAYERS.contains(&layer) && units.contains(&target) && target != unit {
                edges.insert(target);
            }
        }
        if top {
            for (module, _) in after(&code, "super::") {
                let target = (unit.0.clone(), module.to_owned());
                if units.contains(&target) && target != unit {
                    edges.insert(target);
                }
            }
        }
    }
    graph
}

fn rank(layer: &str) -> usize {
    LAYERS.iter().position(|l| *l == layer).unwrap()
}

fn name((layer, module): &Unit) -> String {
    format!("{layer}::{module}")
}

#[test]
fn each_layer_imports_only_from_the_layers_below_it() {
    let mut upward = Vec::new();
    for (from, targets) in references() {
        for to in targets.iter().filter(|to| rank(&to.0) > rank(&from.0)) {
            upward.push(format!("{} imports {}", name(&from), name(to)));
        }
    }
    assert!(upward.is_empty(), "imports from a higher layer:\n{}", upward.join("\n"));
}

#[test]
fn no_module_imports_in_a_circle() {
    let graph = references();
    assert!(
        graph.len() > 20,
        "the check found only {} modules: is runtime/src laid out by layer?",
        graph.len()
    );
    // Depth-first search; a back edge closes a circle, reported as its path.
    fn visit(
        node: &Unit,
        graph: &BTreeMap<Unit, BTreeSet<Unit>>,
        path: &mut Vec<Unit>,
        done: &mut BTreeSet<Unit>,
        circles: &mut Vec<String>,
    ) {
        if let Some(i) = path.iter().position(|n| n == node) {
            let mut circle: Vec<String> = path[i..].iter().map(name).collect();
            circle.push(name(node));
            circles.push(circle.join(" → "));
            return;
        }
        if !done.insert(node.clone()) {
            return;
        }
        path.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, path, done, circles);
        }
        path.pop();
    }
    let (mut done, mut circles) = (BTreeSet::new(), Vec::new());
    for node in graph.keys() {
        visit(node, &graph, &mut Vec::new(), &mut done, &mut circles);
    }
    assert!(circles.is_empty(), "modules that import each other:\n{}", circles.join("\n"));
}
