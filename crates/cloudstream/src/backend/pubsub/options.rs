//! The options of `pubsub://PROJECT` URLs: `endpoint=`, `ack_deadline_s=`,
//! `max_delivery_attempts=`.

use crate::url::ProviderUrl;
use crate::Result;

/// Settings of `pubsub://PROJECT` from the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubSubOptions {
    /// The Google Cloud project.
    pub project: String,
    /// A Pub/Sub-compatible endpoint (the emulator), else `PUBSUB_EMULATOR_HOST`, else Google's.
    pub endpoint: Option<String>,
    /// Seconds a delivered message stays leased before redelivery (`ack_deadline_s`, 10 to
    /// 600; default 30). The client extends it while the record is in hand.
    pub ack_deadline_secs: i32,
    /// Deliveries before a message goes to the dead-letter topic `STREAM.dlq`
    /// (`max_delivery_attempts`, 5 to 100; default 5).
    pub max_delivery_attempts: i32,
}

impl PubSubOptions {
    /// The settings of a `pubsub://PROJECT` URL.
    pub fn from_url(url: &ProviderUrl) -> Result<Self> {
        let project = url.location().trim_end_matches('/');
        if project.is_empty() {
            return Err(url.invalid("pubsub:// needs a project, e.g. pubsub://my-project"));
        }
        let mut o = PubSubOptions {
            project: project.to_owned(),
            endpoint: None,
            ack_deadline_secs: 30,
            max_delivery_attempts: 5,
        };
        let ranged = |k: &str, v: &str, lo: i32, hi: i32| -> Result<i32> {
            v.parse()
                .ok()
                .filter(|n| (lo..=hi).contains(n))
                .ok_or_else(|| {
                    url.invalid(format!(
                        "{k} must be a whole number from {lo} to {hi}, got {v:?}"
                    ))
                })
        };
        for (k, v) in url.options() {
            match k.as_str() {
                "endpoint" => o.endpoint = Some(v),
                "ack_deadline_s" => o.ack_deadline_secs = ranged(&k, &v, 10, 600)?,
                "max_delivery_attempts" => o.max_delivery_attempts = ranged(&k, &v, 5, 100)?,
                _ => {
                    let known = ["endpoint", "ack_deadline_s", "max_delivery_attempts"];
                    return Err(url.unknown_option(&k, &known));
                }
            }
        }
        Ok(o)
    }
}
