//! What each Kafka-protocol service can hold, checked before any call: Apache Kafka's own
//! (few: a broker takes what its settings allow) and Azure Event Hubs' by tier.
//!
//! Event Hubs' figures are Microsoft's "Event Hubs quotas and limits"
//! (<https://learn.microsoft.com/azure/event-hubs/event-hubs-quotas>) and the Kafka endpoint's
//! own ("Apache Kafka client configurations for Azure Event Hubs",
//! <https://learn.microsoft.com/azure/event-hubs/apache-kafka-configurations>).

use std::time::Duration;

use super::options::{EventHubsTier, Service};
use crate::{Error, Result};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// Room kept within the largest message for what a record carries besides the event (the
/// record's framing and the `cloudstream-time` header).
pub(super) const RECORD_ROOM: usize = 512;

/// What a service holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Limits {
    /// Largest message, bytes.
    pub message_bytes: usize,
    /// Most partitions of one topic.
    pub partitions: u32,
    /// Shortest and longest retention.
    pub retention: (Duration, Duration),
    /// Retention is set in whole hours (Event Hubs' `retentionTimeInHours`).
    pub whole_hours: bool,
}

impl Service {
    /// The backend's name: `kafka` or `eventhubs`.
    pub(super) fn name(self) -> &'static str {
        match self {
            Service::Kafka => "kafka",
            Service::EventHubs(_) => "eventhubs",
        }
    }

    /// What the service holds, with the producer's own `message.max.bytes`.
    pub(super) fn limits(self, message_max_bytes: usize) -> Limits {
        match self {
            // A Kafka cluster has no limit of its own on partitions or retention beyond its
            // settings; these bounds keep mistakes (a horizon in ms taken for s) out.
            Service::Kafka => Limits {
                message_bytes: message_max_bytes,
                partitions: 10_000,
                retention: (Duration::from_secs(1), 3650 * DAY),
                whole_hours: false,
            },
            Service::EventHubs(tier) => {
                let (event, partitions, longest) = match tier {
                    EventHubsTier::Basic => (256 * 1000, 32, DAY),
                    EventHubsTier::Standard => (1_000_000, 32, 7 * DAY),
                    EventHubsTier::Premium => (1_000_000, 100, 90 * DAY),
                    EventHubsTier::Dedicated => (1_000_000, 1024, 90 * DAY),
                };
                Limits {
                    message_bytes: message_max_bytes.min(event),
                    partitions,
                    retention: (HOUR, longest),
                    whole_hours: true,
                }
            }
        }
    }
}

impl Limits {
    /// Checks a new stream's horizon and partitions against the service, naming the limit.
    pub(super) fn check_create(
        &self,
        service: Service,
        horizon: Duration,
        partitions: u32,
    ) -> Result<()> {
        let what = match service {
            Service::Kafka => "Kafka".to_owned(),
            Service::EventHubs(tier) => format!("Event Hubs ({tier:?} tier)"),
        };
        if partitions == 0 || partitions > self.partitions {
            return Err(Error::InvalidArgument(format!(
                "{what} holds 1 to {} partitions per topic; {partitions} asked",
                self.partitions
            )));
        }
        let (low, high) = self.retention;
        if horizon < low || horizon > high {
            return Err(Error::InvalidArgument(format!(
                "{what} keeps records for {} to {}; a horizon of {} asked",
                humantime::format_duration(low),
                humantime::format_duration(high),
                humantime::format_duration(horizon)
            )));
        }
        if self.whole_hours
            && (horizon.subsec_nanos() != 0 || !horizon.as_secs().is_multiple_of(3600))
        {
            return Err(Error::InvalidArgument(format!(
                "{what} keeps records for whole hours; a horizon of {} asked",
                humantime::format_duration(horizon)
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_hubs_tiers_have_their_documented_limits() {
        let standard = Service::EventHubs(EventHubsTier::Standard);
        let l = standard.limits(1_000_000);
        assert_eq!((l.partitions, l.retention.1), (32, 7 * DAY));
        assert!(l.check_create(standard, 7 * DAY, 32).is_ok());
        for (horizon, partitions, says) in [
            (8 * DAY, 1, "horizon"),
            (Duration::from_secs(59 * 60), 1, "horizon"),
            (Duration::from_secs(5400), 1, "whole hours"),
            (DAY, 33, "1 to 32 partitions"),
        ] {
            let err = l
                .check_create(standard, horizon, partitions)
                .expect_err(says)
                .to_string();
            assert!(err.contains(says) && err.contains("Standard"), "{err}");
        }
        let premium = Service::EventHubs(EventHubsTier::Premium).limits(1_000_000);
        assert_eq!((premium.partitions, premium.retention.1), (100, 90 * DAY));
        let dedicated = Service::EventHubs(EventHubsTier::Dedicated).limits(1_000_000);
        assert_eq!(dedicated.partitions, 1024);
        let basic = Service::EventHubs(EventHubsTier::Basic).limits(1_000_000);
        assert_eq!((basic.message_bytes, basic.retention.1), (256_000, DAY));
        assert_eq!(Service::Kafka.limits(2_000_000).message_bytes, 2_000_000);
    }
}
