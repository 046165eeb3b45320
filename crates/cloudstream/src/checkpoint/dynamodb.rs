//! [`DynamoCheckpoints`]: checkpoints and group leases in a DynamoDB table, as the Kinesis
//! Client Library keeps its leases. A checkpoint holds, per partition, where the consumer
//! resumes, as text (`after:49590338271490256608559692538361571095921575989136588898`).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue,
    ScalarAttributeType, TableStatus,
};
use tokio::sync::OnceCell;

use super::{parse_resume, Checkpoint, CheckpointStore};
use crate::aws_errors::{aws_error, AwsError};
use crate::backend::PartitionStart;
use crate::{Error, Result};

/// Milliseconds since the Unix epoch, now.
fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Checkpoints in a DynamoDB table: one item per stream and consumer (hash key `stream`,
/// range key `consumer`), one attribute `pN` per partition, and `updated_ms`. Leases of a
/// consumer group are items of the same table with range key `CONSUMER#LEASE` (consumer
/// names cannot hold `#`), attributes `owner` and `expires_ms`, taken by conditional writes.
/// Expiry compares wall clocks, so members' clocks must agree to well within a lease's TTL.
#[derive(Debug)]
pub struct DynamoCheckpoints {
    client: aws_sdk_dynamodb::Client,
    table: String,
    ready: OnceCell<()>,
}

impl DynamoCheckpoints {
    /// A store in `table`, created on first use if missing.
    pub fn new(client: aws_sdk_dynamodb::Client, table: String) -> Self {
        DynamoCheckpoints {
            client,
            table,
            ready: OnceCell::new(),
        }
    }

    /// Creates the table on first use if it is missing, and waits until it is active.
    async fn ready(&self) -> Result<()> {
        self.ready
            .get_or_try_init(|| async {
                for _ in 0..600 {
                    let described = self
                        .client
                        .describe_table()
                        .table_name(&self.table)
                        .send()
                        .await
                        .map_err(|e| aws_error(e, &self.table));
                    match described {
                        Ok(t)
                            if t.table().and_then(|t| t.table_status())
                                == Some(&TableStatus::Active) =>
                        {
                            return Ok(());
                        }
                        Ok(_) => {}
                        Err(AwsError::NotFound(_)) => self.create_table().await?,
                        Err(e) => return Err(e.into_error()),
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(Error::Unavailable(
                    format!("DynamoDB table {} did not become active", self.table).into(),
                ))
            })
            .await
            .map(|_| ())
    }

    /// Creates the table: hash key `stream`, range key `consumer`, on-demand billing.
    async fn create_table(&self) -> Result<()> {
        let key = |name: &str, kind| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
        };
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
        };
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .key_schema(key("stream", KeyType::Hash).map_err(invalid)?)
            .key_schema(key("consumer", KeyType::Range).map_err(invalid)?)
            .attribute_definitions(attribute("stream").map_err(invalid)?)
            .attribute_definitions(attribute("consumer").map_err(invalid)?)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match created.map_err(|e| aws_error(e, &self.table)) {
            Ok(_) | Err(AwsError::InUse(_)) => Ok(()),
            Err(e) => Err(e.into_error()),
        }
    }

    fn item_key(stream: &str, consumer: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("stream".to_owned(), AttributeValue::S(stream.to_owned())),
            (
                "consumer".to_owned(),
                AttributeValue::S(consumer.to_owned()),
            ),
        ])
    }

    /// Every item of a stream, or those whose range key starts with `prefix`.
    async fn items(
        &self,
        stream: &str,
        prefix: Option<&str>,
    ) -> Result<Vec<HashMap<String, AttributeValue>>> {
        self.ready().await?;
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .expression_attribute_names("#s", "stream")
                .expression_attribute_values(":s", AttributeValue::S(stream.to_owned()))
                .consistent_read(true)
                .set_exclusive_start_key(start);
            query = match prefix {
                Some(prefix) => query
                    .key_condition_expression("#s = :s AND begins_with(#c, :p)")
                    .expression_attribute_names("#c", "consumer")
                    .expression_attribute_values(":p", AttributeValue::S(prefix.to_owned())),
                None => query.key_condition_expression("#s = :s"),
            };
            let page = query
                .send()
                .await
                .map_err(|e| aws_error(e, &self.table).into_error())?;
            out.extend(page.items().iter().cloned());
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    fn checkpoint(item: &HashMap<String, AttributeValue>) -> Result<Checkpoint> {
        item.iter()
            .filter_map(|(name, value)| Some((name.strip_prefix('p')?, value.as_s().ok()?)))
            .map(|(p, text)| parse_resume(p, text))
            .collect()
    }
}

fn invalid(e: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(e.to_string())
}

#[async_trait]
impl CheckpointStore for DynamoCheckpoints {
    fn kind(&self) -> &'static str {
        "dynamodb"
    }

    async fn load(&self, stream: &str, consumer: &str) -> Result<Option<Checkpoint>> {
        self.ready().await?;
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::item_key(stream, consumer)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| aws_error(e, &self.table).into_error())?;
        out.item().map(Self::checkpoint).transpose()
    }

    async fn commit(
        &self,
        stream: &str,
        consumer: &str,
        resume: &[(u32, PartitionStart)],
    ) -> Result<()> {
        self.ready().await?;
        // An update expression holds at most 4 KB: 100 partitions per call.
        for chunk in resume.chunks(100) {
            let mut update = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(Self::item_key(stream, consumer)))
                .expression_attribute_names("#u", "updated_ms")
                .expression_attribute_values(":u", AttributeValue::N(now_ms().to_string()));
            let mut sets = vec!["#u = :u".to_owned()];
            for (p, at) in chunk {
                sets.push(format!("#p{p} = :p{p}"));
                update = update
                    .expression_attribute_names(format!("#p{p}"), format!("p{p}"))
                    .expression_attribute_values(
                        format!(":p{p}"),
                        AttributeValue::S(at.to_string()),
                    );
            }
            update
                .update_expression(format!("SET {}", sets.join(", ")))
                .send()
                .await
                .map_err(|e| aws_error(e, &self.table).into_error())?;
        }
        Ok(())
    }

    async fn list(&self, stream: &str) -> Result<Vec<(String, Checkpoint)>> {
        let mut out = Vec::new();
        for item in self.items(stream, None).await? {
            if let Some(Ok(consumer)) = item.get("consumer").map(AttributeValue::as_s) {
                if !consumer.contains('#') {
                    out.push((consumer.clone(), Self::checkpoint(&item)?));
                }
            }
        }
        Ok(out)
    }

    async fn delete(&self, stream: &str, consumer: &str) -> Result<bool> {
        self.ready().await?;
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::item_key(stream, consumer)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| aws_error(e, &self.table).into_error())?;
        Ok(out.attributes().is_some())
    }

    async fn delete_stream(&self, stream: &str) -> Result<()> {
        for item in self.items(stream, None).await? {
            if let Some(Ok(key)) = item.get("consumer").map(AttributeValue::as_s) {
                self.delete(stream, key).await?;
            }
        }
        Ok(())
    }

    async fn take_lease(
        &self,
        stream: &str,
        group: &str,
        name: &str,
        member: &str,
        ttl: Duration,
    ) -> Result<bool> {
        self.ready().await?;
        let now = now_ms();
        let taken = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::item_key(stream, &format!("{group}#{name}"))))
            .update_expression("SET #o = :m, #e = :e")
            .condition_expression("attribute_not_exists(#o) OR #o = :m OR #e < :now")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_names("#e", "expires_ms")
            .expression_attribute_values(":m", AttributeValue::S(member.to_owned()))
            .expression_attribute_values(
                ":e",
                AttributeValue::N((now + ttl.as_millis()).to_string()),
            )
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .send()
            .await
            .map_err(|e| aws_error(e, &self.table));
        match taken {
            Ok(_) => Ok(true),
            Err(AwsError::ConditionFailed(_)) => Ok(false),
            Err(e) => Err(e.into_error()),
        }
    }

    async fn release_lease(
        &self,
        stream: &str,
        group: &str,
        name: &str,
        member: &str,
    ) -> Result<()> {
        self.ready().await?;
        let released = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::item_key(stream, &format!("{group}#{name}"))))
            .condition_expression("#o = :m")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":m", AttributeValue::S(member.to_owned()))
            .send()
            .await
            .map_err(|e| aws_error(e, &self.table));
        match released {
            Ok(_) | Err(AwsError::ConditionFailed(_)) => Ok(()),
            Err(e) => Err(e.into_error()),
        }
    }

    async fn live_leases(&self, stream: &str, group: &str) -> Result<BTreeMap<String, String>> {
        let prefix = format!("{group}#");
        let now = now_ms();
        let mut live = BTreeMap::new();
        for item in self.items(stream, Some(&prefix)).await? {
            let (Some(Ok(key)), Some(Ok(owner)), Some(Ok(expires))) = (
                item.get("consumer").map(AttributeValue::as_s),
                item.get("owner").map(AttributeValue::as_s),
                item.get("expires_ms").map(AttributeValue::as_n),
            ) else {
                continue;
            };
            if expires.parse::<u128>().is_ok_and(|e| e > now) {
                live.insert(key[prefix.len()..].to_owned(), owner.clone());
            }
        }
        Ok(live)
    }
}
