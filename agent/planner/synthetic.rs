//! Deterministic synthetic assignments for tests and benches: many brokers in racks, many
//! partitions, rack-aware like Kafka's own assignment, balanced or deliberately skewed.

use super::{BrokerSpec, PartitionSpec, Problem, Role};

/// A small deterministic generator (SplitMix64); the planner's inputs must not depend on a
/// random crate's version.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// The shape of a synthetic cluster.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub brokers: u32,
    pub racks: u32,
    pub partitions: u32,
    pub replication_factor: u32,
    /// Partitions per topic.
    pub per_topic: u32,
    pub seed: u64,
    /// Within each rack, broker `i` is picked with weight `1 + i % skew` (1: uniform).
    pub skew: u32,
}

impl Shape {
    /// `brokers` in `racks` racks, `partitions` partitions of replication factor 3, balanced.
    pub const fn new(brokers: u32, racks: u32, partitions: u32) -> Self {
        Shape { brokers, racks, partitions, replication_factor: 3, per_topic: 100, seed: 42, skew: 1 }
    }

    pub const fn skewed(self, skew: u32) -> Self {
        Shape { skew, ..self }
    }
}

/// Broker ids `1..=brokers`, broker `id` in rack `rack-{(id - 1) % racks}`.
pub fn brokers(shape: &Shape) -> Vec<BrokerSpec> {
    (1..=shape.brokers as i32)
        .map(|id| BrokerSpec {
            id,
            rack: Some(format!("rack-{}", (id as u32 - 1) % shape.racks.max(1))),
            capacity_bytes: None,
            role: Role::Active,
        })
        .collect()
}

/// A rack-aware assignment: each partition's replicas in distinct racks (rotating which rack
/// leads), brokers within a rack taken round-robin (balanced) or by weight (skewed). Sizes are
/// spread over three orders of magnitude.
pub fn problem(shape: &Shape) -> Problem {
    let brokers = brokers(shape);
    let racks = shape.racks.max(1) as usize;
    let mut members: Vec<Vec<i32>> = vec![Vec::new(); racks];
    for b in &brokers {
        members[(b.id as usize - 1) % racks].push(b.id);
    }
    let mut rng = Rng::new(shape.seed);
    // One cursor per rack and replica position, so leaders spread as evenly as replicas.
    let rf = shape.replication_factor as usize;
    let mut cursor = vec![0usize; racks * rf];
    let partitions = (0..shape.partitions)
        .map(|i| {
            let first = i as usize % racks;
            let replicas = (0..shape.replication_factor as usize)
                .map(|j| {
                    let r = (first + j) % racks;
                    let pick = pick(&members[r], &mut cursor[r * rf + j], shape.skew, &mut rng);
                    pick.unwrap_or(0)
                })
                .collect::<Vec<i32>>();
            PartitionSpec {
                topic: format!("topic-{:04}", i / shape.per_topic.max(1)),
                partition: (i % shape.per_topic.max(1)) as i32,
                replicas: dedup_in_rack(replicas, &members, &mut rng),
                size_bytes: (1 + rng.below(1000)) << 20,
            }
        })
        .collect();
    Problem { brokers, partitions }
}

fn pick(members: &[i32], cursor: &mut usize, skew: u32, rng: &mut Rng) -> Option<i32> {
    if members.is_empty() {
        return None;
    }
    if skew <= 1 {
        *cursor += 1;
        return members.get((*cursor - 1) % members.len()).copied();
    }
    let weights: Vec<u64> = (0..members.len()).map(|i| 1 + (i as u64 % u64::from(skew))).collect();
    let mut x = rng.below(weights.iter().sum());
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return members.get(i).copied();
        }
        x -= w;
    }
    members.last().copied()
}

/// With more replicas than racks two replicas can land on one broker: re-pick within its rack.
fn dedup_in_rack(mut replicas: Vec<i32>, members: &[Vec<i32>], rng: &mut Rng) -> Vec<i32> {
    for i in 1..replicas.len() {
        while replicas[..i].contains(&replicas[i]) {
            let rack = members.iter().find(|m| m.contains(&replicas[i])).map_or(&[][..], |m| &m[..]);
            if rack.len() <= replicas[..i].iter().filter(|r| rack.contains(r)).count() {
                break;
            }
            replicas[i] = rack[rng.below(rack.len() as u64) as usize];
        }
    }
    replicas
}
