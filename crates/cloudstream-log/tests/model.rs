//! A state-machine model test: random sequences of appends, reads, checkpoint commits, clock
//! advances with retention, power losses (seeded, `SyncPolicy::Always`) and clean reopens, run
//! against the engine on `MemoryStorage` and against a plain reference model.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use cloudstream_log::{Log, LogError, LogOptions, ManualClock, MemoryStorage, StreamLog};
use common::*;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed, TestRunner};
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest};

const PARTITIONS: u32 = 2;
const HORIZON_MS: i64 = 8000;
/// Segments roll at this age (an eighth of the horizon, and at least a second).
const MAX_AGE_MS: i64 = HORIZON_MS / 8;
const STREAM: &str = "model";
const CONSUMERS: [&str; 3] = ["c0", "c1", "c2"];

/// The reference: every record ever appended (its offset is its index) with its append time,
/// the clock, and the checkpoints.
#[derive(Debug, Clone)]
struct Model {
    now: i64,
    partitions: Vec<Vec<(Rec, i64)>>,
    checkpoints: BTreeMap<String, BTreeMap<u32, u64>>,
}

#[derive(Debug, Clone)]
enum Transition {
    Append {
        partition: u32,
        recs: Vec<Rec>,
    },
    /// Reads from `from_seed % (next_offset + 2)`.
    Read {
        partition: u32,
        from_seed: u64,
        max_records: usize,
        max_bytes: usize,
    },
    Commit {
        consumer: usize,
        offsets: Vec<(u32, u64)>,
    },
    AdvanceAndRetain {
        ms: i64,
    },
    PowerLoss {
        seed: u64,
    },
    CleanReopen,
}

fn rec() -> impl Strategy<Value = Rec> {
    (
        proptest::option::of(vec(any::<u8>(), 0..8)),
        vec(("[a-z]{1,4}", "[a-z0-9]{0,6}"), 0..3),
        vec(any::<u8>(), 0..400),
        proptest::option::of(-1000i64..1000),
    )
        .prop_map(|(key, headers, value, event_time)| Rec {
            key,
            headers,
            value,
            event_time_ms: event_time.map(|t| T0 + t),
        })
}

struct Reference;

impl ReferenceStateMachine for Reference {
    type State = Model;
    type Transition = Transition;

    fn init_state() -> BoxedStrategy<Model> {
        Just(Model {
            now: T0,
            partitions: vec![Vec::new(); PARTITIONS as usize],
            checkpoints: BTreeMap::new(),
        })
        .boxed()
    }

    fn transitions(_: &Model) -> BoxedStrategy<Transition> {
        prop_oneof![
            6 => (0..PARTITIONS, vec(rec(), 1..6))
                .prop_map(|(partition, recs)| Transition::Append { partition, recs }),
            3 => (0..PARTITIONS, any::<u64>(), 0usize..20, prop_oneof![Just(usize::MAX), 0usize..3000])
                .prop_map(|(partition, from_seed, max_records, max_bytes)| Transition::Read {
                    partition,
                    from_seed,
                    max_records,
                    max_bytes,
                }),
            1 => (0..CONSUMERS.len(), vec((0..PARTITIONS, 0u64..1000), 1..3))
                .prop_map(|(consumer, offsets)| Transition::Commit { consumer, offsets }),
            2 => (0i64..5600).prop_map(|ms| Transition::AdvanceAndRetain { ms }),
            1 => any::<u64>().prop_map(|seed| Transition::PowerLoss { seed }),
            1 => Just(Transition::CleanReopen),
        ]
        .boxed()
    }

    fn apply(mut state: Model, transition: &Transition) -> Model {
        match transition {
            Transition::Append { partition, recs } => {
                let now = state.now;
                state.partitions[*partition as usize].extend(recs.iter().map(|r| (r.clone(), now)));
            }
            Transition::Commit { consumer, offsets } => {
                state
                    .checkpoints
                    .entry(CONSUMERS[*consumer].to_owned())
                    .or_default()
                    .extend(offsets.iter().copied());
            }
            Transition::AdvanceAndRetain { ms } => state.now += ms,
            Transition::Read { .. } | Transition::PowerLoss { .. } | Transition::CleanReopen => {}
        }
        state
    }
}

/// The engine under test.
struct Engine {
    storage: MemoryStorage,
    clock: Arc<ManualClock>,
    log: Log,
    stream: Arc<StreamLog>,
    /// Earliest offset of each partition seen last.
    earliest: Vec<u64>,
}

impl Engine {
    fn options(storage: &MemoryStorage, clock: &Arc<ManualClock>) -> LogOptions {
        options(Arc::new(storage.clone()), clock.clone())
    }

    /// Closes the log (cleanly or not: on a crashed copy, the close does not count) and opens
    /// it again on `storage`, checking that nothing was lost.
    fn reopen(self, storage: MemoryStorage, model: &Model) -> Engine {
        let Engine {
            clock,
            log,
            stream,
            earliest,
            ..
        } = self;
        drop((stream, log));
        let log = open(MEM_ROOT, &Engine::options(&storage, &clock));
        let stream = log.stream(STREAM).expect("stream survives");
        let engine = Engine {
            storage,
            clock,
            log,
            stream,
            earliest,
        };
        for p in 0..PARTITIONS {
            let part = engine.stream.partition(p).expect("partition");
            assert_eq!(
                part.earliest_offset(),
                engine.earliest[p as usize],
                "retention deletions are durable"
            );
            engine.check_all(p, model);
        }
        let checkpoints: BTreeMap<String, BTreeMap<u32, u64>> = engine
            .stream
            .checkpoints()
            .list()
            .into_iter()
            .map(|(name, c)| (name, c.offsets))
            .collect();
        assert_eq!(
            checkpoints, model.checkpoints,
            "committed checkpoints survive"
        );
        engine
    }

    /// Reads the whole partition and compares it to the model.
    fn check_all(&self, p: u32, model: &Model) {
        let part = self.stream.partition(p).expect("partition");
        let want = &model.partitions[p as usize];
        assert_eq!(part.next_offset(), want.len() as u64);
        let from = part.earliest_offset();
        let got = read_from(part, from, 37).expect("read");
        assert_eq!(got.len() as u64, want.len() as u64 - from);
        for r in &got {
            let (w, time) = &want[r.offset as usize];
            assert!(w.matches(r), "record {} differs", r.offset);
            assert_eq!(r.append_time_ms, *time);
        }
    }
}

struct EngineTest;

static TRANSITIONS: AtomicUsize = AtomicUsize::new(0);
static EXPIRED_READS: AtomicUsize = AtomicUsize::new(0);
static SEGMENTS_DELETED: AtomicUsize = AtomicUsize::new(0);
static FULL_EXPIRIES: AtomicUsize = AtomicUsize::new(0);
static POWER_LOSSES: AtomicUsize = AtomicUsize::new(0);
static MAX_SEGMENTS: AtomicUsize = AtomicUsize::new(0);

fn count(counter: &AtomicUsize) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl StateMachineTest for EngineTest {
    type SystemUnderTest = Engine;
    type Reference = Reference;

    fn init_test(_: &Model) -> Engine {
        let storage = MemoryStorage::new();
        let clock = Arc::new(ManualClock::new(T0));
        let log = open(MEM_ROOT, &Engine::options(&storage, &clock));
        let stream = create(&log, STREAM, config(PARTITIONS, HORIZON_MS as u64));
        Engine {
            storage,
            clock,
            log,
            stream,
            earliest: vec![0; PARTITIONS as usize],
        }
    }

    fn apply(mut engine: Engine, model: &Model, transition: Transition) -> Engine {
        TRANSITIONS.fetch_add(1, Ordering::Relaxed);
        match transition {
            Transition::Append { partition, recs } => {
                let part = engine.stream.partition(partition).expect("partition");
                let ack = part.append_blocking(encode(&recs)).expect("append");
                let len = model.partitions[partition as usize].len();
                assert_eq!(ack.base_offset as usize, len - recs.len());
                assert_eq!(ack.count as usize, recs.len());
                assert_eq!(ack.append_time_ms, model.now);
            }
            Transition::Read {
                partition,
                from_seed,
                max_records,
                max_bytes,
            } => {
                let want = &model.partitions[partition as usize];
                let part = engine.stream.partition(partition).expect("partition");
                let earliest = engine.earliest[partition as usize];
                assert_eq!(part.earliest_offset(), earliest);
                let from = from_seed % (want.len() as u64 + 2);
                let got = part.read(from, max_records, max_bytes);
                if from < earliest {
                    count(&EXPIRED_READS);
                    assert!(
                        matches!(got, Err(LogError::Expired { requested, earliest: e }) if requested == from && e == earliest),
                        "{got:?}"
                    );
                } else if from > want.len() as u64 {
                    assert!(matches!(got, Err(LogError::BeyondEnd { .. })), "{got:?}");
                } else {
                    let got = got.expect("read");
                    let recs: Vec<Rec> = want.iter().map(|(r, _)| r.clone()).collect();
                    let end = expected_read_end(&recs, from as usize, max_records, max_bytes);
                    assert_records(&got, &recs[..end], from);
                }
            }
            Transition::Commit { consumer, offsets } => {
                let name = CONSUMERS[consumer];
                let c = engine
                    .stream
                    .checkpoints()
                    .commit(name, &offsets)
                    .expect("commit");
                assert_eq!(Some(&c.offsets), model.checkpoints.get(name));
                assert_eq!(c.updated_ms, model.now);
            }
            Transition::AdvanceAndRetain { ms } => {
                engine.clock.advance(ms);
                let deleted = engine.stream.enforce_retention().expect("retention");
                SEGMENTS_DELETED.fetch_add(deleted, Ordering::Relaxed);
                let cutoff = model.now - HORIZON_MS;
                for p in 0..PARTITIONS {
                    let part = engine.stream.partition(p).expect("partition");
                    let want = &model.partitions[p as usize];
                    let earliest = part.earliest_offset();
                    let before = engine.earliest[p as usize];
                    assert!(earliest >= before, "earliest offset went back");
                    if earliest > before {
                        let newest_deleted = want[earliest as usize - 1].1;
                        assert!(
                            newest_deleted < cutoff,
                            "a record younger than the horizon was deleted"
                        );
                    }
                    match want.get(earliest as usize) {
                        // Whole segments, each spanning less than MAX_AGE_MS.
                        Some((_, t)) => assert!(
                            *t > cutoff - MAX_AGE_MS,
                            "an expired segment was kept: oldest record {t}, cutoff {cutoff}"
                        ),
                        None => assert_eq!(earliest, want.len() as u64),
                    }
                    if !want.is_empty() && want.iter().all(|(_, t)| *t < cutoff) {
                        count(&FULL_EXPIRIES);
                        assert_eq!(
                            earliest,
                            want.len() as u64,
                            "fully expired partition keeps records"
                        );
                    }
                    engine.earliest[p as usize] = earliest;
                    engine.check_all(p, model);
                }
            }
            Transition::PowerLoss { seed } => {
                count(&POWER_LOSSES);
                let crashed = engine.storage.crash(Some(seed));
                engine = engine.reopen(crashed, model);
            }
            Transition::CleanReopen => {
                let storage = engine.storage.clone();
                engine = engine.reopen(storage, model);
            }
        }
        engine
    }

    fn check_invariants(engine: &Engine, model: &Model) {
        assert_eq!(cloudstream_log::Clock::now_ms(&*engine.clock), model.now);
        for (p, want) in model.partitions.iter().enumerate() {
            let part = engine.stream.partition(p as u32).expect("partition");
            assert_eq!(part.next_offset(), want.len() as u64);
            assert!(part.poisoned().is_none());
            MAX_SEGMENTS.fetch_max(part.stats().segments, Ordering::Relaxed);
        }
    }
}

/// 1,000 cases unless `PROPTEST_CASES` says otherwise; a fixed seed unless
/// `PROPTEST_RNG_SEED` gives one, so a run is replayable.
fn model_config() -> ProptestConfig {
    let defaults = ProptestConfig::default();
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let rng_seed = match defaults.rng_seed {
        RngSeed::Random => RngSeed::Fixed(0x00C1_0D57_2EA3),
        fixed => fixed,
    };
    ProptestConfig {
        cases,
        rng_seed,
        failure_persistence: None,
        ..defaults
    }
}

#[test]
fn engine_matches_the_model() {
    let config = model_config();
    let mut runner = TestRunner::new(config.clone());
    let result = runner.run(
        &Reference::sequential_strategy(1..40),
        |(initial, transitions, seen)| {
            EngineTest::test_sequential(config.clone(), initial, transitions, seen);
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("model test failed (seed {}): {e}", config.rng_seed);
    }
    let n = |c: &AtomicUsize| c.load(Ordering::Relaxed);
    println!(
        "model test: {} cases, {} transitions ({} power losses, {} segments deleted by retention, \
         {} full expiries, {} expired reads, up to {} segments per partition), seed {}, \
         0 divergences",
        config.cases,
        n(&TRANSITIONS),
        n(&POWER_LOSSES),
        n(&SEGMENTS_DELETED),
        n(&FULL_EXPIRIES),
        n(&EXPIRED_READS),
        n(&MAX_SEGMENTS),
        config.rng_seed
    );
}
