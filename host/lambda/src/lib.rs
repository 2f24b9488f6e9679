//! Weir's Lambda handlers, free of the Lambda runtime so that `weir invoke`
//! runs them on event files against the embedded backends exactly as Lambda
//! runs them on AWS.
//!
//! - [`kinesis::handle`]: a Kinesis event source mapping batch through the
//!   pipeline, answering with `batchItemFailures` as Lambda defines them:
//!   poison records are dead-lettered and not reported; a backend failure
//!   reports the shard's lowest sequence number so the batch is retried from
//!   there.
//! - [`s3::handle`]: the transformer of two-stage mode, on `ObjectCreated`
//!   notifications for raw objects.
//! - [`producer`]: the seed's producer function (generated events onto the
//!   stream, throttled records retried), and the putting loop `weir produce`
//!   shares.
//! - [`samples`]: event files for trying the handlers; [`sampler`]: the
//!   generated events themselves.

pub mod kinesis;
pub mod producer;
pub mod s3;
pub mod sampler;
pub mod samples;
