//! The two plugin traits and the glue the export macros expand to.

use std::sync::OnceLock;

use crate::bindings::{frames, types};
use crate::config::Config;
use crate::error::{PluginError, Result};
use crate::features::{Features, Layout, Output};
use crate::frame::{Frame, FrameOut};
use crate::metadata::{Metadata, Score};

/// What the default [`Scorer::init`] returns; the export glue recognises it
/// and builds a `Default` plugin instead.
pub(crate) const SCORER_INIT_MISSING: &str =
    "`init` is not implemented: implement `Scorer::init`, or derive `Default` for a plugin without state";

/// As [`SCORER_INIT_MISSING`], for [`Extractor::init`].
pub(crate) const EXTRACTOR_INIT_MISSING: &str =
    "`init` is not implemented: implement `Extractor::init`, or derive `Default` for a plugin without state";

/// A scoring plugin: features in, score out. Export it with [`crate::export_scorer`].
///
/// A plugin without state implements only `metadata` and `score` and derives
/// `Default`: the export macro then builds it with `Default::default()`.
pub trait Scorer: Sized + Send + Sync + 'static {
    /// Builds the plugin from its config; parse the model here. Called once per
    /// plugin version; the state it returns is snapshotted and every call starts from it.
    ///
    /// Optional for a type that implements `Default`: without an `init` of its
    /// own, [`crate::export_scorer`] builds the plugin with `Default::default()`
    /// and ignores the config. An `init` the plugin writes is always the one
    /// used, `Default` or not. The default body is an error, the plugin's fault,
    /// saying to implement `init` or derive `Default` — what the host reports
    /// for a type with neither. (Test a `Default` plugin with
    /// [`crate::testing::Harness::of_scorer`].)
    fn init(_config: &Config) -> Result<Self> {
        Err(PluginError::internal(SCORER_INIT_MISSING))
    }

    /// Declares name, version, inputs and outputs. Called once, after `init`.
    fn metadata(&self) -> Metadata;

    /// Scores one row. Called once per row, on an instance that may have served
    /// earlier calls of this version (see the crate docs).
    fn score(&self, features: &Features<'_>) -> Result<Score>;

    /// Scores every row of a batch, in row order, into `out`: what the host
    /// calls for batches (the `frame-scorer` export), unless the plugin
    /// declares open inputs (then batches are rows, `score` per row). The default calls
    /// [`Scorer::score`] on each row, which is right for most plugins. Override
    /// it only to skip per-row work — a dense-vector model reads
    /// [`Frame::numbers`] and explains with [`FrameOut::push_indexed`] — and
    /// keep the results equal to `score`'s (test it with
    /// [`crate::testing::Harness::score_frame`]).
    fn score_frame(&self, frame: &Frame<'_>, out: &mut FrameOut<'_>) {
        for r in 0..frame.rows() {
            out.push(self.score(&frame.features(r)));
        }
    }
}

/// A feature-extraction plugin: event in, features out. Export it with [`crate::export_extractor`].
///
/// As for [`Scorer`], a plugin without state may skip `init` and derive `Default`.
pub trait Extractor: Sized + Send + Sync + 'static {
    /// As [`Scorer::init`]: optional for a type that implements `Default`, which
    /// [`crate::export_extractor`] then builds with `Default::default()`. (Test
    /// it with [`crate::testing::Harness::of_extractor`].)
    fn init(_config: &Config) -> Result<Self> {
        Err(PluginError::internal(EXTRACTOR_INIT_MISSING))
    }

    /// As [`Scorer::metadata`]; `outputs` lists the features `extract` sets.
    fn metadata(&self) -> Metadata;

    /// Extracts the features of one event into `out`, by output name.
    fn extract(&self, event: &Features<'_>, out: &mut Output<'_>) -> Result<()>;
}

/// An initialised plugin with its metadata and layouts, computed once at `init`.
pub struct Loaded<T> {
    /// The plugin's own state.
    pub plugin: T,
    /// What the plugin declared.
    pub metadata: Metadata,
    /// Slots of the declared inputs.
    pub inputs: Layout,
    /// Slots of the declared outputs.
    pub outputs: Layout,
}

impl<T> Loaded<T> {
    /// Wraps an initialised plugin and lays out its declared fields.
    pub fn new(plugin: T, metadata: Metadata) -> Self {
        let inputs = Layout::new(&metadata.inputs);
        let outputs = Layout::new(&metadata.outputs);
        Self { plugin, metadata, inputs, outputs }
    }
}

/// Scores one positional row with a loaded scorer.
pub fn score_row<T: Scorer>(loaded: &Loaded<T>, row: &types::Row) -> Result<Score> {
    loaded.plugin.score(&Features::new(row, &loaded.inputs))
}

/// Scores a frame with a loaded scorer: one result per row, whatever the plugin does.
pub fn score_frame<T: Scorer>(loaded: &Loaded<T>, frame: &frames::Frame) -> frames::FrameScores {
    let rows = frame.rows as usize;
    let mut out = FrameOut::new(&loaded.inputs, rows);
    match Frame::new(frame, &loaded.inputs) {
        Ok(view) => loaded.plugin.score_frame(&view, &mut out),
        Err(e) => (0..rows).for_each(|_| out.push_error(e.clone())),
    }
    out.finish()
}

/// Extracts one positional row with a loaded extractor.
pub fn extract_row<T: Extractor>(loaded: &Loaded<T>, row: &types::Row) -> Result<types::Row> {
    let mut out = Output::new(&loaded.outputs);
    loaded.plugin.extract(&Features::new(row, &loaded.inputs), &mut out)?;
    Ok(out.into_row())
}

/// What the export macros call. Not a public API.
#[doc(hidden)]
pub mod __private {
    use std::marker::PhantomData;

    use super::*;
    use crate::error::ErrorKind;

    type Wit<T> = std::result::Result<T, types::PluginError>;

    fn loaded<T>(cell: &OnceLock<Loaded<T>>) -> Wit<&Loaded<T>> {
        cell.get().ok_or_else(|| types::PluginError {
            kind: types::ErrorKind::Internal,
            message: "plugin called before init".into(),
        })
    }

    /// What the export macro knows of the plugin crate, expanded there: its
    /// package name and version (`CARGO_PKG_*`), and `Default::default` of the
    /// exported type if it implements `Default` (found with [`Probe`]).
    pub struct Package<T> {
        /// `CARGO_PKG_NAME`: the metadata's name when the plugin leaves it empty.
        pub name: &'static str,
        /// `CARGO_PKG_VERSION`: the metadata's version when the plugin leaves it empty.
        pub version: &'static str,
        /// Builds the plugin when it does not implement `init` itself.
        pub default: Option<fn() -> T>,
    }

    /// Finds `Default::default` of a concrete type by autoref specialisation:
    /// with [`DefaultCtor`] and [`NoDefaultCtor`] in scope,
    /// `(&&Probe::<T>::new()).default_ctor()` is `Some(T::default)` when
    /// `T: Default` (the impl on `&Probe<T>` matches first) and `None`
    /// otherwise (the impl on `Probe<T>`, one auto-deref later). Works only
    /// where `T` is a concrete type, as in the export macros.
    pub struct Probe<T>(PhantomData<T>);

    impl<T> Probe<T> {
        /// A probe for `T`.
        pub const fn new() -> Self {
            Probe(PhantomData)
        }
    }

    impl<T> Default for Probe<T> {
        fn default() -> Self {
            Self::new()
        }
    }

    /// The [`Probe`] of a `Default` type.
    pub trait DefaultCtor<T> {
        /// `Some(T::default)`.
        fn default_ctor(&self) -> Option<fn() -> T>;
    }

    impl<T: Default> DefaultCtor<T> for &Probe<T> {
        fn default_ctor(&self) -> Option<fn() -> T> {
            Some(T::default)
        }
    }

    /// The [`Probe`] of any other type.
    pub trait NoDefaultCtor<T> {
        /// `None`.
        fn default_ctor(&self) -> Option<fn() -> T>;
    }

    impl<T> NoDefaultCtor<T> for Probe<T> {
        fn default_ctor(&self) -> Option<fn() -> T> {
            None
        }
    }

    /// The plugin `init` built, or, if the plugin has no `init` of its own
    /// (the trait's default body answered `missing`) and is `Default`, the
    /// default one. Any other answer of `init` is kept as it is.
    fn build<T>(init: Result<T>, missing: &str, package: &Package<T>) -> Result<T> {
        match (init, package.default) {
            (Err(e), Some(default)) if e.kind == ErrorKind::Internal && e.message == missing => Ok(default()),
            (init, _) => init,
        }
    }

    /// The plugin's metadata, an empty name or version filled from the crate.
    fn named<T>(mut metadata: Metadata, package: &Package<T>) -> Metadata {
        if metadata.name.is_empty() {
            metadata.name = package.name.to_owned();
        }
        if metadata.version.is_empty() {
            metadata.version = package.version.to_owned();
        }
        metadata
    }

    pub fn scorer_init<T: Scorer>(
        cell: &OnceLock<Loaded<T>>,
        config: Vec<(String, String)>,
        package: Package<T>,
    ) -> Wit<()> {
        let plugin = build(T::init(&Config::new(config)), SCORER_INIT_MISSING, &package)?;
        let metadata = named(plugin.metadata(), &package);
        let _ = cell.set(Loaded::new(plugin, metadata));
        reserve_heap();
        Ok(())
    }

    pub fn extractor_init<T: Extractor>(
        cell: &OnceLock<Loaded<T>>,
        config: Vec<(String, String)>,
        package: Package<T>,
    ) -> Wit<()> {
        let plugin = build(T::init(&Config::new(config)), EXTRACTOR_INIT_MISSING, &package)?;
        let metadata = named(plugin.metadata(), &package);
        let _ = cell.set(Loaded::new(plugin, metadata));
        reserve_heap();
        Ok(())
    }

    /// Free heap the snapshot taken after `init` keeps for calls.
    const HEAP_RESERVE: usize = 256 << 10;

    /// Grows the heap by [`HEAP_RESERVE`] and frees it again, at the end of
    /// `init`. The allocator keeps freed memory for later allocations and wasm
    /// memory never shrinks, so the snapshot every instance starts from has
    /// that much free heap and a call's allocations fit in it. Without it the
    /// first allocation of every new instance grew linear memory: with
    /// `fresh_per_call` that was two `mprotect`s per call in the host and the
    /// grown pages zero-filled again when the instance was reset (callgrind,
    /// `call-loop fresh`; docs/performance.md).
    fn reserve_heap() {
        drop(std::hint::black_box(Vec::<u8>::with_capacity(HEAP_RESERVE)));
    }

    pub fn metadata<T>(cell: &OnceLock<Loaded<T>>) -> types::Metadata {
        match cell.get() {
            Some(l) => (&l.metadata).into(),
            None => panic!("scorehost: describe() called before init()"),
        }
    }

    pub fn score<T: Scorer>(cell: &OnceLock<Loaded<T>>, row: &types::Row) -> Wit<types::ScoreResult> {
        Ok(score_row(loaded(cell)?, row)?.into())
    }

    pub fn score_batch<T: Scorer>(
        cell: &OnceLock<Loaded<T>>,
        rows: &[types::Row],
    ) -> Vec<Wit<types::ScoreResult>> {
        rows.iter().map(|row| score(cell, row)).collect()
    }

    pub fn score_frame<T: Scorer>(cell: &OnceLock<Loaded<T>>, frame: &frames::Frame) -> frames::FrameScores {
        match loaded(cell) {
            Ok(l) => super::score_frame(l, frame),
            Err(e) => frames::FrameScores {
                values: vec![f64::NAN; frame.rows as usize],
                reasons: Vec::new(),
                codes: Vec::new(),
                errors: (0..frame.rows).map(|row| frames::FrameError { row, error: e.clone() }).collect(),
            },
        }
    }

    pub fn extract<T: Extractor>(cell: &OnceLock<Loaded<T>>, row: &types::Row) -> Wit<types::Row> {
        Ok(extract_row(loaded(cell)?, row)?)
    }

    pub fn extract_batch<T: Extractor>(
        cell: &OnceLock<Loaded<T>>,
        rows: &[types::Row],
    ) -> Vec<Wit<types::Row>> {
        rows.iter().map(|row| extract(cell, row)).collect()
    }
}

/// The [`__private::Package`] of the plugin type `$ty`: expanded in the plugin
/// crate, so `CARGO_PKG_*` are the plugin's, and where `$ty` is concrete, so
/// the [`__private::Probe`] sees whether it is `Default`. Not a public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __package {
    ($ty:ty) => {{
        #[allow(unused_imports)]
        use $crate::__private::{DefaultCtor as _, NoDefaultCtor as _};
        // The two borrows pick the impl (autoref specialisation); none is needless.
        #[allow(clippy::needless_borrow)]
        let default = (&&$crate::__private::Probe::<$ty>::new()).default_ctor();
        $crate::__private::Package::<$ty> {
            name: ::core::option_env!("CARGO_PKG_NAME").unwrap_or(""),
            version: ::core::option_env!("CARGO_PKG_VERSION").unwrap_or(""),
            default,
        }
    }};
}

/// Exports a [`Scorer`] as the plugin's `scorer` interface. Use it once per plugin crate.
///
/// The plugin's name and version default to its crate's: an empty
/// [`Metadata::name`] or [`Metadata::version`] (as in `Metadata::default()`)
/// is filled from `Cargo.toml`. A type that implements `Default` and not
/// [`Scorer::init`] is built with `Default::default()`.
#[macro_export]
macro_rules! export_scorer {
    ($ty:ty) => {
        const _: () = {
            use $crate::bindings::types as __t;
            static LOADED: ::std::sync::OnceLock<$crate::Loaded<$ty>> = ::std::sync::OnceLock::new();
            struct Export;
            impl $crate::bindings::scorer::exports::scorehost::plugin::scorer::Guest for Export {
                fn init(config: __t::Config) -> ::std::result::Result<(), __t::PluginError> {
                    $crate::__private::scorer_init::<$ty>(&LOADED, config, $crate::__package!($ty))
                }
                fn describe() -> __t::Metadata {
                    $crate::__private::metadata(&LOADED)
                }
                fn score(row: __t::Row) -> ::std::result::Result<__t::ScoreResult, __t::PluginError> {
                    $crate::__private::score(&LOADED, &row)
                }
                fn score_batch(
                    rows: ::std::vec::Vec<__t::Row>,
                ) -> ::std::vec::Vec<::std::result::Result<__t::ScoreResult, __t::PluginError>> {
                    $crate::__private::score_batch(&LOADED, &rows)
                }
            }
            impl $crate::bindings::scorer::exports::scorehost::plugin::frame_scorer::Guest for Export {
                fn score_frame(
                    frame: $crate::bindings::frames::Frame,
                ) -> $crate::bindings::frames::FrameScores {
                    $crate::__private::score_frame(&LOADED, &frame)
                }
            }
            #[cfg(target_arch = "wasm32")]
    $crate::bindings::scorer::export_scorer_world!(Export with_types_in $crate::bindings::scorer);
            // Natively nothing calls the export; keep the plugin "used" for the lints.
            #[cfg(not(target_arch = "wasm32"))]
            const _: fn(&$crate::Config) -> $crate::Result<$ty> = <$ty as $crate::Scorer>::init;
        };
    };
}

/// Exports an [`Extractor`] as the plugin's `extractor` interface. Use it once per plugin crate.
///
/// As [`crate::export_scorer`]: an empty name or version is the crate's, and a
/// `Default` type without [`Extractor::init`] is built with `Default::default()`.
#[macro_export]
macro_rules! export_extractor {
    ($ty:ty) => {
        const _: () = {
            use $crate::bindings::types as __t;
            static LOADED: ::std::sync::OnceLock<$crate::Loaded<$ty>> = ::std::sync::OnceLock::new();
            struct Export;
            impl $crate::bindings::extractor::exports::scorehost::plugin::extractor::Guest for Export {
                fn init(config: __t::Config) -> ::std::result::Result<(), __t::PluginError> {
                    $crate::__private::extractor_init::<$ty>(&LOADED, config, $crate::__package!($ty))
                }
                fn describe() -> __t::Metadata {
                    $crate::__private::metadata(&LOADED)
                }
                fn extract(event: __t::Row) -> ::std::result::Result<__t::Row, __t::PluginError> {
                    $crate::__private::extract(&LOADED, &event)
                }
                fn extract_batch(
                    events: ::std::vec::Vec<__t::Row>,
                ) -> ::std::vec::Vec<::std::result::Result<__t::Row, __t::PluginError>> {
                    $crate::__private::extract_batch(&LOADED, &events)
                }
            }
            #[cfg(target_arch = "wasm32")]
            $crate::bindings::extractor::export_extractor_world!(Export with_types_in $crate::bindings::extractor);
            // Natively nothing calls the export; keep the plugin "used" for the lints.
            #[cfg(not(target_arch = "wasm32"))]
            const _: fn(&$crate::Config) -> $crate::Result<$ty> = <$ty as $crate::Extractor>::init;
        };
    };
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::__private::{Package, extractor_init, metadata, scorer_init};
    use super::{EXTRACTOR_INIT_MISSING, Loaded, SCORER_INIT_MISSING};
    use crate::bindings::types;
    use crate::prelude::*;

    /// A stateless scorer: no `init`, `Default`, name and version from the crate.
    #[derive(Default)]
    struct Stateless;

    impl Scorer for Stateless {
        fn metadata(&self) -> Metadata {
            Metadata::default().input(float("x").required())
        }
        fn score(&self, f: &Features) -> Result<Score> {
            Ok(Score::new(f.float("x")?))
        }
    }

    /// `Default`, but with an `init` of its own: that `init` is the one used.
    #[derive(Default)]
    struct OwnInit {
        scale: f64,
    }

    impl Scorer for OwnInit {
        fn init(config: &Config) -> Result<Self> {
            Ok(OwnInit { scale: config.parse("scale")?.unwrap_or(1.0) })
        }
        fn metadata(&self) -> Metadata {
            Metadata::new("own-init", "")
        }
        fn score(&self, f: &Features) -> Result<Score> {
            Ok(Score::new(self.scale * f.float("x")?))
        }
    }

    /// Neither `init` nor `Default`.
    struct Neither;

    impl Scorer for Neither {
        fn metadata(&self) -> Metadata {
            Metadata::new("neither", "1.0.0")
        }
        fn score(&self, _: &Features) -> Result<Score> {
            Ok(Score::new(0.0))
        }
    }

    /// A stateless extractor.
    #[derive(Default)]
    struct Copies;

    impl Extractor for Copies {
        fn metadata(&self) -> Metadata {
            Metadata::default().input(float("x")).output(float("y"))
        }
        fn extract(&self, e: &Features, out: &mut Output) -> Result<()> {
            out.set("y", e.float_opt("x")?.unwrap_or(0.0))
        }
    }

    const NAME: &str = env!("CARGO_PKG_NAME");
    const VERSION: &str = env!("CARGO_PKG_VERSION");

    fn config(entries: &[(&str, &str)]) -> Vec<(String, String)> {
        entries.iter().map(|&(k, v)| (k.to_owned(), v.to_owned())).collect()
    }

    #[test]
    fn the_probe_finds_default_only_on_default_types() {
        assert!(crate::__package!(Stateless).default.is_some());
        assert!(crate::__package!(OwnInit).default.is_some());
        assert!(crate::__package!(Neither).default.is_none());
        let package = crate::__package!(Neither);
        assert_eq!((package.name, package.version), (NAME, VERSION));
    }

    #[test]
    fn a_default_scorer_without_init_is_built_and_named_after_its_crate() {
        let cell = OnceLock::<Loaded<Stateless>>::new();
        scorer_init(&cell, config(&[("ignored", "1")]), crate::__package!(Stateless)).unwrap();
        let described = metadata(&cell);
        assert_eq!((described.name.as_str(), described.version.as_str()), (NAME, VERSION));
        assert_eq!(described.inputs.len(), 1);
        assert_eq!(cell.get().unwrap().metadata.name, NAME);
    }

    #[test]
    fn a_scorer_with_its_own_init_uses_it_and_keeps_its_name() {
        let cell = OnceLock::<Loaded<OwnInit>>::new();
        scorer_init(&cell, config(&[("scale", "3")]), crate::__package!(OwnInit)).unwrap();
        assert_eq!(cell.get().unwrap().plugin.scale, 3.0, "init ran, not Default::default");
        let described = metadata(&cell);
        // The name it set is kept; the empty version is the crate's.
        assert_eq!((described.name.as_str(), described.version.as_str()), ("own-init", VERSION));

        // Its init's errors are its own, Default or not.
        let cell = OnceLock::<Loaded<OwnInit>>::new();
        let err = scorer_init(&cell, config(&[("scale", "lots")]), crate::__package!(OwnInit)).unwrap_err();
        assert!(err.message.contains("scale"), "{}", err.message);
        assert!(cell.get().is_none());
    }

    #[test]
    fn a_scorer_with_neither_init_nor_default_fails_to_init() {
        let cell = OnceLock::<Loaded<Neither>>::new();
        let err = scorer_init(&cell, config(&[]), crate::__package!(Neither)).unwrap_err();
        assert_eq!(err.kind, types::ErrorKind::Internal);
        assert_eq!(err.message, SCORER_INIT_MISSING);
        assert!(cell.get().is_none());
    }

    #[test]
    fn an_explicit_name_and_version_are_kept() {
        let cell = OnceLock::<Loaded<Neither>>::new();
        let default: fn() -> Neither = || Neither;
        let package = Package { name: "crate-name", version: "9.9.9", default: Some(default) };
        scorer_init(&cell, config(&[]), package).unwrap();
        let described = metadata(&cell);
        assert_eq!((described.name.as_str(), described.version.as_str()), ("neither", "1.0.0"));
    }

    #[test]
    fn a_default_extractor_without_init_is_built_and_named_after_its_crate() {
        let cell = OnceLock::<Loaded<Copies>>::new();
        extractor_init(&cell, config(&[]), crate::__package!(Copies)).unwrap();
        let described = metadata(&cell);
        assert_eq!((described.name.as_str(), described.version.as_str()), (NAME, VERSION));
        assert_eq!(described.outputs.len(), 1);

        let package = Package { name: NAME, version: VERSION, default: None };
        let err = extractor_init(&OnceLock::<Loaded<Copies>>::new(), config(&[]), package).unwrap_err();
        assert_eq!(err.message, EXTRACTOR_INIT_MISSING);
    }
}
