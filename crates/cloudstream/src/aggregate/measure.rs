//! What an aggregation computes per window and group: measures, and the accumulators that
//! hold them between events. Accumulators serialize (a window's state survives a restart)
//! and give the same result for the same events in the same order.

use std::hash::BuildHasher;

use hyperloglogplus::{HyperLogLog, HyperLogLogPlus};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sketches_ddsketch::{Config, DDSketch};

use crate::{Error, Result};

/// HyperLogLog++ precision of `distinct`: 2^14 registers, about 0.8% standard error.
const HLL_PRECISION: u8 = 14;

/// One result of a window: a name in the output, an operation, and the JSON field it reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measure {
    /// Its name in the output object.
    pub name: String,
    /// What it computes.
    pub op: Op,
    /// The field it reads (`temperature`, `reading.value`); none for `count`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// What a measure computes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Op {
    /// Events in the window (with the field present, when a field is named).
    Count,
    /// The sum of the field's numbers (0 without any; held within ±f64::MAX).
    Sum,
    /// The least of the field's numbers.
    Min,
    /// The greatest of the field's numbers.
    Max,
    /// The mean of the field's numbers.
    Avg,
    /// How many distinct values the field took (approximate: HyperLogLog++, standard
    /// error about 0.8%); values are told apart by their JSON text.
    Distinct,
    /// The `q` quantile (0 to 1) of the field's numbers (approximate: DDSketch, within 1% of
    /// the value at rank `q·(n−1)`, the lower of two neighbours); numbers beyond ±1e300 are
    /// left out.
    Percentile {
        /// The quantile: 0.95 for p95.
        q: f64,
    },
}

impl Measure {
    /// A measure named `name` computing `op` over `field`.
    pub fn new(name: &str, op: Op, field: Option<&str>) -> Measure {
        Measure {
            name: name.to_owned(),
            op,
            field: field.map(str::to_owned),
        }
    }

    /// Refuses a measure that cannot be computed.
    pub fn check(&self) -> Result<()> {
        let bad = |why: &str| {
            Err(Error::InvalidArgument(format!(
                "measure {:?}: {why}",
                self.name
            )))
        };
        if self.name.is_empty() {
            return bad("a measure needs a name");
        }
        match (self.op, &self.field) {
            (Op::Count, _) => Ok(()),
            (_, None) => bad("this operation reads a field; name it"),
            (Op::Percentile { q }, _) if !(0.0..=1.0).contains(&q) => {
                bad("a percentile's q is between 0 and 1")
            }
            _ => Ok(()),
        }
    }
}

/// Hashes `distinct` values the same way in every process and version (the state is kept
/// across restarts, and replays must give the same counts): xxHash64, seed 0.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct StableHash;

impl BuildHasher for StableHash {
    type Hasher = twox_hash::XxHash64;

    fn build_hasher(&self) -> Self::Hasher {
        twox_hash::XxHash64::with_seed(0)
    }
}

/// A measure's state in one window of one group.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) enum Acc {
    Count(u64),
    Sum(f64),
    Min(Option<f64>),
    Max(Option<f64>),
    Avg {
        sum: f64,
        n: u64,
    },
    Distinct(Box<HyperLogLogPlus<Vec<u8>, StableHash>>),
    /// Made at the first number (an empty sketch does not save).
    Percentile(Option<Box<DDSketch>>, f64),
}

/// Shown by kind (the sketches have no `Debug`).
impl std::fmt::Debug for Acc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Acc::Count(n) => write!(f, "Count({n})"),
            Acc::Sum(x) => write!(f, "Sum({x})"),
            Acc::Min(x) => write!(f, "Min({x:?})"),
            Acc::Max(x) => write!(f, "Max({x:?})"),
            Acc::Avg { sum, n } => write!(f, "Avg({sum} / {n})"),
            Acc::Distinct(_) => write!(f, "Distinct(..)"),
            Acc::Percentile(_, q) => write!(f, "Percentile({q}, ..)"),
        }
    }
}

impl Acc {
    /// The empty state of `op`.
    pub(crate) fn new(op: Op) -> Acc {
        match op {
            Op::Count => Acc::Count(0),
            Op::Sum => Acc::Sum(0.0),
            Op::Min => Acc::Min(None),
            Op::Max => Acc::Max(None),
            Op::Avg => Acc::Avg { sum: 0.0, n: 0 },
            Op::Distinct => Acc::Distinct(Box::new(
                HyperLogLogPlus::new(HLL_PRECISION, StableHash)
                    .unwrap_or_else(|_| unreachable!("precision 14 is within 4 to 18")),
            )),
            Op::Percentile { q } => Acc::Percentile(None, q),
        }
    }

    /// Adds one event's value of the measure's field (`None` when the measure reads no
    /// field; `Some(Value::Null)` when the event lacks it).
    pub(crate) fn add(&mut self, value: Option<&Value>) {
        let number = value.and_then(Value::as_f64).filter(|n| n.is_finite());
        match self {
            Acc::Count(n) => {
                if value.is_none_or(|v| !v.is_null()) {
                    *n += 1;
                }
            }
            Acc::Sum(sum) => *sum = finite(*sum + number.unwrap_or(0.0)),
            Acc::Min(min) => {
                if let Some(x) = number {
                    *min = Some(min.map_or(x, |m| m.min(x)));
                }
            }
            Acc::Max(max) => {
                if let Some(x) = number {
                    *max = Some(max.map_or(x, |m| m.max(x)));
                }
            }
            Acc::Avg { sum, n } => {
                if let Some(x) = number {
                    *sum = finite(*sum + x);
                    *n += 1;
                }
            }
            Acc::Distinct(hll) => {
                if let Some(v) = value.filter(|v| !v.is_null()) {
                    // The value's JSON text: 1 and "1" are two values, 1 and 1.0 too.
                    hll.insert(v.to_string().as_bytes());
                }
            }
            Acc::Percentile(sketch, _) => {
                // Far from f64's limits, so that the sketch's own sum stays finite.
                if let Some(x) = number.filter(|x| x.abs() <= 1e300) {
                    sketch
                        .get_or_insert_with(|| Box::new(DDSketch::new(Config::defaults())))
                        .add(x);
                }
            }
        }
    }

    /// Adds what `other` (a state of the same measure) holds: two sessions become one.
    pub(crate) fn merge(&mut self, other: &Acc) {
        match (self, other) {
            (Acc::Count(a), Acc::Count(b)) => *a += b,
            (Acc::Sum(a), Acc::Sum(b)) => *a = finite(*a + b),
            (Acc::Min(a), Acc::Min(b)) => *a = min_of(*a, *b, f64::min),
            (Acc::Max(a), Acc::Max(b)) => *a = min_of(*a, *b, f64::max),
            (Acc::Avg { sum, n }, Acc::Avg { sum: s, n: m }) => {
                *sum = finite(*sum + s);
                *n += m;
            }
            (Acc::Distinct(a), Acc::Distinct(b)) => {
                // Same precision, by construction.
                let _ = a.merge(b);
            }
            (Acc::Percentile(a, _), Acc::Percentile(Some(b), _)) => match a {
                // Same configuration, by construction.
                Some(a) => {
                    let _ = a.merge(b);
                }
                None => *a = Some(b.clone()),
            },
            _ => {}
        }
    }

    /// The measure's result: a number, or `null` where no event gave it one.
    pub(crate) fn result(&mut self) -> Value {
        match self {
            Acc::Count(n) => json!(*n),
            Acc::Sum(sum) => json!(*sum),
            Acc::Min(x) | Acc::Max(x) => json!(*x),
            Acc::Avg { sum, n } => {
                if *n == 0 {
                    Value::Null
                } else {
                    json!(*sum / *n as f64)
                }
            }
            Acc::Distinct(hll) => json!(hll.count().round() as u64),
            Acc::Percentile(sketch, q) => match sketch.as_ref().map(|s| s.quantile(*q)) {
                Some(Ok(Some(x))) => json!(x),
                _ => Value::Null,
            },
        }
    }
}

/// `x` held within ±f64::MAX (a sum that overflowed stays the largest number, so that it
/// prints and saves as one).
fn finite(x: f64) -> f64 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(f64::MIN, f64::MAX)
    }
}

/// `pick` of both where both are there, else the one that is.
fn min_of(a: Option<f64>, b: Option<f64>, pick: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(pick(a, b)),
        (a, b) => a.or(b),
    }
}

/// The value at `path` (`a.b.c`) of `object`; `Null` where it is missing.
pub(crate) fn field<'a>(object: &'a Value, path: &str) -> &'a Value {
    path.split('.')
        .try_fold(object, |v, name| v.get(name))
        .unwrap_or(&Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(op: Op, values: &[Value]) -> Value {
        let mut acc = Acc::new(op);
        for v in values {
            acc.add(Some(v));
        }
        // Through a snapshot and back, as a restart would.
        let mut acc: Acc =
            serde_json::from_slice(&serde_json::to_vec(&acc).expect("save")).expect("load");
        acc.result()
    }

    #[test]
    fn measures_compute_what_they_say() {
        let values = [json!(3), json!(1.5), json!("x"), Value::Null, json!(7)];
        assert_eq!(run(Op::Count, &values), json!(4));
        assert_eq!(run(Op::Sum, &values), json!(11.5));
        assert_eq!(run(Op::Min, &values), json!(1.5));
        assert_eq!(run(Op::Max, &values), json!(7.0));
        assert_eq!(run(Op::Avg, &values), json!(11.5 / 3.0));
        assert_eq!(run(Op::Avg, &[json!("x")]), Value::Null);
        assert_eq!(run(Op::Distinct, &values), json!(4));
        let many: Vec<Value> = (1..=1000).map(|i| json!(i)).collect();
        let p95 = run(Op::Percentile { q: 0.95 }, &many)
            .as_f64()
            .expect("a number");
        assert!((p95 - 950.0).abs() <= 950.0 * 0.02, "{p95}");
        let distinct: Vec<Value> = (0..10_000)
            .map(|i| json!(format!("d{}", i % 5000)))
            .collect();
        let n = run(Op::Distinct, &distinct).as_u64().expect("a count");
        assert!((4850..=5150).contains(&n), "{n}");
    }

    #[test]
    fn fields_are_found_by_path() {
        let v = json!({"a": {"b": 2}, "c": 1});
        assert_eq!(field(&v, "a.b"), &json!(2));
        assert_eq!(field(&v, "c"), &json!(1));
        assert_eq!(field(&v, "a.x"), &Value::Null);
        assert_eq!(field(&v, "c.d"), &Value::Null);
    }
}
