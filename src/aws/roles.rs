//! CloudFront clients for distributions in other accounts: one per configured role, built on first use and kept,
//! with credentials from STS AssumeRole that the SDK caches and refreshes before they expire.

use std::collections::HashMap;
use std::sync::Arc;

use aws_config::SdkConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_sdk_cloudfront::Client;
use tokio::sync::OnceCell;
use tracing::warn;

use crate::model::DistributionId;
use crate::model::role::{Role, Roles, session_name};

/// The worker's own client, and the role clients by distribution.
#[derive(Debug, Clone)]
pub struct Clients {
    own: Client,
    by_distribution: HashMap<DistributionId, Arc<RoleClient>>,
}

#[derive(Debug)]
struct RoleClient {
    role: Role,
    /// STS is called as this configures it, with the worker's own credentials.
    sts: SdkConfig,
    session_name: String,
    client: OnceCell<Client>,
}

impl Clients {
    /// Only the worker's own credentials.
    pub fn own(client: Client) -> Self {
        Self { own: client, by_distribution: HashMap::new() }
    }

    /// `own` for distributions without a role; a distribution with one is reached as that role, assumed through
    /// STS as `sts` configures it, in a session named after `worker_id`. Distributions sharing a role share its
    /// client.
    pub fn with_roles(own: Client, roles: &Roles, sts: &SdkConfig, worker_id: &str) -> Self {
        let mut clients: HashMap<&Role, Arc<RoleClient>> = HashMap::new();
        let by_distribution = roles
            .iter()
            .map(|(distribution, role)| {
                let client = clients.entry(role).or_insert_with(|| {
                    let (sts, session_name) = (sts.clone(), session_name(worker_id));
                    Arc::new(RoleClient { role: role.clone(), sts, session_name, client: OnceCell::new() })
                });
                (distribution.clone(), Arc::clone(client))
            })
            .collect();
        Self { own, by_distribution }
    }

    /// The client for `distribution`, and the role it acts as (`None`: the worker's own credentials).
    pub async fn client(&self, distribution: &DistributionId) -> (Client, Option<&Role>) {
        let Some(role_client) = self.by_distribution.get(distribution) else { return (self.own.clone(), None) };
        let client = role_client.client.get_or_init(|| role_client.build(&self.own)).await;
        (client.clone(), Some(&role_client.role))
    }
}

impl RoleClient {
    /// `own`'s configuration with the role's credentials. The provider only prepares the AssumeRole call; the
    /// client's identity cache makes it on first use, keeps the credentials and renews them before they expire.
    async fn build(&self, own: &Client) -> Client {
        let provider =
            AssumeRoleProvider::builder(self.role.arn.as_str()).session_name(&self.session_name).configure(&self.sts);
        let provider = match &self.role.external_id {
            Some(id) => provider.external_id(id),
            None => provider,
        };
        let config = own.config().to_builder().credentials_provider(provider.build().await).build();
        Client::from_conf(config)
    }
}

/// The worker's own 12-digit account, from STS GetCallerIdentity (which needs no permission): a role in that
/// account then shares the own account's limits. `None`, with a warning, when STS does not answer: each role's
/// account, the own one included, then keeps limits of its own, as when the worker did not ask.
pub async fn own_account(sts: &SdkConfig) -> Option<String> {
    let answer = aws_sdk_sts::Client::new(sts).get_caller_identity().send().await;
    match answer.map(|identity| identity.account().map(str::to_owned)) {
        Ok(Some(account)) => Some(account),
        Ok(None) => None,
        Err(e) => {
            let error = aws_smithy_types::error::display::DisplayErrorContext(&e);
            warn!(%error, "cannot learn the own account from STS GetCallerIdentity: a role in it is taken for another account (limits, month counter and report row of its own)");
            None
        }
    }
}
