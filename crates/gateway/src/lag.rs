//! The sinker group's consumer lag, measured by the gateway itself from the broker: high
//! watermarks minus the group's committed offsets. No sinker needs to be reachable.
//!
//! One measurement is three batched requests whatever the partition count: metadata, one
//! OffsetFetch for the group, and ListOffsets (latest, then earliest) per partition leader.

use std::time::Duration;

use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
    Offset, TopicPartitionList,
};
use sluice_core::kafka::{Guarantee, KafkaArgs};

/// One partition's offsets as the broker reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub partition: i32,
    pub low: i64,
    pub high: i64,
    /// The group's committed next offset, if it ever committed one.
    pub committed: Option<i64>,
}

impl PartitionOffsets {
    /// Records not yet consumed by the group. A partition the group never committed counts
    /// from its low watermark (the sinkers start there, auto.offset.reset=earliest), and so
    /// does one whose committed offset fell below it (deleted by retention).
    pub fn lag(&self) -> u64 {
        let from = self.committed.unwrap_or(self.low).max(self.low);
        u64::try_from(self.high - from).unwrap_or(0)
    }

    /// How far the group got: the offset lag is measured from.
    pub fn consumed(&self) -> i64 {
        self.committed.unwrap_or(self.low).max(self.low)
    }
}

/// A client that reads offsets only: it never joins the group it inspects.
pub struct LagReader {
    consumer: BaseConsumer,
    topic: String,
    timeout: Duration,
}

impl LagReader {
    pub fn new(kafka: &KafkaArgs, group: &str, timeout: Duration) -> anyhow::Result<Self> {
        let never_commit = [Guarantee::new(
            "enable.auto.commit",
            "false",
            "the lag reader names the sinkers' group and must never commit offsets for it",
        )];
        let consumer: BaseConsumer = kafka
            .client_config(&[("group.id", group), ("client.id", "sluice-gateway-lag")], &never_commit)?
            .create()?;
        Ok(Self { consumer, topic: kafka.topic.clone(), timeout })
    }

    /// Reads every partition's watermarks and the group's committed offsets.
    pub fn measure(&self) -> Result<Vec<PartitionOffsets>, KafkaError> {
        let metadata = self.consumer.fetch_metadata(Some(&self.topic), self.timeout)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == self.topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(KafkaError::MetadataFetch(rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition));
        }
        let list = |offset: Offset| -> Result<TopicPartitionList, KafkaError> {
            let mut tpl = TopicPartitionList::with_capacity(partitions.len());
            for &p in &partitions {
                tpl.add_partition_offset(&self.topic, p, offset)?;
            }
            Ok(tpl)
        };
        // ListOffsets with the special timestamps "latest" (-1) and "earliest" (-2).
        let highs = self.consumer.offsets_for_times(list(Offset::End)?, self.timeout)?;
        let lows = self.consumer.offsets_for_times(list(Offset::Beginning)?, self.timeout)?;
        let committed = self.consumer.committed_offsets(list(Offset::Invalid)?, self.timeout)?;
        let offset_of = |tpl: &TopicPartitionList, p: i32| -> Option<i64> {
            match tpl.find_partition(&self.topic, p)?.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            }
        };
        partitions
            .iter()
            .map(|&p| {
                let high = offset_of(&highs, p)
                    .ok_or(KafkaError::MetadataFetch(rdkafka::types::RDKafkaErrorCode::OffsetNotAvailable))?;
                let low = offset_of(&lows, p).unwrap_or(0);
                Ok(PartitionOffsets { partition: p, low, high, committed: offset_of(&committed, p) })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::PartitionOffsets;

    #[test]
    fn lag_counts_from_the_committed_offset_or_the_low_watermark() {
        let p = |low, high, committed| PartitionOffsets { partition: 0, low, high, committed };
        assert_eq!(p(0, 100, Some(40)).lag(), 60);
        assert_eq!(p(0, 100, None).lag(), 100);
        assert_eq!(p(30, 100, None).lag(), 70);
        assert_eq!(p(30, 100, Some(10)).lag(), 70, "committed below the low watermark");
        assert_eq!(p(0, 100, Some(100)).lag(), 0);
        assert_eq!(p(0, 100, Some(120)).lag(), 0, "never negative");
        assert_eq!(p(0, 0, None).lag(), 0);
    }
}
