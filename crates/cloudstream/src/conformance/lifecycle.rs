//! Creating, describing, listing and deleting streams; bad input.

use std::time::Duration;

use super::{event, unique_name};
use crate::{Client, Error, ReadFrom};

/// Stream-01: create with horizon and partitions, describe, list, refuse a duplicate, delete.
pub async fn create_describe_list_delete(client: &Client) {
    let name = unique_name("lifecycle");
    let horizon = Duration::from_secs(48 * 3600);
    let partitions = 3.min(client.backend().capabilities().max_partitions);
    let stream = client
        .stream(&name)
        .horizon(horizon)
        .partitions(partitions)
        .create()
        .await
        .expect("create");
    assert_eq!(stream.partitions(), partitions);
    let info = stream.describe().await.expect("describe");
    assert_eq!(info.name, name);
    assert_eq!(info.horizon(), horizon);
    assert_eq!(info.partitions.len() as u32, partitions);
    let dense = client.backend().capabilities().dense_sequences;
    assert_eq!(info.records(), dense.then_some(0), "new stream is empty");
    assert!(client.list_streams().await.expect("list").contains(&name));
    let dup = client.stream(&name).horizon(horizon).create().await;
    assert!(matches!(dup, Err(Error::StreamExists { .. })), "{dup:?}");
    let again = client
        .stream(&name)
        .horizon(horizon)
        .create_if_missing()
        .await
        .expect("create_if_missing");
    assert_eq!(
        again.partitions(),
        partitions,
        "existing stream keeps its settings"
    );
    client.delete_stream(&name).await.expect("delete");
    assert!(!client.list_streams().await.expect("list").contains(&name));
    let gone = client.stream(&name).open().await;
    assert!(
        matches!(gone, Err(Error::StreamNotFound { .. })),
        "{gone:?}"
    );
    let gone = client.delete_stream(&name).await;
    assert!(
        matches!(gone, Err(Error::StreamNotFound { .. })),
        "{gone:?}"
    );
}

/// Bad names and settings are typed errors, never a panic or a created resource.
pub async fn bad_input_is_refused(client: &Client) {
    let long = "n".repeat(129);
    for bad in [
        "",
        ".",
        "..",
        "a/b",
        "../etc",
        "a\0b",
        "spa ce",
        long.as_str(),
    ] {
        let created = client.stream(bad).create().await;
        assert!(
            matches!(created, Err(Error::InvalidName { kind: "stream", .. })),
            "{bad:?}: {created:?}"
        );
        assert!(
            matches!(
                client.stream(bad).open().await,
                Err(Error::InvalidName { .. })
            ),
            "{bad:?}"
        );
        assert!(
            matches!(
                client.delete_stream(bad).await,
                Err(Error::InvalidName { .. })
            ),
            "{bad:?}"
        );
    }
    let partitions = client
        .stream(&unique_name("p0"))
        .partitions(0)
        .create()
        .await;
    assert!(
        matches!(partitions, Err(Error::InvalidArgument(_))),
        "{partitions:?}"
    );
    let caps = client.backend().capabilities();
    let too_short = caps
        .horizon_range
        .0
        .checked_sub(Duration::from_millis(1))
        .unwrap_or_default();
    let horizon = client
        .stream(&unique_name("h0"))
        .horizon(too_short)
        .create()
        .await;
    assert!(
        matches!(horizon, Err(Error::InvalidArgument(ref m)) if m.contains("horizon")),
        "{horizon:?}"
    );
    let missing = client.stream(&unique_name("missing")).open().await;
    assert!(
        matches!(missing, Err(Error::StreamNotFound { .. })),
        "{missing:?}"
    );
}

/// Writes and reads of a stream that does not exist are `StreamNotFound`.
pub async fn unknown_streams_are_errors(client: &Client) {
    let name = unique_name("ghost");
    let stream = client.stream(&name).create().await.expect("create");
    client.delete_stream(&name).await.expect("delete");
    let sent = stream.send(event(0)).await;
    assert!(
        matches!(sent, Err(Error::StreamNotFound { .. })),
        "{sent:?}"
    );
    assert!(matches!(
        stream.read(ReadFrom::Earliest, 1).await,
        Err(Error::StreamNotFound { .. })
    ));
    assert!(matches!(
        stream.consumer("c").fetch().await,
        Err(Error::StreamNotFound { .. })
    ));
}
