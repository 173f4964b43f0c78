//! Property-based fuzzing of the message parser and the path normaliser: no input panics, and whatever is
//! accepted is safe to send to CloudFront. CI runs the default number of cases; a long run is
//! `PROPTEST_CASES=12000000 cargo test --release --test fuzz` (about 20 minutes here).

use cf_invalidator::intake::parse::parse_request;
use cf_invalidator::model::path::{InvalidationPath, MAX_PATH_LEN};
use proptest::prelude::*;

fn assert_sendable(path: &str) {
    assert!(path.starts_with('/'), "{path}");
    assert!(path.len() <= MAX_PATH_LEN);
    assert!(path.bytes().all(|b| b.is_ascii_graphic()), "{path}");
    assert!(path.find('*').is_none_or(|at| at == path.len() - 1), "{path}");
    assert_eq!(InvalidationPath::parse(path).map(InvalidationPath::into_string).as_deref(), Ok(path), "not idempotent");
}

/// JSON values shaped like requests, with hostile leaves.
fn request_like() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        any::<String>().prop_map(serde_json::Value::from),
        "/[ -~]{0,40}".prop_map(serde_json::Value::from),
        "/[\\PC]{0,20}\\*?".prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        Just(serde_json::Value::Null),
    ];
    let value = leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::hash_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    });
    let paths = prop::collection::vec(
        prop_oneof!["/[\\PC]{0,30}\\*?", any::<String>(), "/[a-z%0-9]{0,10}"].prop_map(serde_json::Value::from),
        0..8,
    );
    ("[A-Za-z0-9]{0,16}", paths, prop::option::of(value)).prop_map(|(distribution, paths, extra)| {
        let mut request = serde_json::json!({"distribution_id": distribution, "paths": paths});
        if let Some(extra) = extra {
            request["extra"] = extra;
        }
        request.to_string()
    })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let body = String::from_utf8_lossy(&bytes);
        if let Ok(request) = parse_request(&body) {
            request.paths.iter().for_each(|p| assert_sendable(p.as_str()));
        }
    }

    #[test]
    fn request_shaped_input_is_accepted_only_when_sendable(body in request_like()) {
        if let Ok(request) = parse_request(&body) {
            prop_assert!(!request.paths.is_empty());
            request.paths.iter().for_each(|p| assert_sendable(p.as_str()));
        }
    }

    #[test]
    fn any_path_string_is_refused_or_made_sendable(raw in prop_oneof![any::<String>(), "/[\\PC%*]{0,60}", "/[ -~]{0,60}"]) {
        if let Ok(path) = InvalidationPath::parse(&raw) {
            assert_sendable(path.as_str());
        }
    }
}
