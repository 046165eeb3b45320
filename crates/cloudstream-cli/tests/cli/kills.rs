//! `cloudstream serve` killed with SIGKILL again and again under load: every event a client
//! saw acknowledged is there afterwards, byte for byte, exactly once, and each key's events
//! in the order they were sent.

use super::*;

/// Kill cycles (`SERVE_KILL_CYCLES`, default 100).
fn cycles() -> u64 {
    std::env::var("SERVE_KILL_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
}

const PARTITIONS: u32 = 4;
/// Writers of single events, and of batches of 1 to 1,000 events.
const SINGLE_WRITERS: u64 = 3;
const BATCH_WRITERS: u64 = 2;
/// Keys per writer: each key's events must come back in the order they were sent.
const KEYS: u64 = 8;

/// The payload of event `n` of writer `w` in cycle `c`: unique, and with characters that
/// JSON escapes, so that a byte lost or changed anywhere shows.
fn payload(c: u64, w: u64, n: u64) -> String {
    format!("c{c}-w{w}-{n} \"é\\\t{}", "x".repeat((n % 7 * 13) as usize))
}

/// The key of event `n` of writer `w`.
fn key(w: u64, n: u64) -> String {
    format!("w{w}-k{}", n % KEYS)
}

/// What one writer saw acknowledged: (key, sequence within the writer, payload).
type Acked = Vec<(String, u64, String)>;

/// One writer until the server goes away: single events, or batches of a size that varies
/// from 1 to 1,000. Only what a 2xx acknowledged is kept; a refused or failed request ends
/// it (no retry, so nothing is written twice).
fn write(addr: &str, cycle: u64, w: u64, batches: bool) -> Acked {
    let mut http = Http::new(addr);
    let mut acked = Acked::new();
    let mut n = 0;
    for round in 0_u64.. {
        let size = if batches {
            1 + (round * 389 + w * 97) % 1000
        } else {
            1
        };
        let events: Vec<(String, u64, String)> = (n..n + size)
            .map(|i| (key(w, i), i, payload(cycle, w, i)))
            .collect();
        let body = if batches {
            serde_json::to_string(
                &events
                    .iter()
                    .map(|(k, _, p)| serde_json::json!({"payload": p, "key": k}))
                    .collect::<Vec<_>>(),
            )
        } else {
            serde_json::to_string(&serde_json::json!({"payload": events[0].2, "key": events[0].0}))
        }
        .expect("json");
        let path = if batches {
            "/v1/streams/s/events/batch"
        } else {
            "/v1/streams/s/events"
        };
        match http.request("POST", path, &body) {
            Ok((status, answer)) if (200..300).contains(&status) => {
                if batches {
                    // Per-event results: only those with a position were stored.
                    let results: serde_json::Value =
                        serde_json::from_str(&answer).expect("batch answer");
                    let results = results["results"].as_array().expect("results");
                    assert_eq!(results.len(), events.len(), "{answer}");
                    for (result, event) in results.iter().zip(&events) {
                        if result.get("position").is_some() {
                            acked.push(event.clone());
                        }
                    }
                } else {
                    acked.extend(events);
                }
            }
            _ => break,
        }
        n += size;
    }
    acked
}

/// Every stored record of stream `s`, partition by partition in order: (key, payload).
fn read_all(addr: &str) -> Vec<(String, String)> {
    let mut http = Http::new(addr);
    let mut stored = Vec::new();
    for partition in 0..PARTITIONS {
        let mut from = "earliest".to_owned();
        loop {
            let path = format!("/v1/streams/s/records?partition={partition}&from={from}&max=10000");
            let (status, body) = http.request("GET", &path, "").expect("read");
            assert_eq!(status, 200, "{path}: {body}");
            let page: serde_json::Value = serde_json::from_str(&body).expect("json");
            let records = page["records"].as_array().expect("records");
            let Some(last) = records.last() else {
                break;
            };
            for r in records {
                let key = r["key"].as_str().expect("a key").to_owned();
                let payload = r["payload"].as_str().expect("a text payload").to_owned();
                stored.push((key, payload));
            }
            from = format!("after:{}", last["position"].as_str().expect("position"));
        }
    }
    stored
}

/// With `sync=always` (the default) an event is acknowledged only once it is on disk, so
/// every acknowledged event survives each SIGKILL of the server mid-load, and the servers
/// that follow on the same directory return each exactly once, in its key's order. Clients
/// do not retry, so an event is written at most once; only those in flight at a kill may be
/// there without an acknowledgement.
#[cfg(unix)]
#[test]
fn acknowledged_events_survive_repeated_sigkills_of_the_server() {
    use std::os::unix::process::ExitStatusExt;

    let cycles = cycles();
    let cli = Cli::new();
    let url = cli.url();
    let mut acked: Acked = Vec::new();
    let mut in_flight_at_kills = 0;
    for cycle in 0..cycles {
        let mut server = Served::start(&cli, &url);
        if cycle == 0 {
            let (status, body) = Http::new(&server.addr)
                .request(
                    "PUT",
                    "/v1/streams/s",
                    &format!(r#"{{"partitions":{PARTITIONS}}}"#),
                )
                .expect("create the stream");
            assert_eq!(status, 201, "{body}");
        }
        let writers: Vec<_> = (0..SINGLE_WRITERS + BATCH_WRITERS)
            .map(|w| {
                let addr = server.addr.clone();
                std::thread::spawn(move || write(&addr, cycle, w, w >= SINGLE_WRITERS))
            })
            .collect();
        // Kill at a different moment of each cycle.
        std::thread::sleep(Duration::from_millis(100 + cycle * 37 % 300));
        server.child.kill().expect("SIGKILL the server");
        let status = server.child.wait().expect("reap the server");
        assert_eq!(status.signal(), Some(9), "killed by SIGKILL: {status}");
        for writer in writers {
            acked.extend(writer.join().expect("writer thread"));
        }
        in_flight_at_kills += SINGLE_WRITERS + BATCH_WRITERS;
    }
    assert!(!acked.is_empty(), "nothing was acknowledged");

    let server = Served::start(&cli, &url);
    let stored = read_all(&server.addr);
    drop(server);

    let mut count: HashMap<&str, usize> = HashMap::new();
    for (_, p) in &stored {
        *count.entry(p.as_str()).or_default() += 1;
    }
    let lost: Vec<&String> = acked
        .iter()
        .map(|(_, _, p)| p)
        .filter(|p| !count.contains_key(p.as_str()))
        .collect();
    let duplicated = count.values().filter(|n| **n > 1).count();
    let acked_set: HashSet<&str> = acked.iter().map(|(_, _, p)| p.as_str()).collect();
    let unacknowledged = count.keys().filter(|p| !acked_set.contains(*p)).count();
    // Per key, the stored order is the order sent: payloads carry cycle and sequence.
    let order_of = |p: &str| -> (u64, u64) {
        let mut parts = p.split(['-', ' ']);
        let c = parts.next().and_then(|c| c[1..].parse().ok());
        let _w = parts.next();
        let n = parts.next().and_then(|n| n.parse().ok());
        (c.expect("cycle"), n.expect("sequence"))
    };
    let mut last: HashMap<&str, (u64, u64)> = HashMap::new();
    let mut out_of_order = 0;
    for (k, p) in &stored {
        let at = order_of(p);
        if last
            .insert(k.as_str(), at)
            .is_some_and(|before| before >= at)
        {
            out_of_order += 1;
        }
    }
    println!(
        "sigkill cycles: {cycles} kills of cloudstream serve under {} writers (single events and \
         batches of 1-1,000), {} events acknowledged, {} records after restart, {} acknowledged \
         ones lost, {} duplicated, {} keys out of order, {} stored without an acknowledgement \
         (in flight at a kill)",
        SINGLE_WRITERS + BATCH_WRITERS,
        acked.len(),
        stored.len(),
        lost.len(),
        duplicated,
        out_of_order,
        unacknowledged
    );
    assert!(
        lost.is_empty(),
        "{} acknowledged events were lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert_eq!(duplicated, 0, "events stored more than once");
    assert_eq!(out_of_order, 0, "a key's events out of order");
    // At most one request per writer in flight at each kill, a batch of up to 1,000 events.
    assert!(
        unacknowledged as u64 <= in_flight_at_kills * 1000,
        "more events stored than acknowledged or in flight"
    );
}
