//! `kafka://` and `eventhubs://` against a real Kafka-protocol broker on loopback (tansu,
//! which `scripts/servers.sh` installs and starts): the conformance suite through both
//! URLs, then what is Kafka's own (retention read back from the broker, checkpoints as
//! consumer-group offsets other Kafka clients see, describe's view of the topic). A broker
//! that is not there fails these tests.
//!
//! Broker: `CLOUDSTREAM_KAFKA` (default `127.0.0.1:9092`).

#![cfg(feature = "kafka")]

use std::time::Duration;

use cloudstream::conformance::unique_name;
use cloudstream::{Client, Event};

fn broker() -> String {
    std::env::var("CLOUDSTREAM_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// The tests of this file run one at a time: tansu 0.6's SQLite store answers a fetch with
/// "unknown topic" (and a leader hint) while another connection deletes a topic, and
/// librdkafka 2.12 crashes on a leader hint without a topic name (`rd_kafka_metadata_update_op`
/// from a Fetch v12+ answer). Each test holds this lock through its guard.
static ONE_AT_A_TIME: std::sync::LazyLock<std::sync::Arc<tokio::sync::Mutex<()>>> =
    std::sync::LazyLock::new(Default::default);

/// The guard a test holds while it runs.
type Turn = tokio::sync::OwnedMutexGuard<()>;

/// Fails, with the reason, when the broker is not listening: a missing server is never a
/// skipped test.
async fn require_broker() {
    if let Err(e) = tokio::net::TcpStream::connect(broker()).await {
        panic!(
            "no Kafka broker at {} ({e}); run the tests through scripts/test.sh, which starts it",
            broker()
        );
    }
}

/// A connection string of the form Azure gives, for a namespace served by the loopback
/// broker through `endpoint=` (no TLS, the SASL settings carried but unused).
const CONNECTION_STRING: &str = "Endpoint=sb://cloudstream-test.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=dGVzdA==";

fn kafka_url() -> String {
    format!("kafka://{}", broker())
}

fn eventhubs_url() -> String {
    format!(
        "eventhubs://cloudstream-test?endpoint={}&security.protocol=PLAINTEXT&connection_string={}",
        broker(),
        url::form_urlencoded::byte_serialize(CONNECTION_STRING.as_bytes()).collect::<String>()
    )
}

/// The conformance suite, every function but one: `consumers_checkpoint_implicitly` lists
/// a stream's consumers, which reads the cluster's consumer groups (`ListGroups`, then
/// `DescribeGroups`), and tansu 0.6's SQLite engine drops the connection on `DescribeGroups`
/// of any group with committed offsets (it reads the stored JSON back as a JSON string).
/// It is reported as ignored, never as passed: listing consumers is "not verified against a
/// broker" in the README's capability table.
macro_rules! conformance {
    ($make:path) => {
        conformance!(@run $make;
            create_describe_list_delete, bad_input_is_refused, send_and_read_back,
            send_batch_has_per_event_results, large_batches_are_split, reads_are_deterministic,
            keys_choose_partitions, unknown_streams_are_errors,
            uncommitted_batches_are_redelivered, consumer_groups_share_partitions_through_leases,
            waits_wake_on_new_records,
            triggers_deliver_every_event_in_order, triggers_retry_then_dead_letter,
            batch_triggers_gather_and_dead_letter, triggers_pin_their_start_and_survive_panics,
            triggers_report_each_batch_outcome, events_over_header_limits_fail_alone,
            events_with_an_id_are_stored_once, triggers_share_partitions_as_group_members);
    };
    (@run $make:path; $($name:ident),*) => {
        cloudstream::conformance_tests!(@each $make; $($name),*);

        /// Every conformance function runs here (the ignored one included).
        #[test]
        fn no_conformance_function_is_left_out() {
            let mut here = vec![$(stringify!($name)),*];
            here.push("consumers_checkpoint_implicitly");
            here.sort_unstable();
            let mut all = cloudstream::conformance::NAMES.to_vec();
            all.sort_unstable();
            assert_eq!(here, all);
        }

        #[tokio::test]
        #[ignore = "tansu 0.6 (SQLite) fails DescribeGroups: listing consumers is not verified against a broker"]
        async fn consumers_checkpoint_implicitly() {
            let (client, _guard) = $make().await;
            cloudstream::conformance::consumers_checkpoint_implicitly(&client).await;
        }
    };
}

mod kafka {
    pub(super) async fn make() -> (cloudstream::Client, super::Turn) {
        let turn = super::ONE_AT_A_TIME.clone().lock_owned().await;
        super::require_broker().await;
        let client = cloudstream::open(&super::kafka_url())
            .await
            .expect("open kafka");
        (client, turn)
    }
    conformance!(make);
}

mod eventhubs {
    pub(super) async fn make() -> (cloudstream::Client, super::Turn) {
        let turn = super::ONE_AT_A_TIME.clone().lock_owned().await;
        super::require_broker().await;
        let client = cloudstream::open(&super::eventhubs_url())
            .await
            .expect("open eventhubs");
        (client, turn)
    }
    conformance!(make);
}

async fn stream(client: &Client, prefix: &str, partitions: u32) -> cloudstream::Stream {
    client
        .stream(&unique_name(prefix))
        .horizon(Duration::from_secs(36 * 3600))
        .partitions(partitions)
        .create()
        .await
        .expect("create")
}

/// The horizon is the topic's `retention.ms`, read back from the broker by describe, with
/// the topic's partitions, leaders and watermarks.
#[tokio::test]
async fn retention_and_layout_are_read_back_from_the_broker() {
    let (client, _turn) = kafka::make().await;
    let s = stream(&client, "retention", 3).await;
    s.send(Event::new("x").with_key("k")).await.expect("send");
    let info = s.describe().await.expect("describe");
    assert_eq!(info.horizon(), Duration::from_secs(36 * 3600));
    assert_eq!(
        info.details.get("retention.ms").map(String::as_str),
        Some("129600000")
    );
    assert_eq!(info.partitions.len(), 3);
    assert_eq!(info.records(), Some(1));
    let leaders = info.details.get("leaders").expect("leaders");
    assert_eq!(leaders.split(' ').count(), 3, "{leaders}");
    assert!(info.partitions.iter().all(|p| p.id.starts_with(s.name())));
}

/// A consumer's checkpoint is its Kafka consumer group's committed offsets: another Kafka
/// client of group `STREAM:NAME` sees them, and the lag is the high watermark's distance.
#[tokio::test]
async fn checkpoints_are_consumer_group_offsets_other_clients_see() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    let (client, _turn) = kafka::make().await;
    let s = stream(&client, "groups", 2).await;
    let events = (0..10).map(|i| Event::new(format!("e{i}")).with_key(format!("k{i}")));
    assert!(s
        .send_batch(events.collect())
        .await
        .iter()
        .all(Result::is_ok));
    let billing = s.consumer("billing").max_records(4);
    let first = billing.fetch().await.expect("fetch");
    assert!(!first.is_empty());
    billing.commit().await.expect("commit");
    let mut handed: std::collections::BTreeMap<u32, u64> = Default::default();
    for r in first.iter() {
        let next = r.position.sequence.as_u64().expect("offset") + 1;
        handed.insert(r.position.partition, next);
    }

    let group = format!("{}:billing", s.name());
    let other: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("group.id", &group)
        .create()
        .expect("a plain Kafka client");
    let topic = s.name().to_owned();
    let committed = tokio::task::spawn_blocking(move || {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&topic, 0);
        tpl.add_partition(&topic, 1);
        other
            .committed_offsets(tpl, Duration::from_secs(10))
            .expect("committed offsets")
    })
    .await
    .expect("join");
    for (partition, next) in &handed {
        let seen = committed
            .find_partition(s.name(), *partition as i32)
            .map(|e| e.offset());
        assert_eq!(
            seen,
            Some(Offset::Offset(*next as i64)),
            "partition {partition}"
        );
    }
    // Listing consumers (with their lag) reads the cluster's group list, which tansu cannot
    // describe: see `conformance!` above.
    assert!(client
        .backend()
        .delete_consumer(s.name(), "billing")
        .await
        .expect("delete"));
    assert!(s.consumer("billing").positions().await.is_ok());
}

/// Event Hubs' limits are refused before any call, through the same backend.
#[tokio::test]
async fn event_hubs_limits_are_checked_before_any_call() {
    let (client, _turn) = eventhubs::make().await;
    assert_eq!(client.backend().name(), "eventhubs");
    let caps = client.backend().capabilities();
    assert_eq!(caps.max_partitions, 32);
    assert_eq!(caps.horizon_range.1, Duration::from_secs(7 * 24 * 3600));
    for (horizon_h, partitions) in [(24 * 8, 1), (24, 33)] {
        let err = client
            .stream(&unique_name("limits"))
            .horizon(Duration::from_secs(horizon_h * 3600))
            .partitions(partitions)
            .create()
            .await
            .expect_err("refused");
        assert!(
            matches!(err, cloudstream::Error::InvalidArgument(_)),
            "{err}"
        );
    }
    let big = Event::new(vec![b'x'; 1_000_001]);
    let s = client
        .stream(&unique_name("limits"))
        .horizon(Duration::from_secs(24 * 3600))
        .create()
        .await
        .expect("create");
    let err = s.send(big).await.expect_err("too large");
    assert!(
        matches!(err, cloudstream::Error::RecordTooLarge { .. }),
        "{err}"
    );
}
