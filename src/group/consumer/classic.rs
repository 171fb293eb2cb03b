//! Members of the classic protocol inside a consumer group: Kafka's online upgrade and
//! downgrade (`group.consumer.migration.policy=bidirectional`, its default).
//!
//! A classic group whose members all speak the consumer embedded protocol becomes a consumer
//! group when the first consumer-protocol member joins ([`ConsumerGroup::from_classic`]); its
//! members keep their partitions and go on with JoinGroup, SyncGroup and Heartbeat, which this
//! group answers from its own assignment: a JoinGroup is answered at once with the member's
//! epoch as generation, a SyncGroup with its current assignment, and a Heartbeat with
//! REBALANCE_IN_PROGRESS whenever the member has to move (the group epoch passed it, it must
//! revoke, or partitions it waits for were released), so it rejoins and reconciles one step.
//! When the last consumer-protocol member goes and classic members remain, the group turns
//! back into a classic group ([`ConsumerGroup::classic_view`]) and rebalances.

use std::collections::BTreeSet;

use super::*;

/// The partitions of `a` by topic name (topics the view no longer knows are left out).
pub fn by_name(a: &Assignment, view: &dyn TopicView) -> Vec<(String, Vec<i32>)> {
    let mut out: Vec<(String, Vec<i32>)> = a
        .iter()
        .filter_map(|(t, ps)| view.name_of(t).map(|n| (n, ps.iter().copied().collect())))
        .collect();
    out.sort();
    out
}

/// Partitions named by topic, as topic ids (unknown topics are left out).
fn by_id(named: &[(String, Vec<i32>)], view: &dyn TopicView) -> Assignment {
    let mut a = Assignment::new();
    for (t, ps) in named {
        if let Some(info) = view.topic(t) {
            let set = a.entry(info.id).or_default();
            set.extend(
                ps.iter()
                    .copied()
                    .filter(|p| *p >= 0 && *p < info.partitions),
            );
        }
    }
    a.retain(|_, ps| !ps.is_empty());
    a
}

impl ConsumerGroup {
    /// A classic member of this group, by member id or (static) instance id.
    fn classic_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<&Member, Error> {
        let m = match instance_id {
            None => self.members.get(member_id).ok_or(Error::UnknownMemberId)?,
            Some(iid) => {
                let m = self.static_member(iid).ok_or(Error::UnknownMemberId)?;
                if m.id != member_id {
                    return Err(Error::FencedInstanceId);
                }
                m
            }
        };
        if m.meta.classic.is_none() {
            return Err(Error::UnknownMemberId);
        }
        Ok(m)
    }

    /// Whether a classic member's protocols can join: the consumer protocol type, and a
    /// protocol name in common with every classic member already in.
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        protocol_type == "consumer"
            && !protocols.is_empty()
            && self
                .members
                .values()
                .filter_map(|m| m.meta.classic.as_ref())
                .all(|c| {
                    c.protocols
                        .iter()
                        .any(|(n, _)| protocols.iter().any(|(p, _)| p == n))
                })
    }

    /// JoinGroup of a classic member: joins or updates the member and reconciles it one step
    /// with the partitions its subscription says it owns; answered at once.
    pub fn classic_join(
        &mut self,
        j: ClassicJoin,
        view: &dyn TopicView,
        s: &Settings,
        now_ms: i64,
    ) -> Result<(ClassicJoined, Vec<Record>), Error> {
        if !self.supports(&j.protocol_type, &j.protocols) {
            return Err(Error::InconsistentGroupProtocol);
        }
        let unknown = j.member_id.is_empty();
        let member_id = if unknown {
            j.new_member_id.clone()
        } else {
            j.member_id.clone()
        };
        let replacing = j
            .instance_id
            .as_deref()
            .and_then(|i| self.static_member(i))
            .is_some();
        if self.members.len() >= s.max_size && !self.members.contains_key(&member_id) && !replacing
        {
            return Err(Error::GroupMaxSizeReached);
        }
        if unknown && j.instance_id.is_none() && j.require_known_member_id {
            return Err(Error::MemberIdRequired(member_id));
        }
        let sub = codec::decode_subscription(&j.protocols[0].1)
            .ok_or(Error::InconsistentGroupProtocol)?;
        let mut records = Vec::new();
        let existing = match j.instance_id.as_deref() {
            None => self.members.get(&member_id).cloned(),
            Some(iid) => match self.static_member(iid).cloned() {
                Some(m) if m.id != member_id => Some(self.take_over(&m, &member_id, &mut records)),
                Some(m) => Some(m),
                None => self.members.get(&member_id).cloned(),
            },
        };
        let was_new = existing.is_none();
        let old = existing.unwrap_or_else(|| Member::new(&member_id));
        let mut meta = old.meta.clone();
        if j.instance_id.is_some() {
            meta.instance_id = j.instance_id.clone();
        }
        if sub.rack.is_some() {
            meta.rack_id = sub.rack.clone();
        }
        meta.rebalance_timeout_ms = j.rebalance_timeout_ms;
        meta.server_assignor = None;
        meta.subscribed_topic_names = sub.topics.clone();
        meta.subscribed_topic_regex = None;
        meta.client_id = j.client_id.clone();
        meta.client_host = j.client_host.clone();
        meta.classic = Some(ClassicMember {
            session_timeout_ms: j.session_timeout_ms,
            protocols: j.protocols.clone(),
        });
        let owned = by_id(&sub.owned, view);
        self.update_member(
            old,
            meta,
            was_new,
            Some(&owned),
            view,
            s,
            now_ms,
            &mut records,
        );
        let generation = self.members[&member_id].current.epoch;
        Ok((
            ClassicJoined {
                member_id,
                generation,
                protocol: j.protocols[0].0.clone(),
            },
            records,
        ))
    }

    /// SyncGroup of a classic member: its current assignment (by topic id), and the consumer
    /// protocol version to encode it at.
    pub fn classic_sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        s: &Settings,
        now_ms: i64,
    ) -> Result<(Assignment, i16, String), Error> {
        let m = self.classic_member(member_id, instance_id)?;
        if generation != m.current.epoch {
            return Err(Error::IllegalGeneration);
        }
        let classic = m.meta.classic.as_ref().ok_or(Error::UnknownMemberId)?;
        let (name, metadata) = classic.protocols[0].clone();
        if self.epoch > m.current.epoch {
            return Err(Error::RebalanceInProgress);
        }
        let assigned = m.current.assigned.clone();
        let session = now_ms + session_ms(m, s);
        let id = m.id.clone();
        self.timers.entry(id).or_insert(Timers {
            session,
            rebalance: None,
        });
        if let Some(t) = self.timers.get_mut(member_id) {
            t.session = session;
        }
        Ok((assigned, codec::protocol_version(&metadata), name))
    }

    /// Heartbeat of a classic member: REBALANCE_IN_PROGRESS when it has to rejoin to move.
    pub fn classic_heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        s: &Settings,
        now_ms: i64,
    ) -> Result<(), Error> {
        let m = self.classic_member(member_id, instance_id)?;
        if generation != m.current.epoch {
            return Err(Error::IllegalGeneration);
        }
        let session = now_ms + session_ms(m, s);
        let c = &m.current;
        let empty = Assignment::new();
        let target = self.target.get(&m.id).unwrap_or(&empty);
        let waiting = pairs(target).any(|(t, p)| {
            !contains(&c.assigned, &t, p) && self.owner(&t, p).is_some_and(|o| o != m.id)
        });
        let rejoin = c.epoch < self.epoch
            || c.state == MemberState::UnrevokedPartitions
            || (c.state == MemberState::UnreleasedPartitions && !waiting);
        let id = m.id.clone();
        if let Some(t) = self.timers.get_mut(&id) {
            t.session = session;
        }
        if rejoin {
            return Err(Error::RebalanceInProgress);
        }
        Ok(())
    }

    /// LeaveGroup of a classic member.
    pub fn classic_leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        view: &dyn TopicView,
        now_ms: i64,
    ) -> Result<Vec<Record>, Error> {
        let id = self.classic_member(member_id, instance_id)?.id.clone();
        let mut records = Vec::new();
        self.remove_member(&id, view, now_ms, &mut records);
        Ok(records)
    }

    /// Whether the group should turn back into a classic group: members remain, and all of
    /// them speak the classic protocol (the last consumer-protocol member went).
    pub fn all_classic(&self) -> bool {
        !self.members.is_empty() && self.members.values().all(|m| m.meta.classic.is_some())
    }

    /// The records that delete this group with all its members (before it becomes classic).
    pub fn all_tombstones(&self) -> Vec<Record> {
        let mut out = Vec::new();
        for id in self.members.keys() {
            out.push(Record::Current(id.clone(), None));
            if self.target.contains_key(id) {
                out.push(Record::Target(id.clone(), None));
            }
            out.push(Record::Member(id.clone(), None));
        }
        out.extend(self.tombstones());
        out
    }

    /// The group as a classic group takes it over: its epoch as generation, a protocol every
    /// member supports (the first member's first such), and each member's current assignment
    /// encoded at its protocol's version. None when no protocol is common to all.
    pub fn classic_view(&self, view: &dyn TopicView) -> Option<(i32, String, Vec<ClassicView>)> {
        let classics: Vec<(&Member, &ClassicMember)> = self
            .members
            .values()
            .filter_map(|m| m.meta.classic.as_ref().map(|c| (m, c)))
            .collect();
        let (_, first) = classics.first()?;
        let protocol = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .find(|n| {
                classics
                    .iter()
                    .all(|(_, c)| c.protocols.iter().any(|(p, _)| p == *n))
            })?
            .clone();
        let members = classics
            .iter()
            .map(|(m, c)| {
                let metadata = c
                    .protocols
                    .iter()
                    .find(|(n, _)| *n == protocol)
                    .map(|(_, b)| b.clone())
                    .unwrap_or_default();
                let version = codec::protocol_version(&metadata);
                ClassicView {
                    id: m.id.clone(),
                    instance_id: m.meta.instance_id.clone(),
                    client_id: m.meta.client_id.clone(),
                    client_host: m.meta.client_host.clone(),
                    session_timeout_ms: c.session_timeout_ms,
                    rebalance_timeout_ms: m.meta.rebalance_timeout_ms,
                    protocols: c.protocols.clone(),
                    assignment: codec::encode_assignment(
                        version,
                        &by_name(&m.current.assigned, view),
                    ),
                }
            })
            .collect();
        Some((self.epoch, protocol, members))
    }

    /// A classic group's members taken over by a new consumer group (the online upgrade):
    /// each keeps the partitions of its classic assignment, at the classic generation.
    pub fn from_classic(
        id: &str,
        generation: i32,
        protocol: &str,
        seeds: Vec<ClassicSeed>,
        view: &dyn TopicView,
        s: &Settings,
        now_ms: i64,
    ) -> (ConsumerGroup, Vec<Record>) {
        let mut g = ConsumerGroup::new(id, now_ms);
        let mut records = Vec::new();
        g.epoch = generation;
        g.assignment_epoch = generation;
        records.push(Record::GroupEpoch(Some(generation)));
        let mut claimed: BTreeSet<(Uuid, i32)> = BTreeSet::new();
        for seed in seeds {
            let metadata = seed
                .protocols
                .iter()
                .find(|(n, _)| n == protocol)
                .or(seed.protocols.first())
                .map(|(_, b)| b.clone())
                .unwrap_or_default();
            let sub = codec::decode_subscription(&metadata).unwrap_or_default();
            let named = codec::decode_assignment(&seed.assignment).unwrap_or_default();
            let mut assigned = by_id(&named, view);
            // A partition in two classic assignments (a stale one) stays with the first.
            for (t, ps) in assigned.iter_mut() {
                ps.retain(|p| claimed.insert((*t, *p)));
            }
            assigned.retain(|_, ps| !ps.is_empty());
            let meta = MemberMetadata {
                instance_id: seed.instance_id,
                rack_id: sub.rack,
                client_id: seed.client_id,
                client_host: seed.client_host,
                subscribed_topic_names: sub.topics,
                subscribed_topic_regex: None,
                rebalance_timeout_ms: seed.rebalance_timeout_ms,
                server_assignor: None,
                classic: Some(ClassicMember {
                    session_timeout_ms: seed.session_timeout_ms,
                    protocols: seed.protocols,
                }),
            };
            let current = CurrentAssignment {
                epoch: generation,
                previous_epoch: generation,
                state: MemberState::Stable,
                assigned: assigned.clone(),
                pending_revocation: Assignment::new(),
            };
            records.push(Record::Member(seed.id.clone(), Some(meta.clone())));
            records.push(Record::Target(seed.id.clone(), Some(assigned.clone())));
            records.push(Record::Current(seed.id.clone(), Some(current.clone())));
            g.members.insert(
                seed.id.clone(),
                Member {
                    id: seed.id.clone(),
                    meta,
                    current: CurrentAssignment::default(),
                },
            );
            g.target.insert(seed.id.clone(), assigned);
            g.set_current(&seed.id, current);
        }
        g.refresh_subscribed(view, &mut records);
        records.push(Record::TargetEpoch(Some(generation)));
        g.start_timers(s, now_ms);
        (g, records)
    }
}
