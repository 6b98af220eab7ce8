//! `scorehost push <plugin> <registry>/<repository>:<tag>`: packs a plugin
//! directory as an OCI artifact (a manifest with scorehost's own
//! `artifactType`, a config naming every file's sha256, the component and the
//! other files as layers) and pushes it. Prints the digest, which is what a
//! fleet deploys: the same directory always packs to the same digest.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use scorehost::control::fleet::artifact;
use scorehost::control::fleet::registry::RegistryClient;

/// Arguments of `scorehost push`.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// The plugin directory, or the name of a bundled plugin.
    plugin: PathBuf,
    /// Where to push it: `<registry>/<repository>:<tag>`, e.g.
    /// `127.0.0.1:5000/scorehost/logreg:0.1.0`.
    reference: String,
    /// Speak plain HTTP to the registry (on loopback or a private network)
    /// instead of HTTPS.
    #[arg(long)]
    plain_http: bool,
}

/// Packs and pushes; prints `{"digest", "reference", "name", "version", "bytes"}`.
pub fn run(args: PushArgs) -> anyhow::Result<ExitCode> {
    let dir = super::resolve_plugin(&args.plugin)?;
    let packed = artifact::pack(&dir).with_context(|| format!("packing {}", dir.display()))?;
    let client = RegistryClient::new(args.plain_http);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let digest = runtime
        .block_on(client.push(&args.reference, &packed))
        .with_context(|| format!("pushing {} to {}", dir.display(), args.reference))?;
    let bytes: usize = packed.blobs().iter().map(|(_, b)| b.len()).sum::<usize>() + packed.manifest.len();
    let out = serde_json::json!({
        "digest": digest,
        "reference": args.reference,
        "name": packed.config.name,
        "version": packed.config.version,
        "bytes": bytes,
    });
    println!("{out}");
    Ok(ExitCode::SUCCESS)
}
