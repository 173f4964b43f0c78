//! What verifying and warming are told: the flags of issue #28 as values, with their parsing and checks as pure
//! functions (for clap's `value_parser` and for `run` to call).

use std::collections::BTreeMap;
use std::time::Duration;

use thiserror::Error;

use super::url::{BaseUrlError, EdgeBase, InvalidPop, Pop};
use crate::model::{DistributionId, InvalidDistributionId};

/// `--verify-sample`'s default: enough to see a lagging POP, few enough not to load the origin.
pub const DEFAULT_VERIFY_SAMPLE: usize = 5;
/// `--verify-sample` at most: each sampled path costs up to four requests (HEAD, GET fallback, and the same to the
/// origin).
pub const MAX_VERIFY_SAMPLE: usize = 100;
/// `--verify-grace`'s default: CloudFront's completion usually reaches every POP within seconds.
pub const DEFAULT_VERIFY_GRACE: Duration = Duration::from_secs(30);
/// `--warm-rate`'s default, per distribution: gentle on an origin that just lost its whole cache.
pub const DEFAULT_WARM_RATE: f64 = 5.0;
/// `--warm-rate` at most.
pub const MAX_WARM_RATE: f64 = 1_000.0;
/// `--warm-encoding`'s default: what browsers accept, and what CloudFront caches apart.
pub const DEFAULT_WARM_ENCODINGS: [&str; 2] = ["br", "gzip"];
/// `Accept-Encoding` values that make a cache entry of their own: CloudFront normalises the header to `br`, `gzip`
/// or none (`identity`) for its cache key.
pub const ENCODINGS: [&str; 3] = ["br", "gzip", "identity"];

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SettingError {
    #[error("{flag} expects DISTRIBUTION_ID=URL, not {raw:?}")]
    NotAPair { flag: &'static str, raw: String },
    #[error("{flag}: {source}")]
    Distribution { flag: &'static str, source: InvalidDistributionId },
    #[error("{flag}: {source}")]
    Url { flag: &'static str, source: BaseUrlError },
    #[error("{flag} is given twice for {distribution}; give one URL per distribution")]
    Repeated { flag: &'static str, distribution: DistributionId },
    #[error("--verify-sample expects a number of paths from 1 to {MAX_VERIFY_SAMPLE}, not {0:?}")]
    Sample(String),
    #[error("--warm-rate expects requests per second, more than 0 and at most {MAX_WARM_RATE}, not {0:?}")]
    Rate(String),
    #[error("--warm-encoding expects one of br, gzip or identity, not {0:?}")]
    Encoding(String),
    #[error("--warm-pops: {0}")]
    Pop(#[from] InvalidPop),
}

/// The fetches' bounds. Not flags: the defaults suit CloudFront; tests shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    pub connect_timeout: Duration,
    /// For the answer's headers, and then for each piece of its body.
    pub read_timeout: Duration,
    /// For the whole request: a body that trickles in under `read_timeout` still ends here.
    pub total_timeout: Duration,
    /// A GET's body is read up to this and the rest left unread.
    pub max_body_bytes: u64,
    /// Requests under way at once, all batches together.
    pub max_in_flight: usize,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(10),
            total_timeout: Duration::from_secs(30),
            // Enough to warm a page, a script or an image; a video is warmed in its first MiBs only.
            max_body_bytes: 4 << 20,
            max_in_flight: 8,
        }
    }
}

/// `--verify-edge` and its companions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifySettings {
    /// `--verify-sample`: paths checked per batch, at most.
    pub sample: usize,
    /// `--verify-grace`: how long paths may stay stale before they are invalidated again.
    pub grace: Duration,
    /// Checks of one batch under way at once.
    pub concurrency: usize,
}

impl Default for VerifySettings {
    fn default() -> Self {
        Self { sample: DEFAULT_VERIFY_SAMPLE, grace: DEFAULT_VERIFY_GRACE, concurrency: 4 }
    }
}

/// `--warm` and its companions.
#[derive(Debug, Clone, PartialEq)]
pub struct WarmSettings {
    /// `--warm-encoding`: each path is fetched once per encoding (and per POP).
    pub encodings: Vec<String>,
    /// `--warm-rate`: requests per second per distribution, all its batches together.
    pub rate: f64,
    /// `--warm-pops`: fetch through these POPs; none, through whichever POP the worker's DNS answers.
    pub pops: Vec<Pop>,
    /// Requests of one batch under way at once (each waits for the rate first).
    pub concurrency: usize,
}

impl Default for WarmSettings {
    fn default() -> Self {
        Self {
            encodings: DEFAULT_WARM_ENCODINGS.map(String::from).to_vec(),
            rate: DEFAULT_WARM_RATE,
            pops: Vec::new(),
            concurrency: 4,
        }
    }
}

/// Everything edge checks are told.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EdgeSettings {
    /// `--verify-edge`: off when `None`.
    pub verify: Option<VerifySettings>,
    /// `--warm`: off when `None`.
    pub warm: Option<WarmSettings>,
    /// `--edge-url`: where to request a distribution's objects instead of its own domain.
    pub edge_urls: BTreeMap<DistributionId, EdgeBase>,
    /// `--origin-url`: where to ask for the current version of a distribution's objects.
    pub origin_urls: BTreeMap<DistributionId, EdgeBase>,
    pub limits: FetchLimits,
}

impl EdgeSettings {
    /// Where `distribution`'s objects are requested: its `--edge-url`, else its own domain (GetDistribution's
    /// `DomainName`), else nowhere.
    pub fn edge_base(&self, distribution: &DistributionId, domain: Option<&str>) -> Option<EdgeBase> {
        self.edge_urls.get(distribution).cloned().or_else(|| domain.and_then(|domain| EdgeBase::https(domain).ok()))
    }
}

/// One `--edge-url` or `--origin-url` value: `DISTRIBUTION_ID=URL`.
pub fn parse_distribution_url(flag: &'static str, raw: &str) -> Result<(DistributionId, EdgeBase), SettingError> {
    let (distribution, url) =
        raw.split_once('=').ok_or_else(|| SettingError::NotAPair { flag, raw: raw.to_owned() })?;
    let distribution =
        DistributionId::parse(distribution.trim()).map_err(|source| SettingError::Distribution { flag, source })?;
    let url = EdgeBase::parse(url.trim()).map_err(|source| SettingError::Url { flag, source })?;
    Ok((distribution, url))
}

/// The repeated values of one flag, one URL per distribution.
pub fn distribution_urls(
    flag: &'static str,
    pairs: impl IntoIterator<Item = (DistributionId, EdgeBase)>,
) -> Result<BTreeMap<DistributionId, EdgeBase>, SettingError> {
    let mut urls = BTreeMap::new();
    for (distribution, url) in pairs {
        if urls.contains_key(&distribution) {
            return Err(SettingError::Repeated { flag, distribution });
        }
        urls.insert(distribution, url);
    }
    Ok(urls)
}

pub fn parse_sample(raw: &str) -> Result<usize, SettingError> {
    raw.trim()
        .parse()
        .ok()
        .filter(|sample| (1..=MAX_VERIFY_SAMPLE).contains(sample))
        .ok_or_else(|| SettingError::Sample(raw.to_owned()))
}

pub fn parse_warm_rate(raw: &str) -> Result<f64, SettingError> {
    raw.trim()
        .parse()
        .ok()
        .filter(|rate: &f64| *rate > 0.0 && *rate <= MAX_WARM_RATE)
        .ok_or_else(|| SettingError::Rate(raw.to_owned()))
}

pub fn parse_encoding(raw: &str) -> Result<String, SettingError> {
    let encoding = raw.trim().to_ascii_lowercase();
    if ENCODINGS.contains(&encoding.as_str()) { Ok(encoding) } else { Err(SettingError::Encoding(raw.to_owned())) }
}

pub fn parse_pop(raw: &str) -> Result<Pop, SettingError> {
    Ok(Pop::parse(raw.trim())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distribution_urls_are_pairs_one_per_distribution() {
        let (distribution, url) =
            parse_distribution_url("--edge-url", "EDFDVBD6EXAMPLE=https://cdn.example.com/").unwrap();
        assert_eq!((distribution.as_str(), url.to_string().as_str()), ("EDFDVBD6EXAMPLE", "https://cdn.example.com"));
        assert_eq!(
            parse_distribution_url("--edge-url", "https://cdn.example.com"),
            Err(SettingError::NotAPair { flag: "--edge-url", raw: "https://cdn.example.com".into() })
        );
        assert!(matches!(
            parse_distribution_url("--origin-url", "e1=https://o.example.com"),
            Err(SettingError::Distribution { flag: "--origin-url", .. })
        ));
        let refused = parse_distribution_url("--edge-url", "E1=https://me@evil.com").unwrap_err();
        assert!(refused.to_string().starts_with("--edge-url: "), "{refused}");

        let pair = |raw| parse_distribution_url("--edge-url", raw).unwrap();
        let urls = distribution_urls("--edge-url", [pair("E1=http://a"), pair("E2=http://b")]).unwrap();
        assert_eq!(urls.len(), 2);
        assert_eq!(
            distribution_urls("--edge-url", [pair("E1=http://a"), pair("E1=http://b")]),
            Err(SettingError::Repeated { flag: "--edge-url", distribution: DistributionId::parse("E1").unwrap() })
        );
    }

    #[test]
    fn an_edge_url_wins_over_the_distributions_domain() {
        let e1 = DistributionId::parse("E1").unwrap();
        let mut settings = EdgeSettings::default();
        assert_eq!(settings.edge_base(&e1, None), None);
        assert_eq!(
            settings.edge_base(&e1, Some("d1.cloudfront.net")).unwrap().to_string(),
            "https://d1.cloudfront.net"
        );
        assert_eq!(settings.edge_base(&e1, Some("evil.com/x")), None, "a domain that is no host is not used");
        settings.edge_urls.insert(e1.clone(), EdgeBase::parse("http://127.0.0.1:4600/E1").unwrap());
        assert_eq!(settings.edge_base(&e1, Some("d1.cloudfront.net")).unwrap().to_string(), "http://127.0.0.1:4600/E1");
    }

    #[test]
    fn numbers_encodings_and_pops_are_checked() {
        assert_eq!(parse_sample("5"), Ok(5));
        for bad in ["0", "101", "-1", "five", ""] {
            assert_eq!(parse_sample(bad), Err(SettingError::Sample(bad.into())));
        }
        assert_eq!(parse_warm_rate("0.5"), Ok(0.5));
        for bad in ["0", "-1", "NaN", "inf", "1001"] {
            assert_eq!(parse_warm_rate(bad), Err(SettingError::Rate(bad.into())));
        }
        assert_eq!(parse_encoding("BR"), Ok("br".into()));
        assert_eq!(parse_encoding("gzip, br"), Err(SettingError::Encoding("gzip, br".into())));
        assert_eq!(parse_pop("fra56-p2").unwrap().as_str(), "FRA56-P2");
        assert!(parse_pop("FRA56.evil.com").is_err());
        assert_eq!(WarmSettings::default().encodings, ["br", "gzip"]);
        assert_eq!(VerifySettings::default().sample, DEFAULT_VERIFY_SAMPLE);
    }
}
