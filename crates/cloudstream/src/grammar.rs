//! The text grammars of the API as regular expressions, for the OpenAPI document: each one
//! matches exactly what its parser accepts (names, positions, start points, times,
//! horizons), so that a client generated from the document sends nothing the server
//! refuses for its form. The tests check every pattern against its parser.

use crate::event::MAX_TIME_MS;

/// The largest sequence number: 2^256 - 1.
const MAX_SEQUENCE: &str =
    "115792089237316195423570985008687907853269984665640564039457584007913129639935";

/// Decimal numbers from 0 to `max` (decimal digits), leading zeros allowed, as a regular
/// expression group.
pub fn decimal_up_to(max: &str) -> String {
    let digits: Vec<u32> = max.chars().filter_map(|c| c.to_digit(10)).collect();
    let n = digits.len();
    let mut alternatives = Vec::new();
    // Fewer digits than `max`, without a leading zero (zeros come from the prefix).
    if n > 1 {
        alternatives.push(format!("[1-9][0-9]{{0,{}}}", n - 2));
    }
    // As many digits: equal to `max` up to position i, smaller at i, anything after.
    for i in 0..n {
        let low = u32::from(i == 0);
        if digits[i] > low {
            let prefix: String = digits[..i].iter().map(|d| d.to_string()).collect();
            let rest = n - i - 1;
            let tail = if rest > 0 {
                format!("[0-9]{{{rest}}}")
            } else {
                String::new()
            };
            alternatives.push(format!("{prefix}[{low}-{}]{tail}", digits[i] - 1));
        }
    }
    alternatives.push(max.to_owned());
    format!("0*(?:{}|0)", alternatives.join("|"))
}

/// A time in RFC 3339 as every parser of the API takes it (UTC, `Z`), restricted to forms
/// that are always valid dates: days 01 to 28, years 1970 to 9999.
pub const RFC3339: &str = "(?:19[7-9][0-9]|[2-9][0-9]{3})-(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]{1,9})?Z";

/// A time after `time:`: milliseconds since the Unix epoch, up to the end of 9999, or RFC 3339.
pub fn time() -> String {
    format!("(?:{}|{RFC3339})", decimal_up_to(&MAX_TIME_MS.to_string()))
}

/// A partition number.
pub fn partition() -> String {
    decimal_up_to(&u32::MAX.to_string())
}

/// A sequence number.
pub fn sequence() -> String {
    decimal_up_to(MAX_SEQUENCE)
}

/// A position, `P:S`.
pub fn position() -> String {
    format!("{}:{}", partition(), sequence())
}

/// Where a read starts: [`crate::ReadFrom`].
pub fn read_from() -> String {
    let position = position();
    format!(
        "^(?:earliest|latest|time:{}|after:{position}|at:{position}|{position})$",
        time()
    )
}

/// Where a partition resumes: [`crate::backend::PartitionStart`], without anchors.
pub fn partition_start_unanchored() -> String {
    let sequence = sequence();
    format!(
        "(?:earliest|latest|at:{sequence}|after:{sequence}|time:{})",
        time()
    )
}

/// Where a partition resumes: [`crate::backend::PartitionStart`].
pub fn partition_start() -> String {
    format!("^{}$", partition_start_unanchored())
}

/// Where a consumer starts: [`crate::StartAt`].
pub fn start_at() -> String {
    format!("^(?:earliest|latest|time:{})$", time())
}

/// Canonical standard base64 with padding, as payloads take it.
pub const BASE64: &str =
    "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$";

/// A stream, consumer or member name: 1-128 of `[A-Za-z0-9_.-]`, not `.` or `..`.
pub fn name(max_len: usize) -> String {
    let rest = max_len - 1;
    format!(
        "^(?:[A-Za-z0-9_-][A-Za-z0-9_.-]{{0,{rest}}}|\\.[A-Za-z0-9_-][A-Za-z0-9_.-]{{0,{}}}|\\.\\.[A-Za-z0-9_.-]{{1,{}}})$",
        rest - 1,
        rest - 1
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny regular-expression check for the patterns above: the test compiles each
    /// into a matcher over the same syntax the document uses (groups, alternatives,
    /// classes, counted repeats, `*`), then compares it with the parser on many inputs.
    fn matches(pattern: &str, text: &str) -> bool {
        regex_lite::Regex::new(pattern)
            .expect("a valid pattern")
            .is_match(text)
    }

    #[test]
    fn decimal_ranges_match_exactly_the_numbers_up_to_their_maximum() {
        let max = 4_294_967_295_u64;
        let re = format!("^{}$", decimal_up_to(&max.to_string()));
        for n in [
            0,
            1,
            9,
            10,
            99,
            4_294_967_294,
            max,
            max + 1,
            9_999_999_999,
            5_000_000_000,
        ] {
            assert_eq!(matches(&re, &n.to_string()), n <= max, "{n}");
        }
        assert!(matches(&re, "0004294967295"), "leading zeros");
        for bad in ["", "+1", "-1", "1a", " 1"] {
            assert!(!matches(&re, bad), "{bad:?}");
        }
        let small = format!("^{}$", decimal_up_to("7"));
        for n in 0..20 {
            assert_eq!(matches(&small, &n.to_string()), n <= 7, "{n}");
        }
    }

    #[test]
    fn start_point_patterns_agree_with_their_parsers() {
        let read_from = read_from();
        let partition_start = partition_start();
        let start_at = start_at();
        let samples = [
            "earliest",
            "latest",
            "0:0",
            "3:42",
            "after:3:42",
            "at:3:42",
            "at:42",
            "after:42",
            "time:0",
            "time:1790000000000",
            "time:253402300799999",
            "time:253402300800000",
            "time:2026-11-24T10:00:00Z",
            "time:2026-11-24T10:00:00.250Z",
            "time:-1",
            "time:+5",
            "+1:2",
            "4294967296:1",
            "4294967295:1",
            "",
            "0:",
            ":1",
            "Earliest",
        ];
        for s in samples {
            assert_eq!(
                matches(&read_from, s),
                s.parse::<crate::ReadFrom>().is_ok(),
                "ReadFrom {s:?}"
            );
            assert_eq!(
                matches(&partition_start, s),
                s.parse::<crate::backend::PartitionStart>().is_ok(),
                "PartitionStart {s:?}"
            );
            assert_eq!(
                matches(&start_at, s),
                s.parse::<crate::StartAt>().is_ok(),
                "StartAt {s:?}"
            );
        }
    }

    #[test]
    fn the_name_pattern_agrees_with_validate_name() {
        let re = name(128);
        for s in [
            "a",
            "TelemetryIngest",
            "x.dlq",
            "-lead",
            ".hidden",
            "..x",
            "...",
            ".",
            "..",
            "",
            "a b",
            "é",
            "a/b",
            &"n".repeat(128),
            &"n".repeat(129),
            &format!(".{}", "n".repeat(127)),
            &format!("..{}", "n".repeat(126)),
            &format!("..{}", "n".repeat(127)),
        ] {
            assert_eq!(
                matches(&re, s),
                cloudstream_log::validate_name("stream", s).is_ok(),
                "{s:?}"
            );
        }
    }
}
