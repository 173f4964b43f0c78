//! Routing rules: which distributions an S3 object belongs to, and which CloudFront paths it becomes.
//!
//! S3 events name a bucket and a key, not a distribution, so `--routes routes.toml` maps bucket and key prefix to
//! one or more distributions, with the rewriting a site needs (see `routes.example.toml` for every field).

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use thiserror::Error;

use super::envelope::S3Object;
use crate::model::path::{InvalidationPath, PathError, encode_name};
use crate::model::role::{Role, RoleError, Roles};
use crate::model::text::excerpt;
use crate::model::{DistributionId, InvalidDistributionId, InvalidTenantId, TenantId};

#[derive(Debug, Error)]
pub enum RoutesError {
    #[error("cannot read routes file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("routes file is not valid: {0}")]
    Syntax(#[from] toml::de::Error),
    #[error("rule #{rule}: {error}")]
    Distribution { rule: usize, error: InvalidDistributionId },
    #[error("rule #{rule}: extra path {path:?} is invalid: {error}")]
    ExtraPath { rule: usize, path: String, error: PathError },
    #[error("rule #{rule} names no distribution")]
    NoDistribution { rule: usize },
    #[error("rule #{rule}: {error}")]
    Tenant { rule: usize, error: InvalidTenantId },
    #[error("rule #{rule} names tenant {tenant} and several distributions: a tenant belongs to one distribution")]
    TenantOfSeveral { rule: usize, tenant: TenantId },
    #[error(
        "rule #{rule} sets coalesce_min_saving = {value} for {distribution}, which an earlier rule set to {earlier}: batches are per distribution, so give its rules one value"
    )]
    ConflictingMinSaving { rule: usize, distribution: DistributionId, value: usize, earlier: usize },
    #[error("rule #{rule}: {error}")]
    Role { rule: usize, error: RoleError },
    #[error("rule #{rule} sets external_id without a role")]
    ExternalIdWithoutRole { rule: usize },
}

/// What to do with an S3 object no rule matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unmatched {
    /// Dead-letter the message, with the bucket and key in the reason.
    #[default]
    DeadLetter,
    /// Acknowledge and forget it (the bucket also holds objects no distribution serves).
    Skip,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutesFile {
    #[serde(default)]
    unmatched: Unmatched,
    #[serde(default, rename = "rule")]
    rules: Vec<RuleFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    bucket: String,
    #[serde(default)]
    prefix: String,
    distributions: Vec<String>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    strip_prefix: String,
    #[serde(default)]
    add_prefix: String,
    #[serde(default)]
    index_document: Option<String>,
    #[serde(default)]
    directory_without_slash: bool,
    #[serde(default)]
    extra_paths: Vec<String>,
    #[serde(default)]
    coalesce_min_saving: Option<usize>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    external_id: Option<String>,
}

#[derive(Debug, Clone)]
struct Rule {
    bucket: String,
    prefix: String,
    distributions: Vec<DistributionId>,
    /// Invalidate this tenant of the (one) distribution instead of the whole distribution.
    tenant: Option<TenantId>,
    strip_prefix: String,
    add_prefix: String,
    index_document: Option<String>,
    directory_without_slash: bool,
    extra_paths: Vec<InvalidationPath>,
}

/// The invalidation an S3 object asks for on one distribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    pub distribution_id: DistributionId,
    pub tenant_id: Option<TenantId>,
    pub paths: Vec<InvalidationPath>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RouteError {
    #[error("no routing rule matches s3://{bucket}/{}", excerpt(.key))]
    Unmatched { bucket: String, key: String },
    #[error("s3://{bucket}/{} makes the invalid path {:?}: {error}", excerpt(.key), excerpt(.path))]
    InvalidPath { bucket: String, key: String, path: String, error: PathError },
    #[error(
        "s3://{bucket}/{} has '*' in its key: CloudFront reads '*' as a wildcard and documents no escape for it, so this object cannot be invalidated exactly; invalidate it by hand if a wildcard will do",
        excerpt(.key)
    )]
    AsteriskInKey { bucket: String, key: String },
}

#[derive(Debug, Clone, Default)]
pub struct Routing {
    unmatched: Unmatched,
    rules: Vec<Rule>,
    /// `--coalesce cost`'s threshold where a rule overrides it, for the rule's distributions.
    min_savings: HashMap<DistributionId, usize>,
    /// The roles rules name for their distributions.
    roles: Roles,
}

impl Routing {
    pub fn load(path: &Path) -> Result<Self, RoutesError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| RoutesError::Read { path: path.display().to_string(), source })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, RoutesError> {
        let file: RoutesFile = toml::from_str(text)?;
        let mut min_savings = HashMap::new();
        for (n, rule) in file.rules.iter().enumerate() {
            let Some(value) = rule.coalesce_min_saving else { continue };
            for distribution in rule.distributions.iter().filter_map(|d| DistributionId::parse(d).ok()) {
                match min_savings.insert(distribution.clone(), value) {
                    Some(earlier) if earlier != value => {
                        return Err(RoutesError::ConflictingMinSaving { rule: n + 1, distribution, value, earlier });
                    }
                    _ => {}
                }
            }
        }
        let roles = roles(&file.rules)?;
        let rules =
            file.rules.into_iter().enumerate().map(|(n, rule)| compile(n + 1, rule)).collect::<Result<_, _>>()?;
        Ok(Self { unmatched: file.unmatched, rules, min_savings, roles })
    }

    /// The roles rules name, by distribution.
    pub fn roles(&self) -> &Roles {
        &self.roles
    }

    /// The distributions whose rules set `coalesce_min_saving`, with it.
    pub fn min_savings(&self) -> &HashMap<DistributionId, usize> {
        &self.min_savings
    }

    /// Every distribution a rule names.
    pub fn distributions(&self) -> impl Iterator<Item = &DistributionId> {
        self.rules.iter().flat_map(|rule| &rule.distributions)
    }

    pub fn unmatched(&self) -> Unmatched {
        self.unmatched
    }

    /// Every distribution's paths for `object`, one entry per matching rule's distribution. An empty result means
    /// no rule matched and `unmatched` is `skip`.
    pub fn route(&self, object: &S3Object) -> Result<Vec<Routed>, RouteError> {
        let mut routed: Vec<Routed> = Vec::new();
        for rule in self.rules.iter().filter(|r| r.bucket == object.bucket && object.key.starts_with(&r.prefix)) {
            let paths = rule.paths_for(object)?;
            for distribution_id in &rule.distributions {
                let same_target = |r: &&mut Routed| &r.distribution_id == distribution_id && r.tenant_id == rule.tenant;
                match routed.iter_mut().find(same_target) {
                    Some(existing) => existing.paths.extend(paths.iter().cloned()),
                    None => routed.push(Routed {
                        distribution_id: distribution_id.clone(),
                        tenant_id: rule.tenant.clone(),
                        paths: paths.clone(),
                    }),
                }
            }
        }
        if routed.is_empty() && self.unmatched == Unmatched::DeadLetter {
            return Err(RouteError::Unmatched { bucket: object.bucket.clone(), key: object.key.clone() });
        }
        Ok(routed)
    }
}

fn roles(rules: &[RuleFile]) -> Result<Roles, RoutesError> {
    let mut roles = Roles::default();
    for (n, rule) in rules.iter().enumerate() {
        let role = match (&rule.role, &rule.external_id) {
            (None, None) => continue,
            (None, Some(_)) => return Err(RoutesError::ExternalIdWithoutRole { rule: n + 1 }),
            (Some(arn), external_id) => Role::new(arn, external_id.as_deref()),
        };
        let role = role.map_err(|error| RoutesError::Role { rule: n + 1, error })?;
        for distribution in rule.distributions.iter().filter_map(|d| DistributionId::parse(d).ok()) {
            roles.assign(distribution, role.clone()).map_err(|error| RoutesError::Role { rule: n + 1, error })?;
        }
    }
    Ok(roles)
}

fn compile(number: usize, rule: RuleFile) -> Result<Rule, RoutesError> {
    if rule.distributions.is_empty() {
        return Err(RoutesError::NoDistribution { rule: number });
    }
    let distributions: Vec<DistributionId> = rule
        .distributions
        .iter()
        .map(|d| DistributionId::parse(d).map_err(|error| RoutesError::Distribution { rule: number, error }))
        .collect::<Result<_, _>>()?;
    let tenant = rule
        .tenant
        .as_deref()
        .map(|t| TenantId::parse(t).map_err(|error| RoutesError::Tenant { rule: number, error }))
        .transpose()?;
    if let Some(tenant) = tenant.clone().filter(|_| distributions.len() > 1) {
        return Err(RoutesError::TenantOfSeveral { rule: number, tenant });
    }
    let extra_paths = rule
        .extra_paths
        .iter()
        .map(|p| {
            InvalidationPath::parse(p).map_err(|error| RoutesError::ExtraPath { rule: number, path: p.clone(), error })
        })
        .collect::<Result<_, _>>()?;
    Ok(Rule {
        bucket: rule.bucket,
        prefix: rule.prefix,
        distributions,
        tenant,
        strip_prefix: rule.strip_prefix.trim_end_matches('/').to_owned(),
        add_prefix: rule.add_prefix.trim_end_matches('/').to_owned(),
        index_document: rule.index_document,
        directory_without_slash: rule.directory_without_slash,
        extra_paths,
    })
}

impl Rule {
    /// The object's URL path (origin path stripped, site prefix added), its directory forms when it is the index
    /// document, and the rule's extra paths. The key is the object's literal name: nothing in it is a wildcard,
    /// an escape or a query, and no slash of it is dropped.
    fn paths_for(&self, object: &S3Object) -> Result<Vec<InvalidationPath>, RouteError> {
        let url_path = self.url_path(object)?;
        let mut raw_paths = vec![url_path.clone()];
        let index_directory = self.index_document.as_deref().and_then(|index| url_path.strip_suffix(index));
        if let Some(directory) = index_directory.filter(|d| d.ends_with('/')) {
            raw_paths.push(directory.to_owned());
            if self.directory_without_slash && directory.len() > 1 {
                raw_paths.push(directory.trim_end_matches('/').to_owned());
            }
        }
        let mut paths = raw_paths
            .into_iter()
            .map(|raw| {
                InvalidationPath::parse(&raw).map_err(|error| RouteError::InvalidPath {
                    bucket: object.bucket.clone(),
                    key: object.key.clone(),
                    path: raw,
                    error,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        paths.extend(self.extra_paths.iter().cloned());
        Ok(paths)
    }

    /// CloudFront asks the origin for the origin path followed by the request's path without its first `/`, so
    /// a key's URL path is what follows the origin path, or `/` and the whole key. A key that starts with `/`
    /// keeps it: `/a.html` is requested as `//a.html`.
    fn url_path(&self, object: &S3Object) -> Result<String, RouteError> {
        let key = &object.key;
        let under_origin_path = key
            .strip_prefix(self.strip_prefix.as_str())
            .filter(|rest| !self.strip_prefix.is_empty() && rest.starts_with('/'));
        let name = match under_origin_path {
            Some(rest) => &rest[1..],
            None => key.as_str(),
        };
        let encoded = encode_name(name).map_err(|error| match error {
            PathError::AsteriskInName => RouteError::AsteriskInKey { bucket: object.bucket.clone(), key: key.clone() },
            error => RouteError::InvalidPath {
                bucket: object.bucket.clone(),
                key: key.clone(),
                path: name.to_owned(),
                error,
            },
        })?;
        Ok(format!("{}/{encoded}", self.add_prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &str = r#"
        [[rule]]
        bucket = "www-site"
        prefix = "public/"
        distributions = ["EWWW", "EMIRROR"]
        strip_prefix = "public"
        index_document = "index.html"
        directory_without_slash = true

        [[rule]]
        bucket = "www-site"
        prefix = "public/blog/"
        distributions = ["EWWW"]
        extra_paths = ["/feed.xml"]

        [[rule]]
        bucket = "assets"
        distributions = ["EASSETS"]
        add_prefix = "/static/"
    "#;

    fn object(bucket: &str, key: &str) -> S3Object {
        S3Object { bucket: bucket.into(), key: key.into() }
    }

    fn route(routing: &Routing, bucket: &str, key: &str) -> Vec<(String, Vec<String>)> {
        let routed = routing.route(&object(bucket, key)).unwrap();
        routed
            .into_iter()
            .map(|r| (r.distribution_id.to_string(), r.paths.into_iter().map(|p| p.into_string()).collect()))
            .collect()
    }

    #[test]
    fn rewrites_keys_into_site_paths() {
        let routing = Routing::parse(ROUTES).unwrap();
        let both = |paths: &[&str]| {
            let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
            vec![("EWWW".to_owned(), paths.clone()), ("EMIRROR".to_owned(), paths)]
        };
        assert_eq!(
            route(&routing, "www-site", "public/docs/index.html"),
            both(&["/docs/index.html", "/docs/", "/docs"])
        );
        assert_eq!(route(&routing, "www-site", "public/index.html"), both(&["/index.html", "/"]));
        assert_eq!(route(&routing, "www-site", "public/a b+é.css"), both(&["/a%20b+%C3%A9.css"]));
        assert_eq!(route(&routing, "www-site", "public//twice"), both(&["//twice"]), "the origin path's slash only");
        assert_eq!(
            route(&routing, "assets", "img/logo.png"),
            [("EASSETS".to_owned(), vec!["/static/img/logo.png".to_owned()])]
        );
    }

    #[test]
    fn a_rule_s_coalescing_threshold_applies_to_its_distributions_and_must_agree() {
        let rule = |threshold: usize| {
            format!(
                "[[rule]]\nbucket = \"b\"\ndistributions = [\"EONE\", \"ETWO\"]\ncoalesce_min_saving = {threshold}\n"
            )
        };
        let routing = Routing::parse(&format!("{}{}", rule(25), ROUTES)).unwrap();
        let one = DistributionId::parse("EONE").unwrap();
        assert_eq!(routing.min_savings().get(&one), Some(&25));
        assert_eq!(routing.min_savings().len(), 2, "{:?}", routing.min_savings());
        let conflicting = Routing::parse(&format!("{}{}", rule(25), rule(50))).unwrap_err();
        assert!(conflicting.to_string().contains("rule #2 sets coalesce_min_saving = 50 for EONE"), "{conflicting}");
    }

    #[test]
    fn matching_rules_add_up() {
        let routing = Routing::parse(ROUTES).unwrap();
        let routed = route(&routing, "www-site", "public/blog/post.html");
        assert_eq!(
            routed[0],
            ("EWWW".to_owned(), vec!["/blog/post.html".into(), "/public/blog/post.html".into(), "/feed.xml".into()])
        );
        assert_eq!(routed[1], ("EMIRROR".to_owned(), vec!["/blog/post.html".to_owned()]));
    }

    #[test]
    fn unmatched_objects_are_refused_or_skipped_as_configured() {
        let routing = Routing::parse(ROUTES).unwrap();
        let refused = routing.route(&object("www-site", "private/x")).unwrap_err();
        assert_eq!(refused.to_string(), "no routing rule matches s3://www-site/private/x");
        let skipping = Routing::parse(&format!("unmatched = \"skip\"\n{ROUTES}")).unwrap();
        assert_eq!(skipping.route(&object("other", "x")).unwrap(), []);
    }

    #[test]
    fn a_key_is_the_object_s_literal_name() {
        let routing = Routing::parse(ROUTES).unwrap();
        let assets = |key: &str| route(&routing, "assets", key).remove(0).1;
        assert_eq!(assets("/lead.png"), ["/static//lead.png"], "a leading slash is part of the name");
        assert_eq!(assets("a//b/../c.png"), ["/static/a//b/../c.png"]);
        assert_eq!(assets("100%.png"), ["/static/100%25.png"]);
        assert_eq!(assets("a%20b.png"), ["/static/a%2520b.png"], "not the object 'a b.png'");
        assert_eq!(assets("q?.png"), ["/static/q%3F.png"]);
        for starred in ["*", "x*", "a*b.png"] {
            let error = routing.route(&object("assets", starred)).unwrap_err();
            assert!(matches!(error, RouteError::AsteriskInKey { .. }), "{starred}: {error}");
            assert!(error.to_string().contains("has '*' in its key"), "{error}");
        }
    }

    #[test]
    fn a_key_too_long_for_a_path_is_refused() {
        let routing = Routing::parse(ROUTES).unwrap();
        let error = routing.route(&object("assets", &"é".repeat(700))).unwrap_err();
        assert!(matches!(error, RouteError::InvalidPath { error: PathError::TooLong(_), .. }), "{error}");
    }

    #[test]
    fn a_rule_may_route_a_prefix_to_a_tenant() {
        let routing = Routing::parse(
            "[[rule]]\nbucket = \"saas\"\nprefix = \"acme/\"\nstrip_prefix = \"acme\"\ndistributions = [\"E1\"]\n\
             tenant = \"dt_acme\"\n[[rule]]\nbucket = \"saas\"\ndistributions = [\"E1\"]",
        )
        .unwrap();
        let routed = routing.route(&object("saas", "acme/a.html")).unwrap();
        let targets: Vec<(Option<&str>, Vec<&str>)> =
            routed.iter().map(|r| (r.tenant_id.as_ref().map(TenantId::as_str), paths_of(r))).collect();
        assert_eq!(targets, [(Some("dt_acme"), vec!["/a.html"]), (None, vec!["/acme/a.html"])]);
    }

    fn paths_of(routed: &Routed) -> Vec<&str> {
        routed.paths.iter().map(InvalidationPath::as_str).collect()
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let errors = [
            (
                "[[rule]]\nbucket = \"b\"\ndistributions = [\"lower\"]",
                "rule #1: distribution id \"lower\" is not valid",
            ),
            ("[[rule]]\nbucket = \"b\"\ndistributions = []", "rule #1 names no distribution"),
            (
                "[[rule]]\nbucket = \"b\"\ndistributions = [\"E1\"]\nextra_paths = [\"x\"]",
                "extra path \"x\" is invalid",
            ),
            ("[[rule]]\nbucket = \"b\"\ndistribution = [\"E1\"]", "unknown field `distribution`"),
            ("unmatched = \"drop\"", "unknown variant `drop`"),
            ("[[rule]]\nbucket = \"b\"\ndistributions = [\"E1\"]\ntenant = \"t1\"", "tenant id \"t1\" is not valid"),
            (
                "[[rule]]\nbucket = \"b\"\ndistributions = [\"E1\", \"E2\"]\ntenant = \"dt_a\"",
                "a tenant belongs to one distribution",
            ),
            ("[[rule]]\nbucket = \"b\"\ndistributions = [\"E1\"]\nrole = \"arn:aws:iam::1:role/x\"", "12-digit"),
            ("[[rule]]\nbucket = \"b\"\ndistributions = [\"E1\"]\nexternal_id = \"xy\"", "without a role"),
            (
                "[[rule]]\nbucket = \"a\"\ndistributions = [\"E1\"]\nrole = \"arn:aws:iam::111122223333:role/x\"\n\
                 [[rule]]\nbucket = \"b\"\ndistributions = [\"E1\"]\nrole = \"arn:aws:iam::444455556666:role/x\"",
                "rule #2: E1 is given two roles",
            ),
        ];
        for (text, expected) in errors {
            let error = Routing::parse(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn a_rule_names_the_role_its_distributions_are_reached_through() {
        let routing = Routing::parse(
            r#"
            [[rule]]
            bucket = "a"
            distributions = ["EOTHER", "EOTHER2"]
            role = "arn:aws:iam::111122223333:role/cf-invalidator"
            external_id = "team-a"

            [[rule]]
            bucket = "b"
            distributions = ["EOWN"]
            "#,
        )
        .unwrap();
        let role = Role::new("arn:aws:iam::111122223333:role/cf-invalidator", Some("team-a")).unwrap();
        let roles: Vec<_> = routing.roles().iter().map(|(d, r)| (d.as_str(), r)).collect();
        assert_eq!(roles, [("EOTHER", &role), ("EOTHER2", &role)]);
    }
}
