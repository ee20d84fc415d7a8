//! E.164 telephone numbers (`+14255550100`): the form the directory keys users and
//! contacts by, whatever form a number was written or dialled in.

use alloc::string::String;

/// The longest E.164 number: `+` and 15 digits (ITU-T E.164 §6).
const MAX_LEN: usize = 16;

/// Normalises a telephone number to E.164 (`+14255550100`): accepts a `tel:`
/// prefix (any case), drops parameters such as `;ext=100`, drops the visual
/// separators `-.() ` (RFC 3966 §5.1.1, and spaces), and turns a leading
/// international `00` into `+`. Returns `None` unless what is left is `+` and 1
/// to 15 digits, the first not `0` (no country code starts with 0): a local or
/// private number has no E.164 form.
pub fn normalize_number(number: &str) -> Option<String> {
    let number = number.trim();
    let number = match number.get(..4) {
        Some(scheme) if scheme.eq_ignore_ascii_case("tel:") => &number[4..],
        _ => number,
    };
    let number = number.split_once(';').map_or(number, |(number, _)| number);
    let digits = number.strip_prefix('+').or_else(|| number.strip_prefix("00"))?;
    let mut out = String::with_capacity(MAX_LEN);
    out.push('+');
    for c in digits.chars() {
        match c {
            '0' if out.len() == 1 => return None,
            '0'..='9' if out.len() < MAX_LEN => out.push(c),
            '0'..='9' => return None,
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    (out.len() > 1).then_some(out)
}

/// The extension a telephone number carries (`tel:+14255550100;ext=101`,
/// `+14255550100;ext=1-01`): its digits, visual separators dropped; `None`
/// without one, or when it is not digits.
pub fn extension(number: &str) -> Option<String> {
    let (_, params) = number.split_once(';')?;
    let value = params.split(';').find_map(|p| {
        let (name, value) = p.split_once('=')?;
        name.trim().eq_ignore_ascii_case("ext").then_some(value.trim())
    })?;
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '0'..='9' => out.push(c),
            '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The directory key of a telephone number: its E.164 form, followed by
/// `;ext=<digits>` when it carries an extension (`tel:+1 425 555 0100;ext=101`
/// → `+14255550100;ext=101`), so that users who share a main number are told
/// apart by their extensions.
pub fn number_key(number: &str) -> Option<String> {
    let e164 = normalize_number(number)?;
    Some(match extension(number) {
        Some(ext) => alloc::format!("{e164};ext={ext}"),
        None => e164,
    })
}

#[cfg(test)]
mod tests {
    use std::string::ToString;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn normalizes_numbers() {
        assert_eq!(normalize_number("+1 (425) 555-0100").as_deref(), Some("+14255550100"));
        assert_eq!(normalize_number("tel:+14255550100;ext=100").as_deref(), Some("+14255550100"));
        assert_eq!(normalize_number("tel:+1 (425) 555-0100;ext=1").as_deref(), Some("+14255550100"));
        assert_eq!(normalize_number("TEL:+1.425.555.0100").as_deref(), Some("+14255550100"));
        assert_eq!(normalize_number("  +14255550100  ").as_deref(), Some("+14255550100"));
        assert_eq!(normalize_number("0044 20 7946 0000").as_deref(), Some("+442079460000"));
        assert_eq!(normalize_number("0044 20").as_deref(), Some("+4420"));
        assert_eq!(normalize_number("+1").as_deref(), Some("+1"));
        assert_eq!(normalize_number("+123456789012345").as_deref(), Some("+123456789012345"));
    }

    #[test]
    fn number_keys_keep_the_extension() {
        assert_eq!(number_key("tel:+1 425 555 0100;ext=101").as_deref(), Some("+14255550100;ext=101"));
        assert_eq!(number_key("+14255550100;EXT=1-01;phone-context=x").as_deref(), Some("+14255550100;ext=101"));
        assert_eq!(number_key("tel:+14255550100").as_deref(), Some("+14255550100"));
        assert_eq!(number_key("+14255550100;ext=").as_deref(), Some("+14255550100"), "an empty extension is none");
        assert_eq!(extension("+14255550100;ext=1a"), None);
        assert_eq!(number_key("5550100"), None);
    }

    #[test]
    fn refuses_what_is_not_e164() {
        assert_eq!(normalize_number("5550100"), None);
        assert_eq!(normalize_number("tel:5550100;phone-context=+1425"), None);
        assert_eq!(normalize_number("+1425555010x"), None);
        assert_eq!(normalize_number("+"), None);
        assert_eq!(normalize_number("+ - ()"), None);
        assert_eq!(normalize_number("00"), None);
        assert_eq!(normalize_number("+1234567890123456"), None);
        assert_eq!(normalize_number("+0 425 555 0100"), None);
        assert_eq!(normalize_number("000 425 555 0100"), None);
        assert_eq!(normalize_number("sip:+14255550100@contoso.com"), None);
        assert_eq!(normalize_number("tél:+1"), None);
        assert_eq!(normalize_number(""), None);
    }

    proptest! {
        #[test]
        fn output_is_e164_and_normal(text in "\\PC{0,40}") {
            if let Some(n) = normalize_number(&text) {
                prop_assert!(n.len() >= 2 && n.len() <= MAX_LEN, "{n}");
                prop_assert!(n.starts_with('+'));
                prop_assert!(n[1..].bytes().all(|b| b.is_ascii_digit()) && !n[1..].starts_with('0'), "{n}");
                prop_assert_eq!(normalize_number(&n), Some(n.clone()));
            }
        }

        #[test]
        fn separators_do_not_matter(digits in "[1-9][0-9]{0,14}", seps in proptest::collection::vec("[ ().-]{0,2}", 15)) {
            let mut written = "tel:+".to_string();
            for (d, sep) in digits.chars().zip(&seps) {
                written.push(d);
                written.push_str(sep);
            }
            written.push_str(";ext=1");
            prop_assert_eq!(normalize_number(&written), Some(std::format!("+{digits}")));
            prop_assert_eq!(normalize_number(&std::format!("00{digits}")), Some(std::format!("+{digits}")));
        }
    }
}
