//! `scorehost call`: one call under production limits, printed as JSON.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use scorehost::serving::render;
use scorehost::{Runtime, World};
use serde_json::{Map, Value as Json, json};

/// Arguments of `scorehost call`.
#[derive(Debug, clap::Args)]
pub struct CallArgs {
    /// A plugin directory, or a bundled example: txn-features, logreg, gbdt.
    plugin: PathBuf,
    /// The input as JSON: an object of named features (or event fields);
    /// `{"features": {…}}` / `{"event": {…}}`; or `{"instances": [{…}, …]}` for
    /// a batch. `@path` reads it from a file, `-` from stdin.
    #[arg(long)]
    input: String,
    /// Tighten the plugin's deadline for this call, in milliseconds.
    #[arg(long)]
    deadline_ms: Option<u64>,
}

/// What the input asks for.
enum Input {
    One(Map<String, Json>),
    Batch(Vec<Map<String, Json>>),
}

fn parse_input(raw: &str) -> anyhow::Result<Input> {
    let text = match raw {
        "-" => std::io::read_to_string(std::io::stdin()).context("reading the input from stdin")?,
        s if s.starts_with('@') => {
            std::fs::read_to_string(&s[1..]).with_context(|| format!("reading {}", &s[1..]))?
        }
        s => s.to_owned(),
    };
    let json: Json = serde_json::from_str(&text).context("--input is not valid JSON")?;
    let Json::Object(mut obj) = json else { bail!("--input must be a JSON object") };
    if let Some(instances) = obj.remove("instances") {
        let Json::Array(rows) = instances else { bail!("`instances` must be an array of objects") };
        let rows = rows
            .into_iter()
            .enumerate()
            .map(|(i, r)| match r {
                Json::Object(m) => Ok(m),
                _ => bail!("instances[{i}] is not an object"),
            })
            .collect::<anyhow::Result<_>>()?;
        return Ok(Input::Batch(rows));
    }
    for wrapper in ["features", "event"] {
        if obj.len() == 1
            && let Some(Json::Object(inner)) = obj.remove(wrapper)
        {
            return Ok(Input::One(inner));
        }
    }
    Ok(Input::One(obj))
}

/// Loads the plugin, makes the call, prints the result; exit code 1 on a failed call.
pub fn run(runtime: &Runtime, args: CallArgs) -> anyhow::Result<ExitCode> {
    let dir = super::resolve_plugin(&args.plugin)?;
    let input = parse_input(&args.input)?;
    let started = Instant::now();
    let version = runtime.load(&dir).with_context(|| format!("loading {}", dir.display()))?;
    tracing::info!("loaded {} in {:.1} ms", version.label(), started.elapsed().as_secs_f64() * 1e3);
    let deadline = args.deadline_ms.map(Duration::from_millis);

    let result = match (version.manifest().world, input) {
        (World::Scorer, Input::One(f)) => {
            version.score(&f, deadline).map(|o| json!(render::score_response(&version, &o)))
        }
        (World::Scorer, Input::Batch(rows)) => {
            version.score_batch(&rows, deadline).map(|o| render::batch_response(&version, &o, render::scored))
        }
        (World::Extractor, Input::One(e)) => {
            version.extract(&e, deadline).map(|o| render::extract_response(&version, &o))
        }
        (World::Extractor, Input::Batch(rows)) => version
            .extract_batch(&rows, deadline)
            .map(|o| render::batch_response(&version, &o, |f| json!({ "features": f }))),
    };
    match result {
        Ok(json) => {
            println!("{}", serde_json::to_string_pretty(&json)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("{}", serde_json::to_string_pretty(&render::error(&e))?);
            Ok(ExitCode::from(1))
        }
    }
}
