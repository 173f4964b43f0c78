//! Free text bounded for where it is stored or shown: SQS attributes, ledger items, log fields.

/// Ends a text that was cut, so nobody takes the rest for missing by accident.
pub const CUT_MARKER: &str = "… (cut)";

/// How much of a producer's path, key or tag a reason quotes: enough to recognise it, little enough that the
/// reason's cause still fits the dead-letter queue's 1 KiB attribute after a 4,000-character path.
pub const EXCERPT_BYTES: usize = 200;

/// `text` as a reason quotes it.
pub fn excerpt(text: &str) -> String {
    capped(text, EXCERPT_BYTES)
}

/// `text` in at most `max` bytes: whole when it fits, else cut at a character boundary and ending in
/// `CUT_MARKER` (which counts towards `max`).
pub fn capped(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let room = max.saturating_sub(CUT_MARKER.len());
    let cut = (0..=room).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
    format!("{}{CUT_MARKER}", &text[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_text_that_fits_is_kept_whole() {
        assert_eq!(capped("short", 5), "short");
        assert_eq!(capped("", 0), "");
    }

    proptest! {
        #[test]
        fn a_cut_text_fits_ends_in_the_marker_and_starts_as_the_original(text in "\\PC{0,300}", max in 12usize..200) {
            let shown = capped(&text, max);
            prop_assert!(shown.len() <= max.max(text.len().min(max)));
            if text.len() > max {
                prop_assert!(shown.ends_with(CUT_MARKER));
                prop_assert!(text.starts_with(shown.strip_suffix(CUT_MARKER).unwrap()));
            } else {
                prop_assert_eq!(shown, text);
            }
        }
    }
}
