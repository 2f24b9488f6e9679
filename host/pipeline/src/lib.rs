//! Weir's record path for one batch of stream records.
//!
//! Intake (refusals dead-lettered with their bytes), the raw stage (records
//! with their stream metadata, one object per partition), enrichment through
//! the router (single-stage mode), the processed objects, the dead letters and
//! the batch's metadata. Generic over the backends: the same code runs on the
//! embedded backends and on AWS.
//!
//! [`drain`] and [`serve`] consume a stream with checkpoints; a Lambda handler
//! calls [`Pipeline::process_batch`] itself. Either checkpoints a batch only
//! after it returned `Ok`: by then its objects, dead letters and metadata are
//! durable. Object keys are deterministic, so a retried batch overwrites its
//! own objects.

mod batch;
mod consumer;
mod raw;

pub use batch::{BatchCounts, BatchResult, Pipeline, PipelineSettings};
pub use consumer::{ConsumeReport, ConsumerSettings, drain, serve};
