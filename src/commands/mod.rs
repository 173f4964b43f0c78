//! One module per subcommand; the only place where AWS clients are built.

pub mod audit;
pub mod run;
pub mod send;
pub mod setup;

use anyhow::{Context, bail};
use aws_config::{Region, SdkConfig};

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
    let config =
        aws_sdk_sqs::config::Builder::from(config).timeout_config(cf_invalidator::aws::timeouts(attempt)).build();
    aws_sdk_sqs::Client::from_conf(config)
}

pub fn dynamodb(config: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(config)
}

/// CloudFront is global; its API is signed for us-east-1 whatever region the rest of the worker uses.
pub fn cloudfront(config: &SdkConfig) -> aws_sdk_cloudfront::Client {
    let config = aws_sdk_cloudfront::config::Builder::from(config).region(Region::new("us-east-1")).build();
    aws_sdk_cloudfront::Client::from_conf(config)
}

pub fn parse_distribution(raw: &str) -> anyhow::Result<cf_invalidator::model::DistributionId> {
    cf_invalidator::model::DistributionId::parse(raw).context("--distribution")
}
