//! One grammar for start points, whichever type holds them.
//!
//! | text | [`ReadFrom`] (a stream) | [`PartitionStart`] (a partition, a checkpoint) | [`StartAt`] (a new consumer) |
//! |---|---|---|---|
//! | `earliest`, `latest` | yes | yes | yes |
//! | `P:S` or `at:P:S` | `At(position)` | — | — |
//! | `at:S` | — | `At(sequence)` | — |
//! | `after:P:S` | `After(position)` | — | — |
//! | `after:S` | — | `After(sequence)` | — |
//! | `time:RFC3339` or `time:MS` | `AtTime` | `AtTime` | `AtTime` |
//!
//! Each type prints its own form back (`ReadFrom` and `StartAt` with RFC 3339 times,
//! `PartitionStart` with milliseconds, as stored checkpoints hold them) and parses every
//! form of its column, so what the CLI's `--from`, the REST API's `from=`, checkpoints and
//! webhook specs accept is the same language.

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use crate::backend::PartitionStart;
use crate::event::{from_millis, to_millis, MAX_TIME_MS};
use crate::wire::rfc3339;
use crate::{Error, Position, ReadFrom, Result, StartAt};

/// A time after `time:`: milliseconds since the Unix epoch, or RFC 3339, from 1970 to the
/// end of year 9999 (what RFC 3339 can print).
fn parse_time(text: &str) -> Option<SystemTime> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let ms = text.parse::<i64>().ok()?;
        return (0..=MAX_TIME_MS).contains(&ms).then(|| from_millis(ms));
    }
    humantime::parse_rfc3339(text).ok()
}

/// The error for `text`, not a start point of the kind `forms` lists.
fn not_a_start(text: &str, what: &str, forms: &str) -> Error {
    Error::InvalidArgument(format!("{text:?} is not {what}: use {forms}"))
}

impl FromStr for ReadFrom {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            not_a_start(
                s,
                "a start point",
                "earliest, latest, P:S, after:P:S or time:RFC3339 (or time:MS)",
            )
        };
        Ok(match s {
            "earliest" => ReadFrom::Earliest,
            "latest" => ReadFrom::Latest,
            _ => match s.split_once(':') {
                Some(("time", t)) => ReadFrom::AtTime(parse_time(t).ok_or_else(bad)?),
                Some(("after", p)) => ReadFrom::After(p.parse::<Position>().map_err(|_| bad())?),
                Some(("at", p)) => ReadFrom::At(p.parse::<Position>().map_err(|_| bad())?),
                _ => ReadFrom::At(s.parse::<Position>().map_err(|_| bad())?),
            },
        })
    }
}

impl fmt::Display for ReadFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadFrom::Earliest => f.write_str("earliest"),
            ReadFrom::Latest => f.write_str("latest"),
            ReadFrom::At(p) => write!(f, "{p}"),
            ReadFrom::After(p) => write!(f, "after:{p}"),
            ReadFrom::AtTime(t) => write!(f, "time:{}", rfc3339(*t)),
        }
    }
}

impl FromStr for PartitionStart {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            not_a_start(
                s,
                "a partition start",
                "earliest, latest, at:SEQ, after:SEQ or time:MS (or time:RFC3339)",
            )
        };
        Ok(match s.split_once(':') {
            None if s == "earliest" => PartitionStart::Earliest,
            None if s == "latest" => PartitionStart::Latest,
            Some(("at", seq)) => PartitionStart::At(seq.parse().map_err(|_| bad())?),
            Some(("after", seq)) => PartitionStart::After(seq.parse().map_err(|_| bad())?),
            Some(("time", t)) => PartitionStart::AtTime(parse_time(t).ok_or_else(bad)?),
            _ => return Err(bad()),
        })
    }
}

impl fmt::Display for PartitionStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartitionStart::Earliest => f.write_str("earliest"),
            PartitionStart::Latest => f.write_str("latest"),
            PartitionStart::At(s) => write!(f, "at:{s}"),
            PartitionStart::After(s) => write!(f, "after:{s}"),
            PartitionStart::AtTime(t) => write!(f, "time:{}", to_millis(*t)),
        }
    }
}

impl FromStr for StartAt {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            not_a_start(
                s,
                "where a consumer starts",
                "earliest, latest or time:RFC3339 (or time:MS)",
            )
        };
        Ok(match s.split_once(':') {
            None if s == "earliest" => StartAt::Earliest,
            None if s == "latest" => StartAt::Latest,
            Some(("time", t)) => StartAt::AtTime(parse_time(t).ok_or_else(bad)?),
            _ => return Err(bad()),
        })
    }
}

impl fmt::Display for StartAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartAt::Earliest => f.write_str("earliest"),
            StartAt::Latest => f.write_str("latest"),
            StartAt::AtTime(t) => write!(f, "time:{}", rfc3339(*t)),
        }
    }
}

/// Serde as the printed form, for each start type.
macro_rules! serde_as_text {
    ($($t:ty),*) => {$(
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}
serde_as_text!(ReadFrom, PartitionStart, StartAt);

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing: a time RFC 3339 cannot print was accepted, and printing it (a
    /// webhook's start saved to its state file) panicked.
    #[test]
    fn times_outside_what_rfc3339_prints_are_refused() {
        for text in ["time:-1", "time:253402300800000", "time:99999999999999999"] {
            assert!(text.parse::<StartAt>().is_err(), "{text}");
            assert!(text.parse::<ReadFrom>().is_err(), "{text}");
            assert!(text.parse::<PartitionStart>().is_err(), "{text}");
        }
        let last: StartAt = "time:253402300799999".parse().expect("the last time");
        assert_eq!(last.to_string(), "time:9999-12-31T23:59:59.999Z");
        assert_eq!(
            crate::wire::rfc3339(std::time::UNIX_EPOCH - std::time::Duration::from_secs(1)),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn one_grammar_for_every_start_type() -> Result<()> {
        let noon: SystemTime = humantime::parse_rfc3339("2026-11-24T10:00:00Z")
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let ms = to_millis(noon);
        for time in [format!("time:{ms}"), "time:2026-11-24T10:00:00Z".to_owned()] {
            assert_eq!(time.parse::<ReadFrom>()?, ReadFrom::AtTime(noon), "{time}");
            assert_eq!(time.parse::<StartAt>()?, StartAt::AtTime(noon), "{time}");
            assert_eq!(
                time.parse::<PartitionStart>()?,
                PartitionStart::AtTime(noon),
                "{time}"
            );
        }
        let p = Position::new(2, 7);
        assert_eq!("2:7".parse::<ReadFrom>()?, ReadFrom::At(p));
        assert_eq!("at:2:7".parse::<ReadFrom>()?, ReadFrom::At(p));
        assert_eq!("after:2:7".parse::<ReadFrom>()?, ReadFrom::After(p));
        assert_eq!(
            "at:7".parse::<PartitionStart>()?,
            PartitionStart::At(7u64.into())
        );
        for start in [
            ReadFrom::Earliest,
            ReadFrom::Latest,
            ReadFrom::At(p),
            ReadFrom::After(p),
            ReadFrom::AtTime(noon),
        ] {
            assert_eq!(start.to_string().parse::<ReadFrom>()?, start);
        }
        for start in [StartAt::Earliest, StartAt::Latest, StartAt::AtTime(noon)] {
            assert_eq!(start.to_string().parse::<StartAt>()?, start);
        }
        assert_eq!(
            PartitionStart::AtTime(noon).to_string(),
            format!("time:{ms}")
        );
        assert!("yesterday".parse::<ReadFrom>().is_err());
        assert!("2:7".parse::<StartAt>().is_err());
        assert!("after:x".parse::<PartitionStart>().is_err());
        Ok(())
    }
}
