//! Roles in other AWS accounts. CloudFront has no resource policies, so another account's distribution is
//! invalidated with credentials of a role in that account (`--role DIST=ARN[,external-id=ID]`, or `role` in a
//! routes rule).

use std::collections::BTreeMap;
use std::fmt;

use thiserror::Error;

use super::{DistributionId, InvalidDistributionId};

/// STS's limits on a role session name: 2 to 64 of `[\w+=,.@-]`.
const MAX_SESSION_NAME_LEN: usize = 64;
/// STS's limits on an external id: 2 to 1224 of `[\w+=,.@:/-]`.
const MAX_EXTERNAL_ID_LEN: usize = 1224;
const EXTERNAL_ID_KEY: &str = "external-id=";

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RoleError {
    #[error(
        "{0:?} is not DIST=ARN or DIST=ARN,external-id=ID (e.g. E2QWRUHAPOMQZL=arn:aws:iam::111122223333:role/cf-invalidator)"
    )]
    Syntax(String),
    #[error(transparent)]
    Distribution(#[from] InvalidDistributionId),
    #[error("{0:?} is not an IAM role ARN: expected arn:PARTITION:iam::ACCOUNT:role/NAME with a 12-digit account")]
    Arn(String),
    #[error("external id {0:?} is not valid: STS takes 2 to {MAX_EXTERNAL_ID_LEN} of letters, digits and +=,.@:/-_")]
    ExternalId(String),
    #[error("{distribution} is given two roles, {first} and {second}: a distribution's calls use one role")]
    Conflict { distribution: DistributionId, first: RoleArn, second: RoleArn },
}

/// `arn:PARTITION:iam::ACCOUNT:role/PATH/NAME`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoleArn(String);

impl RoleArn {
    pub fn parse(raw: &str) -> Result<Self, RoleError> {
        let invalid = || RoleError::Arn(raw.to_owned());
        let mut parts = raw.splitn(6, ':');
        let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        let name = resource.strip_prefix("role/").ok_or_else(invalid)?;
        let well_formed = !partition.is_empty()
            && account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && !name.is_empty()
            && !name.ends_with('/');
        if well_formed { Ok(Self(raw.to_owned())) } else { Err(invalid()) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 12-digit account the role is in: the account that owns the distribution and is billed for it.
    pub fn account(&self) -> &str {
        self.0.split(':').nth(4).unwrap_or_default()
    }
}

impl fmt::Display for RoleArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A role to assume, with the external id its trust policy may require.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Role {
    pub arn: RoleArn,
    pub external_id: Option<String>,
}

impl Role {
    pub fn new(arn: &str, external_id: Option<&str>) -> Result<Self, RoleError> {
        Ok(Self { arn: RoleArn::parse(arn)?, external_id: external_id.map(parse_external_id).transpose()? })
    }

    /// `ARN` or `ARN,external-id=ID`.
    pub fn parse(raw: &str) -> Result<Self, RoleError> {
        match raw.split_once(',') {
            None => Self::new(raw, None),
            Some((arn, rest)) => {
                let id = rest.strip_prefix(EXTERNAL_ID_KEY).ok_or_else(|| RoleError::Syntax(raw.to_owned()))?;
                Self::new(arn, Some(id))
            }
        }
    }
}

fn parse_external_id(raw: &str) -> Result<String, RoleError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c);
    let well_formed = (2..=MAX_EXTERNAL_ID_LEN).contains(&raw.len()) && raw.chars().all(allowed);
    if well_formed { Ok(raw.to_owned()) } else { Err(RoleError::ExternalId(raw.to_owned())) }
}

/// `DIST=ARN` or `DIST=ARN,external-id=ID`, as `--role` takes it.
pub fn parse_assignment(raw: &str) -> Result<(DistributionId, Role), RoleError> {
    let (distribution, role) = raw.split_once('=').ok_or_else(|| RoleError::Syntax(raw.to_owned()))?;
    Ok((DistributionId::parse(distribution)?, Role::parse(role)?))
}

/// Which distributions are reached through which role; the rest use the worker's own credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roles(BTreeMap<DistributionId, Role>);

impl Roles {
    /// Adds a distribution's role; naming the same role twice is fine, two different ones are not.
    pub fn assign(&mut self, distribution: DistributionId, role: Role) -> Result<(), RoleError> {
        match self.0.get(&distribution) {
            Some(first) if *first != role => {
                Err(RoleError::Conflict { distribution, first: first.arn.clone(), second: role.arn })
            }
            _ => {
                self.0.insert(distribution, role);
                Ok(())
            }
        }
    }

    pub fn get(&self, distribution: &DistributionId) -> Option<&Role> {
        self.0.get(distribution)
    }

    /// The 12-digit account `distribution` is in when a role reaches it; `None`: the worker's own account.
    pub fn account_of(&self, distribution: &DistributionId) -> Option<&str> {
        self.get(distribution).map(|role| role.arn.account())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&DistributionId, &Role)> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The worker's id as an STS role session name, so CloudTrail in the target account names the worker: characters
/// STS refuses become `-`, and it is cut to 64.
pub fn session_name(worker_id: &str) -> String {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c);
    let name: String = worker_id.chars().map(|c| if allowed(c) { c } else { '-' }).take(MAX_SESSION_NAME_LEN).collect();
    if name.len() < 2 { format!("cf-invalidator-{name}") } else { name }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const ARN: &str = "arn:aws:iam::111122223333:role/cf-invalidator";

    fn distribution(raw: &str) -> DistributionId {
        DistributionId::parse(raw).unwrap()
    }

    #[test]
    fn an_assignment_names_a_distribution_a_role_and_optionally_an_external_id() {
        let (dist, role) = parse_assignment(&format!("E2QWRUHAPOMQZL={ARN}")).unwrap();
        assert_eq!(dist, distribution("E2QWRUHAPOMQZL"));
        assert_eq!((role.arn.as_str(), role.arn.account(), role.external_id), (ARN, "111122223333", None));

        let (_, role) = parse_assignment(&format!("E2QWRUHAPOMQZL={ARN},external-id=team-a:42")).unwrap();
        assert_eq!(role.external_id.as_deref(), Some("team-a:42"));
        let gov = Role::parse("arn:aws-us-gov:iam::111122223333:role/path/to/name").unwrap();
        assert_eq!(gov.arn.account(), "111122223333");
    }

    #[test]
    fn malformed_assignments_say_what_is_wrong() {
        let cases = [
            (ARN.to_owned(), "DIST=ARN"),
            (format!("e2bad={ARN}"), "distribution id"),
            ("E2QWRUHAPOMQZL=arn:aws:iam::1111:role/x".into(), "12-digit"),
            ("E2QWRUHAPOMQZL=arn:aws:iam::111122223333:user/x".into(), "IAM role ARN"),
            ("E2QWRUHAPOMQZL=arn:aws:s3:::bucket".into(), "IAM role ARN"),
            (format!("E2QWRUHAPOMQZL={ARN},externalid=x1"), "DIST=ARN"),
            (format!("E2QWRUHAPOMQZL={ARN},external-id=a b"), "external id"),
            (format!("E2QWRUHAPOMQZL={ARN},external-id=x"), "external id"),
        ];
        for (raw, expected) in cases {
            let error = parse_assignment(&raw).unwrap_err().to_string();
            assert!(error.contains(expected), "{raw}: {error}");
        }
    }

    #[test]
    fn a_distribution_takes_one_role() {
        let mut roles = Roles::default();
        let role = Role::parse(ARN).unwrap();
        roles.assign(distribution("EAAA"), role.clone()).unwrap();
        roles.assign(distribution("EAAA"), role.clone()).unwrap();
        let other = Role::parse("arn:aws:iam::444455556666:role/cf-invalidator").unwrap();
        let conflict = roles.assign(distribution("EAAA"), other).unwrap_err();
        assert!(matches!(conflict, RoleError::Conflict { .. }), "{conflict}");
        assert_eq!(roles.get(&distribution("EAAA")), Some(&role));
    }

    proptest! {
        #[test]
        fn a_session_name_is_always_one_sts_accepts(worker in ".{0,100}") {
            let name = session_name(&worker);
            prop_assert!((2..=MAX_SESSION_NAME_LEN).contains(&name.chars().count()), "{name}");
            prop_assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)), "{name}");
        }
    }

    #[test]
    fn a_session_name_keeps_a_valid_worker_id() {
        assert_eq!(session_name("ecs-task-1f2e"), "ecs-task-1f2e");
        assert_eq!(session_name("host/1 a"), "host-1-a");
    }
}
