//! What the harness reads from the running system: partition leaders and replicas from Kafka's
//! metadata, and counters from a sinker's /metrics.

use std::{collections::HashMap, time::Duration};

use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::audit;

/// One partition's leader (-1: none) and in-sync replicas, by broker id.
#[derive(Debug, Clone)]
pub struct PartitionReplicas {
    pub leader: i32,
    pub isr: Vec<i32>,
}

/// The topic's partitions as the cluster's metadata describes them now (blocking).
pub fn partitions(brokers: &str, topic: &str) -> anyhow::Result<HashMap<i32, PartitionReplicas>> {
    let c: BaseConsumer = audit::consumer(brokers, "chaos-observer")?;
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(5))?;
    let topic = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| anyhow::anyhow!("topic {topic} not in the metadata"))?;
    Ok(topic
        .partitions()
        .iter()
        .map(|p| (p.id(), PartitionReplicas { leader: p.leader(), isr: p.isr().to_vec() }))
        .collect())
}

/// The broker that leads the most partitions (the lowest id on a tie), with its count.
pub fn busiest_leader(partitions: &HashMap<i32, PartitionReplicas>) -> Option<(i32, usize)> {
    let mut counts: HashMap<i32, usize> = HashMap::new();
    for p in partitions.values().filter(|p| p.leader >= 0) {
        *counts.entry(p.leader).or_default() += 1;
    }
    counts.into_iter().max_by_key(|(broker, n)| (*n, -broker))
}

/// The value of a counter or gauge (summed over its label sets) on a Prometheus text page.
pub fn metric_value(page: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in page.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            found = Some(found.unwrap_or(0.0) + v);
        }
    }
    found
}

/// Reads one metric from a /metrics URL.
pub async fn scrape(url: &str, name: &str) -> Option<f64> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(3)).build().ok()?;
    let page = client.get(url).send().await.ok()?.text().await.ok()?;
    metric_value(&page, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_values_are_summed_over_labels_and_names_match_exactly() {
        let page = "# HELP x\nsinker_offset_conflicts_total 3\nsinker_offset_conflicts_total_other 9\nsinker_consumer_lag{topic=\"t\",partition=\"0\"} 4\nsinker_consumer_lag{topic=\"t\",partition=\"1\"} 5\n";
        assert_eq!(metric_value(page, "sinker_offset_conflicts_total"), Some(3.0));
        assert_eq!(metric_value(page, "sinker_consumer_lag"), Some(9.0));
        assert_eq!(metric_value(page, "sinker_missing"), None);
    }

    #[test]
    fn the_busiest_leader_leads_the_most_partitions() {
        let p = |leader| PartitionReplicas { leader, isr: vec![] };
        let parts: HashMap<i32, PartitionReplicas> = [(0, p(2)), (1, p(3)), (2, p(2)), (3, p(1)), (4, p(-1))].into();
        assert_eq!(busiest_leader(&parts), Some((2, 2)));
        assert_eq!(busiest_leader(&HashMap::new()), None);
    }
}
