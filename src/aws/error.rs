//! Sorting SDK errors into the few cases the worker reacts to differently.

use std::error::Error;

use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// Error codes AWS uses for throttling, besides the service-specific ones the SDK already retried.
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The service answered with an error code; `status` is the HTTP status.
    Service { code: String, status: u16, message: String },
    /// No credentials could be loaded.
    Credentials(String),
    /// Timeouts, connection failures, unreadable responses: worth retrying.
    Transient(String),
    /// The request could not even be built.
    Local(String),
}

impl Failure {
    pub fn is_throttling_or_server_fault(&self) -> bool {
        match self {
            Self::Service { code, status, .. } => *status >= 500 || THROTTLING_CODES.contains(&code.as_str()),
            Self::Transient(_) => true,
            Self::Credentials(_) | Self::Local(_) => false,
        }
    }

    pub fn code(&self) -> &str {
        match self {
            Self::Service { code, .. } => code,
            _ => "",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Service { code, message, .. } => format!("{code}: {message}"),
            Self::Credentials(text) | Self::Transient(text) | Self::Local(text) => text.clone(),
        }
    }
}

pub fn classify<E>(error: &SdkError<E, HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + Error + Send + Sync + 'static,
{
    let text = DisplayErrorContext(error).to_string();
    match error {
        SdkError::ServiceError(service) => Failure::Service {
            code: error.code().unwrap_or("Unknown").to_owned(),
            status: service.raw().status().as_u16(),
            message: error.message().unwrap_or_default().to_owned(),
        },
        _ if text.contains("credentials") || text.contains("Credentials") => Failure::Credentials(text),
        SdkError::ConstructionFailure(_) => Failure::Local(text),
        _ => Failure::Transient(text),
    }
}
