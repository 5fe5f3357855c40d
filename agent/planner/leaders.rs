//! Preferred-leader balance: reorder replicas (no data moves) so every active broker is the
//! preferred leader of its share of partitions, changing as few leaders as possible and
//! preferring partitions that are being reassigned anyway.

use super::balance::Model;
use super::Role;

/// Max - min preferred leaderships per active broker, before (original leaders) or now.
pub(super) fn spread(m: &Model, before: bool) -> u64 {
    let leads = leads(m, before);
    let active = (0..m.role.len()).filter(|b| m.role[*b] == Role::Active).map(|b| leads[b]);
    u64::from(active.clone().max().unwrap_or(0) - active.min().unwrap_or(0))
}

fn leads(m: &Model, before: bool) -> Vec<u32> {
    let mut leads = vec![0u32; m.role.len()];
    for p in 0..m.partitions() {
        let b = if before { m.original_leader[p] } else { m.replicas(p)[0] };
        leads[b as usize] += 1;
    }
    leads
}

/// Each active broker's share of leaderships: floor or ceil of the mean, the extra ones to the
/// brokers that lead most now.
fn targets(m: &Model, leads: &[u32]) -> Vec<u32> {
    let mut active: Vec<u32> = (0..m.role.len() as u32).filter(|b| m.role[*b as usize] == Role::Active).collect();
    active.sort_by_key(|b| (std::cmp::Reverse(leads[*b as usize]), *b));
    let led = (0..m.partitions()).filter(|p| m.replicas(*p).iter().any(|b| m.role[*b as usize] == Role::Active)).count()
        as u32;
    let n = active.len().max(1) as u32;
    let mut target = vec![0u32; m.role.len()];
    for (i, b) in active.iter().enumerate() {
        target[*b as usize] = led / n + u32::from((i as u32) < led % n);
    }
    target
}

pub(super) fn balance(m: &mut Model) {
    let mut leads = leads(m, false);
    let target = targets(m, &leads);
    // Partitions already changing first: reordering them costs nothing extra.
    let changing: Vec<usize> = (0..m.partitions()).filter(|p| m.replicas(*p)[0] != m.original_leader[*p]).collect();
    let mut order: Vec<usize> = changing.clone();
    let mut seen = vec![false; m.partitions()];
    for p in &changing {
        seen[*p] = true;
    }
    order.extend((0..m.partitions()).filter(|p| !seen[*p]));
    for p in order {
        let leader = m.replicas(p)[0] as usize;
        if leads[leader] > target[leader] {
            if let Some(s) = wanting_member(m, p, &leads, &target) {
                swap_leader(m, &mut leads, p, s);
            }
        }
    }
    chains(m, &mut leads, &target);
    // Whatever is left on brokers that are down or leaving goes to the least-loaded member.
    for p in 0..m.partitions() {
        let reps = m.replicas(p);
        if m.role[reps[0] as usize] != Role::Active {
            let best = (1..reps.len())
                .filter(|s| m.role[reps[*s] as usize] == Role::Active)
                .min_by_key(|s| (leads[reps[*s] as usize], *s));
            if let Some(s) = best {
                swap_leader(m, &mut leads, p, s);
            }
        }
    }
}

/// The member of `p` furthest below its target, if any is.
fn wanting_member(m: &Model, p: usize, leads: &[u32], target: &[u32]) -> Option<usize> {
    let reps = m.replicas(p);
    (1..reps.len())
        .filter(|s| leads[reps[*s] as usize] < target[reps[*s] as usize])
        .max_by_key(|s| (target[reps[*s] as usize] - leads[reps[*s] as usize], std::cmp::Reverse(*s)))
}

fn swap_leader(m: &mut Model, leads: &mut [u32], p: usize, slot: usize) {
    let base = m.start[p] as usize;
    leads[m.reps[base] as usize] -= 1;
    leads[m.reps[base + slot] as usize] += 1;
    m.reps.swap(base, base + slot);
}

/// Two-step hand-overs for what the direct pass could not place: an over-target broker hands a
/// partition to a member at its target, which hands one of its own to a member below target.
fn chains(m: &mut Model, leads: &mut [u32], target: &[u32]) {
    let over: Vec<usize> = (0..m.role.len()).filter(|b| leads[*b] > target[*b]).collect();
    if over.is_empty() {
        return;
    }
    let mut led: Vec<Vec<usize>> = vec![Vec::new(); m.role.len()];
    for p in 0..m.partitions() {
        led[m.replicas(p)[0] as usize].push(p);
    }
    for b in over {
        'partitions: for i in 0..led[b].len() {
            if leads[b] <= target[b] {
                break;
            }
            let p = led[b][i];
            if m.replicas(p)[0] as usize != b {
                continue;
            }
            for s in 1..m.replicas(p).len() {
                let mid = m.replicas(p)[s] as usize;
                if m.role[mid] != Role::Active {
                    continue;
                }
                let next = led[mid]
                    .iter()
                    .copied()
                    .find(|q| m.replicas(*q)[0] as usize == mid && wanting_member(m, *q, leads, target).is_some());
                if let Some(q) = next {
                    let t = wanting_member(m, q, leads, target).unwrap_or(0);
                    let to = m.replicas(q)[t] as usize;
                    swap_leader(m, leads, q, t);
                    swap_leader(m, leads, p, s);
                    led[to].push(q);
                    led[mid].push(p);
                    continue 'partitions;
                }
            }
        }
    }
}
