//! The server-side assignors of consumer groups (`group.consumer.assignors`):
//!
//! - `uniform` spreads the subscribed partitions so that member counts differ by at most one
//!   wherever subscriptions allow it, keeps every partition where it was when that does not
//!   unbalance the group (sticky), and, when brokers and members have racks, gives a partition
//!   to a member in one of its replicas' racks among equally loaded ones;
//! - `range` gives each member subscribed to a topic a contiguous range of its partitions, in
//!   member order (instance id, else member id), as Kafka's range assignor does.
//!
//! Both are deterministic: the same input gives the same assignment on any node.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashSet};

use uuid::Uuid;

use super::{insert, pairs, Assignment};

pub const UNIFORM: &str = "uniform";
pub const RANGE: &str = "range";

/// A member as the assignors see it.
#[derive(Debug, Clone)]
pub struct MemberSpec<'a> {
    pub id: &'a str,
    pub instance_id: Option<&'a str>,
    pub rack: Option<&'a str>,
    /// The topics it subscribes to that exist.
    pub topics: BTreeSet<Uuid>,
    /// Its target before this computation.
    pub current: &'a Assignment,
}

#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub partitions: i32,
    /// The racks of each partition's replicas (may be empty).
    pub racks: Vec<Vec<String>>,
}

/// Every member's new target, empty ones included.
pub fn assign(
    name: &str,
    members: &[MemberSpec],
    topics: &BTreeMap<Uuid, TopicSpec>,
) -> BTreeMap<String, Assignment> {
    let out = match name {
        RANGE => range(members, topics),
        _ => uniform(members, topics),
    };
    members.iter().map(|m| m.id.to_string()).zip(out).collect()
}

fn on_rack(m: &MemberSpec, topics: &BTreeMap<Uuid, TopicSpec>, t: &Uuid, p: i32) -> bool {
    let Some(rack) = m.rack else {
        return false;
    };
    topics
        .get(t)
        .and_then(|s| s.racks.get(p as usize))
        .is_some_and(|racks| racks.iter().any(|r| r == rack))
}

fn uniform(members: &[MemberSpec], topics: &BTreeMap<Uuid, TopicSpec>) -> Vec<Assignment> {
    let n = members.len();
    let mut out = vec![Assignment::new(); n];
    let mut count = vec![0usize; n];
    let mut taken: HashSet<(Uuid, i32)> = HashSet::new();
    let eligible = |i: usize, t: &Uuid| members[i].topics.contains(t) && topics.contains_key(t);
    // Sticky: partitions stay with the member that had them, if it still may have them.
    for (i, m) in members.iter().enumerate() {
        for (t, p) in pairs(m.current) {
            let exists = topics.get(&t).is_some_and(|s| p < s.partitions);
            if exists && eligible(i, &t) && taken.insert((t, p)) {
                insert(&mut out[i], t, p);
                count[i] += 1;
            }
        }
    }
    // The rest, each to the least loaded member that may have it (on its rack first).
    for (t, spec) in topics {
        for p in 0..spec.partitions {
            if taken.contains(&(*t, p)) {
                continue;
            }
            let best = (0..n)
                .filter(|i| eligible(*i, t))
                .min_by_key(|i| (count[*i], !on_rack(&members[*i], topics, t, p), *i));
            if let Some(i) = best {
                insert(&mut out[i], *t, p);
                count[i] += 1;
                taken.insert((*t, p));
            }
        }
    }
    // Balance: move a partition from a member with two or more than another member that may
    // have it, until no such move exists. Each move lowers the sum of squared counts, so
    // this ends.
    loop {
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|i| (Reverse(count[*i]), *i));
        let mv = order.iter().find_map(|&d| {
            let mut options: Vec<(Uuid, i32)> = pairs(&out[d]).collect();
            // Give away partitions off the donor's rack first.
            options.sort_by_key(|(t, p)| on_rack(&members[d], topics, t, *p));
            options.into_iter().find_map(|(t, p)| {
                (0..n)
                    .filter(|r| eligible(*r, &t) && count[*r] + 1 < count[d])
                    .min_by_key(|r| (count[*r], !on_rack(&members[*r], topics, &t, p), *r))
                    .map(|r| (d, r, t, p))
            })
        });
        let Some((d, r, t, p)) = mv else {
            break;
        };
        if let Some(ps) = out[d].get_mut(&t) {
            ps.remove(&p);
            if ps.is_empty() {
                out[d].remove(&t);
            }
        }
        count[d] -= 1;
        insert(&mut out[r], t, p);
        count[r] += 1;
    }
    out
}

fn range(members: &[MemberSpec], topics: &BTreeMap<Uuid, TopicSpec>) -> Vec<Assignment> {
    let mut out = vec![Assignment::new(); members.len()];
    for (t, spec) in topics {
        let mut subs: Vec<usize> = (0..members.len())
            .filter(|i| members[*i].topics.contains(t))
            .collect();
        if subs.is_empty() {
            continue;
        }
        subs.sort_by_key(|i| members[*i].instance_id.unwrap_or(members[*i].id));
        let k = subs.len() as i32;
        let (per, extra) = (spec.partitions / k, spec.partitions % k);
        let mut start = 0;
        for (j, i) in subs.into_iter().enumerate() {
            let len = per + i32::from((j as i32) < extra);
            for p in start..start + len {
                insert(&mut out[i], *t, p);
            }
            start += len;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn spec(partitions: i32) -> TopicSpec {
        TopicSpec {
            partitions,
            racks: Vec::new(),
        }
    }

    fn counts(out: &BTreeMap<String, Assignment>) -> Vec<usize> {
        out.values()
            .map(|a| a.values().map(|p| p.len()).sum())
            .collect()
    }

    fn all_once(out: &BTreeMap<String, Assignment>, topics: &BTreeMap<Uuid, TopicSpec>) {
        let mut seen = HashSet::new();
        for a in out.values() {
            for tp in pairs(a) {
                assert!(seen.insert(tp), "{tp:?} assigned twice");
            }
        }
        let total: i32 = topics.values().map(|s| s.partitions).sum();
        assert_eq!(seen.len() as i32, total, "every partition is assigned");
    }

    #[test]
    fn uniform_balances_and_sticks() {
        let topics: BTreeMap<Uuid, TopicSpec> = [(topic(1), spec(6)), (topic(2), spec(3))].into();
        let subs: BTreeSet<Uuid> = topics.keys().copied().collect();
        let empty = Assignment::new();
        let ids = ["a", "b", "c"];
        let members: Vec<MemberSpec> = ids
            .iter()
            .map(|id| MemberSpec {
                id,
                instance_id: None,
                rack: None,
                topics: subs.clone(),
                current: &empty,
            })
            .collect();
        let first = assign(UNIFORM, &members, &topics);
        all_once(&first, &topics);
        assert_eq!(counts(&first), vec![3, 3, 3]);

        // A fourth member: each old member gives up at most what balance needs.
        let mut members: Vec<MemberSpec> = ids
            .iter()
            .map(|id| MemberSpec {
                id,
                instance_id: None,
                rack: None,
                topics: subs.clone(),
                current: &first[*id],
            })
            .collect();
        members.push(MemberSpec {
            id: "d",
            instance_id: None,
            rack: None,
            topics: subs.clone(),
            current: &empty,
        });
        let second = assign(UNIFORM, &members, &topics);
        all_once(&second, &topics);
        let mut c = counts(&second);
        c.sort_unstable();
        assert_eq!(c, vec![2, 2, 2, 3]);
        let kept: usize = ids
            .iter()
            .map(|id| {
                pairs(&first[*id])
                    .filter(|(t, p)| second[*id].get(t).is_some_and(|s| s.contains(p)))
                    .count()
            })
            .sum();
        assert_eq!(kept, 7, "only the two partitions the newcomer needs move");
    }

    #[test]
    fn uniform_respects_subscriptions_and_racks() {
        let mut racked = spec(4);
        racked.racks = vec![
            vec!["r1".into()],
            vec!["r2".into()],
            vec!["r1".into()],
            vec!["r2".into()],
        ];
        let topics: BTreeMap<Uuid, TopicSpec> = [(topic(1), racked), (topic(2), spec(2))].into();
        let empty = Assignment::new();
        let both: BTreeSet<Uuid> = [topic(1), topic(2)].into();
        let only1: BTreeSet<Uuid> = [topic(1)].into();
        let members = vec![
            MemberSpec {
                id: "a",
                instance_id: None,
                rack: Some("r1"),
                topics: only1.clone(),
                current: &empty,
            },
            MemberSpec {
                id: "b",
                instance_id: None,
                rack: Some("r2"),
                topics: only1,
                current: &empty,
            },
            MemberSpec {
                id: "c",
                instance_id: None,
                rack: None,
                topics: both,
                current: &empty,
            },
        ];
        let out = assign(UNIFORM, &members, &topics);
        all_once(&out, &topics);
        assert!(!out["a"].contains_key(&topic(2)) && !out["b"].contains_key(&topic(2)));
        assert_eq!(counts(&out), vec![2, 2, 2]);
        assert_eq!(
            out["a"][&topic(1)],
            [0, 2].into(),
            "partitions on r1 go to r1"
        );
        assert_eq!(
            out["b"][&topic(1)],
            [1, 3].into(),
            "partitions on r2 go to r2"
        );
    }

    #[test]
    fn range_gives_contiguous_ranges_in_member_order() {
        let topics: BTreeMap<Uuid, TopicSpec> = [(topic(1), spec(7))].into();
        let subs: BTreeSet<Uuid> = topics.keys().copied().collect();
        let empty = Assignment::new();
        let members: Vec<MemberSpec> = ["m2", "m1", "m3"]
            .iter()
            .map(|id| MemberSpec {
                id,
                instance_id: None,
                rack: None,
                topics: subs.clone(),
                current: &empty,
            })
            .collect();
        let out = assign(RANGE, &members, &topics);
        all_once(&out, &topics);
        assert_eq!(out["m1"][&topic(1)], [0, 1, 2].into());
        assert_eq!(out["m2"][&topic(1)], [3, 4].into());
        assert_eq!(out["m3"][&topic(1)], [5, 6].into());
    }
}
