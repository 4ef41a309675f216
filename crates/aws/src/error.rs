//! SDK errors mapped to port errors: what failed, with which input, and whether a retry may help.

use std::error::Error as StdError;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use vigil_core::ports::PortError;

/// Error codes that mean "try again later" whatever the service.
const RETRYABLE_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "SlowDown",
    "InternalServerError",
    "InternalServerException",
    "InternalFailure",
    "InternalError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "TransactionConflictException",
    "KMSThrottlingException",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// Whether an SDK error is worth retrying: transport failures, timeouts, throttling and 5xx are;
/// validation, permission and missing-resource errors are not.
pub fn is_retryable<E>(err: &SdkError<E, HttpResponse>) -> bool
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::ConstructionFailure(_) => false,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            status >= 500
                || status == 429
                || ctx
                    .err()
                    .code()
                    .is_some_and(|c| RETRYABLE_CODES.contains(&c))
        }
        _ => true,
    }
}

/// Maps an SDK error to a port error naming the port, the operation and its input.
pub fn port_error<E>(port: &'static str, what: &str, err: SdkError<E, HttpResponse>) -> PortError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    let retryable = is_retryable(&err);
    PortError {
        port,
        message: format!("{what}: {}", DisplayErrorContext(&err)),
        retryable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::operation::put_item::PutItemError;

    fn service(code: &str, status: u16) -> SdkError<PutItemError, HttpResponse> {
        let err = PutItemError::generic(ErrorMetadata::builder().code(code).message("m").build());
        let raw = HttpResponse::new(status.try_into().unwrap(), "".into());
        SdkError::service_error(err, raw)
    }

    #[test]
    fn throttling_and_server_errors_are_retryable_the_rest_is_not() {
        assert!(is_retryable(&service("ThrottlingException", 400)));
        assert!(is_retryable(&service(
            "ProvisionedThroughputExceededException",
            400
        )));
        assert!(is_retryable(&service("Whatever", 503)));
        assert!(!is_retryable(&service("ValidationException", 400)));
        assert!(!is_retryable(&service("AccessDeniedException", 400)));
        assert!(!is_retryable(&service("ResourceNotFoundException", 400)));
        let timeout: SdkError<PutItemError, HttpResponse> =
            SdkError::timeout_error(Box::new(std::io::Error::other("slow")));
        assert!(is_retryable(&timeout));
        let e = port_error(
            "states",
            "save state of rig-1",
            service("ValidationException", 400),
        );
        assert!(!e.retryable);
        assert_eq!(e.port, "states");
        assert!(
            e.message.starts_with("save state of rig-1: "),
            "{}",
            e.message
        );
        assert!(e.message.contains("ValidationException"), "{}", e.message);
    }
}
