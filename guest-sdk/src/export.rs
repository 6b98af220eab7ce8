//! The two plugin traits and the glue the export macros expand to.

use std::sync::OnceLock;

use crate::bindings::{frames, types};
use crate::config::Config;
use crate::error::Result;
use crate::features::{Features, Layout, Output};
use crate::frame::{Frame, FrameOut};
use crate::metadata::{Metadata, Score};

/// A scoring plugin: features in, score out. Export it with [`crate::export_scorer`].
pub trait Scorer: Sized + Send + Sync + 'static {
    /// Builds the plugin from its config; parse the model here. Called once per
    /// plugin version; the state it returns is snapshotted and every call starts from it.
    fn init(config: &Config) -> Result<Self>;

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
pub trait Extractor: Sized + Send + Sync + 'static {
    /// As [`Scorer::init`].
    fn init(config: &Config) -> Result<Self>;

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
    use super::*;

    type Wit<T> = std::result::Result<T, types::PluginError>;

    fn loaded<T>(cell: &OnceLock<Loaded<T>>) -> Wit<&Loaded<T>> {
        cell.get().ok_or_else(|| types::PluginError {
            kind: types::ErrorKind::Internal,
            message: "plugin called before init".into(),
        })
    }

    pub fn scorer_init<T: Scorer>(cell: &OnceLock<Loaded<T>>, config: Vec<(String, String)>) -> Wit<()> {
        let plugin = T::init(&Config::new(config))?;
        let metadata = plugin.metadata();
        let _ = cell.set(Loaded::new(plugin, metadata));
        reserve_heap();
        Ok(())
    }

    pub fn extractor_init<T: Extractor>(
        cell: &OnceLock<Loaded<T>>,
        config: Vec<(String, String)>,
    ) -> Wit<()> {
        let plugin = T::init(&Config::new(config))?;
        let metadata = plugin.metadata();
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

/// Exports a [`Scorer`] as the plugin's `scorer` interface. Use it once per plugin crate.
#[macro_export]
macro_rules! export_scorer {
    ($ty:ty) => {
        const _: () = {
            use $crate::bindings::types as __t;
            static LOADED: ::std::sync::OnceLock<$crate::Loaded<$ty>> = ::std::sync::OnceLock::new();
            struct Export;
            impl $crate::bindings::scorer::exports::scorehost::plugin::scorer::Guest for Export {
                fn init(config: __t::Config) -> ::std::result::Result<(), __t::PluginError> {
                    $crate::__private::scorer_init::<$ty>(&LOADED, config)
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
#[macro_export]
macro_rules! export_extractor {
    ($ty:ty) => {
        const _: () = {
            use $crate::bindings::types as __t;
            static LOADED: ::std::sync::OnceLock<$crate::Loaded<$ty>> = ::std::sync::OnceLock::new();
            struct Export;
            impl $crate::bindings::extractor::exports::scorehost::plugin::extractor::Guest for Export {
                fn init(config: __t::Config) -> ::std::result::Result<(), __t::PluginError> {
                    $crate::__private::extractor_init::<$ty>(&LOADED, config)
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
