//! Names of streams and consumers. They become directory and file names, so they are checked
//! against an allowlist before any path is built; raw input is never joined into a path.

use crate::LogError;

/// Longest name accepted.
pub const MAX_NAME_LEN: usize = 128;

/// Checks a stream or consumer name: 1–128 characters of `[A-Za-z0-9_.-]`, not `.` or `..`.
///
/// `kind` names what is being named in the error ("stream", "consumer").
pub fn validate_name(kind: &'static str, name: &str) -> Result<(), LogError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_NAME_LEN {
        Some("it is longer than 128 characters")
    } else if name == "." || name == ".." {
        Some("'.' and '..' are reserved")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        Some("only letters, digits, '_', '.' and '-' are allowed")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(LogError::InvalidName {
            kind,
            name: name.to_owned(),
            reason,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["a", "TelemetryIngest", "x.dlq", "a-b_c.9", &"n".repeat(128)] {
            assert!(validate_name("stream", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "../x",
            "a\0b",
            "é",
            "a b",
            &"n".repeat(129),
        ] {
            let err = validate_name("stream", bad).expect_err(bad).to_string();
            assert!(err.contains("invalid stream name"), "{err}");
        }
    }
}
