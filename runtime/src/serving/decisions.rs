//! The decision log: every score the server answers (or a sample of them),
//! appended as one JSON line, for audits and for `scorehost replay`.
//!
//! A line holds the request id, plugin, version, the component's content
//! hash, the input features, the output (score and reasons, or the error),
//! fuel and latency. Lines are written by one background thread: the request
//! path only samples and queues ([`DecisionLog::record`]). The queue is
//! bounded; when it is full the decision is dropped and counted
//! (`scorehost_decisions_dropped_total`), so a slow disk never slows scoring
//! and never loses a decision silently. The file is rotated by size: `PATH`
//! becomes `PATH.1`, `PATH.1` becomes `PATH.2`, … up to `keep` old files.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::sandbox::error::CallError;
use crate::sandbox::instances::Outcome;
use crate::version::output::Scored;
use crate::version::plugin::PluginVersion;

/// Where and how much to log.
#[derive(Debug, Clone)]
pub struct DecisionLogConfig {
    /// The JSONL file; rotated files get `.1`, `.2`, … appended.
    pub path: PathBuf,
    /// Fraction of scores logged, 0.0–1.0 (1.0: every score).
    pub sample_rate: f64,
    /// Size at which the file is rotated, in bytes.
    pub max_bytes: u64,
    /// Rotated files kept.
    pub keep: usize,
    /// Decisions waiting for the writer at most; beyond, they are dropped.
    pub queue: usize,
}

impl DecisionLogConfig {
    /// Every score into `path`, rotated at 64 MiB, 5 old files kept, a queue
    /// of 65 536 decisions.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), sample_rate: 1.0, max_bytes: 64 << 20, keep: 5, queue: 1 << 16 }
    }
}

/// One logged decision: a line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Unix time of the answer, in milliseconds.
    pub ts_ms: u64,
    /// The request's id (`x-request-id`, or the one the server made up).
    pub request_id: String,
    /// Plugin name.
    pub plugin: String,
    /// Plugin version.
    pub version: String,
    /// SHA-256 of the component that answered.
    pub content_hash: String,
    /// The features as the caller sent them.
    pub input: Map<String, Json>,
    /// The score, when there was one (a declared fallback included).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub score: Option<f64>,
    /// Reason codes and weights of the score.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub reasons: Vec<(String, f64)>,
    /// The error kind a declared fallback stood in for, or the row's error.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    /// Fuel the call consumed (a batch: the whole call's).
    pub fuel: u64,
    /// Wall-clock time of the call, in microseconds (a batch: the whole call's).
    pub latency_us: u64,
}

enum Message {
    Decision(Box<Decision>),
    /// Flush, then answer.
    Flush(SyncSender<()>),
}

/// The log's queue and writer thread. Shared by the handlers; closed (queue
/// drained, file flushed) when the last reference is dropped.
pub struct DecisionLog {
    queue: Option<SyncSender<Message>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    sample_rate: f64,
    written: Arc<AtomicU64>,
    /// Full queue, or a failed write.
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for DecisionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionLog").field("sample_rate", &self.sample_rate).finish_non_exhaustive()
    }
}

impl DecisionLog {
    /// Opens (appends to) the log and starts its writer thread.
    pub fn open(config: DecisionLogConfig) -> std::io::Result<Arc<Self>> {
        if !(0.0..=1.0).contains(&config.sample_rate) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("decision sample rate {} is not between 0 and 1", config.sample_rate),
            ));
        }
        let file = Rotating::open(&config)?;
        let (queue, messages) = mpsc::sync_channel(config.queue);
        let (written, dropped) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let writer = {
            let (written, dropped) = (written.clone(), dropped.clone());
            std::thread::Builder::new()
                .name("scorehost-decisions".into())
                .spawn(move || write_loop(messages, file, &written, &dropped))?
        };
        Ok(Arc::new(Self {
            queue: Some(queue),
            writer: Mutex::new(Some(writer)),
            sample_rate: config.sample_rate,
            written,
            dropped,
        }))
    }

    /// Whether to log this score: true with the configured probability.
    pub fn sampled(&self) -> bool {
        self.sample_rate >= 1.0 || (self.sample_rate > 0.0 && fastrand::f64() < self.sample_rate)
    }

    /// Queues a decision for the writer; a full queue drops and counts it.
    pub fn record(&self, decision: Decision) {
        let Some(queue) = &self.queue else { return };
        match queue.try_send(Message::Decision(Box::new(decision))) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Logs the outcome of scoring the rows `inputs` on `version`, each row
    /// sampled on its own. Called by the HTTP handlers after a score.
    pub fn scored(
        &self,
        version: &PluginVersion,
        inputs: &[&Map<String, Json>],
        results: &[Result<&Scored, &CallError>],
        fuel: u64,
        latency: Duration,
    ) {
        let mut rows = inputs.iter().zip(results).filter(|_| self.sampled()).peekable();
        if rows.peek().is_none() {
            return;
        }
        let ts_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let request_id = crate::sandbox::request_id::display().to_string();
        for (input, result) in rows {
            let (score, reasons, error) = match result {
                Ok(s) => {
                    (Some(s.score), s.reasons.clone(), s.fallback.as_ref().map(|e| e.kind().to_string()))
                }
                Err(e) => (None, Vec::new(), Some(e.kind().to_string())),
            };
            self.record(Decision {
                ts_ms,
                request_id: request_id.clone(),
                plugin: version.manifest().name.clone(),
                version: version.manifest().version.clone(),
                content_hash: version.content_hash().to_owned(),
                input: (*input).clone(),
                score,
                reasons,
                error,
                fuel,
                latency_us: latency.as_micros() as u64,
            });
        }
    }

    /// [`Self::scored`] for one row.
    pub fn scored_one(&self, version: &PluginVersion, input: &Map<String, Json>, out: &Outcome<Scored>) {
        self.scored(version, &[input], &[Ok(&out.value)], out.fuel_used, out.elapsed);
    }

    /// Waits until every decision queued so far is written and flushed.
    pub fn flush(&self) {
        let Some(queue) = &self.queue else { return };
        let (done, wait) = mpsc::sync_channel(1);
        if queue.send(Message::Flush(done)).is_ok() {
            let _ = wait.recv();
        }
    }

    /// Decisions written so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Decisions dropped: the queue was full, or writing failed.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for DecisionLog {
    fn drop(&mut self) {
        // Closing the queue ends the writer once it has written what is queued.
        drop(self.queue.take());
        if let Some(writer) = self.writer.lock().ok().and_then(|mut w| w.take()) {
            let _ = writer.join();
        }
    }
}

/// The writer thread: lines out, flushed when the queue goes quiet for
/// 100 ms, on request, and at the end.
fn write_loop(messages: Receiver<Message>, mut file: Rotating, written: &AtomicU64, dropped: &AtomicU64) {
    let mut line = Vec::with_capacity(1024);
    loop {
        match messages.recv_timeout(Duration::from_millis(100)) {
            Ok(Message::Decision(d)) => {
                line.clear();
                if serde_json::to_writer(&mut line, &*d).is_ok() {
                    line.push(b'\n');
                    match file.write_line(&line) {
                        Ok(()) => _ = written.fetch_add(1, Ordering::Relaxed),
                        // Counted as dropped; said once until a write succeeds again.
                        Err(e) => {
                            if dropped.fetch_add(1, Ordering::Relaxed) == 0 || file.healthy {
                                tracing::error!(
                                    "decision log {}: {e}; dropping decisions",
                                    file.path.display()
                                );
                            }
                            file.healthy = false;
                            continue;
                        }
                    }
                    file.healthy = true;
                }
            }
            Ok(Message::Flush(done)) => {
                file.flush();
                let _ = done.send(());
            }
            Err(RecvTimeoutError::Timeout) => file.flush(),
            Err(RecvTimeoutError::Disconnected) => {
                file.flush();
                return;
            }
        }
    }
}

/// The log file and its rotation.
struct Rotating {
    path: PathBuf,
    out: BufWriter<File>,
    bytes: u64,
    max_bytes: u64,
    keep: usize,
    /// False after a failed write, until one succeeds.
    healthy: bool,
}

impl Rotating {
    fn open(config: &DecisionLogConfig) -> std::io::Result<Self> {
        let file = File::options().create(true).append(true).open(&config.path)?;
        let bytes = file.metadata()?.len();
        Ok(Self {
            path: config.path.clone(),
            out: BufWriter::with_capacity(64 << 10, file),
            bytes,
            max_bytes: config.max_bytes.max(1),
            keep: config.keep,
            healthy: true,
        })
    }

    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        if self.bytes > 0 && self.bytes + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.out.write_all(line)?;
        self.bytes += line.len() as u64;
        Ok(())
    }

    /// `PATH.{keep-1}` → `PATH.{keep}` … `PATH` → `PATH.1`, then a new `PATH`.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        let numbered = |n: usize| rotated(&self.path, n);
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for n in (1..self.keep).rev() {
                if numbered(n).exists() {
                    std::fs::rename(numbered(n), numbered(n + 1))?;
                }
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        let file = File::options().create(true).append(true).open(&self.path)?;
        self.out = BufWriter::with_capacity(64 << 10, file);
        self.bytes = 0;
        Ok(())
    }

    fn flush(&mut self) {
        if let Err(e) = self.out.flush() {
            tracing::error!("decision log {}: {e}", self.path.display());
        }
    }
}

/// The `n`th rotated file of the log at `path`: `PATH.n`.
pub fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}
