//! Consumers, consumer groups and the primitive routes the http:// provider uses.

use super::*;

#[tokio::test]
async fn consumers_fetch_with_implicit_checkpoints_and_show_their_lag() {
    let s = start().await;
    s.call(s.http.put(s.url("/v1/streams/t"))).await;
    let events: Vec<Value> = (0..5)
        .map(|i| json!({"payload": format!("e{i}")}))
        .collect();
    s.post("/v1/streams/t/events/batch", json!(events)).await;
    let fetch = "/v1/streams/t/consumers/reader/fetch?max=3";
    let (status, first) = s.post(fetch, Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["records"].as_array().map(Vec::len), Some(3));
    let (_, second) = s.post(&acked(fetch, &first), Value::Null).await;
    assert_eq!(
        second["records"][0]["payload"], "e3",
        "the first batch was committed"
    );
    let commit = "/v1/streams/t/consumers/reader/commit";
    let (status, body) = s.post(commit, Value::Null).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_query");
    let (status, body) = s.post(&acked(commit, &first), Value::Null).await;
    assert_error(status, &body, StatusCode::CONFLICT, "batch_not_outstanding");
    let (status, _) = s.post(&acked(commit, &second), Value::Null).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, body) = s.get("/v1/streams/t/consumers").await;
    assert_eq!(body["consumers"][0]["name"], "reader");
    assert_eq!(body["consumers"][0]["lag"], 0);
    let (_, body) = s.get("/v1/streams/t").await;
    assert_eq!(body["consumers"][0]["lag"], 0);
    let (status, body) = s
        .post("/v1/streams/t/consumers/bad%2Fname/fetch", Value::Null)
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_name");
    let (status, body) = s
        .post("/v1/streams/none/consumers/reader/fetch", Value::Null)
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "stream_not_found");
}

/// `path` with the `ack` token of the batch `fetched`, to commit that batch.
fn acked(path: &str, fetched: &Value) -> String {
    let token = fetched["ack"].as_str().expect("an ack token");
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}ack={token}")
}

/// The payloads of a fetched batch.
fn payloads(fetched: &Value) -> Vec<String> {
    fetched["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["payload"].as_str().expect("text").to_owned())
        .collect()
}

/// Two clients fetching under one consumer name (no group): a fetch commits only the batch
/// whose token it carries. While client A holds its batch (its visibility time, `lease_ms`),
/// client B gets 409 `batch_outstanding` instead of A's batch; once the time is up, B gets
/// it (A is taken to be gone), so a batch nobody handled is delivered again, never lost,
/// and A's stale token commits nothing.
#[tokio::test]
async fn a_fetch_commits_only_the_batch_its_client_received() {
    let s = start().await;
    s.call(s.http.put(s.url("/v1/streams/two"))).await;
    let events: Vec<Value> = (0..6)
        .map(|i| json!({"payload": format!("e{i}")}))
        .collect();
    s.post("/v1/streams/two/events/batch", json!(events)).await;
    let fetch = "/v1/streams/two/consumers/shared/fetch?max=2&lease_ms=300";
    let (_, a) = s.post(fetch, Value::Null).await;
    assert_eq!(payloads(&a), ["e0", "e1"]);
    // B fetches under the same name while A holds its batch.
    let (status, body) = s.post(fetch, Value::Null).await;
    assert_error(status, &body, StatusCode::CONFLICT, "batch_outstanding");
    assert!(body["error"]["details"]["retry_after_ms"].as_u64() <= Some(300));
    // A dies without handling its batch; after its visibility time, B gets it.
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;
    let (_, b) = s.post(fetch, Value::Null).await;
    assert_eq!(
        payloads(&b),
        ["e0", "e1"],
        "A's batch was not committed by B"
    );
    let (_, b2) = s.post(&acked(fetch, &b), Value::Null).await;
    assert_eq!(payloads(&b2), ["e2", "e3"], "B's own batch is committed");
    // A comes back with its old token: it commits nothing, and B's batch stays with B.
    let (status, body) = s.post(&acked(fetch, &a), Value::Null).await;
    assert_error(status, &body, StatusCode::CONFLICT, "batch_outstanding");
    let (_, body) = s.get("/v1/streams/two/consumers/shared/checkpoint").await;
    assert_eq!(body["checkpoint"], json!({"0": "at:2"}), "e0 and e1 only");
}

/// A fetch whose answer was lost in transit: the client fetches again with the token it
/// last received, and gets the lost batch again instead of having it committed.
#[tokio::test]
async fn a_batch_whose_answer_was_lost_is_delivered_again() {
    let s = start().await;
    s.call(s.http.put(s.url("/v1/streams/lost"))).await;
    let events: Vec<Value> = (0..6)
        .map(|i| json!({"payload": format!("e{i}")}))
        .collect();
    s.post("/v1/streams/lost/events/batch", json!(events)).await;
    for member in ["", "&member=m1"] {
        s.call(s.http.delete(s.url("/v1/streams/lost/consumers/c")))
            .await;
        let fetch = format!("/v1/streams/lost/consumers/c/fetch?max=2{member}");
        let (_, first) = s.post(&fetch, Value::Null).await;
        assert_eq!(payloads(&first), ["e0", "e1"]);
        let (_, lost) = s.post(&acked(&fetch, &first), Value::Null).await;
        assert_eq!(payloads(&lost), ["e2", "e3"], "never reached the client");
        let (_, again) = s.post(&acked(&fetch, &first), Value::Null).await;
        assert_eq!(payloads(&again), ["e2", "e3"], "{member}: delivered again");
        // A fetch with other settings does not commit the outstanding batch either.
        let wider = fetch.replace("max=2", "max=3");
        let (_, other) = s.post(&wider, Value::Null).await;
        assert_eq!(payloads(&other), ["e2", "e3", "e4"], "{member}");
        let (_, next) = s.post(&acked(&wider, &other), Value::Null).await;
        assert_eq!(payloads(&next), ["e5"], "{member}");
    }
}

/// Two clients fetching as members of one consumer never read the same partition at once,
/// and when one stops renewing its leases the other takes its partitions over and gets its
/// uncommitted records again.
#[tokio::test]
async fn consumer_group_members_share_partitions_over_http() {
    let s = start().await;
    s.call(
        s.http
            .put(s.url("/v1/streams/g"))
            .json(&json!({"partitions": 4})),
    )
    .await;
    let events: Vec<Value> = (0..40)
        .map(|i| json!({"payload": format!("e{i}"), "key": format!("device-{i}")}))
        .collect();
    s.post("/v1/streams/g/events/batch", json!(events)).await;
    let mut tokens = std::collections::HashMap::<&str, Value>::new();
    let mut post = async |member: &'static str| {
        let mut path =
            format!("/v1/streams/g/consumers/group/fetch?member={member}&lease_ms=1000&max=1000");
        if let Some(last) = tokens.get(member) {
            path = acked(&path, last);
        }
        let (status, body) = s.post(&path, Value::Null).await;
        tokens.insert(member, body.clone());
        (status, body)
    };
    let (status, alone) = post("a").await;
    assert_eq!(status, StatusCode::OK, "{alone}");
    assert_eq!(alone["records"].as_array().map(Vec::len), Some(40));
    let (_, b_first) = post("b").await;
    assert_eq!(
        b_first["records"].as_array().map(Vec::len),
        Some(0),
        "a holds every partition"
    );
    post("a").await; // commits, gives back half
    post("b").await; // takes the free half
    let more: Vec<Value> = (40..80)
        .map(|i| json!({"payload": format!("e{i}"), "key": format!("device-{i}")}))
        .collect();
    s.post("/v1/streams/g/events/batch", json!(more)).await;
    let (_, got_a) = post("a").await;
    let (_, got_b) = post("b").await;
    let partitions = |v: &Value| -> std::collections::BTreeSet<u64> {
        v["records"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["partition"].as_u64())
            .collect()
    };
    let (pa, pb) = (partitions(&got_a), partitions(&got_b));
    assert!(pa.is_disjoint(&pb), "{pa:?} {pb:?}");
    let count = |v: &Value| v["records"].as_array().map_or(0, Vec::len);
    assert_eq!(
        count(&got_a) + count(&got_b),
        40,
        "each new record to one member"
    );
    // b goes silent without committing; after its lease, a gets b's records again.
    let (status, _) = s
        .post(
            &acked("/v1/streams/g/consumers/group/commit?member=a", &got_a),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    let (_, taken_over) = post("a").await;
    assert_eq!(
        count(&taken_over),
        count(&got_b),
        "b's uncommitted batch redelivered"
    );
    let (status, body) = s
        .post(
            "/v1/streams/g/consumers/group/fetch?member=bad%2Fid",
            Value::Null,
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_name");
}

/// The routes the `http://` client backend is built on, called directly: capabilities,
/// appends to one partition, reads by partition start with a long poll, checkpoints,
/// consumer deletion and leases, with their errors.
#[tokio::test]
async fn the_primitive_routes_answer_as_documented() {
    let s = start().await;
    let (status, body) = s.get("/v1/capabilities").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["backend"], "memory");
    assert_eq!(body["capabilities"]["dense_sequences"], true);
    s.call(
        s.http
            .put(s.url("/v1/streams/p"))
            .json(&json!({"partitions": 2})),
    )
    .await;

    // All-or-nothing appends to one partition.
    let (status, body) = s
        .post(
            "/v1/streams/p/partitions/1/events",
            json!([{"payload_base64": "AAE="}, {"payload": "b", "key": "k"}]),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["positions"], json!(["1:0", "1:1"]));
    let (status, body) = s
        .post(
            "/v1/streams/p/partitions/2/events",
            json!([{"payload": "x"}]),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "partition_not_found");
    let (status, body) = s
        .post(
            "/v1/streams/p/partitions/0/events",
            json!([{"payload": "ok"}, {"payload": "a", "payload_base64": "AA=="}]),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (_, body) = s.get("/v1/streams/p/records?partition=0").await;
    assert_eq!(
        body["records"],
        json!([]),
        "a refused append stores nothing"
    );

    // Reads by partition start, with byte limits and a long poll that times out empty.
    let (status, body) = s
        .get("/v1/streams/p/records?partition=1&from=after:1:0&max_bytes=1")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["records"][0]["position"], "1:1");
    let (status, body) = s
        .get("/v1/streams/p/records?partition=1&from=1:2&wait_ms=50")
        .await;
    assert_eq!(
        (status, body["records"].clone()),
        (StatusCode::OK, json!([]))
    );
    let (status, body) = s.get("/v1/streams/p/records?partition=1&from=1:9").await;
    assert_error(
        status,
        &body,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "beyond_end",
    );
    assert_eq!(body["error"]["details"]["next"], "1:2");
    let (status, body) = s
        .get("/v1/streams/p/records?start=earliest&from=earliest")
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_query");

    // Checkpoints: none, set per partition, read back; a partition the stream lacks is a 400.
    let checkpoint = "/v1/streams/p/consumers/c/checkpoint";
    let (status, body) = s.get(checkpoint).await;
    assert_eq!(
        (status, body["checkpoint"].clone()),
        (StatusCode::OK, Value::Null)
    );
    let (status, _) = s
        .call(s.http.put(s.url(checkpoint)).json(&json!({"1": "after:0"})))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, body) = s.get(checkpoint).await;
    // The engine keeps dense offsets: after 0 is at 1.
    assert_eq!(body["checkpoint"], json!({"1": "at:1"}));
    let (status, _) = s
        .call(
            s.http
                .put(s.url(checkpoint))
                .json(&json!({"5": "earliest"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no partition 5");
    for key in ["+1", "", "x", "4294967296"] {
        let (status, body) = s
            .call(
                s.http
                    .put(s.url(checkpoint))
                    .json(&json!({key: "earliest"})),
            )
            .await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    }
    let (status, body) = s
        .call(s.http.put(s.url(checkpoint)).json(&json!({"0": "soon"})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (_, body) = s.get("/v1/streams/p/consumers").await;
    assert_eq!(body["consumers"][0]["lag"], 1);

    // Leases: taken, refused to another member, listed, given back, taken by the other.
    let lease = "/v1/streams/p/consumers/g/leases/partition:0";
    let take = |member: &str| {
        s.call(
            s.http
                .put(s.url(lease))
                .query(&[("member", member), ("ttl_ms", "60000")]),
        )
    };
    assert_eq!(take("a").await.1["held"], true);
    assert_eq!(take("b").await.1["held"], false);
    let (_, body) = s.get("/v1/streams/p/consumers/g/leases").await;
    assert_eq!(body["leases"], json!({"partition:0": "a"}));
    let (status, _) = s
        .call(s.http.delete(s.url(lease)).query(&[("member", "a")]))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(take("b").await.1["held"], true);
    let (status, body) = s
        .call(s.http.put(s.url(lease)).query(&[("member", "not a name")]))
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_name");
    let (status, _) = s.call(s.http.put(s.url(lease))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "member is required");

    // A REST consumer follows each fetch's own settings, and a checkpoint set for it.
    let fetch = |max: u32, ack: &Value| {
        let mut request = s
            .http
            .post(s.url("/v1/streams/p/consumers/rest/fetch"))
            .query(&[("max", max)]);
        if let Some(token) = ack["ack"].as_str() {
            request = request.query(&[("ack", token)]);
        }
        s.call(request)
    };
    let (_, first) = fetch(1, &Value::Null).await;
    assert_eq!(first["records"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        fetch(5, &first).await.1["records"].as_array().map(Vec::len),
        Some(1)
    );
    let (status, _) = s
        .call(
            s.http
                .put(s.url("/v1/streams/p/consumers/rest/checkpoint"))
                .json(&json!({"1": "earliest"})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, body) = fetch(5, &Value::Null).await;
    let positions: Vec<&str> = body["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|r| r["position"].as_str())
        .collect();
    assert_eq!(positions, ["1:0", "1:1"], "from the checkpoint just set");

    // A path parameter that does not parse, and a method a route does not take, are JSON
    // errors like the rest.
    let (status, body) = s
        .post("/v1/streams/p/partitions/abc/events", json!([]))
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_path");
    let (status, body) = s.post("/v1/streams", json!({})).await;
    assert_error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );

    // Deleting a consumer says whether it existed.
    let (status, body) = s
        .call(s.http.delete(s.url("/v1/streams/p/consumers/c")))
        .await;
    assert_eq!(
        (status, body["existed"].clone()),
        (StatusCode::OK, json!(true))
    );
    let (_, body) = s
        .call(s.http.delete(s.url("/v1/streams/p/consumers/c")))
        .await;
    assert_eq!(body["existed"], false);
    let (status, body) = s
        .call(s.http.delete(s.url("/v1/streams/nope/consumers/c")))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "stream_not_found");
}

/// An append with no event is refused (it would write and fsync an empty frame that never
/// expires), and so is one whose event breaks the backend's header limits, with a 400 that
/// says why; neither stores anything.
#[tokio::test]
async fn empty_and_over_limit_appends_are_refused() {
    let s = start().await;
    s.put("/v1/streams/e", json!({"partitions": 1})).await;
    let (status, body) = s.post("/v1/streams/e/partitions/0/events", json!([])).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let long_name = "h".repeat(70_000);
    let (status, body) = s
        .post(
            "/v1/streams/e/partitions/0/events",
            json!([{"payload": "x", "headers": {long_name: "v"}}]),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_argument");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("backend takes at most 65535"),
        "checked against the backend's limits before the append: {message}"
    );
    let (_, body) = s.get("/v1/streams/e/records?partition=0").await;
    assert_eq!(body["records"], json!([]), "nothing was stored");
    let (_, body) = s.get("/v1/streams/e").await;
    assert_eq!(
        body["stream"]["partitions"][0]["next"],
        json!(0),
        "no empty frame took an offset"
    );
}

/// A member's lease on a fetch is capped like the lease routes' (one hour): a longer one is
/// a 400, not a lease (and a kept handle) that outlives any member.
#[tokio::test]
async fn a_fetch_lease_longer_than_an_hour_is_refused() {
    let s = start().await;
    s.put("/v1/streams/l", json!({"partitions": 1})).await;
    let (status, body) = s
        .post(
            "/v1/streams/l/consumers/g/fetch?member=m1&lease_ms=1000000000000",
            json!(null),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (status, _) = s
        .post(
            "/v1/streams/l/consumers/g/fetch?member=m1&lease_ms=3600000",
            json!(null),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "an hour is allowed");
}
