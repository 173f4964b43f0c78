//! One module per subcommand; the only place where AWS clients are built.

pub mod audit;
mod chart;
pub mod exit;
pub mod output;
pub mod report;
pub mod run;
pub mod send;
pub mod setup;
mod startup;
pub mod status;

use anyhow::Context;
use aws_config::{Region, SdkConfig};
use cf_invalidator::aws::CountRequests;
use cf_invalidator::model::role::{Roles, parse_assignment};

use self::exit::misconfigured;

/// The SDK configuration from the standard chain, refusing early what would fail later with a vaguer message.
pub async fn aws_config() -> anyhow::Result<SdkConfig> {
    let config = cf_invalidator::aws::load_config().await;
    let Some(region) = config.region() else {
        return Err(misconfigured("no AWS region configured: set AWS_REGION (or a region in your AWS profile)"));
    };
    // A misspelt region names endpoints that do not exist: every call would fail to resolve, which looks like an
    // outage the worker waits out. An emulator's endpoint may take any region.
    if config.endpoint_url().is_none() && !is_region_name(region.as_ref()) {
        return Err(misconfigured(format!(
            "AWS region {region:?} is not a region name (like eu-west-1 or us-gov-west-1): check AWS_REGION"
        )));
    }
    Ok(config)
}

/// `eu-west-1`, `us-gov-west-1`, `ap-southeast-5`: letters in dash-separated words, then a number.
fn is_region_name(region: &str) -> bool {
    let mut parts = region.split('-');
    let number = parts.next_back().is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    let words: Vec<&str> = parts.collect();
    number && words.len() >= 2 && words.iter().all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
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

/// `--role` and the routes file's roles together; a distribution given two different roles is refused.
pub fn roles(raw: &[String], routed: &Roles) -> anyhow::Result<Roles> {
    let mut roles = routed.clone();
    for raw in raw {
        let (distribution, role) = parse_assignment(raw).context("--role")?;
        roles.assign(distribution, role).context("--role")?;
    }
    Ok(roles)
}

pub fn parse_distribution(raw: &str) -> anyhow::Result<cf_invalidator::model::DistributionId> {
    cf_invalidator::model::DistributionId::parse(raw).map_err(|e| misconfigured(format!("--distribution: {e}")))
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

    #[test]
    fn region_names_are_told_from_typos() {
        for name in ["eu-west-1", "us-gov-west-1", "ap-southeast-5", "us-isob-east-1", "cn-north-1"] {
            assert!(is_region_name(name), "{name}");
        }
        for typo in ["eu-west", "euwest1", "us-east1", "EU-WEST-1", "eu--1", "-1", "", "local"] {
            assert!(!is_region_name(typo), "{typo}");
        }
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
