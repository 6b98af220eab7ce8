//! `scorehost inspect`: world, metadata and limits of a plugin, or the imports
//! and exports of a bare component.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use scorehost::Runtime;
use scorehost::sandbox::host;
use scorehost::serving::render;
use wasmtime::component::Component;

/// Arguments of `scorehost inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// A plugin directory (or bundled example name), or a `.wasm` component.
    target: PathBuf,
}

/// Prints the description as JSON.
pub fn run(runtime: &Runtime, args: InspectArgs) -> anyhow::Result<ExitCode> {
    if args.target.is_file() {
        return inspect_component(runtime, &args.target);
    }
    let dir = super::resolve_plugin(&args.target)?;
    let version = runtime.load(&dir).with_context(|| format!("loading {}", dir.display()))?;
    println!("{}", serde_json::to_string_pretty(&render::describe(&version))?);
    Ok(ExitCode::SUCCESS)
}

/// A bare component has no manifest, so no config to run `init` with: show its
/// worlds, imports and whether scorehost grants each.
fn inspect_component(runtime: &Runtime, path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let engine = runtime.engine().engine();
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let component = Component::new(engine, &bytes)
        .map_err(|e| anyhow::anyhow!("{} is not a valid component: {e:#}", path.display()))?;
    let ty = component.component_type();
    let imports: Vec<_> = ty
        .imports(engine)
        .map(|(name, _)| {
            let unversioned = name.split('@').next().unwrap_or(name);
            // Linked deny-all (sockets): loads, every use fails with access-denied.
            let denied = host::DENIED_IMPORTS.contains(&unversioned);
            serde_json::json!({
                "name": name,
                "granted": host::GRANTED_IMPORTS.contains(&unversioned) || denied,
                "every_use_denied": denied,
            })
        })
        .collect();
    let exports: Vec<_> = ty.exports(engine).map(|(name, _)| name.to_owned()).collect();
    let worlds: Vec<_> = [scorehost::World::Scorer, scorehost::World::Extractor]
        .into_iter()
        .filter(|w| exports.iter().any(|e| w.exported_as(e)))
        .map(|w| w.as_str())
        .collect();
    let json = serde_json::json!({
        "component": path.display().to_string(),
        "content_hash": scorehost::sandbox::cache::content_hash(&bytes),
        "worlds": worlds,
        "imports": imports,
        "exports": exports,
    });
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(ExitCode::SUCCESS)
}
