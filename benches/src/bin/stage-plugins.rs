//! # stage-plugins — a plugin directory for the load scripts
//!
//! Copies the bundled plugins named on the command line (as the build staged
//! them: manifest, component, data files) into `DEST/<name>/`, so
//! `scorehost serve --plugins DEST` serves exactly those. `--no-breaker`
//! disarms each copy's circuit breaker (`[breaker] enabled = false`), for the
//! control runs of `benches/isolation.sh`; `--fresh` sets `[instances]
//! fresh_per_call = true`, for `benches/fresh.sh`.
//!
//! ```sh
//! stage-plugins /tmp/p logreg hostile-loop hostile-panic
//! stage-plugins /tmp/fresh --fresh logreg
//! ```

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let no_breaker = args.iter().any(|a| a == "--no-breaker");
    let fresh = args.iter().any(|a| a == "--fresh");
    args.retain(|a| a != "--no-breaker" && a != "--fresh");
    let Some((dest, names)) = args.split_first() else {
        eprintln!("usage: stage-plugins DEST [--no-breaker] [--fresh] PLUGIN...");
        std::process::exit(2);
    };
    let dest = std::path::Path::new(dest);
    for name in names {
        let copy = scorehost_benches::copy_with(name, |mut m| {
            if no_breaker {
                m.push_str("\n[breaker]\nenabled = false\n");
            }
            if fresh {
                m.push_str("\n[instances]\nfresh_per_call = true\n");
            }
            m
        });
        let to = dest.join(name);
        scorehost_benches::copy_tree(copy.path(), &to);
        println!("{}", to.display());
    }
}
