//! The aggregation against a reference computed the plain way (every event's windows found
//! by arithmetic, lateness by a running maximum), over out-of-order and late events; and
//! replays, whole or through a save and restore, giving the same output.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::{Event, Position};

/// An event: (time in ms, device, value).
type Input = (i64, u8, u32);

/// Results by (start, end, device): [n, sum, min, max].
type Results = BTreeMap<(i64, i64, String), Vec<Value>>;

fn record(i: usize, (t, device, value): Input) -> Record {
    Record {
        position: Position::new(0, i as u64),
        append_time: UNIX_EPOCH,
        event: Event::json(&json!({"device": format!("d{device}"), "v": value}))
            .expect("json")
            .with_time(UNIX_EPOCH + Duration::from_millis(t as u64)),
    }
}

fn spec(window: Window, lateness_ms: u64) -> Aggregation {
    Aggregation {
        window,
        group_by: vec!["device".into()],
        measures: vec![
            Measure::new("n", Op::Count, None),
            Measure::new("sum", Op::Sum, Some("v")),
            Measure::new("min", Op::Min, Some("v")),
            Measure::new("max", Op::Max, Some("v")),
        ],
        lateness_ms,
    }
}

/// Every result of `inputs`, then of an event far in the future that closes every window
/// (its own window left out): (start, end, device) → [n, sum, min, max].
fn run(spec: &Aggregation, inputs: &[Input]) -> (Results, u64) {
    let mut aggregator = Aggregator::new(spec.clone()).expect("valid");
    let mut out = BTreeMap::new();
    let closer = (10_000_000_000, 99, 0);
    for (i, input) in inputs.iter().chain([&closer]).enumerate() {
        for r in aggregator.push(&record(i, *input)).results {
            let device = r.group[0].as_str().expect("device").to_owned();
            assert!(
                out.insert((r.start, r.end, device), r.values).is_none(),
                "a window given twice"
            );
        }
    }
    (out, aggregator.late())
}

/// The same, the plain way: an event is late when every window it falls in ends at or
/// before the latest time seen before it, less the lateness.
fn reference(window: Window, lateness: i64, inputs: &[Input]) -> (Results, u64) {
    let (size, hop) = match window {
        Window::Tumbling { size_ms } => (size_ms as i64, size_ms as i64),
        Window::Hopping { size_ms, hop_ms } => (size_ms as i64, hop_ms as i64),
        Window::Session { .. } => unreachable!("sessions have their own reference"),
    };
    // (n, sum, min, max) by window and device.
    type Sums = BTreeMap<(i64, i64, String), (u64, f64, f64, f64)>;
    let mut sums = Sums::new();
    let mut latest: Option<i64> = None;
    let mut late = 0;
    for &(t, device, value) in inputs {
        let watermark = latest.map(|m| m - lateness);
        let starts: Vec<i64> = ((t - size) / hop - 2..=t / hop + 2)
            .map(|k| k * hop)
            .filter(|s| *s <= t && t < s + size)
            .collect();
        let open: Vec<i64> = starts
            .into_iter()
            .filter(|s| watermark.is_none_or(|w| s + size > w))
            .collect();
        if open.is_empty() {
            late += 1;
        }
        for s in open {
            let v = f64::from(value);
            let e = sums.entry((s, s + size, format!("d{device}"))).or_insert((
                0,
                0.0,
                f64::INFINITY,
                f64::NEG_INFINITY,
            ));
            *e = (e.0 + 1, e.1 + v, e.2.min(v), e.3.max(v));
        }
        latest = Some(latest.map_or(t, |m| m.max(t)));
    }
    let out = sums
        .into_iter()
        .map(|(k, (n, sum, min, max))| (k, vec![json!(n), json!(sum), json!(min), json!(max)]))
        .collect();
    (out, late)
}

fn inputs() -> impl Strategy<Value = Vec<Input>> {
    prop::collection::vec((0i64..600_000, 0u8..3, 0u32..100), 0..300)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn tumbling_and_hopping_windows_match_the_reference(
        inputs in inputs(),
        lateness in 0u64..120_000,
        hopping in any::<bool>(),
    ) {
        let window = if hopping {
            Window::Hopping { size_ms: 60_000, hop_ms: 20_000 }
        } else {
            Window::Tumbling { size_ms: 60_000 }
        };
        let spec = spec(window, lateness);
        let (got, late) = run(&spec, &inputs);
        let (want, want_late) = reference(window, lateness as i64, &inputs);
        let got: BTreeMap<_, _> = got.into_iter().filter(|((_, _, d), _)| d != "d99").collect();
        prop_assert_eq!(late, want_late);
        prop_assert_eq!(got, want);
    }

    #[test]
    fn sessions_split_at_gaps_when_nothing_is_late(
        mut inputs in inputs(),
    ) {
        // In time order, nothing is late: a session is a run of a device's times less than
        // the gap apart.
        inputs.sort();
        let gap = 30_000;
        let spec = spec(Window::Session { gap_ms: gap as u64 }, 0);
        let (got, late) = run(&spec, &inputs);
        prop_assert_eq!(late, 0);
        let mut want: BTreeMap<(i64, i64, String), u64> = BTreeMap::new();
        for device in 0..3u8 {
            let times: Vec<i64> = inputs.iter().filter(|i| i.1 == device).map(|i| i.0).collect();
            let mut start = 0;
            for i in 1..=times.len() {
                if i == times.len() || times[i] - times[i - 1] >= gap {
                    let key = (times[start], times[i - 1] + gap, format!("d{device}"));
                    want.insert(key, (i - start) as u64);
                    start = i;
                }
            }
        }
        let got: BTreeMap<_, _> = got
            .into_iter()
            .filter(|((_, _, d), _)| d != "d99")
            .map(|(k, v)| (k, v[0].as_u64().expect("count")))
            .collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn a_replay_and_a_restore_give_the_same_output(
        inputs in inputs(),
        cut in 0usize..300,
        session in any::<bool>(),
    ) {
        let window = if session {
            Window::Session { gap_ms: 20_000 }
        } else {
            Window::Hopping { size_ms: 60_000, hop_ms: 30_000 }
        };
        let spec = spec(window, 30_000);
        let output = |aggregator: &mut Aggregator, from: usize, to: usize| -> Vec<String> {
            inputs[from..to]
                .iter()
                .enumerate()
                .flat_map(|(i, input)| aggregator.push(&record(from + i, *input)).results)
                .map(|r| r.to_json(&spec).to_string())
                .collect()
        };
        let cut = cut.min(inputs.len());
        let mut whole = Aggregator::new(spec.clone()).expect("valid");
        let all = output(&mut whole, 0, inputs.len());
        let mut again = Aggregator::new(spec.clone()).expect("valid");
        prop_assert_eq!(&output(&mut again, 0, inputs.len()), &all);
        let mut first = Aggregator::new(spec.clone()).expect("valid");
        let mut joined = output(&mut first, 0, cut);
        let saved = first.save().expect("save");
        let mut restored = Aggregator::restore(spec.clone(), &saved).expect("restore");
        joined.extend(output(&mut restored, cut, inputs.len()));
        prop_assert_eq!(joined, all);
        prop_assert_eq!(restored.late(), whole.late());
    }
}

#[test]
fn results_are_json_objects_by_name() {
    let spec = Aggregation {
        window: Window::Tumbling { size_ms: 60_000 },
        group_by: vec!["device".into()],
        measures: vec![
            Measure::new("avg_temp", Op::Avg, Some("v")),
            Measure::new("p95", Op::Percentile { q: 0.95 }, Some("v")),
            Measure::new("devices", Op::Distinct, Some("device")),
        ],
        lateness_ms: 0,
    };
    let mut aggregator = Aggregator::new(spec.clone()).expect("valid");
    aggregator.push(&record(0, (1_000, 1, 10)));
    aggregator.push(&record(1, (2_000, 1, 20)));
    let results = aggregator.push(&record(2, (61_000, 1, 0))).results;
    assert_eq!(results.len(), 1);
    let out = results[0].to_json(&spec);
    assert_eq!(out["window_start"], "1970-01-01T00:00:00.000Z");
    assert_eq!(out["window_end"], "1970-01-01T00:01:00.000Z");
    assert_eq!(out["device"], "d1");
    assert_eq!(out["avg_temp"], json!(15.0));
    assert_eq!(out["devices"], json!(1));
    let p95 = out["p95"].as_f64().expect("a number");
    // Of two values, DDSketch's rank q·(n−1) picks the lower, within 1%.
    assert!((p95 - 10.0).abs() <= 0.1, "{p95}");
    // Not JSON objects: skipped, not failed.
    let mut text = record(3, (62_000, 1, 0));
    text.event.payload = bytes::Bytes::from_static(b"plain");
    aggregator.push(&text);
    assert_eq!(aggregator.skipped(), 1);
}

#[test]
fn ambiguous_or_impossible_aggregations_are_refused() {
    let mut spec = spec(Window::Tumbling { size_ms: 1_000 }, 0);
    spec.measures.push(Measure::new("device", Op::Count, None));
    assert!(Aggregator::new(spec).is_err(), "an output named twice");
    let mut spec = self::spec(Window::Tumbling { size_ms: 0 }, 0);
    assert!(Aggregator::new(spec.clone()).is_err());
    spec.window = Window::Tumbling { size_ms: 1 };
    spec.measures = vec![Measure::new("x", Op::Sum, None)];
    assert!(Aggregator::new(spec.clone()).is_err(), "sum of no field");
    spec.measures = vec![];
    assert!(Aggregator::new(spec).is_err(), "nothing to compute");
    assert!(Aggregator::restore(self::spec(Window::Tumbling { size_ms: 1 }, 0), b"{").is_err());
}

#[test]
fn states_with_empty_sketches_or_huge_sums_save_and_restore() {
    let spec = Aggregation {
        window: Window::Tumbling { size_ms: 60_000 },
        group_by: vec![],
        measures: vec![
            Measure::new("p50", Op::Percentile { q: 0.5 }, Some("missing")),
            Measure::new("sum", Op::Sum, Some("v")),
        ],
        lateness_ms: 0,
    };
    let mut aggregator = Aggregator::new(spec.clone()).expect("valid");
    for i in 0..3 {
        let mut r = record(i, (1_000, 0, 0));
        r.event.payload = bytes::Bytes::from_static(br#"{"v": 1e308}"#);
        aggregator.push(&r);
    }
    let saved = aggregator.save().expect("save");
    let mut restored = Aggregator::restore(spec, &saved).expect("restore");
    let results = restored.flush();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].values, vec![Value::Null, json!(f64::MAX)]);
}

#[test]
fn a_state_is_refused_by_another_aggregation() {
    let aggregator = Aggregator::new(spec(Window::Tumbling { size_ms: 1_000 }, 0)).expect("valid");
    let saved = aggregator.save().expect("save");
    let other = spec(Window::Tumbling { size_ms: 2_000 }, 0);
    assert!(Aggregator::restore(other, &saved).is_err());
    assert!(Aggregator::restore(spec(Window::Tumbling { size_ms: 1_000 }, 0), &saved).is_ok());
}

#[test]
fn an_event_inside_an_open_session_joins_it_even_when_its_own_gap_has_passed() {
    let mut aggregator = Aggregator::new(spec(Window::Session { gap_ms: 50 }, 100)).expect("valid");
    for (i, t) in [100, 140, 180, 220].into_iter().enumerate() {
        aggregator.push(&record(i, (t, 0, 1)));
    }
    aggregator.push(&record(4, (360, 1, 1)));
    // The watermark is 260: a session of 150 alone would have ended at 200, but 150 falls
    // in device 0's open session (100 to 270).
    let pushed = aggregator.push(&record(5, (150, 0, 1)));
    assert!(!pushed.late);
    let results = aggregator.flush();
    let d0 = results
        .iter()
        .find(|r| r.group == vec![json!("d0")])
        .expect("device 0's session");
    assert_eq!((d0.start, d0.end, &d0.values[0]), (100, 270, &json!(5)));
}

#[test]
fn times_far_from_now_do_not_overflow() {
    for window in [
        Window::Tumbling { size_ms: 60_000 },
        Window::Hopping {
            size_ms: 60_000,
            hop_ms: 7_000,
        },
        Window::Session { gap_ms: 60_000 },
    ] {
        let mut aggregator = Aggregator::new(spec(window, 1_000)).expect("valid");
        let far = [
            UNIX_EPOCH + Duration::from_secs(1 << 52),
            UNIX_EPOCH - Duration::from_secs(1 << 40),
            UNIX_EPOCH,
        ];
        for (i, time) in far.into_iter().enumerate() {
            let mut r = record(i, (0, 0, 1));
            r.event.time = Some(time);
            aggregator.push(&r);
        }
        for r in aggregator.flush() {
            assert!(r.start < r.end, "{r:?}");
        }
    }
}
