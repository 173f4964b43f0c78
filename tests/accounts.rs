//! Distributions in other accounts (docs/accounts.md): the worker's CloudFront adapter reaches a distribution
//! with a role through credentials from STS AssumeRole (served by the emulator), and the CloudFront simulator over
//! HTTP bills each call to the access key that signed it, so it shows whose credentials were used.

mod common;

use std::sync::Arc;

use aws_config::SdkConfig;
use cf_invalidator::aws::cloudfront::CloudFront;
use cf_invalidator::aws::roles::{Clients, own_account};
use cf_invalidator::fake::cloudfront_http::{SimServer, sdk_client_as};
use cf_invalidator::fake::{FakeCdn, SimConfig};
use cf_invalidator::model::role::{Role, Roles};
use cf_invalidator::model::{CallerReference, DistributionId};
use cf_invalidator::ports::{Cdn, CdnError};

/// The worker's own access key; an assumed role's calls come signed with another.
const OWN_KEY: &str = "AKIAWORKER";

fn distribution(id: &str) -> DistributionId {
    DistributionId::parse(id).unwrap()
}

fn role(account: &str) -> Role {
    Role::new(&format!("arn:aws:iam::{account}:role/cf-invalidator"), Some("team-a")).unwrap()
}

async fn simulator() -> (Arc<FakeCdn>, SimServer) {
    let cdn = FakeCdn::simulator(SimConfig::cloudfront());
    for id in ["EOWN", "EOTHER", "EDENIED"] {
        cdn.add_distribution(distribution(id));
    }
    let cdn = Arc::new(cdn);
    let server = SimServer::start(Arc::clone(&cdn)).await.unwrap();
    (cdn, server)
}

/// The adapter as the worker builds it: its own client on the simulator, `roles` assumed through `sts`.
fn adapter(server: &SimServer, roles: &[(&str, Role)], sts: &SdkConfig) -> CloudFront {
    let mut assigned = Roles::default();
    for (id, role) in roles {
        assigned.assign(distribution(id), role.clone()).unwrap();
    }
    let own = sdk_client_as(&server.url(), OWN_KEY);
    CloudFront::with_clients(Clients::with_roles(own, &assigned, sts, "ecs-task/1f2e"))
}

async fn invalidate(cloudfront: &CloudFront, id: &str) -> Result<String, CdnError> {
    let paths = ["/index.html".to_owned()];
    cloudfront.create_invalidation(&distribution(id), &CallerReference::mint(), &paths).await.map(|i| i.id)
}

/// Who signed each CreateInvalidation the simulator holds, by distribution.
/// STS as the simulator serves it, with the worker's own key: it answers no STS call.
async fn sts_at(server: &SimServer) -> SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_cloudfront::config::Credentials::new(OWN_KEY, "testing", None, None, "tests"))
        .endpoint_url(server.url())
        .load()
        .await
}

fn signers(cdn: &FakeCdn) -> Vec<(String, String)> {
    cdn.created().iter().map(|c| (c.distribution_id.as_str().to_owned(), c.account.clone())).collect()
}

#[tokio::test]
async fn a_distribution_with_a_role_is_invalidated_with_the_assumed_roles_credentials() {
    let Some(sts) = common::emulator().await else { return };
    let (cdn, server) = simulator().await;
    let cloudfront = adapter(&server, &[("EOTHER", role("222233334444"))], &sts);

    invalidate(&cloudfront, "EOWN").await.unwrap();
    let id = invalidate(&cloudfront, "EOTHER").await.unwrap();
    invalidate(&cloudfront, "EOTHER").await.unwrap();
    // Tracking reads through the same role.
    let detail = cloudfront.get_invalidation(&distribution("EOTHER"), &id).await.unwrap();
    assert_eq!(detail.paths, ["/index.html"]);

    let signers = signers(&cdn);
    assert_eq!(signers[0], ("EOWN".into(), OWN_KEY.into()));
    let (assumed_first, assumed_second) = (&signers[1], &signers[2]);
    assert_eq!(assumed_first.0, "EOTHER");
    assert_ne!(assumed_first.1, OWN_KEY, "EOTHER's call came signed with the worker's own key");
    assert!(assumed_first.1.starts_with("ASIA"), "not temporary credentials: {}", assumed_first.1);
    assert_eq!(assumed_second, assumed_first, "the second call reused the cached credentials");
    let accounts = cdn.report().accounts;
    assert_eq!((accounts[OWN_KEY].created, accounts[&assumed_first.1].created), (1, 2));
}

#[tokio::test]
async fn a_role_that_cannot_be_assumed_fails_only_its_own_distributions() {
    let (cdn, server) = simulator().await;
    // STS here is the simulator, which refuses AssumeRole: the role cannot be assumed.
    let sts = sts_at(&server).await;
    let cloudfront = adapter(&server, &[("EDENIED", role("555566667777"))], &sts);

    let denied = invalidate(&cloudfront, "EDENIED").await;
    let Err(CdnError::Credentials(reason)) = &denied else { panic!("{denied:?}") };
    assert!(reason.contains("cannot assume role arn:aws:iam::555566667777:role/cf-invalidator"), "{reason}");
    assert!(reason.contains("external id"), "{reason}");
    let listed = cloudfront.list_recent(&distribution("EDENIED"), std::time::UNIX_EPOCH).await;
    assert!(matches!(listed, Err(CdnError::Credentials(_))), "{listed:?}");

    invalidate(&cloudfront, "EOWN").await.unwrap();
    assert_eq!(signers(&cdn), [("EOWN".to_owned(), OWN_KEY.to_owned())]);
}

#[tokio::test]
async fn the_worker_learns_its_own_account_from_sts_and_goes_on_without_it_when_sts_fails() {
    let (_, server) = simulator().await;
    // The simulator answers no STS call: the worker carries on without its account, as before it asked.
    let refusing = sts_at(&server).await;
    assert_eq!(own_account(&refusing).await, None);
    let Some(sts) = common::emulator().await else { return };
    let account = own_account(&sts).await.expect("the emulator's STS names the caller's account");
    assert!(account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()), "{account}");
}
