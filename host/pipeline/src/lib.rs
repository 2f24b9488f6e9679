//! Weir's record path for one batch of stream records.
//!
//! Intake (refusals dead-lettered with their bytes), the raw stage (records
//! with their stream metadata, one object per partition, and per-minute
//! metrics of partition keys), enrichment through the router (in the same
//! batch, or in two-stage mode by the transformer once a raw object is
//! written), the processed objects, the dead letters and the batch's metadata.
//! Generic over the backends: the same code runs on the embedded backends and
//! on AWS.
//!
//! [`drain`] and [`serve`] consume a stream with checkpoints; a Lambda handler
//! calls [`Pipeline::process_batch`] or [`Pipeline::transform_object`] itself.
//! Either checkpoints a batch only after it returned `Ok`: by then its objects,
//! dead letters and metadata are durable. Object keys are deterministic, so a
//! retried batch overwrites its own objects.

mod batch;
mod consumer;
mod enrich;
mod hot_swap;
mod raw;
mod replay;
pub mod telemetry;
mod transform;

pub use batch::{BatchCounts, BatchResult, Mode, Pipeline, PipelineSettings, PluginUsage};
pub use consumer::{ConsumeReport, ConsumerSettings, drain, serve};
pub use hot_swap::{RegistryRouter, follow_registry};
pub use replay::{ReplayProgress, ReplayRange};
