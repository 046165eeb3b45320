//! The bodies of the REST API's answers, written once: the server builds them, the
//! OpenAPI document describes them (feature `openapi`) and the `http://` client reads them.
//!
//! With the `openapi` feature (the server's build) unknown fields are refused, so the API
//! tests, which check every answer against the served document, catch a field the document
//! does not name.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::RecordJson;
use crate::backend::{Capabilities, Checkpoint, ConsumerInfo, StreamInfo};
use crate::consumer::Gap;
use crate::Position;

/// Derives, for each body: serde both ways, and the OpenAPI schema with unknown fields
/// refused under the `openapi` feature.
macro_rules! body {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), serde(deny_unknown_fields))]
        pub struct $name {
            $($(#[$fdoc])* pub $field: $ty,)*
        }
    };
}

body!(
    /// `GET /v1/capabilities`: the provider behind the server.
    CapabilitiesBody {
        /// The provider's short name (`local`, `kinesis`, ...).
        backend: String,
        /// What it can do.
        capabilities: Capabilities,
    }
);

body!(
    /// `GET /v1/streams`: stream names.
    StreamList {
        /// The names.
        streams: Vec<String>,
    }
);

body!(
    /// `PUT /v1/streams/{name}`: the stream just created.
    StreamCreated {
        /// The stream.
        stream: StreamInfo,
    }
);

body!(
    /// `GET /v1/streams/{name}`: a stream with its consumers.
    StreamDescription {
        /// The stream.
        stream: StreamInfo,
        /// Its consumers, with their lag.
        consumers: Vec<ConsumerInfo>,
    }
);

body!(
    /// Where an event was stored.
    Sent {
        /// Its position.
        position: Position,
    }
);

body!(
    /// `POST .../partitions/{p}/events`: where the events of a partition append were stored.
    Appended {
        /// One position per event, in order.
        positions: Vec<Position>,
    }
);

body!(
    /// `GET .../records`: the records of a read.
    Records {
        /// In order.
        records: Vec<RecordJson>,
    }
);

body!(
    /// Records a consumer skipped because they expired before it read them (or a
    /// checkpoint past the end).
    GapJson {
        /// The partition.
        partition: u32,
        /// Where the consumer was.
        from: String,
        /// Where it resumed.
        resumed_at: String,
    }
);

impl From<&Gap> for GapJson {
    fn from(g: &Gap) -> Self {
        GapJson {
            partition: g.partition,
            from: g.from.to_string(),
            resumed_at: g.resumed_at.to_string(),
        }
    }
}

body!(
    /// `POST .../consumers/{c}/fetch`: a consumer's next batch.
    Fetched {
        /// The records.
        records: Vec<RecordJson>,
        /// Gaps met on the way.
        gaps: Vec<GapJson>,
        /// This batch's acknowledgement token: the next fetch (or commit) carries it as
        /// `ack=` to commit this batch; a fetch without it gets this batch again.
        ack: String,
    }
);

body!(
    /// `GET .../consumers`: a stream's consumers and their lag.
    ConsumerList {
        /// The consumers.
        consumers: Vec<ConsumerInfo>,
    }
);

body!(
    /// `GET .../consumers/{c}/checkpoint`: where a consumer resumes in each partition;
    /// `null` if it never committed.
    CheckpointBody {
        /// Partition (a number, as JSON keys are text) → where the consumer resumes.
        #[cfg_attr(feature = "openapi", schema(value_type = Option<BTreeMap<String, crate::backend::PartitionStart>>))]
        checkpoint: Option<Checkpoint>,
    }
);

body!(
    /// `DELETE .../consumers/{c}`: whether the consumer existed.
    Existed {
        /// It did.
        existed: bool,
    }
);

body!(
    /// `PUT .../leases/{l}`: whether the member holds the lease now.
    Held {
        /// It does.
        held: bool,
    }
);

body!(
    /// `GET .../leases`: a consumer group's unexpired leases.
    LeaseList {
        /// Lease → member.
        leases: BTreeMap<String, String>,
    }
);
