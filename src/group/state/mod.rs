//! One consumer group's membership state machine (Kafka's classic group protocol).
//!
//! Pure: every input carries the time, and every answer to a request that had to wait (a
//! JoinGroup parked until the rebalance completes, a SyncGroup parked until the leader sends
//! the assignment) comes back as an [`Effect`]. The coordinator owns the sockets and the log.
//!
//! States: Empty -> PreparingRebalance -> CompletingRebalance -> Stable, back to
//! PreparingRebalance on any membership change, Dead once deleted. Invariants: a generation
//! only grows; in CompletingRebalance and Stable every member joined the current generation;
//! at most one member per group instance id.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub fn name(&self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// (protocol name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub last_heartbeat_ms: i64,
    awaiting_join: bool,
    awaiting_sync: bool,
}

impl Member {
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// What a JoinGroup gets back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResult {
    pub error: Option<ResponseError>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// (member id, instance id, metadata); only the leader gets them.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinResult {
    pub fn error(e: ResponseError, member_id: &str) -> Self {
        JoinResult {
            error: Some(e),
            generation: -1,
            protocol_type: None,
            protocol: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResult {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn error(e: ResponseError) -> Self {
        SyncResult {
            error: Some(e),
            protocol_type: None,
            protocol: None,
            assignment: Bytes::new(),
        }
    }
}

/// Answers to parked requests, and a note when the group's durable state changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Join {
        member_id: String,
        result: JoinResult,
    },
    Sync {
        member_id: String,
        result: SyncResult,
    },
    /// Generation, leader or assignments changed: persist the group metadata.
    Persist,
}

/// A JoinGroup as the coordinator hands it over.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new member must first learn its id (MEMBER_ID_REQUIRED).
    pub require_known_member_id: bool,
}

/// The answer to a JoinGroup: now, or once the rebalance completes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinReply {
    Now(JoinResult),
    /// Wait for an `Effect::Join` for this member id.
    Parked(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncReply {
    Now(SyncResult),
    Parked,
}

/// Settings the state machine needs (from the broker config).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub initial_rebalance_delay_ms: i64,
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// `group.max.size`: members of the group at most.
    pub max_size: i32,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// When the state last changed (Kafka's currentStateTimestamp).
    pub state_since_ms: i64,
    /// Member ids handed out with MEMBER_ID_REQUIRED and not yet used to join, with the time
    /// each is forgotten if it is not (its session timeout, as Kafka expires pending members).
    pending: BTreeMap<String, i64>,
    rebalance_deadline_ms: i64,
    /// A group starting from Empty waits out the initial delay even when everyone has joined,
    /// so members starting together land in one generation.
    hold_until_deadline: bool,
}

/// Fails the JoinGroup or SyncGroup a member that is going away has parked.
fn answer_parked(m: &Member, error: ResponseError, effects: &mut Vec<Effect>) {
    if m.awaiting_join {
        effects.push(Effect::Join {
            member_id: m.id.clone(),
            result: JoinResult::error(error, &m.id),
        });
    }
    if m.awaiting_sync {
        effects.push(Effect::Sync {
            member_id: m.id.clone(),
            result: SyncResult::error(error),
        });
    }
}

fn same_protocols(a: &[(String, Bytes)], b: &[(String, Bytes)]) -> bool {
    a == b
}

impl Group {
    pub fn new(id: &str, now_ms: i64) -> Group {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            state_since_ms: now_ms,
            pending: BTreeMap::new(),
            rebalance_deadline_ms: 0,
            hold_until_deadline: false,
        }
    }

    /// A group rebuilt from its persisted metadata: members must heartbeat again within their
    /// session timeout or leave.
    pub fn restore(
        id: &str,
        generation: i32,
        protocol_type: Option<String>,
        protocol: Option<String>,
        leader: Option<String>,
        members: Vec<Member>,
        now_ms: i64,
    ) -> Group {
        let mut g = Group::new(id, now_ms);
        g.generation = generation;
        g.protocol_type = protocol_type;
        g.protocol = protocol;
        g.leader = leader;
        for mut m in members {
            m.last_heartbeat_ms = now_ms;
            g.members.insert(m.id.clone(), m);
        }
        g.state = if g.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        g
    }

    /// Builds a member as persisted (no pending requests).
    #[allow(clippy::too_many_arguments)]
    pub fn persisted_member(
        id: String,
        instance_id: Option<String>,
        client_id: String,
        client_host: String,
        session_timeout_ms: i32,
        rebalance_timeout_ms: i32,
        protocols: Vec<(String, Bytes)>,
        assignment: Bytes,
    ) -> Member {
        Member {
            id,
            instance_id,
            client_id,
            client_host,
            session_timeout_ms,
            rebalance_timeout_ms,
            protocols,
            assignment,
            last_heartbeat_ms: 0,
            awaiting_join: false,
            awaiting_sync: false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    fn transition(&mut self, to: GroupState, now_ms: i64) {
        tracing::debug!(group = %self.id, from = self.state.name(), to = to.name(), generation = self.generation, "group state");
        self.state = to;
        self.state_since_ms = now_ms;
    }

    fn new_member_id(&self, client_id: &str) -> String {
        format!("{client_id}-{}", uuid::Uuid::new_v4())
    }

    fn member_by_instance(&self, instance_id: &str) -> Option<&Member> {
        self.members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(instance_id))
    }

    /// Checks a request's member against the group: unknown, or a static member fenced by a
    /// newer incarnation with the same instance id.
    fn check_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ResponseError> {
        if let Some(iid) = instance_id {
            if let Some(m) = self.member_by_instance(iid) {
                if m.id != member_id {
                    return Err(ResponseError::FencedInstanceId);
                }
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        Ok(())
    }

    /// Whether the members other than `member_id` share a protocol with these.
    fn supports(
        &self,
        member_id: &str,
        protocol_type: &str,
        protocols: &[(String, Bytes)],
    ) -> bool {
        let others: Vec<&Member> = self
            .members
            .values()
            .filter(|m| m.id != member_id)
            .collect();
        if others.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        protocols.iter().any(|(name, _)| {
            others
                .iter()
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        })
    }

    fn candidates(&self) -> Vec<String> {
        let mut iter = self.members.values();
        let Some(first) = iter.next() else {
            return Vec::new();
        };
        let mut c: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for m in iter {
            c.retain(|n| m.protocols.iter().any(|(x, _)| x == n));
        }
        c
    }

    /// Each member votes for its most preferred candidate; most votes wins, ties by the
    /// candidates' order.
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidates();
        let mut votes = vec![0usize; candidates.len()];
        for m in self.members.values() {
            if let Some(i) = m
                .protocols
                .iter()
                .find_map(|(n, _)| candidates.iter().position(|c| c == n))
            {
                votes[i] += 1;
            }
        }
        let best = votes.iter().copied().max()?;
        candidates
            .into_iter()
            .zip(votes)
            .find(|(_, v)| *v == best)
            .map(|(c, _)| c)
    }

    pub fn join(
        &mut self,
        req: JoinRequest,
        limits: &Limits,
        now_ms: i64,
    ) -> (JoinReply, Vec<Effect>) {
        let mut effects = Vec::new();
        let reply = self.join_inner(req, limits, now_ms, &mut effects);
        if let JoinReply::Parked(_) = &reply {
            self.maybe_complete_join(now_ms, &mut effects);
        }
        (reply, effects)
    }

    fn join_inner(
        &mut self,
        req: JoinRequest,
        limits: &Limits,
        now_ms: i64,
        effects: &mut Vec<Effect>,
    ) -> JoinReply {
        let fail = |e| JoinReply::Now(JoinResult::error(e, &req.member_id));
        if req.session_timeout_ms < limits.min_session_timeout_ms
            || req.session_timeout_ms > limits.max_session_timeout_ms
        {
            return fail(ResponseError::InvalidSessionTimeout);
        }
        if req.protocol_type.is_empty() || req.protocols.is_empty() {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        if self.state == GroupState::Dead {
            return fail(ResponseError::CoordinatorNotAvailable);
        }
        if !self.accepts(&req, limits) {
            // Kafka's answer: the member, if it was one, is out, and told no member id.
            if self.pending.remove(&req.member_id).is_none()
                && self.members.contains_key(&req.member_id)
            {
                tracing::info!(group = %self.id, member = %req.member_id, max = limits.max_size, "member removed: group.max.size reached");
                self.remove_member(&req.member_id, limits, now_ms, effects);
            }
            return JoinReply::Now(JoinResult::error(ResponseError::GroupMaxSizeReached, ""));
        }
        // A member whose protocols the others cannot run with would force a rebalance that can
        // never pick a protocol.
        if !self.supports(&req.member_id, &req.protocol_type, &req.protocols) {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        if req.member_id.is_empty() {
            return self.join_new(req, limits, now_ms, effects);
        }
        if self.pending.remove(&req.member_id).is_some() {
            self.add_member(req.member_id.clone(), &req, now_ms);
            self.prepare_rebalance(limits, now_ms, effects);
            return JoinReply::Parked(req.member_id);
        }
        if let Err(e) = self.check_member(&req.member_id, req.instance_id.as_deref()) {
            return fail(e);
        }
        self.join_known(req, limits, now_ms, effects)
    }

    fn join_new(
        &mut self,
        req: JoinRequest,
        limits: &Limits,
        now_ms: i64,
        effects: &mut Vec<Effect>,
    ) -> JoinReply {
        let new_id = self.new_member_id(&req.client_id);
        if let Some(iid) = req.instance_id.clone() {
            if let Some(old) = self.member_by_instance(&iid).cloned() {
                return self.replace_static_member(old, new_id, req, limits, now_ms, effects);
            }
        } else if req.require_known_member_id {
            let expires = now_ms.saturating_add(req.session_timeout_ms as i64);
            self.pending.insert(new_id.clone(), expires);
            return JoinReply::Now(JoinResult::error(ResponseError::MemberIdRequired, &new_id));
        }
        self.add_member(new_id.clone(), &req, now_ms);
        self.prepare_rebalance(limits, now_ms, effects);
        JoinReply::Parked(new_id)
    }

    /// A static member came back (a restart within its session timeout): it takes over the old
    /// member's place and assignment; the old member id is fenced from now on. With the same
    /// protocols and a stable group there is no rebalance (KIP-345).
    fn replace_static_member(
        &mut self,
        old: Member,
        new_id: String,
        req: JoinRequest,
        limits: &Limits,
        now_ms: i64,
        effects: &mut Vec<Effect>,
    ) -> JoinReply {
        answer_parked(&old, ResponseError::FencedInstanceId, effects);
        self.members.remove(&old.id);
        let mut m = old.clone();
        m.id = new_id.clone();
        m.client_id = req.client_id.clone();
        m.client_host = req.client_host.clone();
        m.session_timeout_ms = req.session_timeout_ms;
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        m.last_heartbeat_ms = now_ms;
        m.awaiting_join = false;
        m.awaiting_sync = false;
        let was_leader = self.leader.as_deref() == Some(old.id.as_str());
        let unchanged = same_protocols(&old.protocols, &req.protocols);
        self.members.insert(new_id.clone(), m);
        if was_leader {
            self.leader = Some(new_id.clone());
        }
        effects.push(Effect::Persist);
        if self.state == GroupState::Stable && unchanged {
            // No rebalance. A returning leader is told the old leader id, so it acts as a
            // follower and does not reassign; SyncGroup hands it its stored assignment.
            let mut r = self.current_join_result(&new_id, false);
            if was_leader {
                r.leader = old.id.clone();
            }
            return JoinReply::Now(r);
        }
        if let Some(m) = self.members.get_mut(&new_id) {
            m.protocols = req.protocols;
            m.awaiting_join = true;
        }
        self.prepare_rebalance(limits, now_ms, effects);
        JoinReply::Parked(new_id)
    }

    fn join_known(
        &mut self,
        req: JoinRequest,
        limits: &Limits,
        now_ms: i64,
        effects: &mut Vec<Effect>,
    ) -> JoinReply {
        let id = req.member_id.clone();
        let is_leader = self.leader.as_deref() == Some(id.as_str());
        let Some(m) = self.members.get_mut(&id) else {
            return JoinReply::Now(JoinResult::error(ResponseError::UnknownMemberId, &id));
        };
        let unchanged = same_protocols(&m.protocols, &req.protocols);
        m.protocols = req.protocols;
        m.session_timeout_ms = req.session_timeout_ms;
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        m.last_heartbeat_ms = now_ms;
        match self.state {
            GroupState::PreparingRebalance => {
                m.awaiting_join = true;
                JoinReply::Parked(id)
            }
            GroupState::CompletingRebalance if unchanged => {
                JoinReply::Now(self.current_join_result(&id, is_leader))
            }
            GroupState::Stable if unchanged && !is_leader => {
                JoinReply::Now(self.current_join_result(&id, false))
            }
            _ => {
                m.awaiting_join = true;
                self.prepare_rebalance(limits, now_ms, effects);
                JoinReply::Parked(id)
            }
        }
    }

    fn add_member(&mut self, id: String, req: &JoinRequest, now_ms: i64) {
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        let m = Member {
            id: id.clone(),
            instance_id: req.instance_id.clone(),
            client_id: req.client_id.clone(),
            client_host: req.client_host.clone(),
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocols: req.protocols.clone(),
            assignment: Bytes::new(),
            last_heartbeat_ms: now_ms,
            awaiting_join: true,
            awaiting_sync: false,
        };
        self.members.insert(id, m);
    }

    fn current_join_result(&self, member_id: &str, with_members: bool) -> JoinResult {
        let protocol = self.protocol.clone().unwrap_or_default();
        let members = if with_members {
            self.members
                .values()
                .map(|m| (m.id.clone(), m.instance_id.clone(), m.metadata(&protocol)))
                .collect()
        } else {
            Vec::new()
        };
        JoinResult {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members,
        }
    }

    /// Starts a rebalance from outside a request (a group turned back from the consumer
    /// protocol): every member must rejoin.
    pub fn begin_rebalance(&mut self, limits: &Limits, now_ms: i64) -> Vec<Effect> {
        let mut effects = Vec::new();
        self.prepare_rebalance(limits, now_ms, &mut effects);
        effects
    }

    /// Starts a rebalance: members must rejoin by the deadline; parked syncs are told to.
    fn prepare_rebalance(&mut self, limits: &Limits, now_ms: i64, effects: &mut Vec<Effect>) {
        for m in self.members.values_mut() {
            if m.awaiting_sync {
                m.awaiting_sync = false;
                effects.push(Effect::Sync {
                    member_id: m.id.clone(),
                    result: SyncResult::error(ResponseError::RebalanceInProgress),
                });
            }
        }
        let max_rebalance = self
            .members
            .values()
            .map(|m| m.rebalance_timeout_ms as i64)
            .max()
            .unwrap_or(0);
        match self.state {
            GroupState::PreparingRebalance => {}
            GroupState::Empty => {
                // Wait a little for more members of a starting group (Kafka's initial delay).
                let delay = limits.initial_rebalance_delay_ms.min(max_rebalance.max(0));
                self.rebalance_deadline_ms = now_ms + delay;
                self.hold_until_deadline = true;
                self.transition(GroupState::PreparingRebalance, now_ms);
            }
            _ => {
                self.rebalance_deadline_ms = now_ms + max_rebalance;
                self.hold_until_deadline = false;
                self.transition(GroupState::PreparingRebalance, now_ms);
            }
        }
    }

    /// Kafka's `acceptJoiningMember` (`group.max.size`): an empty group takes anyone; while
    /// it rebalances, a member already rejoining, and others while fewer than the bound are
    /// rejoining (so a lowered bound sheds the last to rejoin); otherwise a member, and others
    /// while there are fewer members than the bound. A static member taking over its own
    /// place does not grow the group and is let in (Kafka refuses it when the group is full).
    fn accepts(&self, req: &JoinRequest, limits: &Limits) -> bool {
        let max = limits.max_size.max(0) as usize;
        if req
            .instance_id
            .as_deref()
            .is_some_and(|iid| self.member_by_instance(iid).is_some())
        {
            return true;
        }
        let member = self.members.get(&req.member_id);
        match self.state {
            GroupState::Empty | GroupState::Dead => true,
            GroupState::PreparingRebalance => {
                member.is_some_and(|m| m.awaiting_join)
                    || self.members.values().filter(|m| m.awaiting_join).count() < max
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                member.is_some() || self.members.len() < max
            }
        }
    }

    /// Member ids handed out with MEMBER_ID_REQUIRED and not used yet.
    pub fn pending_members(&self) -> usize {
        self.pending.len()
    }

    fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.values().all(|m| m.awaiting_join)
    }

    fn maybe_complete_join(&mut self, now_ms: i64, effects: &mut Vec<Effect>) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let early = self.all_joined() && !self.hold_until_deadline;
        if early || now_ms >= self.rebalance_deadline_ms {
            self.complete_join(now_ms, effects);
        }
    }

    /// Ends the join phase: members that did not rejoin are dropped, a protocol is chosen and
    /// the next generation starts with everyone's JoinGroup answered.
    fn complete_join(&mut self, now_ms: i64, effects: &mut Vec<Effect>) {
        self.pending.clear();
        self.members.retain(|_, m| m.awaiting_join);
        self.generation += 1;
        effects.push(Effect::Persist);
        if self.members.is_empty() {
            // Like Kafka, an empty group keeps its protocol type (ListGroups shows it).
            self.protocol = None;
            self.leader = None;
            self.transition(GroupState::Empty, now_ms);
            return;
        }
        self.protocol = self.select_protocol();
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.transition(GroupState::CompletingRebalance, now_ms);
        tracing::info!(group = %self.id, generation = self.generation, members = self.members.len(), protocol = self.protocol.as_deref().unwrap_or(""), "group rebalanced");
        let leader = self.leader.clone().unwrap_or_default();
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let result = self.current_join_result(&id, id == leader);
            if let Some(m) = self.members.get_mut(&id) {
                m.awaiting_join = false;
                m.last_heartbeat_ms = now_ms;
            }
            effects.push(Effect::Join {
                member_id: id,
                result,
            });
        }
    }

    fn check_generation(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        self.check_member(member_id, instance_id)?;
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
        now_ms: i64,
    ) -> (SyncReply, Vec<Effect>) {
        let mut effects = Vec::new();
        if let Err(e) = self.check_generation(member_id, instance_id, generation) {
            return (SyncReply::Now(SyncResult::error(e)), effects);
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat_ms = now_ms;
        }
        match self.state {
            GroupState::PreparingRebalance => (
                SyncReply::Now(SyncResult::error(ResponseError::RebalanceInProgress)),
                effects,
            ),
            GroupState::Stable => (SyncReply::Now(self.sync_result(member_id)), effects),
            GroupState::CompletingRebalance => {
                if let Some(m) = self.members.get_mut(member_id) {
                    m.awaiting_sync = true;
                }
                if self.leader.as_deref() == Some(member_id) {
                    self.complete_sync(assignments, now_ms, &mut effects);
                }
                (SyncReply::Parked, effects)
            }
            GroupState::Empty | GroupState::Dead => (
                SyncReply::Now(SyncResult::error(ResponseError::UnknownMemberId)),
                effects,
            ),
        }
    }

    fn sync_result(&self, member_id: &str) -> SyncResult {
        SyncResult {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            assignment: self
                .members
                .get(member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default(),
        }
    }

    fn complete_sync(
        &mut self,
        assignments: Vec<(String, Bytes)>,
        now_ms: i64,
        effects: &mut Vec<Effect>,
    ) {
        let mut given: BTreeMap<String, Bytes> = assignments.into_iter().collect();
        for m in self.members.values_mut() {
            m.assignment = given.remove(&m.id).unwrap_or_default();
        }
        self.transition(GroupState::Stable, now_ms);
        effects.push(Effect::Persist);
        let waiting: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_sync)
            .map(|m| m.id.clone())
            .collect();
        for id in waiting {
            let result = self.sync_result(&id);
            if let Some(m) = self.members.get_mut(&id) {
                m.awaiting_sync = false;
            }
            effects.push(Effect::Sync {
                member_id: id,
                result,
            });
        }
    }

    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        if matches!(self.state, GroupState::Empty | GroupState::Dead) {
            return Err(ResponseError::UnknownMemberId);
        }
        self.check_member(member_id, instance_id)?;
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat_ms = now_ms;
        }
        match self.state {
            GroupState::PreparingRebalance => Err(ResponseError::RebalanceInProgress),
            _ if generation != self.generation => Err(ResponseError::IllegalGeneration),
            _ => Ok(()),
        }
    }

    /// A member leaves (LeaveGroup); a static member may be named by instance id alone.
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        limits: &Limits,
        now_ms: i64,
    ) -> (Result<(), ResponseError>, Vec<Effect>) {
        let mut effects = Vec::new();
        let id = match instance_id {
            Some(iid) => match self.member_by_instance(iid) {
                Some(m) if member_id.is_empty() || m.id == member_id => m.id.clone(),
                Some(_) => return (Err(ResponseError::FencedInstanceId), effects),
                None => return (Err(ResponseError::UnknownMemberId), effects),
            },
            None if self.members.contains_key(member_id) => member_id.to_string(),
            None => return (Err(ResponseError::UnknownMemberId), effects),
        };
        self.remove_member(&id, limits, now_ms, &mut effects);
        (Ok(()), effects)
    }

    fn remove_member(&mut self, id: &str, limits: &Limits, now_ms: i64, effects: &mut Vec<Effect>) {
        let Some(m) = self.members.remove(id) else {
            return;
        };
        answer_parked(&m, ResponseError::UnknownMemberId, effects);
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(limits, now_ms, effects);
                // The last member leaving empties the group now, not at the next tick.
                self.maybe_complete_join(now_ms, effects);
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now_ms, effects),
            _ => {}
        }
    }

    /// Time passes: expire members whose session ran out, end a join phase whose deadline
    /// passed.
    pub fn tick(&mut self, limits: &Limits, now_ms: i64) -> Vec<Effect> {
        let mut effects = Vec::new();
        let before = self.pending.len();
        self.pending.retain(|_, expires| *expires > now_ms);
        if self.pending.len() < before {
            tracing::info!(group = %self.id, removed = before - self.pending.len(), "pending members removed after their session timeout");
        }
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                !m.awaiting_join
                    && !m.awaiting_sync
                    && now_ms - m.last_heartbeat_ms > m.session_timeout_ms as i64
            })
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "session timed out");
            self.remove_member(&id, limits, now_ms, &mut effects);
        }
        self.maybe_complete_join(now_ms, &mut effects);
        effects
    }

    /// Whether the group runs the consumer protocol and subscribes to `topic`.
    pub fn subscribes_to(&self, topic: &str) -> bool {
        let Some(protocol) = &self.protocol else {
            return false;
        };
        self.members.values().any(|m| {
            let meta = m.metadata(protocol);
            super::codec::subscription_topics(&meta)
                .iter()
                .any(|t| t == topic)
        })
    }

    pub fn mark_dead(&mut self, now_ms: i64) {
        self.transition(GroupState::Dead, now_ms);
    }
}

#[cfg(test)]
mod tests;
