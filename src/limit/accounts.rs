//! One set of account-wide limits per AWS account the worker serves.
//!
//! CloudFront throttles CreateInvalidation and counts paths per second per account. A distribution reached
//! through a role (`--role DIST=ARN`) is in the role's account, so each such account gets its own call-rate
//! limiter and path and wildcard buckets, with the limits as configured for every account; the worker's own
//! account takes the rest, and a role in it when STS told the worker its account at start. A saturated account then holds back only its own
//! distributions. There is one set per configured account, built at start: the map never grows.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

use super::account::{AccountBuckets, AccountQuotas, BucketHeadroom};
use super::belief::LimitBoard;
use super::rate::CreateRateLimiter;
use crate::model::DistributionId;
use crate::model::role::Roles;

/// The scope (shared belief, metric label, status page) of the worker's own account's limits: the name it had
/// before accounts were told apart, so beliefs already shared stay valid.
pub const OWN_SCOPE: &str = "account";

/// The account a distribution's calls count against.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AccountKey {
    /// The worker's own, for distributions without a role.
    Own,
    /// A role's 12-digit account.
    Id(String),
}

impl AccountKey {
    /// Where its learned limits are shared on the ledger and shown: `account`, or `account#<id>`.
    pub fn scope(&self) -> String {
        match self {
            Self::Own => OWN_SCOPE.to_owned(),
            Self::Id(id) => format!("{OWN_SCOPE}#{id}"),
        }
    }
}

/// `own` or the 12-digit id, as `report` names accounts.
impl fmt::Display for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Own => f.write_str("own"),
            Self::Id(id) => f.write_str(id),
        }
    }
}

/// One account's CreateInvalidation limiter and path and wildcard buckets.
#[derive(Debug, Clone)]
pub struct AccountLimits {
    pub limiter: Arc<CreateRateLimiter>,
    pub buckets: Arc<AccountBuckets>,
}

/// One account's rates as the status page shows them.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountHeadroom {
    /// `own` or the 12-digit id.
    pub account: String,
    /// This worker's CreateInvalidation calls per second; `None` while it waits for its share.
    pub calls_per_second: Option<f64>,
    pub paths: Option<BucketHeadroom>,
    pub wildcards: Option<BucketHeadroom>,
}

/// Where the worker's accounts show, for the status page: filled when the submitter is built.
#[derive(Debug, Default)]
pub struct AccountBoard(Mutex<Vec<(AccountKey, AccountLimits)>>);

impl AccountBoard {
    pub fn show(&self, accounts: &Accounts) {
        let limits = accounts.iter().map(|(key, limits)| (key.clone(), limits.clone()));
        *self.0.lock().unwrap() = limits.collect();
    }

    /// One row per account, the worker's own first.
    pub fn rows(&self) -> Vec<AccountHeadroom> {
        let accounts = self.0.lock().unwrap();
        let row = |(key, limits): &(AccountKey, AccountLimits)| {
            let (paths, wildcards) = limits.buckets.headroom();
            AccountHeadroom { account: key.to_string(), calls_per_second: limits.limiter.rate(), paths, wildcards }
        };
        accounts.iter().map(row).collect()
    }
}

/// Every account's limits, and which account each distribution is in.
#[derive(Debug)]
pub struct Accounts {
    of: HashMap<DistributionId, AccountKey>,
    limits: BTreeMap<AccountKey, AccountLimits>,
}

impl Accounts {
    /// The worker's own account and each role's, each with a limiter from `limiter` and buckets of `quotas` shown
    /// on `board`. A role in `own` (the worker's own account, if known) counts as the own account.
    pub fn new(
        roles: &Roles,
        own: Option<&str>,
        quotas: AccountQuotas,
        board: &Arc<LimitBoard>,
        limiter: impl Fn() -> CreateRateLimiter,
    ) -> Self {
        let key =
            |account: &str| if own == Some(account) { AccountKey::Own } else { AccountKey::Id(account.to_owned()) };
        let of: HashMap<_, _> =
            roles.iter().map(|(distribution, role)| (distribution.clone(), key(role.arn.account()))).collect();
        let keys = of.values().cloned().chain([AccountKey::Own]);
        let limits = keys
            .map(|key| {
                let buckets = Arc::new(AccountBuckets::new(quotas, Arc::clone(board), key.scope()));
                (key, AccountLimits { limiter: Arc::new(limiter()), buckets })
            })
            .collect();
        Self { of, limits }
    }

    /// The account `distribution` is in.
    pub fn key_of(&self, distribution: &DistributionId) -> &AccountKey {
        self.of.get(distribution).unwrap_or(&AccountKey::Own)
    }

    /// The account whose part of the month `distribution`'s batches count in (`BatchRecord::account`): `None` when
    /// the worker serves only its own, whose part is the month's total.
    pub fn month_account(&self, distribution: &DistributionId) -> Option<String> {
        (self.limits.len() > 1).then(|| self.key_of(distribution).to_string())
    }

    /// Every account whose part of the month is counted apart (`month_account`): none when the worker serves only
    /// its own.
    pub fn month_accounts(&self) -> Vec<String> {
        if self.limits.len() > 1 { self.limits.keys().map(AccountKey::to_string).collect() } else { Vec::new() }
    }

    /// The limits `distribution`'s calls count against.
    pub fn of(&self, distribution: &DistributionId) -> &AccountLimits {
        self.get(self.key_of(distribution))
    }

    /// `account`'s limits; every key `key_of` answers has them.
    pub fn get(&self, account: &AccountKey) -> &AccountLimits {
        &self.limits[account]
    }

    /// Every account's limits, the worker's own first.
    pub fn iter(&self) -> impl Iterator<Item = (&AccountKey, &AccountLimits)> {
        self.limits.iter()
    }

    /// The account whose limits are shared under `scope` (`AccountKey::scope`).
    pub fn by_scope(&self, scope: &str) -> Option<&AccountLimits> {
        self.limits.iter().find(|(key, _)| key.scope() == scope).map(|(_, limits)| limits)
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::super::account::{ACCOUNT_PATHS, AccountQuota};
    use super::*;
    use crate::model::role::Role;

    #[test]
    fn each_roles_account_has_its_own_limits_and_the_rest_share_the_workers_own() {
        let mut roles = Roles::default();
        for (id, account) in [("EAAA", "111122223333"), ("EBBB", "111122223333"), ("ECCC", "444455556666")] {
            let role = Role::parse(&format!("arn:aws:iam::{account}:role/cf-invalidator")).unwrap();
            roles.assign(DistributionId::parse(id).unwrap(), role).unwrap();
        }
        let quotas = AccountQuotas { paths: AccountQuota::configured(10.0, 0), wildcards: None };
        let limiter = || CreateRateLimiter::new(1.0, NonZeroU32::MIN);
        let accounts = Accounts::new(&roles, None, quotas, &Arc::default(), limiter);
        let key = |id: &str| accounts.key_of(&DistributionId::parse(id).unwrap()).to_string();
        assert_eq!(
            [key("EAAA"), key("EBBB"), key("ECCC"), key("EOWN")],
            ["111122223333", "111122223333", "444455556666", "own"]
        );
        let scopes: Vec<_> = accounts.iter().map(|(key, _)| key.scope()).collect();
        assert_eq!(scopes, ["account", "account#111122223333", "account#444455556666"], "one set per account");
        let other = accounts.by_scope("account#444455556666").unwrap();
        assert!(other.buckets.adopt(ACCOUNT_PATHS, 4.0));
        assert_eq!(other.buckets.believed().0, Some(4.0), "a belief shared for one account is that account's");
        let own = accounts.get(&AccountKey::Own);
        assert_eq!(own.buckets.believed().0, Some(10.0), "and no other's");
        assert!(accounts.by_scope("EAAA").is_none(), "a distribution's scope is no account's");

        // Once STS said the worker runs in 444455556666, a role there shares the own account's limits.
        let accounts = Accounts::new(&roles, Some("444455556666"), quotas, &Arc::default(), limiter);
        let key = |id: &str| accounts.key_of(&DistributionId::parse(id).unwrap()).clone();
        assert_eq!(
            [key("EAAA"), key("ECCC"), key("EOWN")],
            [AccountKey::Id("111122223333".into()), AccountKey::Own, AccountKey::Own]
        );
        let scopes: Vec<_> = accounts.iter().map(|(key, _)| key.scope()).collect();
        assert_eq!(scopes, ["account", "account#111122223333"], "no second set for the own account");
        assert_eq!(accounts.month_account(&DistributionId::parse("ECCC").unwrap()).as_deref(), Some("own"));
    }
}
