//! AWS SDK adapters for the ports, and the one place that loads the SDK configuration.

pub mod cloudfront;
pub mod dynamodb;
mod error;
pub mod events;
pub mod roles;
pub mod sqs;

use std::time::Duration;

use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_sqs::config::ConfigBag;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use metrics::counter;

/// The longest one attempt at a DynamoDB or CloudFront call may take. They answer in milliseconds (a
/// CreateInvalidation in a second or two); an attempt still unanswered after this is on a dead connection, and
/// retrying it beats holding a batch, or every held message's heartbeat, until TCP gives up minutes later.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Region, credentials and endpoint come from the standard AWS chain (`AWS_REGION`, `AWS_PROFILE`,
/// `AWS_ENDPOINT_URL`, instance and task roles), so the emulator is just another endpoint.
///
/// Every attempt is bounded by a timeout instead of the SDK's stalled-stream protection: our requests and answers
/// are a few kilobytes, which that protection cannot tell from a stall any better, and it costs CPU on each call.
pub async fn load_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts(ATTEMPT_TIMEOUT))
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        .load()
        .await
}

/// The SDK's own connect timeout, and `attempt` for each attempt of a call (a long-polling receive needs its
/// wait on top).
pub fn timeouts(attempt: Duration) -> TimeoutConfig {
    TimeoutConfig::builder().connect_timeout(Duration::from_millis(3_100)).operation_attempt_timeout(attempt).build()
}

/// Counts every request sent to AWS, each retry included, by service and operation (`cfi_aws_requests_total`): what
/// the worker's work costs in requests, which is what it is billed for and throttled on.
#[derive(Debug)]
pub struct CountRequests;

impl Intercept for CountRequests {
    fn name(&self) -> &'static str {
        "CountRequests"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        config: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(metadata) = config.load::<Metadata>() {
            let (service, operation) = (metadata.service().to_owned(), metadata.name().to_owned());
            counter!("cfi_aws_requests_total", "service" => service, "operation" => operation).increment(1);
        }
        Ok(())
    }
}
