//! Seams that count the wall time spent in their writes, so `bench pipeline`
//! can say where a run's time went: writing objects, committing batches,
//! or the rest (intake, validation, plugins, envelope).
//!
//! Wall time, for the shares: with fsync a write waits for the disk on a
//! blocking thread, and that wait is the point. On one core the background
//! move of metric rows takes its share of the core from whatever runs, so
//! each part's wall time carries its part of that too. So the calling
//! thread's CPU time is counted as well: without fsync a write runs on that
//! thread start to end, and its CPU time is the write's own cost.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use weir_core::backend::{
    BackendError, BatchMetadata, DeadLetter, DeadLetterQueue, MetadataStore, ObjectStore,
};
use weir_core::metrics::MinuteMetrics;

/// Time spent, summed over every task that shares it: wall time and the
/// calling thread's CPU time, in nanoseconds.
#[derive(Debug, Clone, Default)]
pub(super) struct Stopwatch(Arc<[AtomicU64; 2]>);

impl Stopwatch {
    /// Runs `work`, adding its wall time and its thread's CPU time.
    async fn time<T>(&self, work: impl Future<Output = T>) -> T {
        let (wall, cpu) = (Instant::now(), thread_cpu_nanos());
        let out = work.await;
        // The CPU interval inside the wall one.
        let cpu = thread_cpu_nanos().saturating_sub(cpu);
        let wall = u64::try_from(wall.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.0[0].fetch_add(wall, Ordering::Relaxed);
        self.0[1].fetch_add(cpu, Ordering::Relaxed);
        out
    }

    pub(super) fn seconds(&self) -> f64 {
        self.0[0].load(Ordering::Relaxed) as f64 / 1e9
    }

    /// The calling threads' CPU time: the work's own cost where it ran on
    /// its caller's thread without yielding (writes without fsync).
    pub(super) fn cpu_seconds(&self) -> f64 {
        self.0[1].load(Ordering::Relaxed) as f64 / 1e9
    }
}

fn thread_cpu_nanos() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0)
}

/// A seam whose writes are timed by a [`Stopwatch`]; reads are not (the
/// pipeline reads only in two-stage mode, a raw object it just wrote).
#[derive(Debug)]
pub(super) struct Timed<T> {
    pub(super) inner: T,
    pub(super) writes: Stopwatch,
}

impl<O: ObjectStore> ObjectStore for Timed<O> {
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), BackendError> {
        self.writes.time(self.inner.put(key, body)).await
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        self.inner.get(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, BackendError> {
        self.inner.list(prefix).await
    }

    async fn delete(&self, key: &str) -> Result<(), BackendError> {
        self.writes.time(self.inner.delete(key)).await
    }

    async fn put_all(&self, objects: Vec<(String, Vec<u8>)>) -> Result<(), BackendError> {
        self.writes.time(self.inner.put_all(objects)).await
    }
}

impl<D: DeadLetterQueue> DeadLetterQueue for Timed<D> {
    async fn send(&self, letters: Vec<DeadLetter>) -> Result<(), BackendError> {
        self.writes.time(self.inner.send(letters)).await
    }
}

impl<M: MetadataStore> MetadataStore for Timed<M> {
    async fn record_batch(
        &self,
        batch: &BatchMetadata,
        metrics: Vec<MinuteMetrics>,
    ) -> Result<(), BackendError> {
        self.writes
            .time(self.inner.record_batch(batch, metrics))
            .await
    }

    async fn record_batches(
        &self,
        batches: Vec<(BatchMetadata, Vec<MinuteMetrics>)>,
    ) -> Result<(), BackendError> {
        self.writes.time(self.inner.record_batches(batches)).await
    }

    async fn batches_for_shard(
        &self,
        shard_id: &str,
        limit: usize,
    ) -> Result<Vec<BatchMetadata>, BackendError> {
        self.inner.batches_for_shard(shard_id, limit).await
    }

    async fn minute_metrics(
        &self,
        partition_key: &str,
        limit: usize,
    ) -> Result<Vec<MinuteMetrics>, BackendError> {
        self.inner.minute_metrics(partition_key, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_embedded::LocalObjectStore;

    #[tokio::test]
    async fn writes_are_timed_and_pass_through_reads_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = Timed {
            inner: LocalObjectStore::open(dir.path()).unwrap(),
            writes: Stopwatch::default(),
        };
        store
            .put_all(vec![("raw/a.jsonl".into(), b"{}\n".to_vec())])
            .await
            .unwrap();
        let after_write = store.writes.seconds();
        assert!(after_write > 0.0);
        let cpu = store.writes.cpu_seconds();
        assert!(cpu > 0.0 && cpu <= after_write, "{cpu} {after_write}");
        assert_eq!(
            store.get("raw/a.jsonl").await.unwrap().as_deref(),
            Some(&b"{}\n"[..])
        );
        assert_eq!(store.list("raw/").await.unwrap(), ["raw/a.jsonl"]);
        assert_eq!(store.writes.seconds(), after_write);
        // Clones share the count, as the two shards' tasks do.
        let shared = store.writes.clone();
        store.put("raw/b.jsonl", b"{}\n".to_vec()).await.unwrap();
        assert!(shared.seconds() > after_write);
    }
}
