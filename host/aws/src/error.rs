//! AWS SDK errors as the pipeline's [`BackendError`]s.

use std::error::Error;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use weir_core::backend::BackendError;

/// Error codes AWS services use for throttling and transient faults.
const RETRYABLE_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
    "RequestThrottled",
    "SlowDown",
    "TooManyRequestsException",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "ServiceUnavailable",
    "LimitExceededException",
    "KMSThrottlingException",
];

/// Whether an SDK error (after the SDK's own retries) may succeed if the
/// batch is tried again: timeouts, connection failures, throttling, 5xx.
pub(crate) fn is_retryable<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code().unwrap_or_default();
            status >= 500 || status == 429 || RETRYABLE_CODES.contains(&code)
        }
        _ => false,
    }
}

/// The error as a [`BackendError`] naming what failed, with the service's
/// code and message.
pub(crate) fn backend_error<E>(
    what: impl Into<String>,
    e: SdkError<E, HttpResponse>,
) -> BackendError
where
    E: ProvideErrorMetadata + Error + Send + Sync + 'static,
{
    let retryable = is_retryable(&e);
    let message = DisplayErrorContext(&e).to_string();
    if retryable {
        BackendError::retryable(what, message)
    } else {
        BackendError::permanent(what, message)
    }
}

/// A request the SDK refused to build (a required field missing): a bug in
/// Weir, not in the data.
pub(crate) fn build_error(
    what: impl Into<String>,
    e: impl Error + Send + Sync + 'static,
) -> BackendError {
    BackendError::permanent(what, e)
}
