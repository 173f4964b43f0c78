//! AWS SDK adapters for the ports, and the one place that loads the SDK configuration.

pub mod cloudfront;
pub mod dynamodb;
mod error;
pub mod sqs;

use aws_config::{BehaviorVersion, SdkConfig};

/// Region, credentials and endpoint come from the standard AWS chain (`AWS_REGION`, `AWS_PROFILE`,
/// `AWS_ENDPOINT_URL`, instance and task roles), so the emulator is just another endpoint.
pub async fn load_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}
