//! Single-event sends of concurrent requests, written together: one task per stream takes
//! every send waiting when it is free and writes them as one batch (`Stream::send_batch`,
//! one append per partition), then answers each request with its own result. Under load a
//! partition writer then gets one append per round instead of one per request; alone, a
//! send is written at once, with no added wait. Sends that are in flight together carry no
//! order between them, so none is lost by writing them as one batch; a send that failed
//! (too large) fails alone.

use cloudstream::{Event, Receipt, Stream};
use tokio::sync::{mpsc, oneshot};

/// Most sends written as one batch.
const MAX_GROUP: usize = 1_000;

type Waiting = (Event, oneshot::Sender<cloudstream::Result<Receipt>>);

/// The sender of one stream's sends; the task ends when this is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Coalescer {
    tx: mpsc::UnboundedSender<Waiting>,
}

impl Coalescer {
    /// Starts the task writing `stream`'s sends.
    pub(crate) fn start(stream: Stream) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Waiting>();
        tokio::spawn(async move {
            let mut group = Vec::new();
            while rx.recv_many(&mut group, MAX_GROUP).await > 0 {
                let (events, answers): (Vec<Event>, Vec<_>) = group.drain(..).unzip();
                let results = stream.send_batch(events).await;
                for (answer, result) in answers.into_iter().zip(results) {
                    let _ = answer.send(result);
                }
            }
        });
        Coalescer { tx }
    }

    /// Writes one event, with whatever other sends are waiting.
    pub(crate) async fn send(&self, event: Event) -> cloudstream::Result<Receipt> {
        let (answer, result) = oneshot::channel();
        let gone = || cloudstream::Error::Unavailable("the stream's writer stopped".into());
        self.tx.send((event, answer)).map_err(|_| gone())?;
        result.await.map_err(|_| gone())?
    }
}
