//! The short text forms of windows and measures that the command line and pipeline files
//! take: `tumbling 1m`, `hopping 5m every 1m`, `session 30s`; `count`, `avg(temperature)`,
//! `p95(temperature)`, `percentile(latency, 0.999)`, `distinct(user)`. Durations are
//! humantime's (`500ms`, `30s`, `1m`, `2h`).

use std::str::FromStr;
use std::time::Duration;

use super::{Measure, Op, Window};
use crate::{Error, Result};

/// A duration such as `30s` or `1m 30s`, in milliseconds.
pub fn parse_millis(text: &str) -> Result<u64> {
    let d: Duration = humantime::parse_duration(text.trim()).map_err(|e| {
        Error::InvalidArgument(format!("{text:?} is not a duration such as 30s or 1m: {e}"))
    })?;
    u64::try_from(d.as_millis())
        .map_err(|_| Error::InvalidArgument(format!("the duration {text:?} is too long")))
}

/// `tumbling SIZE`, `hopping SIZE every HOP`, `session GAP`.
impl FromStr for Window {
    type Err = Error;

    fn from_str(text: &str) -> Result<Window> {
        let bad = || {
            Error::InvalidArgument(format!(
                "a window is `tumbling 1m`, `hopping 5m every 1m` or `session 30s`, not {text:?}"
            ))
        };
        let (kind, rest) = text.trim().split_once(' ').ok_or_else(bad)?;
        let window = match kind {
            "tumbling" => Window::Tumbling {
                size_ms: parse_millis(rest)?,
            },
            "session" => Window::Session {
                gap_ms: parse_millis(rest)?,
            },
            "hopping" => {
                let (size, hop) = rest.split_once(" every ").ok_or_else(bad)?;
                Window::Hopping {
                    size_ms: parse_millis(size)?,
                    hop_ms: parse_millis(hop)?,
                }
            }
            _ => return Err(bad()),
        };
        window.check()?;
        Ok(window)
    }
}

impl Measure {
    /// The measure named `name` that `expr` says: `count`, `count(FIELD)`, `sum(FIELD)`,
    /// `min(FIELD)`, `max(FIELD)`, `avg(FIELD)`, `distinct(FIELD)`, `pNN(FIELD)` (`p95`,
    /// `p99.9`) or `percentile(FIELD, Q)`.
    pub fn parse(name: &str, expr: &str) -> Result<Measure> {
        let bad = |why: &str| {
            Error::InvalidArgument(format!(
                "measure {name} = {expr:?}: {why} (count, sum(f), min(f), max(f), avg(f), distinct(f), p95(f), percentile(f, 0.95))"
            ))
        };
        let expr = expr.trim();
        let (op, args) = match expr.split_once('(') {
            None => (expr, None),
            Some((op, rest)) => {
                let args = rest
                    .strip_suffix(')')
                    .ok_or_else(|| bad("no closing `)`"))?;
                (op.trim(), Some(args))
            }
        };
        let mut args: Vec<&str> = args
            .map(|a| a.split(',').map(str::trim).collect())
            .unwrap_or_default();
        let q = match op {
            "percentile" if args.len() == 2 => Some(
                args.pop()
                    .and_then(|q| q.parse::<f64>().ok())
                    .ok_or_else(|| bad("the quantile is a number between 0 and 1"))?,
            ),
            "percentile" => return Err(bad("percentile takes a field and a quantile")),
            // `p99.9` is 99.9e-2, read as one number: exactly 0.999, as written.
            p if p.starts_with('p') && p[1..].bytes().all(|b| b.is_ascii_digit() || b == b'.') => {
                Some(
                    format!("{}e-2", &p[1..])
                        .parse::<f64>()
                        .ok()
                        .filter(|q| (0.0..=1.0).contains(q))
                        .ok_or_else(|| bad("pNN names a percentile from p0 to p100"))?,
                )
            }
            _ => None,
        };
        let op = match (op, q) {
            (_, Some(q)) => Op::Percentile { q },
            ("count", _) => Op::Count,
            ("sum", _) => Op::Sum,
            ("min", _) => Op::Min,
            ("max", _) => Op::Max,
            ("avg", _) => Op::Avg,
            ("distinct", _) => Op::Distinct,
            _ => return Err(bad("unknown operation")),
        };
        let field = match args.as_slice() {
            [] => None,
            [field] if !field.is_empty() => Some(*field),
            _ => return Err(bad("one field, such as avg(temperature)")),
        };
        let measure = Measure::new(name, op, field);
        measure.check()?;
        Ok(measure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_read_as_written() {
        assert_eq!(
            "tumbling 1m".parse::<Window>().expect("well-formed"),
            Window::Tumbling { size_ms: 60_000 }
        );
        assert_eq!(
            "hopping 5m every 30s"
                .parse::<Window>()
                .expect("well-formed"),
            Window::Hopping {
                size_ms: 300_000,
                hop_ms: 30_000
            }
        );
        assert_eq!(
            "session 1s 500ms".parse::<Window>().expect("well-formed"),
            Window::Session { gap_ms: 1_500 }
        );
        for bad in [
            "tumbling",
            "rolling 1m",
            "hopping 1m",
            "tumbling 0s",
            "hopping 1s every 1m",
        ] {
            assert!(bad.parse::<Window>().is_err(), "{bad}");
        }
    }

    #[test]
    fn measures_read_as_written() {
        let m = |e: &str| Measure::parse("m", e);
        assert_eq!(m("count").expect("well-formed").op, Op::Count);
        assert_eq!(
            m("count(x)").expect("well-formed").field.as_deref(),
            Some("x")
        );
        assert_eq!(
            m("avg( t )").expect("well-formed"),
            Measure::new("m", Op::Avg, Some("t"))
        );
        assert_eq!(
            m("p95(t)").expect("well-formed").op,
            Op::Percentile { q: 0.95 }
        );
        assert_eq!(
            m("p99.9(t)").expect("well-formed").op,
            Op::Percentile { q: 0.999 }
        );
        assert_eq!(
            m("percentile(a.b, 0.5)").expect("well-formed"),
            Measure::new("m", Op::Percentile { q: 0.5 }, Some("a.b"))
        );
        for bad in [
            "avg",
            "avg(",
            "median(t)",
            "p200(t)",
            "percentile(t)",
            "sum(a, b)",
            "px(t)",
            "sum()",
        ] {
            assert!(m(bad).is_err(), "{bad}");
        }
    }
}
