//! The async driver of status write-back: enqueue durably, push coalesced, back off.
//!
//! Pushes happen at most once per `interval` (default 2 s): everything enqueued meanwhile
//! goes out in one push. A rejected push (concurrent writer) or an unreachable remote makes
//! the next round wait `max(interval, backoff)`, the back-off doubling up to `retry_max`.
//! The blocking rounds run on `spawn_blocking`; the driver only waits and counts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use super::mirror::Mirror;
use super::note::StatusNote;
use super::push::{self, PushError, Round};
use super::queue::{Outbox, QueueError, Write};
use super::status::{Identity, StatusChange};

/// Tuning of the writer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriterConfig {
    /// At most one push per interval.
    pub interval: Duration,
    /// First back-off after a failed or rejected round.
    pub retry_min: Duration,
    /// Longest back-off.
    pub retry_max: Duration,
    /// Most writes per push.
    pub max_batch: usize,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            interval: Duration::from_secs(2),
            retry_min: Duration::from_millis(250),
            retry_max: Duration::from_secs(60),
            max_batch: 500,
        }
    }
}

/// Counters, for tests and metrics.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Successful pushes.
    pub pushes: AtomicU64,
    /// Rounds rejected by the remote lease.
    pub rejections: AtomicU64,
    /// Rounds that failed (remote unreachable...).
    pub failures: AtomicU64,
}

struct Inner {
    mirror: Mirror,
    outbox: Outbox,
    identity: Identity,
    config: WriterConfig,
    wake: Notify,
    stats: WriterStats,
}

/// The status writer. Cheap to clone.
#[derive(Clone)]
pub struct StatusWriter {
    inner: Arc<Inner>,
}

/// Errors of [`StatusWriter::run`]'s blocking rounds.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    /// A round failed.
    #[error(transparent)]
    Push(#[from] PushError),
    /// The blocking task panicked or was cancelled.
    #[error("status push task failed: {0}")]
    Join(String),
}

impl StatusWriter {
    /// A writer pushing `outbox` through `mirror`'s remote as `identity`.
    pub fn new(mirror: Mirror, outbox: Outbox, identity: Identity, config: WriterConfig) -> Self {
        StatusWriter {
            inner: Arc::new(Inner {
                mirror,
                outbox,
                identity,
                config,
                wake: Notify::new(),
                stats: WriterStats::default(),
            }),
        }
    }

    /// Queues a note durably.
    pub fn note(&self, note: StatusNote) -> Result<u64, QueueError> {
        self.enqueue(Write::Note(note))
    }

    /// Queues a status change durably.
    pub fn status(&self, change: StatusChange) -> Result<u64, QueueError> {
        self.enqueue(Write::Status(change))
    }

    /// Queues a write durably and wakes the driver.
    pub fn enqueue(&self, write: Write) -> Result<u64, QueueError> {
        let seq = self.inner.outbox.push(&write)?;
        self.inner.wake.notify_one();
        Ok(seq)
    }

    /// The outbox.
    pub fn outbox(&self) -> &Outbox {
        &self.inner.outbox
    }

    /// Counters.
    pub fn stats(&self) -> &WriterStats {
        &self.inner.stats
    }

    /// One blocking round (fetch, merge, push). Callers on async runtimes use
    /// [`Self::round`].
    pub fn round_blocking(&self) -> Result<Round, PushError> {
        let i = &self.inner;
        let r = push::round(&i.mirror, &i.outbox, &i.identity, i.config.max_batch);
        match &r {
            Ok(Round::Pushed { .. }) => i.stats.pushes.fetch_add(1, Ordering::Relaxed),
            Ok(Round::Rejected { .. }) => i.stats.rejections.fetch_add(1, Ordering::Relaxed),
            Ok(Round::Idle) => 0,
            Err(_) => i.stats.failures.fetch_add(1, Ordering::Relaxed),
        };
        r
    }

    /// One round, off the async workers.
    pub async fn round(&self) -> Result<Round, WriterError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.round_blocking())
            .await
            .map_err(|e| WriterError::Join(e.to_string()))?
            .map_err(WriterError::from)
    }

    /// Pushes until `shutdown` becomes true. Never returns early on push errors.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let cfg = self.inner.config.clone();
        let mut wait = Duration::ZERO;
        let mut backoff = cfg.retry_min;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let empty = self.inner.outbox.is_empty().unwrap_or(false);
            if empty {
                tokio::select! {
                    _ = self.inner.wake.notified() => {}
                    _ = shutdown.changed() => return,
                }
            }
            // Coalescing: the wait since the previous round lets more writes accumulate.
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
            match self.round().await {
                Ok(Round::Idle) => {
                    wait = Duration::ZERO;
                    backoff = cfg.retry_min;
                }
                Ok(Round::Pushed { seqs, .. }) => {
                    tracing::debug!(writes = seqs.len(), "status pushed");
                    wait = cfg.interval;
                    backoff = cfg.retry_min;
                }
                Ok(Round::Rejected { detail }) => {
                    tracing::info!(%detail, "status push rejected by a concurrent writer; merging and retrying");
                    wait = cfg.interval.max(backoff);
                    backoff = (backoff * 2).min(cfg.retry_max);
                }
                Err(e) => {
                    let pending = self.inner.outbox.len().unwrap_or(0);
                    tracing::warn!(error = %e, pending, retry_in = ?backoff, "status push failed; writes stay queued");
                    wait = cfg.interval.max(backoff);
                    backoff = (backoff * 2).min(cfg.retry_max);
                }
            }
        }
    }
}
