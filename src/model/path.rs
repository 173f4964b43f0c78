//! Invalidation path validation and encoding (aws-facts.md A3).
//!
//! CloudFront compares the encoded form of a path with the cached URL, so a path must be encoded exactly once:
//! encoding an already encoded `%20` again yields `%2520`, which silently invalidates nothing.

use std::borrow::Cow;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use thiserror::Error;

/// Longest path CloudFront accepts, counted after encoding.
pub const MAX_PATH_LEN: usize = 4_000;

/// RFC 1738 "unsafe" characters plus `%` (a `%` that does not start an escape is itself unsafe).
/// Non-ASCII bytes are always encoded by `utf8_percent_encode`.
const RFC1738_UNSAFE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'<')
    .add(b'>')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'{')
    .add(b'}')
    .add(b'|')
    .add(b'\\')
    .add(b'^')
    .add(b'~')
    .add(b'[')
    .add(b']')
    .add(b'`');

/// What must be escaped for a viewer to request an object by its literal name: the unsafe characters and `%`,
/// plus `?`, which would otherwise start a query string.
const LITERAL_NAME: &AsciiSet = &RFC1738_UNSAFE.add(b'?');

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PathError {
    #[error("path is empty")]
    Empty,
    #[error("path must start with '/' (the CloudFront API requires a leading slash)")]
    MissingLeadingSlash,
    #[error("'*' may only be the last character of a path")]
    WildcardNotLast,
    #[error("path contains a control character at byte {0}")]
    ControlCharacter(usize),
    #[error("path is {0} characters long once encoded; CloudFront accepts at most {MAX_PATH_LEN}")]
    TooLong(usize),
    #[error(
        "'*' in an object's name cannot be invalidated exactly: CloudFront reads '*' as a wildcard and documents no escape for it"
    )]
    AsteriskInName,
}

/// Longest cache tag CloudFront accepts, without the leading `#`.
pub const MAX_TAG_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TagError {
    #[error("tag is empty")]
    Empty,
    #[error("tag is {0} characters long; CloudFront accepts at most {MAX_TAG_LEN}")]
    TooLong(usize),
    #[error("tag may only hold printable ASCII without spaces, commas or '*' (found {0:?})")]
    InvalidCharacter(char),
}

/// One item of an invalidation: a path (leading `/`, encoded once, `*` only at the end) or a cache tag
/// (`#tag`, 2026-04). CloudFront counts each as one path, for the in-progress quota and for billing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InvalidationPath(String);

impl InvalidationPath {
    /// Validates `raw` and percent-encodes what RFC 1738 calls unsafe, leaving existing `%XX` escapes alone.
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        checked_encoding(raw).map(|encoded| Self(encoded.into_owned()))
    }

    /// As `parse`, but keeps `raw` itself when nothing in it needs encoding (almost every path), so a
    /// deserialized path costs no second allocation. A refused path is handed back with the error.
    pub fn parse_owned(raw: String) -> Result<Self, (PathError, String)> {
        let encoded = checked_encoding(&raw).map(|encoded| match encoded {
            Cow::Borrowed(_) => None,
            Cow::Owned(encoded) => Some(encoded),
        });
        match encoded {
            Ok(encoded) => Ok(Self(encoded.unwrap_or(raw))),
            Err(error) => Err((error, raw)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// A cache-tag item. Tags are case-insensitive, so they are lowercased: `Product-42` and `product-42` are one.
    pub fn tag(raw: &str) -> Result<Self, TagError> {
        if raw.is_empty() {
            return Err(TagError::Empty);
        }
        if raw.len() > MAX_TAG_LEN {
            return Err(TagError::TooLong(raw.len()));
        }
        if let Some(bad) = raw.chars().find(|c| !c.is_ascii_graphic() || *c == ',' || *c == '*') {
            return Err(TagError::InvalidCharacter(bad));
        }
        Ok(Self(format!("#{}", raw.to_ascii_lowercase())))
    }

    /// The prefix a trailing-`*` path covers, or `None` for an exact path or a tag.
    pub fn wildcard_prefix(&self) -> Option<&str> {
        self.0.strip_suffix('*')
    }
}

impl std::fmt::Display for InvalidationPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The path a viewer requests an object by, given its literal name relative to the site (an S3 key once the
/// origin path is off): every unsafe character, `%` and `?` escaped, so no part of the name can read as an escape,
/// a query string or a wildcard. CloudFront documents escaping only the unsafe characters and non-ASCII (A3), and
/// `*` is neither, so a name holding one is refused: as the last character it would be a wildcard, elsewhere
/// CloudFront rejects it.
pub fn encode_name(name: &str) -> Result<String, PathError> {
    if name.contains('*') {
        return Err(PathError::AsteriskInName);
    }
    Ok(utf8_percent_encode(name, LITERAL_NAME).to_string())
}

/// The checks of `InvalidationPath::parse`, then the encoded path: borrowed from `raw` when it is already encoded.
fn checked_encoding(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if raw.is_empty() {
        return Err(PathError::Empty);
    }
    if !raw.starts_with('/') {
        return Err(PathError::MissingLeadingSlash);
    }
    if let Some(at) = raw.bytes().position(|b| b.is_ascii_control()) {
        return Err(PathError::ControlCharacter(at));
    }
    if raw.find('*').is_some_and(|at| at != raw.len() - 1) {
        return Err(PathError::WildcardNotLast);
    }
    let encoded = encode_once(raw);
    if encoded.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong(encoded.len()));
    }
    Ok(encoded)
}

/// Encodes unsafe characters but copies every well-formed `%XX` escape verbatim, so encoding is idempotent.
/// Returns `raw` itself when nothing needs encoding.
fn encode_once(raw: &str) -> Cow<'_, str> {
    if segments(raw).all(|(plain, _)| encodes_to_itself(plain)) {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len() + 8);
    for (plain, escape) in segments(raw) {
        out.extend(utf8_percent_encode(plain, RFC1738_UNSAFE));
        out.push_str(escape);
    }
    Cow::Owned(out)
}

/// Splits `raw` into runs of plain text, each with the well-formed `%XX` escape that ends it (empty for the last).
fn segments(raw: &str) -> impl Iterator<Item = (&str, &str)> {
    let bytes = raw.as_bytes();
    let mut plain_start = 0;
    let mut i = 0;
    std::iter::from_fn(move || {
        if plain_start > bytes.len() {
            return None;
        }
        while i < bytes.len() {
            if bytes[i] == b'%' && is_escape_at(bytes, i) {
                let segment = (&raw[plain_start..i], &raw[i..i + 3]);
                i += 3;
                plain_start = i;
                return Some(segment);
            }
            i += 1;
        }
        let last = (&raw[plain_start..], "");
        plain_start = bytes.len() + 1;
        Some(last)
    })
}

/// Whether percent-encoding leaves `plain` unchanged. The encoder yields text it keeps as slices of its input, and
/// each byte it encodes as a separate `%XX` from a static table, so its first piece is `plain` itself exactly then.
fn encodes_to_itself(plain: &str) -> bool {
    utf8_percent_encode(plain, RFC1738_UNSAFE).next().is_none_or(|first| std::ptr::eq(first, plain))
}

fn is_escape_at(bytes: &[u8], at: usize) -> bool {
    bytes.len() > at + 2 && bytes[at + 1].is_ascii_hexdigit() && bytes[at + 2].is_ascii_hexdigit()
}

/// Whether an item as sent to CloudFront is a wildcard path: CloudFront counts those against their own quotas
/// (15 in progress per distribution, and per account under the rate model), and every other item, a cache tag
/// included, as a path.
pub fn is_wildcard(item: &str) -> bool {
    item.ends_with('*')
}

/// How many of `items` are wildcard paths: the one count every quota, event and bill uses.
pub fn count_wildcards<S: AsRef<str>>(items: &[S]) -> usize {
    items.iter().filter(|item| is_wildcard(item.as_ref())).count()
}

/// Whether `path` (as sent to CloudFront) is invalidated by one of `submitted`.
pub fn is_covered_by(path: &str, submitted: &[String]) -> bool {
    covering(path, submitted).is_some()
}

/// The first of `submitted` that invalidates `path`: the path itself, or a wildcard whose prefix it starts with.
/// A merged batch holds at most one (it is minimal), so for a batch this is the one.
pub fn covering<'a>(path: &str, submitted: &'a [String]) -> Option<&'a str> {
    submitted.iter().find(|candidate| invalidates(candidate, path)).map(String::as_str)
}

/// Whether invalidating `candidate` invalidates `path`: it is the path, or a wildcard whose prefix it starts with.
pub fn invalidates(candidate: &str, path: &str) -> bool {
    match candidate.strip_suffix('*') {
        Some(prefix) => path.strip_suffix('*').unwrap_or(path).starts_with(prefix),
        None => candidate == path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encoded(raw: &str) -> String {
        InvalidationPath::parse(raw).unwrap().into_string()
    }

    #[test]
    fn keeps_safe_paths_unchanged() {
        assert_eq!(encoded("/index.html"), "/index.html");
        assert_eq!(encoded("/img/*"), "/img/*");
        assert_eq!(encoded("/*"), "/*");
        assert_eq!(encoded("/a/b.jpg?size=2&x=y"), "/a/b.jpg?size=2&x=y");
    }

    #[test]
    fn encodes_unsafe_and_non_ascii_characters() {
        assert_eq!(encoded("/red flower.jpg"), "/red%20flower.jpg");
        assert_eq!(encoded("/caf\u{e9}.html"), "/caf%C3%A9.html");
        assert_eq!(encoded("/a{b}|c^d~e[f]`g<h>\"#"), "/a%7Bb%7D%7Cc%5Ed%7Ee%5Bf%5D%60g%3Ch%3E%22%23");
        assert_eq!(encoded("/100%"), "/100%25");
        assert_eq!(encoded("/50%zz"), "/50%25zz");
    }

    #[test]
    fn does_not_encode_existing_escapes_again() {
        assert_eq!(encoded("/red%20flower.jpg"), "/red%20flower.jpg");
        assert_eq!(encoded("/caf%C3%A9 menu"), "/caf%C3%A9%20menu");
    }

    #[test]
    fn keeps_the_given_string_when_nothing_needs_encoding() {
        assert!(matches!(encode_once("/a/b.jpg?x=1&y=%20z"), Cow::Borrowed(_)));
        for raw in ["/a b", "/%zz", "/caf\u{e9}", "/50%", "/a%20b c", "/<"] {
            assert!(matches!(encode_once(raw), Cow::Owned(_)), "{raw:?}");
        }
        let raw = String::from("/index.html");
        let buffer = raw.as_ptr();
        let path = InvalidationPath::parse_owned(raw).unwrap();
        assert_eq!(path.as_str().as_ptr(), buffer, "no second allocation");
        assert_eq!(InvalidationPath::parse_owned("/a b".into()).unwrap().as_str(), "/a%20b");
        assert_eq!(InvalidationPath::parse_owned("a".into()), Err((PathError::MissingLeadingSlash, "a".into())));
    }

    #[test]
    fn rejects_invalid_paths() {
        assert_eq!(InvalidationPath::parse(""), Err(PathError::Empty));
        assert_eq!(InvalidationPath::parse("index.html"), Err(PathError::MissingLeadingSlash));
        assert_eq!(InvalidationPath::parse("/a*/b"), Err(PathError::WildcardNotLast));
        assert_eq!(InvalidationPath::parse("/**"), Err(PathError::WildcardNotLast));
        assert_eq!(InvalidationPath::parse("/a\nb"), Err(PathError::ControlCharacter(2)));
        assert_eq!(InvalidationPath::parse("/a\u{7f}"), Err(PathError::ControlCharacter(2)));
        let long = format!("/{}", "a".repeat(MAX_PATH_LEN));
        assert_eq!(InvalidationPath::parse(&long), Err(PathError::TooLong(MAX_PATH_LEN + 1)));
        // Length counts the encoded form: 1,334 spaces become 4,002 characters.
        let spaces = format!("/{}", " ".repeat(1_334));
        assert_eq!(InvalidationPath::parse(&spaces), Err(PathError::TooLong(4_003)));
    }

    #[test]
    fn object_names_are_escaped_so_nothing_in_them_reads_as_syntax() {
        let name = |raw: &str| encode_name(raw).unwrap();
        assert_eq!(name("docs/a.html"), "docs/a.html");
        assert_eq!(name("100%.html"), "100%25.html", "a lone % is the name's own");
        assert_eq!(name("a%20b"), "a%2520b", "an escape-like run is the name's own, not an escape");
        assert_eq!(name("what?.html"), "what%3F.html", "? would start a query string");
        assert_eq!(name("/lead//double/../dots"), "/lead//double/../dots", "slashes and dots are kept as they are");
        assert_eq!(name("caf\u{e9} #1"), "caf%C3%A9%20%231");
        for starred in ["*", "x*", "a*b.png"] {
            assert_eq!(encode_name(starred), Err(PathError::AsteriskInName), "{starred}");
        }
    }

    #[test]
    fn tags_are_lowercased_and_validated() {
        assert_eq!(InvalidationPath::tag("Product-42").unwrap().as_str(), "#product-42");
        assert_eq!(InvalidationPath::tag("product:electronics").unwrap().as_str(), "#product:electronics");
        assert_eq!(InvalidationPath::tag(""), Err(TagError::Empty));
        assert_eq!(InvalidationPath::tag(&"t".repeat(257)), Err(TagError::TooLong(257)));
        for (bad, found) in [("a,b", ','), ("a b", ' '), ("a*", '*'), ("caf\u{e9}", '\u{e9}'), ("a\n", '\n')] {
            assert_eq!(InvalidationPath::tag(bad), Err(TagError::InvalidCharacter(found)), "{bad:?}");
        }
        assert_eq!(InvalidationPath::tag("a").unwrap().wildcard_prefix(), None);
    }

    #[test]
    fn exposes_the_wildcard_prefix() {
        assert_eq!(InvalidationPath::parse("/img/*").unwrap().wildcard_prefix(), Some("/img/"));
        assert_eq!(InvalidationPath::parse("/img/a").unwrap().wildcard_prefix(), None);
    }

    proptest! {
        #[test]
        fn encoding_is_idempotent(raw in "/[^\\x00-\\x1f\\x7f*]{0,64}") {
            let once = encoded(&raw);
            prop_assert_eq!(encoded(&once), once);
        }

        #[test]
        fn encoded_paths_are_printable_ascii_without_unsafe_characters(raw in "/[^\\x00-\\x1f\\x7f*]{0,64}") {
            let path = encoded(&raw);
            prop_assert!(path.bytes().all(|b| b.is_ascii_graphic()));
            let unsafe_chars = ['<', '>', '"', '#', '{', '}', '|', '\\', '^', '~', '[', ']', '`', ' '];
            prop_assert!(!path.contains(unsafe_chars), "unsafe character left in {}", path);
        }

        #[test]
        fn parse_owned_agrees_with_parse(raw in "[/%a-c ]?[^\\x00-\\x1f\\x7f]{0,32}") {
            let owned = InvalidationPath::parse_owned(raw.clone()).map_err(|(error, _)| error);
            prop_assert_eq!(owned, InvalidationPath::parse(&raw));
        }

        #[test]
        fn the_shortcut_gives_what_encoding_every_segment_gives(raw in "/[^\\x00-\\x1f\\x7f]{0,48}") {
            let every_segment: String =
                segments(&raw).map(|(plain, escape)| utf8_percent_encode(plain, RFC1738_UNSAFE).to_string() + escape).collect();
            prop_assert_eq!(encode_once(&raw), every_segment);
        }

        #[test]
        fn an_encoded_name_is_a_path_that_decodes_to_the_name(name in "[^*]{0,64}") {
            let path = format!("/{}", encode_name(&name).unwrap());
            prop_assert_eq!(InvalidationPath::parse(&path).map(InvalidationPath::into_string), Ok(path.clone()));
            let decoded = percent_encoding::percent_decode_str(&path[1..]).decode_utf8().unwrap();
            prop_assert_eq!(decoded, name.as_str());
            prop_assert!(!path.contains('?') && !path.contains('*'));
        }

        #[test]
        fn encoding_round_trips_to_the_original_text(raw in "/[^\\x00-\\x1f\\x7f*%]{0,64}") {
            let path = encoded(&raw);
            let decoded = percent_encoding::percent_decode_str(&path).decode_utf8().unwrap();
            prop_assert_eq!(decoded, raw);
        }
    }
}
