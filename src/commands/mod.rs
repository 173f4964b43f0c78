//! One module per subcommand; the only place where AWS clients are built.

pub mod audit;
mod chart;
pub mod report;
pub mod run;
pub mod send;
pub mod setup;
pub mod status;

use anyhow::{Context, bail};
use aws_config::{Region, SdkConfig};
use cf_invalidator::aws::CountRequests;

/// The SDK configuration from the standard chain, refusing early what would fail later with a vaguer message.
pub async fn aws_config() -> anyhow::Result<SdkConfig> {
    let config = cf_invalidator::aws::load_config().await;
    if config.region().is_none() {
        bail!("no AWS region configured: set AWS_REGION (or a region in your AWS profile)");
    }
    Ok(config)
}

/// A receive long-polls for up to 20 s before it answers, so its attempts get that much longer.
pub fn sqs(config: &SdkConfig) -> aws_sdk_sqs::Client {
    let attempt = cf_invalidator::aws::sqs::MAX_WAIT + cf_invalidator::aws::ATTEMPT_TIMEOUT;
    let config = aws_sdk_sqs::config::Builder::from(config)
        .timeout_config(cf_invalidator::aws::timeouts(attempt))
        .interceptor(CountRequests)
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

pub fn dynamodb(config: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(config).interceptor(CountRequests).build(),
    )
}

/// CloudFront is global; its API is signed for us-east-1 whatever region the rest of the worker uses.
pub fn cloudfront(config: &SdkConfig) -> aws_sdk_cloudfront::Client {
    let config = aws_sdk_cloudfront::config::Builder::from(config)
        .region(Region::new("us-east-1"))
        .interceptor(CountRequests)
        .build();
    aws_sdk_cloudfront::Client::from_conf(config)
}

pub fn parse_distribution(raw: &str) -> anyhow::Result<cf_invalidator::model::DistributionId> {
    cf_invalidator::model::DistributionId::parse(raw).context("--distribution")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn config() -> SdkConfig {
        cf_invalidator::aws::load_config().await.into_builder().region(Region::new("eu-west-1")).build()
    }

    /// An unanswered call must end, so the heartbeat or a batch never waits on a dead connection for minutes.
    #[tokio::test]
    async fn every_client_bounds_each_attempt_and_a_receive_gets_its_long_poll_on_top() {
        let config = config().await;
        let attempt = |timeouts: Option<&aws_config::timeout::TimeoutConfig>| {
            timeouts.and_then(aws_config::timeout::TimeoutConfig::operation_attempt_timeout)
        };
        assert_eq!(attempt(dynamodb(&config).config().timeout_config()), Some(Duration::from_secs(10)));
        assert_eq!(attempt(cloudfront(&config).config().timeout_config()), Some(Duration::from_secs(10)));
        assert_eq!(attempt(sqs(&config).config().timeout_config()), Some(Duration::from_secs(30)));
        let connect = sqs(&config).config().timeout_config().and_then(|t| t.connect_timeout());
        assert_eq!(connect, Some(Duration::from_millis(3_100)), "the SDK's connect timeout is kept");
    }

    #[tokio::test]
    async fn stalled_stream_protection_is_off_as_the_attempt_timeout_covers_it() {
        let config = config().await;
        let enabled = |protection: Option<&aws_config::stalled_stream_protection::StalledStreamProtectionConfig>| {
            protection.is_some_and(|p| p.is_enabled())
        };
        assert!(!enabled(sqs(&config).config().stalled_stream_protection()));
        assert!(!enabled(dynamodb(&config).config().stalled_stream_protection()));
        assert!(!enabled(cloudfront(&config).config().stalled_stream_protection()));
    }
}
