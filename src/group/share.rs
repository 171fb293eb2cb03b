//! Share groups' membership (KIP-932): ShareGroupHeartbeat's members, the group epoch and the
//! assignment. A pure state machine; the time and the topics are handed in.
//!
//! Unlike a consumer group, a partition may be assigned to several members at once (they
//! share its records), so there is nothing to revoke: a member's epoch becomes the assignment
//! epoch at its next heartbeat, with its new assignment. The assignor is Kafka's `simple`
//! one: each subscribed topic's partitions are dealt round robin over the members subscribed
//! to it, and when there are more members than partitions, the partitions go round again so
//! every member gets one.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::consumer::{Assignment, TopicView};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// INVALID_REQUEST with Kafka's message.
    InvalidRequest(String),
    FencedMemberEpoch,
    UnknownMemberId,
    GroupMaxSizeReached,
}

/// A ShareGroupHeartbeat, as the machine needs it.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    pub member_id: String,
    pub member_epoch: i32,
    pub rack_id: Option<String>,
    pub subscribed_topic_names: Option<Vec<String>>,
    pub client_id: String,
    pub client_host: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub member_id: String,
    pub member_epoch: i32,
    /// Sent when the member's epoch moved or it (re)joined.
    pub assignment: Option<Assignment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub epoch: i32,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub topics: BTreeSet<String>,
    pub assignment: Assignment,
    deadline: i64,
}

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub session_timeout_ms: i64,
    pub max_size: usize,
}

#[derive(Debug, Clone)]
pub struct ShareGroup {
    pub id: String,
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub members: BTreeMap<String, Member>,
    target: BTreeMap<String, Assignment>,
    /// The metadata version the subscribed topics were last looked at in, and their sizes.
    seen_version: u64,
    sizes: BTreeMap<String, (Uuid, i32)>,
}

impl ShareGroup {
    pub fn new(id: &str) -> Self {
        ShareGroup {
            id: id.to_string(),
            epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            seen_version: 0,
            sizes: BTreeMap::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Kafka's share group states.
    pub fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else {
            "Stable"
        }
    }

    fn subscribed(&self) -> BTreeSet<String> {
        self.members
            .values()
            .flat_map(|m| m.topics.iter().cloned())
            .collect()
    }

    fn sizes_in(&self, view: &dyn TopicView) -> BTreeMap<String, (Uuid, i32)> {
        self.subscribed()
            .into_iter()
            .filter_map(|t| view.topic(&t).map(|i| (t, (i.id, i.partitions))))
            .collect()
    }

    /// Bumps the epoch when a subscribed topic appeared, went or changed its partition count.
    fn check_topics(&mut self, view: &dyn TopicView) {
        if view.version() == self.seen_version {
            return;
        }
        self.seen_version = view.version();
        let sizes = self.sizes_in(view);
        if sizes != self.sizes {
            self.sizes = sizes;
            self.epoch += 1;
        }
    }

    /// Looks at the subscribed topics again after the epoch was bumped for another reason.
    fn refresh(&mut self, view: &dyn TopicView) {
        self.seen_version = view.version();
        self.sizes = self.sizes_in(view);
    }

    fn assign(&mut self) {
        let mut target: BTreeMap<String, Assignment> = self
            .members
            .keys()
            .map(|m| (m.clone(), Assignment::new()))
            .collect();
        for (topic, (id, partitions)) in &self.sizes {
            let members: Vec<&String> = self
                .members
                .values()
                .filter(|m| m.topics.contains(topic))
                .map(|m| &m.id)
                .collect();
            if members.is_empty() || *partitions <= 0 {
                continue;
            }
            let n = (*partitions as usize).max(members.len());
            for i in 0..n {
                let member = members[i % members.len()];
                let p = (i % *partitions as usize) as i32;
                if let Some(a) = target.get_mut(member) {
                    a.entry(*id).or_default().insert(p);
                }
            }
        }
        self.target = target;
        self.assignment_epoch = self.epoch;
    }

    pub fn heartbeat(
        &mut self,
        hb: Heartbeat,
        view: &dyn TopicView,
        s: &Settings,
        now: i64,
    ) -> Result<Reply, Error> {
        if hb.member_id.is_empty() {
            return Err(Error::InvalidRequest("MemberId can't be empty.".into()));
        }
        if hb.member_epoch < -1 {
            return Err(Error::InvalidRequest("MemberEpoch is invalid.".into()));
        }
        if hb.member_epoch == -1 {
            if self.members.remove(&hb.member_id).is_none() {
                return Err(Error::UnknownMemberId);
            }
            self.epoch += 1;
            self.refresh(view);
            self.assign();
            return Ok(Reply {
                member_id: hb.member_id,
                member_epoch: -1,
                assignment: None,
            });
        }
        let joining = hb.member_epoch == 0;
        if joining {
            if hb
                .subscribed_topic_names
                .as_ref()
                .is_none_or(|t| t.is_empty())
            {
                return Err(Error::InvalidRequest(
                    "SubscribedTopicNames must be set in first request.".into(),
                ));
            }
            if !self.members.contains_key(&hb.member_id) && self.members.len() >= s.max_size {
                return Err(Error::GroupMaxSizeReached);
            }
        } else {
            let Some(m) = self.members.get(&hb.member_id) else {
                return Err(Error::UnknownMemberId);
            };
            if m.epoch != hb.member_epoch {
                return Err(Error::FencedMemberEpoch);
            }
        }
        let mut changed = false;
        let member = self.members.entry(hb.member_id.clone()).or_insert_with(|| {
            changed = true;
            Member {
                id: hb.member_id.clone(),
                epoch: 0,
                rack_id: None,
                client_id: String::new(),
                client_host: String::new(),
                topics: BTreeSet::new(),
                assignment: Assignment::new(),
                deadline: 0,
            }
        });
        if joining {
            member.epoch = 0;
        }
        member.deadline = now + s.session_timeout_ms;
        member.client_id = hb.client_id;
        member.client_host = hb.client_host;
        if hb.rack_id.is_some() {
            member.rack_id = hb.rack_id;
        }
        if let Some(names) = hb.subscribed_topic_names {
            let topics: BTreeSet<String> = names.into_iter().collect();
            if topics != member.topics {
                member.topics = topics;
                changed = true;
            }
        }
        if changed {
            self.epoch += 1;
            self.refresh(view);
        } else {
            self.check_topics(view);
        }
        if self.epoch > self.assignment_epoch {
            self.assign();
        }
        let target = self.target.get(&hb.member_id).cloned().unwrap_or_default();
        let member = self.members.get_mut(&hb.member_id).expect("member added");
        let moved = member.epoch != self.assignment_epoch;
        member.epoch = self.assignment_epoch;
        member.assignment = target;
        Ok(Reply {
            member_id: hb.member_id,
            member_epoch: member.epoch,
            assignment: (moved || joining).then(|| member.assignment.clone()),
        })
    }

    /// Removes the members whose session ended; returns whether any did.
    pub fn tick(&mut self, view: &dyn TopicView, now: i64) -> bool {
        let before = self.members.len();
        self.members.retain(|_, m| m.deadline > now);
        if self.members.len() == before {
            return false;
        }
        self.epoch += 1;
        self.refresh(view);
        self.assign();
        true
    }

    /// The soonest session end.
    pub fn next_deadline(&self) -> Option<i64> {
        self.members.values().map(|m| m.deadline).min()
    }

    /// Every member's session starts now (a coordinator took the group over).
    pub fn start_timers(&mut self, now: i64, s: &Settings) {
        for m in self.members.values_mut() {
            m.deadline = now + s.session_timeout_ms;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::consumer::TopicInfo;

    struct View(u64, Vec<(&'static str, Uuid, i32)>);

    impl TopicView for View {
        fn version(&self) -> u64 {
            self.0
        }
        fn topic(&self, name: &str) -> Option<TopicInfo> {
            self.1.iter().find(|t| t.0 == name).map(|t| TopicInfo {
                id: t.1,
                partitions: t.2,
                racks: Vec::new(),
            })
        }
        fn name_of(&self, id: &Uuid) -> Option<String> {
            self.1.iter().find(|t| t.1 == *id).map(|t| t.0.to_string())
        }
        fn names(&self) -> Vec<String> {
            self.1.iter().map(|t| t.0.to_string()).collect()
        }
    }

    const S: Settings = Settings {
        session_timeout_ms: 1000,
        max_size: 3,
    };
    const T: Uuid = Uuid::from_u128(1);

    fn join(g: &mut ShareGroup, v: &View, m: &str, now: i64) -> Result<Reply, Error> {
        g.heartbeat(
            Heartbeat {
                member_id: m.into(),
                subscribed_topic_names: Some(vec!["t".into()]),
                ..Default::default()
            },
            v,
            &S,
            now,
        )
    }

    fn beat(g: &mut ShareGroup, v: &View, m: &str, epoch: i32, now: i64) -> Result<Reply, Error> {
        g.heartbeat(
            Heartbeat {
                member_id: m.into(),
                member_epoch: epoch,
                ..Default::default()
            },
            v,
            &S,
            now,
        )
    }

    fn parts(r: &Reply) -> BTreeSet<i32> {
        r.assignment
            .as_ref()
            .unwrap()
            .get(&T)
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn members_share_one_partition_and_split_many() {
        let one = View(1, vec![("t", T, 1)]);
        let mut g = ShareGroup::new("g");
        let a = join(&mut g, &one, "a", 0).unwrap();
        let b = join(&mut g, &one, "b", 0).unwrap();
        assert_eq!(parts(&a), BTreeSet::from([0]));
        assert_eq!(parts(&b), BTreeSet::from([0]));
        assert_eq!(b.member_epoch, 2);
        // a learns the new epoch, with the same single partition.
        let a2 = beat(&mut g, &one, "a", a.member_epoch, 10).unwrap();
        assert_eq!((a2.member_epoch, parts(&a2)), (2, BTreeSet::from([0])));
        assert_eq!(beat(&mut g, &one, "a", 2, 10).unwrap().assignment, None);

        let four = View(2, vec![("t", T, 4)]);
        let a3 = beat(&mut g, &four, "a", 2, 20).unwrap();
        let b3 = beat(&mut g, &four, "b", 2, 20).unwrap();
        assert_eq!(a3.member_epoch, 3);
        assert_eq!(parts(&a3).len() + parts(&b3).len(), 4);
        assert!(parts(&a3).is_disjoint(&parts(&b3)));
    }

    #[test]
    fn epochs_are_checked_and_sessions_end() {
        let v = View(1, vec![("t", T, 2)]);
        let mut g = ShareGroup::new("g");
        assert!(matches!(
            beat(&mut g, &v, "a", 0, 0),
            Err(Error::InvalidRequest(_))
        ));
        assert!(matches!(
            beat(&mut g, &v, "", 0, 0),
            Err(Error::InvalidRequest(_))
        ));
        let a = join(&mut g, &v, "a", 0).unwrap();
        assert_eq!(
            beat(&mut g, &v, "a", a.member_epoch + 1, 0),
            Err(Error::FencedMemberEpoch)
        );
        assert_eq!(beat(&mut g, &v, "x", 1, 0), Err(Error::UnknownMemberId));
        assert!(matches!(
            beat(&mut g, &v, "a", -2, 0),
            Err(Error::InvalidRequest(_))
        ));
        join(&mut g, &v, "b", 0).unwrap();
        join(&mut g, &v, "c", 0).unwrap();
        assert_eq!(join(&mut g, &v, "d", 0), Err(Error::GroupMaxSizeReached));
        assert_eq!(g.next_deadline(), Some(1000));
        let epoch = g.members["a"].epoch;
        beat(&mut g, &v, "a", epoch, 900).unwrap();
        assert!(g.tick(&v, 1000));
        assert_eq!(g.members.keys().collect::<Vec<_>>(), vec!["a"]);
        let left = beat(&mut g, &v, "a", -1, 1100).unwrap();
        assert_eq!(left.member_epoch, -1);
        assert!(g.is_empty());
        assert_eq!(g.state(), "Empty");
    }
}
