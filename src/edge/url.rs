//! URLs for edge requests, safe by construction. The scheme, host and port come from configuration alone (the
//! distribution's own domain, `--edge-url`, `--origin-url`); the path is an invalidation path the worker already
//! validated and encoded, checked again here so that nothing in it can read as another host, a parent directory, a
//! fragment or a second request line. The URL is then read back: it must say exactly what was asked.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use hyper::Uri;
use hyper::http::uri::{Authority, Scheme};
use percent_encoding::percent_decode_str;
use thiserror::Error;

use crate::ports::edge::{ConnectVia, EdgeUrl};

const CLOUDFRONT_SUFFIX: &str = ".cloudfront.net";
/// RFC 1035's limits on a name and its labels.
const MAX_HOST_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;
/// Longer than any POP code seen (`IAD89-C1`, `HIO52-P4`, `SFO5-C3`), short enough to stay one DNS label.
const MAX_POP_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BaseUrlError {
    #[error("{0:?} is not a URL: {1}")]
    NotAUrl(String, String),
    #[error("{0:?}: only http and https URLs are fetched")]
    Scheme(String),
    #[error("{0:?} names no host")]
    NoHost(String),
    #[error("{0:?} holds user information ('@' before the host); give the host alone")]
    UserInfo(String),
    #[error("{0:?} holds a query or a fragment; give a scheme, a host, an optional port and an optional path")]
    QueryOrFragment(String),
    #[error("{0:?}: {1:?} is not a DNS name or an IP address")]
    Host(String, String),
    #[error("{0:?}: its path is not a plain path: it {1}")]
    BasePath(String, UnsafePath),
}

/// Why a path is not requested from the edge.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UnsafePath {
    #[error("is a wildcard or a cache tag, which names no single object")]
    NotPlain,
    #[error("does not start with a single '/'")]
    Start,
    #[error("holds a byte that is not printable ASCII at {0}")]
    Byte(usize),
    #[error("holds '{0}', which names no object in a URL path")]
    Character(char),
    #[error("holds a '.' or '..' segment, which would name another path")]
    DotSegment,
    #[error("holds an encoded '/' or '\\', which some servers decode into a separator")]
    EncodedSeparator,
    #[error("would not be sent as given: {0}")]
    Rebuilt(String),
}

/// Where a distribution's objects are requested: a scheme, a host, an optional port and an optional path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeBase {
    scheme: Scheme,
    authority: Authority,
    /// Empty, or a plain path without a trailing `/`.
    path: String,
}

impl EdgeBase {
    /// A configured URL (`--edge-url`, `--origin-url`): `http` or `https`, a host, no user information, query or
    /// fragment; a trailing `/` is dropped.
    pub fn parse(raw: &str) -> Result<Self, BaseUrlError> {
        if raw.contains(['?', '#']) {
            return Err(BaseUrlError::QueryOrFragment(raw.to_owned()));
        }
        let uri: Uri = raw
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| BaseUrlError::NotAUrl(raw.to_owned(), e.to_string()))?;
        let scheme = match uri.scheme_str() {
            Some("http") => Scheme::HTTP,
            Some("https") => Scheme::HTTPS,
            _ => return Err(BaseUrlError::Scheme(raw.to_owned())),
        };
        let authority = uri.authority().ok_or_else(|| BaseUrlError::NoHost(raw.to_owned()))?.clone();
        if authority.as_str().contains('@') {
            return Err(BaseUrlError::UserInfo(raw.to_owned()));
        }
        if !valid_host(authority.host()) {
            return Err(BaseUrlError::Host(raw.to_owned(), authority.host().to_owned()));
        }
        let path = uri.path().trim_end_matches('/');
        if !path.is_empty() {
            check_path(path).map_err(|unsafe_path| BaseUrlError::BasePath(raw.to_owned(), unsafe_path))?;
        }
        Ok(Self { scheme, authority, path: path.to_owned() })
    }

    /// `https://<domain>`: the distribution's `DomainName` (GetDistribution) or an alternate domain.
    pub fn https(domain: &str) -> Result<Self, BaseUrlError> {
        if !valid_host(domain) || domain.starts_with('[') {
            return Err(BaseUrlError::Host(domain.to_owned(), domain.to_owned()));
        }
        Self::parse(&format!("https://{domain}"))
    }

    pub fn host(&self) -> &str {
        self.authority.host()
    }
}

impl fmt::Display for EdgeBase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.path)
    }
}

/// Whether `path` can be requested from the edge: see [`edge_url`].
pub fn is_edge_path(path: &str) -> bool {
    check_path(path).is_ok()
}

/// The URL of `path` under `base`. `path` must be a plain invalidation path (no wildcard or tag) starting with one
/// `/`, of printable ASCII (it is already encoded) without `#`, `\` or `*`, none of whose segments decodes to `.`,
/// `..` or text holding a separator; its query, if any, is kept as it is. The URL built is read back and must have
/// `base`'s scheme and authority and exactly `base`'s path followed by `path`.
pub fn edge_url(base: &EdgeBase, path: &str) -> Result<EdgeUrl, UnsafePath> {
    check_path(path)?;
    let wanted = format!("{}{path}", base.path);
    let uri = Uri::builder()
        .scheme(base.scheme.clone())
        .authority(base.authority.clone())
        .path_and_query(wanted.as_str())
        .build()
        .map_err(|e| UnsafePath::Rebuilt(e.to_string()))?;
    let as_asked = uri.scheme() == Some(&base.scheme)
        && uri.authority() == Some(&base.authority)
        && uri.path_and_query().map(|sent| sent.as_str()) == Some(wanted.as_str());
    if !as_asked {
        return Err(UnsafePath::Rebuilt(uri.to_string()));
    }
    Ok(EdgeUrl::checked(uri))
}

fn check_path(path: &str) -> Result<(), UnsafePath> {
    if path.starts_with('#') || path.ends_with('*') {
        return Err(UnsafePath::NotPlain);
    }
    if !path.starts_with('/') || path.starts_with("//") {
        return Err(UnsafePath::Start);
    }
    if let Some(at) = path.bytes().position(|b| !b.is_ascii_graphic()) {
        return Err(UnsafePath::Byte(at));
    }
    if let Some(found) = path.chars().find(|c| matches!(c, '#' | '\\' | '*')) {
        return Err(UnsafePath::Character(found));
    }
    let route = path.split_once('?').map_or(path, |(route, _query)| route);
    for segment in route.split('/') {
        let decoded: Vec<u8> = percent_decode_str(segment).collect();
        if decoded == b"." || decoded == b".." {
            return Err(UnsafePath::DotSegment);
        }
        if decoded.contains(&b'/') || decoded.contains(&b'\\') {
            return Err(UnsafePath::EncodedSeparator);
        }
    }
    Ok(())
}

/// A DNS name, an IPv4 address or a bracketed IPv6 address.
fn valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().is_ok();
    }
    host.parse::<Ipv4Addr>().is_ok()
        || (host.len() <= MAX_HOST_LEN && !host.is_empty() && host.trim_end_matches('.').split('.').all(valid_label))
}

fn valid_label(label: &str) -> bool {
    (1..=MAX_LABEL_LEN).contains(&label.len())
        && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// A CloudFront edge location's code, as `X-Amz-Cf-Pop` shows it: `IAD89-C1`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pop(String);

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0:?} is not a POP code such as IAD89-C1 (letters, digits and '-', as X-Amz-Cf-Pop shows it)")]
pub struct InvalidPop(pub String);

impl Pop {
    /// Upper-cased, as CloudFront shows them.
    pub fn parse(raw: &str) -> Result<Self, InvalidPop> {
        let code = raw.to_ascii_uppercase();
        let well_formed =
            code.len() <= MAX_POP_LEN && valid_label(&code) && code.starts_with(|c: char| c.is_ascii_alphabetic());
        if well_formed { Ok(Self(code)) } else { Err(InvalidPop(raw.to_owned())) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Pop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("named POPs are reached through the distribution's *.cloudfront.net domain, and {0:?} is not one")]
pub struct NotCloudFrontDomain(pub String);

/// The host name CloudFront gives `pop` for the distribution whose domain is `domain`
/// (`d111111abcdef8.cloudfront.net` → `d111111abcdef8.IAD89-C1.cloudfront.net`): requests are connected to it and
/// keep the distribution's own Host header.
pub fn pop_host(domain: &str, pop: &Pop) -> Result<ConnectVia, NotCloudFrontDomain> {
    let lowered = domain.to_ascii_lowercase();
    let label = lowered
        .strip_suffix(CLOUDFRONT_SUFFIX)
        .filter(|label| valid_label(label))
        .ok_or_else(|| NotCloudFrontDomain(domain.to_owned()))?;
    Ok(ConnectVia::checked(format!("{label}.{pop}{CLOUDFRONT_SUFFIX}"), pop.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn base(raw: &str) -> EdgeBase {
        EdgeBase::parse(raw).unwrap()
    }

    #[test]
    fn a_plain_path_is_appended_to_the_base_as_it_is() {
        let edge = base("https://d111111abcdef8.cloudfront.net");
        let url = edge_url(&edge, "/img/a%20b.png?v=2&w=100").unwrap();
        assert_eq!(url.to_string(), "https://d111111abcdef8.cloudfront.net/img/a%20b.png?v=2&w=100");
        assert_eq!((url.host(), url.path_and_query()), ("d111111abcdef8.cloudfront.net", "/img/a%20b.png?v=2&w=100"));
        let prefixed = base("http://127.0.0.1:4600/EDFDVBD6EXAMPLE/");
        assert_eq!(
            edge_url(&prefixed, "/index.html").unwrap().to_string(),
            "http://127.0.0.1:4600/EDFDVBD6EXAMPLE/index.html"
        );
        assert_eq!(edge_url(&edge, "/").unwrap().path_and_query(), "/");
    }

    #[test]
    fn hostile_paths_are_refused_or_stay_paths_on_the_configured_host() {
        let edge = base("https://www.example.com");
        for (path, refused) in [
            ("//evil.com/x", Some(UnsafePath::Start)),
            ("@evil.com/x", Some(UnsafePath::Start)),
            ("evil.com", Some(UnsafePath::Start)),
            ("/%2F%2Fevil.com", Some(UnsafePath::EncodedSeparator)),
            ("/..%2F..", Some(UnsafePath::EncodedSeparator)),
            ("/a/../../b", Some(UnsafePath::DotSegment)),
            ("/a/%2e%2E/b", Some(UnsafePath::DotSegment)),
            ("/./a", Some(UnsafePath::DotSegment)),
            ("/%5C%5Cevil.com", Some(UnsafePath::EncodedSeparator)),
            ("/a\r\nHost: evil.com", Some(UnsafePath::Byte(2))),
            ("/a b", Some(UnsafePath::Byte(2))),
            ("/caf\u{e9}", Some(UnsafePath::Byte(4))),
            ("/a#@evil.com", Some(UnsafePath::Character('#'))),
            ("/a\\b", Some(UnsafePath::Character('\\'))),
            ("/img/*", Some(UnsafePath::NotPlain)),
            ("#product-1", Some(UnsafePath::NotPlain)),
            ("/@evil.com/x", None),
            ("/x?next=https://evil.com/", None),
            ("/user:pass@evil.com", None),
            ("/a..b/.well-known/c", None),
        ] {
            match (edge_url(&edge, path), refused) {
                (Err(found), Some(expected)) => assert_eq!(found, expected, "{path:?}"),
                (Ok(url), None) => {
                    assert_eq!(url.host(), "www.example.com", "{path:?}");
                    assert_eq!(url.uri().port_u16(), None, "{path:?}");
                    assert_eq!(url.path_and_query(), path);
                }
                (outcome, expected) => panic!("{path:?}: {outcome:?}, expected refusal {expected:?}"),
            }
        }
    }

    #[test]
    fn base_urls_are_a_scheme_a_host_a_port_and_a_path_only() {
        assert_eq!(base("https://cdn.example.com/").to_string(), "https://cdn.example.com");
        assert_eq!(base("http://[::1]:8080/site").to_string(), "http://[::1]:8080/site");
        assert_eq!(base("HTTPS://CDN.example.com").host(), "CDN.example.com");
        for (raw, error) in [
            ("ftp://cdn.example.com", BaseUrlError::Scheme("ftp://cdn.example.com".into())),
            ("cdn.example.com", BaseUrlError::Scheme("cdn.example.com".into())),
            ("/just/a/path", BaseUrlError::Scheme("/just/a/path".into())),
            ("https://user@evil.com", BaseUrlError::UserInfo("https://user@evil.com".into())),
            (
                "https://cdn.example.com:443@evil.com",
                BaseUrlError::UserInfo("https://cdn.example.com:443@evil.com".into()),
            ),
            ("https://cdn.example.com/?a=1", BaseUrlError::QueryOrFragment("https://cdn.example.com/?a=1".into())),
            ("https://cdn.example.com/#x", BaseUrlError::QueryOrFragment("https://cdn.example.com/#x".into())),
            (
                "https://bad_host.example.com",
                BaseUrlError::Host("https://bad_host.example.com".into(), "bad_host.example.com".into()),
            ),
            (
                "https://cdn.example.com/a/../b",
                BaseUrlError::BasePath("https://cdn.example.com/a/../b".into(), UnsafePath::DotSegment),
            ),
        ] {
            assert_eq!(EdgeBase::parse(raw), Err(error), "{raw}");
        }
        assert!(matches!(EdgeBase::parse("https://"), Err(BaseUrlError::NotAUrl(..))));
        assert!(EdgeBase::https("d111111abcdef8.cloudfront.net").is_ok());
        for domain in ["evil.com/x", "a@evil.com", "evil.com:1@x", "", "[::1]"] {
            assert!(EdgeBase::https(domain).is_err(), "{domain:?}");
        }
    }

    #[test]
    fn named_pops_keep_the_distributions_label() {
        let pop = Pop::parse("iad89-c1").unwrap();
        assert_eq!(pop.as_str(), "IAD89-C1");
        let via = pop_host("d111111abcdef8.cloudfront.net", &pop).unwrap();
        assert_eq!((via.host(), via.pop()), ("d111111abcdef8.IAD89-C1.cloudfront.net", "IAD89-C1"));
        assert_eq!(pop_host("www.example.com", &pop), Err(NotCloudFrontDomain("www.example.com".into())));
        assert!(pop_host("a.b.cloudfront.net", &pop).is_err(), "one label before cloudfront.net");
        for bad in ["", "-IAD", "IAD-", "9IAD", "IAD 89", "IAD.89", "IAD89/C1", &"A".repeat(33)] {
            assert!(Pop::parse(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        /// Whatever the path, a URL built from it is on the configured scheme, host and port, and its path and
        /// query are the base's followed by the path, byte for byte.
        #[test]
        fn no_path_moves_a_request_to_another_host(path in "[/@:%.a-z2F5Ce?#&=\\\\ \r\n*]{0,24}") {
            let edge = base("https://www.example.com:8443/site");
            if let Ok(url) = edge_url(&edge, &path) {
                prop_assert_eq!(url.uri().scheme_str(), Some("https"));
                prop_assert_eq!(url.uri().authority().map(|a| a.as_str()), Some("www.example.com:8443"));
                prop_assert_eq!(url.path_and_query(), format!("/site{path}"));
                prop_assert!(is_edge_path(&path));
            }
        }

        #[test]
        fn an_encoded_invalidation_path_of_an_ordinary_name_is_requested(name in "[a-zA-Z0-9 ._~()+,;=@!$'-]{1,32}") {
            prop_assume!(name != "." && name != "..");
            let path = crate::model::path::InvalidationPath::parse(&format!("/dir/{name}")).unwrap();
            prop_assert!(edge_url(&base("https://cdn.example.com"), path.as_str()).is_ok(), "{}", path);
        }
    }
}
