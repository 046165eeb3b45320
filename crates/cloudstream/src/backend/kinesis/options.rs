//! The options of `kinesis://[REGION]` URLs: `endpoint=http://127.0.0.1:4567` (a
//! Kinesis-compatible server), `profile=NAME`, `access_key_id=...&secret_access_key=...`
//! (else the usual AWS chain: environment, profile, SSO, instance role),
//! `mode=provisioned|on-demand`, and where consumer checkpoints live (`checkpoints=`,
//! `checkpoint_endpoint=`, see [`crate::checkpoint`]). The region comes from the host part,
//! else from the AWS chain.

use crate::checkpoint::{CheckpointLocation, DEFAULT_TABLE};
use crate::url::ProviderUrl;
use crate::Result;

/// How Kinesis streams are provisioned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CapacityMode {
    /// A fixed number of shards: one per partition (the default).
    #[default]
    Provisioned,
    /// AWS scales shards itself; the stream has as many partitions as it has open shards.
    OnDemand,
}

/// Settings of `kinesis://` from the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KinesisOptions {
    /// The region (the URL's host), else the AWS chain's.
    pub region: Option<String>,
    /// A Kinesis-compatible endpoint (kinesalite, moto, LocalStack), else AWS's.
    pub endpoint: Option<String>,
    /// A named AWS profile.
    pub profile: Option<String>,
    /// Static credentials: access key id and secret (and an optional session token).
    pub credentials: Option<(String, String, Option<String>)>,
    /// Capacity mode of the streams this client creates.
    pub mode: CapacityMode,
    /// Where consumer checkpoints live.
    pub checkpoints: CheckpointLocation,
}

const KNOWN: &[&str] = &[
    "endpoint",
    "profile",
    "access_key_id",
    "secret_access_key",
    "session_token",
    "mode",
    "checkpoints",
    "checkpoint_endpoint",
];

impl KinesisOptions {
    /// The settings of a `kinesis://[REGION]` URL.
    pub fn from_url(url: &ProviderUrl) -> Result<Self> {
        let region = url.location().trim_end_matches('/');
        let mut o = KinesisOptions {
            region: (!region.is_empty()).then(|| region.to_owned()),
            endpoint: None,
            profile: None,
            credentials: None,
            mode: CapacityMode::Provisioned,
            checkpoints: CheckpointLocation::DynamoDb {
                table: DEFAULT_TABLE.to_owned(),
                endpoint: None,
            },
        };
        let (mut key, mut secret, mut token, mut checkpoint_endpoint) = (None, None, None, None);
        let mut checkpoints = "dynamodb".to_owned();
        for (k, v) in url.options() {
            match k.as_str() {
                "endpoint" => o.endpoint = Some(v),
                "profile" => o.profile = Some(v),
                "access_key_id" => key = Some(v),
                "secret_access_key" => secret = Some(v),
                "session_token" => token = Some(v),
                "checkpoints" => checkpoints = v,
                "checkpoint_endpoint" => checkpoint_endpoint = Some(v),
                "mode" => {
                    o.mode = match v.as_str() {
                        "provisioned" => CapacityMode::Provisioned,
                        "on-demand" => CapacityMode::OnDemand,
                        other => {
                            return Err(url.invalid(format!(
                                "mode must be provisioned or on-demand, got {other:?}"
                            )))
                        }
                    }
                }
                _ => return Err(url.unknown_option(&k, KNOWN)),
            }
        }
        o.credentials = match (key, secret) {
            (Some(k), Some(s)) => Some((k, s, token)),
            (None, None) => None,
            _ => return Err(url.invalid("access_key_id and secret_access_key go together")),
        };
        o.checkpoints = CheckpointLocation::parse(&checkpoints, checkpoint_endpoint)
            .map_err(|e| url.invalid(e))?;
        Ok(o)
    }
}
