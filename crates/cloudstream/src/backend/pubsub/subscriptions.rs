//! Consumers as Pub/Sub subscriptions: each created on first use at the consumer's start,
//! pulled through one streaming pull per process and consumer (forwarded by a task of its
//! own), each message handed out with an acker.

use super::*;

/// A subscription's streaming pull, forwarded by a task of its own so that a pull that
/// times out never cancels the stream midway, and the time before which its messages are
/// skipped (acknowledged unseen).
pub(super) struct Pulled {
    rx: tokio::sync::mpsc::Receiver<google_cloud_pubsub::Result<(Message, Handler)>>,
    not_before: Option<SystemTime>,
}

/// Subscription label holding the consumer's start time (ms since the Unix epoch) for
/// `StartAt::Latest` and `StartAt::AtTime`: messages published before it are skipped.
const NOT_BEFORE_LABEL: &str = "cloudstream-not-before";

/// Forwards a message stream into a channel until the stream ends or nobody listens.
async fn forward(
    mut messages: MessageStream,
    tx: tokio::sync::mpsc::Sender<google_cloud_pubsub::Result<(Message, Handler)>>,
) {
    while let Some(item) = messages.next().await {
        if tx.send(item).await.is_err() {
            return;
        }
    }
}

fn handler_acker(handler: Handler) -> Box<dyn FnOnce(bool) + Send> {
    Box::new(move |ack| if ack { handler.ack() } else { handler.nack() })
}

impl PubSubBackend {
    /// Creates the consumer's subscription if it does not exist: ordered, never expiring,
    /// dead-lettering to `STREAM.dlq` after `max_delivery_attempts`, and starting at `start`:
    /// `Earliest` seeks back over the topic's retention (a server that cannot seek an ordered
    /// subscription, like the emulator, hands a new subscription the retained messages
    /// itself); `Latest` and `AtTime` record their time in a label, and older messages are
    /// skipped. Returns that time, if any.
    pub(super) async fn ensure_subscription(
        &self,
        stream: &str,
        consumer: &str,
        start: crate::StartAt,
    ) -> Result<Option<SystemTime>> {
        let name = self.subscription(stream, consumer);
        match self
            .subscriptions
            .get_subscription()
            .set_subscription(&name)
            .send()
            .await
        {
            Ok(s) => {
                let not_before = s
                    .labels
                    .get(NOT_BEFORE_LABEL)
                    .and_then(|ms| ms.parse().ok());
                return Ok(not_before.map(from_millis));
            }
            Err(e) if matches!(pubsub_error(&e, stream), Error::StreamNotFound { .. }) => {}
            Err(e) => return Err(pubsub_error(&e, &name)),
        }
        let now = SystemTime::now();
        let not_before = match start {
            crate::StartAt::Earliest => None,
            crate::StartAt::Latest => Some(now),
            crate::StartAt::AtTime(t) => Some(t),
        };
        let topic = self.describe_topic(stream).await?;
        let dlq = format!("{stream}.dlq");
        let dlq_topic = self.topic(&dlq);
        let created = self
            .topics
            .create_topic()
            .set_name(&dlq_topic)
            .set_or_clear_message_retention_duration(topic.message_retention_duration)
            .send()
            .await;
        match created.map_err(|e| pubsub_error(&e, &dlq)) {
            Ok(_) | Err(Error::StreamExists { .. }) => {}
            Err(e) => return Err(e),
        }
        let created = self
            .subscriptions
            .create_subscription()
            .set_name(&name)
            .set_topic(self.topic(stream))
            .set_ack_deadline_seconds(self.options.ack_deadline_secs)
            .set_enable_message_ordering(true)
            .set_expiration_policy(ExpirationPolicy::new())
            .set_dead_letter_policy(
                DeadLetterPolicy::new()
                    .set_dead_letter_topic(dlq_topic)
                    .set_max_delivery_attempts(self.options.max_delivery_attempts),
            )
            .set_labels(not_before.map(|t| (NOT_BEFORE_LABEL.to_owned(), to_millis(t).to_string())))
            .send()
            .await;
        match created.map_err(|e| pubsub_error(&e, &name)) {
            Ok(_) | Err(Error::StreamExists { .. }) => {}
            Err(e) => return Err(e),
        }
        let horizon = topic
            .message_retention_duration
            .and_then(|d| Duration::try_from(d).ok())
            .unwrap_or_default();
        let back_to = not_before.unwrap_or(now - horizon).min(now);
        let time = google_cloud_wkt::Timestamp::try_from(back_to)
            .map_err(|e| Error::InvalidArgument(format!("start time: {e}")))?;
        let sought = self
            .subscriptions
            .seek()
            .set_subscription(&name)
            .set_time(time)
            .send()
            .await;
        if let Err(e) = sought {
            // The emulator cannot seek ordered subscriptions (and hands new ones the retained
            // messages itself); anywhere else a refused seek means missed history: say so.
            if self.options.endpoint.is_some() {
                tracing::debug!(subscription = %name, error = %e, "seek refused; the server's own start applies");
            } else {
                tracing::warn!(subscription = %name, error = %e, "seek refused: this consumer starts at its creation, not at the topic's oldest retained message");
            }
        }
        Ok(not_before)
    }

    /// The consumer's message stream (one per process and consumer, shared by its handles).
    async fn pull_stream(
        &self,
        stream: &str,
        consumer: &str,
        start: crate::StartAt,
    ) -> Result<Arc<tokio::sync::Mutex<Pulled>>> {
        let name = self.subscription(stream, consumer);
        let mut pulls = self.pulls.lock().await;
        if let Some(s) = pulls.get(&name) {
            return Ok(s.clone());
        }
        let not_before = self.ensure_subscription(stream, consumer, start).await?;
        let lease = Duration::from_secs(u64::from(self.options.ack_deadline_secs.max(10) as u32));
        let messages = self
            .subscriber
            .subscribe(name.clone())
            .set_max_lease_extension(lease)
            .set_max_outstanding_messages(MAX_OUTSTANDING)
            .build();
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(forward(messages, tx));
        let shared = Arc::new(tokio::sync::Mutex::new(Pulled { rx, not_before }));
        pulls.insert(name, shared.clone());
        Ok(shared)
    }

    /// Forgets a consumer's streaming pull after it ended or failed (the client library ends
    /// a stream after an error it deems permanent), so the next pull opens a new one; what
    /// the failed pull took and did not return is redelivered.
    async fn restart_pull(&self, stream: &str, consumer: &str, what: String) -> Error {
        self.pulls
            .lock()
            .await
            .remove(&self.subscription(stream, consumer));
        Error::Unavailable(format!("the pull of {stream}~{consumer} {what}; fetch again").into())
    }
}

#[async_trait]
impl Subscriptions for PubSubBackend {
    async fn subscribe(&self, stream: &str, consumer: &str, start: crate::StartAt) -> Result<()> {
        cloudstream_log::validate_name("consumer", consumer)?;
        self.pull_stream(stream, consumer, start).await.map(|_| ())
    }
    async fn pull(
        &self,
        stream: &str,
        consumer: &str,
        start: crate::StartAt,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>> {
        cloudstream_log::validate_name("consumer", consumer)?;
        let pulled = self.pull_stream(stream, consumer, start).await?;
        let mut pulled = pulled.lock().await;
        let not_before = pulled.not_before;
        let messages = &mut pulled.rx;
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while out.len() < max {
            let until = if out.is_empty() {
                deadline
            } else {
                tokio::time::Instant::now() + LINGER
            };
            let next = match tokio::time::timeout_at(until, messages.recv()).await {
                Err(_) => break,
                Ok(Some(next)) => next,
                Ok(None) => {
                    drop(pulled);
                    return Err(self.restart_pull(stream, consumer, "ended".into()).await);
                }
            };
            let (message, handler) = match next {
                Ok(next) => next,
                Err(e) => {
                    drop(pulled);
                    let why = format!("failed: {e}");
                    let restarted = self.restart_pull(stream, consumer, why).await;
                    // An error a retry cannot fix (a deleted subscription, no permission) is
                    // reported as itself; others as `Unavailable`, to fetch again.
                    return Err(match pubsub_error(&e, stream) {
                        Error::Backend(_) | Error::Unavailable(_) | Error::Throttled(_) => {
                            restarted
                        }
                        // The subscription is the consumer: gone under a running consumer.
                        Error::StreamNotFound { .. } => Error::ConsumerNotFound {
                            stream: stream.to_owned(),
                            consumer: consumer.to_owned(),
                        },
                        permanent => permanent,
                    });
                }
            };
            let published = message
                .publish_time
                .and_then(|t| SystemTime::try_from(t).ok());
            if let (Some(t), Some(published)) = (not_before, published) {
                if published < t {
                    handler.ack(); // before this consumer's start
                    continue;
                }
            }
            out.push(Delivery {
                record: Self::to_record(message)?,
                ack: crate::backend::Acker::new(handler_acker(handler)),
            });
        }
        Ok(out)
    }
}
