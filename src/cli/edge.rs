//! The run flags of issue #28 (proof at the edge), parsed by `edge::settings`: a group of their own so the worker's
//! other flags stay as they were.

use clap::Args;

use cf_invalidator::edge::settings::{
    self, DEFAULT_VERIFY_SAMPLE, EdgeSettings, SettingError, VerifySettings, WarmSettings,
};
use cf_invalidator::edge::url::{EdgeBase, Pop};
use cf_invalidator::model::DistributionId;

#[derive(Debug, Clone, Args)]
pub struct EdgeArgs {
    /// After an invalidation completes, request a sample of its plain paths from the distribution's edge and
    /// record whether viewers get the new objects (docs/edge.md); paths still stale after --verify-grace are
    /// invalidated once more. Needs completion tracking (--completion-poll above 0s).
    #[arg(long, env = "INVALIDATOR_VERIFY_EDGE")]
    pub verify_edge: bool,

    /// With --verify-edge: paths checked per batch (1 to 100), each with a HEAD to the edge (and to --origin-url).
    #[arg(long, env = "INVALIDATOR_VERIFY_SAMPLE", default_value_t = DEFAULT_VERIFY_SAMPLE,
          value_parser = parse_sample)]
    pub verify_sample: usize,

    /// With --verify-edge: how long paths may stay stale after completion before they are invalidated once more.
    #[arg(long, env = "INVALIDATOR_VERIFY_GRACE", default_value = "30s")]
    pub verify_grace: humantime::Duration,

    /// Where a distribution's objects are requested, instead of its own domain (an alternate domain, a test
    /// endpoint): DISTRIBUTION_ID=URL, repeatable, once per distribution.
    #[arg(long = "edge-url", env = "INVALIDATOR_EDGE_URL", value_delimiter = ',', value_name = "DIST=URL",
          value_parser = parse_edge_url)]
    pub edge_urls: Vec<(DistributionId, EdgeBase)>,

    /// Where the current versions of a distribution's objects are asked for: an edge answer must then also match
    /// the origin's ETag (or Last-Modified). DISTRIBUTION_ID=URL, repeatable, once per distribution.
    #[arg(long = "origin-url", env = "INVALIDATOR_ORIGIN_URL", value_delimiter = ',', value_name = "DIST=URL",
          value_parser = parse_origin_url)]
    pub origin_urls: Vec<(DistributionId, EdgeBase)>,

    /// After completion (after verification with --verify-edge), GET the batch's plain paths through the edge,
    /// once per --warm-encoding (and per --warm-pops POP), so the origin is refilled gently.
    #[arg(long, env = "INVALIDATOR_WARM")]
    pub warm: bool,

    /// With --warm: requests per second per distribution, all its batches together (above 0, at most 1000).
    #[arg(long, env = "INVALIDATOR_WARM_RATE", default_value = "5", value_parser = parse_warm_rate)]
    pub warm_rate: f64,

    /// With --warm: an Accept-Encoding to warm (br, gzip or identity), repeatable; default br and gzip.
    #[arg(long = "warm-encoding", env = "INVALIDATOR_WARM_ENCODING", value_delimiter = ',',
          value_parser = parse_encoding)]
    pub warm_encodings: Vec<String>,

    /// With --warm: POP codes (IAD89-C1) to warm through, repeatable; needs the distribution's *.cloudfront.net
    /// domain. Default: through whichever POP the worker's DNS answers.
    #[arg(long = "warm-pops", env = "INVALIDATOR_WARM_POPS", value_delimiter = ',', value_name = "POP",
          value_parser = parse_pop)]
    pub warm_pops: Vec<Pop>,
}

impl EdgeArgs {
    /// The worker's edge settings; a distribution given twice to one URL flag is refused.
    pub fn settings(&self) -> Result<EdgeSettings, SettingError> {
        let warm_defaults = WarmSettings::default();
        Ok(EdgeSettings {
            verify: self.verify_edge.then(|| VerifySettings {
                sample: self.verify_sample,
                grace: self.verify_grace.into(),
                ..VerifySettings::default()
            }),
            warm: self.warm.then(|| WarmSettings {
                encodings: if self.warm_encodings.is_empty() {
                    warm_defaults.encodings.clone()
                } else {
                    self.warm_encodings.clone()
                },
                rate: self.warm_rate,
                pops: self.warm_pops.clone(),
                ..warm_defaults
            }),
            edge_urls: settings::distribution_urls("--edge-url", self.edge_urls.iter().cloned())?,
            origin_urls: settings::distribution_urls("--origin-url", self.origin_urls.iter().cloned())?,
            limits: Default::default(),
        })
    }
}

fn parse_sample(raw: &str) -> Result<usize, SettingError> {
    settings::parse_sample(raw)
}

fn parse_edge_url(raw: &str) -> Result<(DistributionId, EdgeBase), SettingError> {
    settings::parse_distribution_url("--edge-url", raw)
}

fn parse_origin_url(raw: &str) -> Result<(DistributionId, EdgeBase), SettingError> {
    settings::parse_distribution_url("--origin-url", raw)
}

fn parse_warm_rate(raw: &str) -> Result<f64, SettingError> {
    settings::parse_warm_rate(raw)
}

fn parse_encoding(raw: &str) -> Result<String, SettingError> {
    settings::parse_encoding(raw)
}

fn parse_pop(raw: &str) -> Result<Pop, SettingError> {
    settings::parse_pop(raw)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        edge: EdgeArgs,
    }

    fn parsed(args: &[&str]) -> Result<EdgeSettings, String> {
        let flags =
            Flags::try_parse_from(std::iter::once("t").chain(args.iter().copied())).map_err(|e| e.to_string())?;
        flags.edge.settings().map_err(|e| e.to_string())
    }

    #[test]
    fn off_by_default_and_on_with_the_defaults_of_edge_settings() {
        let off = parsed(&[]).unwrap();
        assert_eq!((off.verify, off.warm), (None, None));
        let on = parsed(&["--verify-edge", "--warm"]).unwrap();
        assert_eq!(on.verify, Some(VerifySettings::default()));
        assert_eq!(on.warm, Some(WarmSettings::default()));
    }

    #[test]
    fn every_flag_reaches_the_settings() {
        let settings = parsed(&[
            "--verify-edge",
            "--verify-sample=7",
            "--verify-grace=2s",
            "--edge-url=E1=http://127.0.0.1:4600/E1",
            "--origin-url=E1=http://127.0.0.1:4600/origin",
            "--warm",
            "--warm-rate=0.5",
            "--warm-encoding=gzip",
            "--warm-pops=iad89-c1,FRA56-P2",
        ])
        .unwrap();
        let verify = settings.verify.unwrap();
        assert_eq!((verify.sample, verify.grace), (7, std::time::Duration::from_secs(2)));
        let e1 = DistributionId::parse("E1").unwrap();
        assert_eq!(settings.edge_urls[&e1].to_string(), "http://127.0.0.1:4600/E1");
        assert_eq!(settings.origin_urls[&e1].to_string(), "http://127.0.0.1:4600/origin");
        let warm = settings.warm.unwrap();
        assert_eq!((warm.rate, warm.encodings), (0.5, vec!["gzip".to_owned()]));
        assert_eq!(warm.pops.iter().map(Pop::as_str).collect::<Vec<_>>(), ["IAD89-C1", "FRA56-P2"]);
    }

    #[test]
    fn refused_values_say_which_flag() {
        for (args, says) in [
            (&["--verify-sample=0"][..], "--verify-sample"),
            (&["--warm-rate=0"], "--warm-rate"),
            (&["--warm-encoding=deflate"], "--warm-encoding"),
            (&["--edge-url=https://cdn.example.com"], "--edge-url"),
            (&["--edge-url=E1=https://me@evil.com"], "--edge-url"),
            (&["--edge-url=E1=http://a", "--edge-url=E1=http://b"], "given twice"),
            (&["--warm-pops=FRA56.evil.com"], "--warm-pops"),
        ] {
            let refused = parsed(args).unwrap_err();
            assert!(refused.contains(says), "{args:?}: {refused}");
        }
    }
}
