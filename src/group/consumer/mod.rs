//! One consumer group of the broker-driven protocol (KIP-848, `group.protocol=consumer`).
//!
//! Pure, like the classic machine: the coordinator hands in the time and a view of the
//! cluster's topics, and every change comes back as [`Record`]s (Kafka's records for these
//! groups), which the coordinator appends to `__consumer_offsets` before it answers, and which
//! [`ConsumerGroup::replay`] applies when the partition is loaded.
//!
//! Epochs. The group epoch grows on every change of membership, subscription or subscribed
//! topics. The target assignment is recomputed for it by a server assignor (its assignment
//! epoch). Each member then moves toward its target in steps, as Kafka's
//! `CurrentAssignmentBuilder` does: partitions it must give up are revoked first, and it keeps
//! its epoch until a heartbeat reports them gone; partitions it gains are handed out only once
//! no other member holds them (assigned or pending revocation). So a partition never has two
//! owners, and a member whose heartbeat is lost retries with its previous epoch.

pub mod assignor;
pub(crate) mod classic;
pub mod records;

pub use classic::by_name;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use uuid::Uuid;

use super::codec;

/// Partitions by topic id.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// The epoch a member sends to leave the group.
pub const LEAVE_EPOCH: i32 = -1;
/// The epoch a static member sends to leave for a while, keeping its partitions.
pub const STATIC_LEAVE_EPOCH: i32 = -2;

/// Where a member is in its reconciliation (Kafka's `MemberState`, same codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// At its target.
    Stable,
    /// Must revoke partitions before it may move to the next epoch.
    UnrevokedPartitions,
    /// At the target epoch, waiting for partitions others have not released yet.
    UnreleasedPartitions,
    /// A state written by a newer version: the member is fenced and starts again.
    Unknown,
}

impl MemberState {
    pub fn code(self) -> i8 {
        match self {
            MemberState::Stable => 0,
            MemberState::UnrevokedPartitions => 1,
            MemberState::UnreleasedPartitions => 2,
            MemberState::Unknown => 127,
        }
    }

    pub fn from_code(c: i8) -> MemberState {
        match c {
            0 => MemberState::Stable,
            1 => MemberState::UnrevokedPartitions,
            2 => MemberState::UnreleasedPartitions,
            _ => MemberState::Unknown,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            MemberState::Stable => "stable",
            MemberState::UnrevokedPartitions => "unrevoked-partitions",
            MemberState::UnreleasedPartitions => "unreleased-partitions",
            MemberState::Unknown => "unknown",
        }
    }
}

/// What a member told the group about itself (ConsumerGroupMemberMetadataValue).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberMetadata {
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub server_assignor: Option<String>,
    /// Set for a member of the classic protocol (JoinGroup/SyncGroup/Heartbeat) in this
    /// group, during an online upgrade or downgrade.
    pub classic: Option<ClassicMember>,
}

/// What a classic member joined with (ClassicMemberMetadata of the member record).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClassicMember {
    pub session_timeout_ms: i32,
    /// (protocol name, consumer protocol subscription) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
}

/// Where a member stands (ConsumerGroupCurrentMemberAssignmentValue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentAssignment {
    pub epoch: i32,
    pub previous_epoch: i32,
    pub state: MemberState,
    pub assigned: Assignment,
    pub pending_revocation: Assignment,
}

impl Default for CurrentAssignment {
    fn default() -> Self {
        CurrentAssignment {
            epoch: 0,
            previous_epoch: 0,
            state: MemberState::Stable,
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
        }
    }
}

impl CurrentAssignment {
    fn with_epoch(&self, epoch: i32) -> CurrentAssignment {
        CurrentAssignment {
            previous_epoch: self.epoch,
            epoch,
            ..self.clone()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub meta: MemberMetadata,
    pub current: CurrentAssignment,
}

impl Member {
    fn new(id: &str) -> Member {
        Member {
            id: id.to_string(),
            meta: MemberMetadata {
                rebalance_timeout_ms: -1,
                ..MemberMetadata::default()
            },
            current: CurrentAssignment::default(),
        }
    }
}

/// A subscribed topic as the group last saw it (ConsumerGroupPartitionMetadataValue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribedTopic {
    pub id: Uuid,
    pub name: String,
    pub partitions: i32,
}

/// A change to persist, in the order Kafka writes them; `None` is a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    GroupEpoch(Option<i32>),
    Subscription(Option<Vec<SubscribedTopic>>),
    Member(String, Option<MemberMetadata>),
    TargetEpoch(Option<i32>),
    Target(String, Option<Assignment>),
    Current(String, Option<CurrentAssignment>),
}

/// A topic as the assignors see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub id: Uuid,
    pub partitions: i32,
    /// The racks of each partition's replicas (empty when no broker has a rack).
    pub racks: Vec<Vec<String>>,
}

/// The cluster's topics, as the coordinator sees them now.
pub trait TopicView {
    /// Changes whenever a topic is created, deleted or grows.
    fn version(&self) -> u64;
    fn topic(&self, name: &str) -> Option<TopicInfo>;
    fn name_of(&self, id: &Uuid) -> Option<String>;
    /// The names a regular expression subscription is matched against (internal topics are
    /// left out, as Kafka does).
    fn names(&self) -> Vec<String>;
}

/// The coordinator's settings for these groups (Kafka's `group.consumer.*`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub session_timeout_ms: i32,
    pub heartbeat_interval_ms: i32,
    /// The server assignors offered; the first is the default.
    pub assignors: Vec<String>,
    pub max_size: usize,
}

/// A ConsumerGroupHeartbeat, as the coordinator hands it over (None: not sent).
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub subscribed_topic_names: Option<Vec<String>>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    pub owned: Option<Assignment>,
    pub client_id: String,
    pub client_host: String,
}

/// The answer to a heartbeat; the assignment is sent when it changed or the request was full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub member_id: String,
    pub member_epoch: i32,
    pub assignment: Option<Assignment>,
}

/// Why a heartbeat is refused (the server edge picks Kafka's code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    InvalidRequest(String),
    UnsupportedAssignor(String),
    InvalidRegularExpression(String),
    FencedMemberEpoch,
    UnknownMemberId,
    UnreleasedInstanceId,
    FencedInstanceId,
    GroupMaxSizeReached,
    /// Classic members: a new member must first learn the id it was given (JoinGroup v4+).
    MemberIdRequired(String),
    InconsistentGroupProtocol,
    IllegalGeneration,
    RebalanceInProgress,
}

/// A JoinGroup of a classic member into a consumer group.
#[derive(Debug, Clone, Default)]
pub struct ClassicJoin {
    /// Empty for a member that does not know its id yet.
    pub member_id: String,
    /// The id such a member gets.
    pub new_member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub require_known_member_id: bool,
}

/// The answer to a classic member's JoinGroup: its generation is its member epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicJoined {
    pub member_id: String,
    pub generation: i32,
    pub protocol: String,
}

/// A classic member as an upgrade takes it over from a classic group.
#[derive(Debug, Clone)]
pub struct ClassicSeed {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocols: Vec<(String, Bytes)>,
    /// Its consumer protocol assignment in the classic group.
    pub assignment: Bytes,
}

/// A member as a downgrade hands it to a classic group: assignment by topic name.
#[derive(Debug, Clone)]
pub struct ClassicView {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
}

/// Deadlines of one member (not persisted: a loaded group starts them afresh).
#[derive(Debug, Clone, Copy)]
struct Timers {
    session: i64,
    /// The member must have revoked by then (set while it has partitions to revoke).
    rebalance: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct ConsumerGroup {
    pub id: String,
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub members: BTreeMap<String, Member>,
    pub target: BTreeMap<String, Assignment>,
    /// The subscribed topics by name, as of the last computation.
    pub subscribed: BTreeMap<String, SubscribedTopic>,
    /// Who holds each partition (assigned or pending revocation).
    owners: HashMap<(Uuid, i32), String>,
    timers: HashMap<String, Timers>,
    /// The topic view version the subscription was last computed at.
    seen_version: Option<u64>,
    /// When the group last became empty, for offset expiry.
    pub empty_since_ms: i64,
}

/// The state Kafka reports for a consumer group.
pub fn state_name(g: &ConsumerGroup) -> &'static str {
    if g.members.is_empty() {
        "Empty"
    } else if g.epoch > g.assignment_epoch {
        "Assigning"
    } else if g
        .members
        .values()
        .any(|m| m.current.epoch != g.assignment_epoch || m.current.state != MemberState::Stable)
    {
        "Reconciling"
    } else {
        "Stable"
    }
}

/// Every (topic, partition) of `a`.
fn pairs(a: &Assignment) -> impl Iterator<Item = (Uuid, i32)> + '_ {
    a.iter()
        .flat_map(|(t, ps)| ps.iter().map(move |p| (*t, *p)))
}

/// Every (topic, partition) of `a` and of `b`.
fn union<'a>(a: &'a Assignment, b: &'a Assignment) -> impl Iterator<Item = (Uuid, i32)> + 'a {
    pairs(a).chain(pairs(b))
}

fn contains(a: &Assignment, t: &Uuid, p: i32) -> bool {
    a.get(t).is_some_and(|ps| ps.contains(&p))
}

fn insert(a: &mut Assignment, t: Uuid, p: i32) {
    a.entry(t).or_default().insert(p);
}

/// Whether every partition of `owned` is in `of`.
fn is_subset(owned: &Assignment, of: &Assignment) -> bool {
    owned
        .iter()
        .all(|(t, ps)| ps.iter().all(|p| contains(of, t, *p)))
}

fn overlaps(a: &Assignment, b: &Assignment) -> bool {
    a.iter()
        .any(|(t, ps)| ps.iter().any(|p| contains(b, t, *p)))
}

/// Kafka matches a whole topic name against the expression (RE2J `matches`).
fn compile_regex(re: &str) -> Result<regex::Regex, Error> {
    regex::Regex::new(&format!("^(?:{re})$"))
        .map_err(|e| Error::InvalidRegularExpression(e.to_string()))
}

fn validate(hb: &Heartbeat, s: &Settings) -> Result<(), Error> {
    let bad = |why: &str| Err(Error::InvalidRequest(why.to_string()));
    if hb.instance_id.as_deref() == Some("") {
        return bad("InstanceId can't be empty.");
    }
    if hb.rack_id.as_deref() == Some("") {
        return bad("RackId can't be empty.");
    }
    match hb.member_epoch {
        e if e > 0 || e == LEAVE_EPOCH => {
            if hb.member_id.is_empty() {
                return bad("MemberId can't be empty.");
            }
        }
        0 => {
            if hb.rebalance_timeout_ms == -1 {
                return bad("RebalanceTimeoutMs must be provided in first request.");
            }
            if hb.owned.as_ref().is_none_or(|o| !o.is_empty()) {
                return bad("TopicPartitions must be empty when (re-)joining.");
            }
            let names = hb
                .subscribed_topic_names
                .as_ref()
                .is_some_and(|n| !n.is_empty());
            let regex = hb
                .subscribed_topic_regex
                .as_ref()
                .is_some_and(|r| !r.is_empty());
            if !names && !regex {
                return bad(
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
                );
            }
        }
        STATIC_LEAVE_EPOCH => {
            if hb.member_id.is_empty() {
                return bad("MemberId can't be empty.");
            }
            if hb.instance_id.is_none() {
                return bad("InstanceId can't be null.");
            }
        }
        _ => return bad("MemberEpoch is invalid."),
    }
    if let Some(a) = &hb.server_assignor {
        if !s.assignors.iter().any(|x| x == a) {
            return Err(Error::UnsupportedAssignor(format!(
                "ServerAssignor {a} is not supported. Supported assignors: {}.",
                s.assignors.join(", ")
            )));
        }
    }
    if let Some(re) = hb
        .subscribed_topic_regex
        .as_deref()
        .filter(|r| !r.is_empty())
    {
        compile_regex(re)?;
    }
    Ok(())
}

/// Kafka's epoch check: a greater epoch is fenced; a smaller one only passes when it is the
/// previous epoch and the member owns no more than it is assigned (its last answer was lost).
fn check_epoch(m: &Member, received: i32, owned: Option<&Assignment>) -> Result<(), Error> {
    let c = &m.current;
    if received > c.epoch {
        return Err(Error::FencedMemberEpoch);
    }
    if received < c.epoch
        && (received != c.previous_epoch || !owned.is_some_and(|o| is_subset(o, &c.assigned)))
    {
        return Err(Error::FencedMemberEpoch);
    }
    Ok(())
}

impl ConsumerGroup {
    pub fn new(id: &str, now_ms: i64) -> ConsumerGroup {
        ConsumerGroup {
            id: id.to_string(),
            epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            subscribed: BTreeMap::new(),
            owners: HashMap::new(),
            timers: HashMap::new(),
            seen_version: None,
            empty_since_ms: now_ms,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    fn static_member(&self, instance_id: &str) -> Option<&Member> {
        self.members
            .values()
            .find(|m| m.meta.instance_id.as_deref() == Some(instance_id))
    }

    /// The member holding a partition, if any.
    pub fn owner(&self, topic: &Uuid, partition: i32) -> Option<&str> {
        self.owners.get(&(*topic, partition)).map(|s| s.as_str())
    }

    /// Whether any member subscribes to `topic` (by name, or through its expression).
    pub fn subscribes_to(&self, topic: &str) -> bool {
        self.subscribed.contains_key(topic)
            || self.members.values().any(|m| {
                m.meta.subscribed_topic_names.iter().any(|t| t == topic)
                    || m.meta
                        .subscribed_topic_regex
                        .as_deref()
                        .and_then(|r| compile_regex(r).ok())
                        .is_some_and(|r| r.is_match(topic))
            })
    }

    /// Sets a member's current assignment, keeping the owner index in step.
    fn set_current(&mut self, id: &str, current: CurrentAssignment) {
        let Some(m) = self.members.get_mut(id) else {
            return;
        };
        for (t, p) in union(&m.current.assigned, &m.current.pending_revocation) {
            if self.owners.get(&(t, p)).is_some_and(|o| o == id) {
                self.owners.remove(&(t, p));
            }
        }
        for (t, p) in union(&current.assigned, &current.pending_revocation) {
            self.owners.insert((t, p), id.to_string());
        }
        m.current = current;
    }

    /// The subscribed topics, by name, of `members` as the view has them now.
    fn compute_subscribed<'a>(
        members: impl Iterator<Item = &'a Member>,
        view: &dyn TopicView,
    ) -> BTreeMap<String, SubscribedTopic> {
        let mut names: BTreeSet<String> = BTreeSet::new();
        let mut regexes: BTreeSet<&str> = BTreeSet::new();
        for m in members {
            names.extend(m.meta.subscribed_topic_names.iter().cloned());
            if let Some(r) = m.meta.subscribed_topic_regex.as_deref() {
                regexes.insert(r);
            }
        }
        if !regexes.is_empty() {
            let compiled: Vec<regex::Regex> = regexes
                .iter()
                .filter_map(|r| compile_regex(r).ok())
                .collect();
            for n in view.names() {
                if compiled.iter().any(|r| r.is_match(&n)) {
                    names.insert(n);
                }
            }
        }
        names
            .into_iter()
            .filter_map(|n| {
                view.topic(&n).map(|t| {
                    let s = SubscribedTopic {
                        id: t.id,
                        name: n.clone(),
                        partitions: t.partitions,
                    };
                    (n, s)
                })
            })
            .collect()
    }

    /// Recomputes the subscribed topics; a change is recorded and bumps the epoch (returned).
    fn refresh_subscribed(&mut self, view: &dyn TopicView, records: &mut Vec<Record>) -> bool {
        let now = Self::compute_subscribed(self.members.values(), view);
        self.seen_version = Some(view.version());
        if now == self.subscribed {
            return false;
        }
        self.subscribed = now;
        records.push(Record::Subscription(Some(
            self.subscribed.values().cloned().collect(),
        )));
        true
    }

    fn bump_epoch(&mut self, records: &mut Vec<Record>) {
        self.epoch += 1;
        records.push(Record::GroupEpoch(Some(self.epoch)));
    }

    /// Removes a member with everything it holds (Kafka's fencing), and bumps the epoch.
    fn remove_member(
        &mut self,
        id: &str,
        view: &dyn TopicView,
        now_ms: i64,
        records: &mut Vec<Record>,
    ) {
        if !self.members.contains_key(id) {
            return;
        }
        self.set_current(id, CurrentAssignment::default());
        self.members.remove(id);
        self.timers.remove(id);
        records.push(Record::Current(id.to_string(), None));
        if self.target.remove(id).is_some() {
            records.push(Record::Target(id.to_string(), None));
        }
        records.push(Record::Member(id.to_string(), None));
        self.refresh_subscribed(view, records);
        self.bump_epoch(records);
        if self.members.is_empty() {
            self.empty_since_ms = now_ms;
        }
    }

    /// Recomputes the target assignment for the group epoch; members whose target changed get
    /// a record.
    fn update_target(&mut self, view: &dyn TopicView, s: &Settings, records: &mut Vec<Record>) {
        let assignor = self.assignor_name(s);
        let mut topics = BTreeMap::new();
        for t in self.subscribed.values() {
            let racks = view
                .topic(&t.name)
                .filter(|i| i.id == t.id)
                .map(|i| i.racks)
                .unwrap_or_default();
            topics.insert(
                t.id,
                assignor::TopicSpec {
                    partitions: t.partitions,
                    racks,
                },
            );
        }
        let regexes: HashMap<&str, regex::Regex> = self
            .members
            .values()
            .filter_map(|m| m.meta.subscribed_topic_regex.as_deref())
            .filter_map(|r| compile_regex(r).ok().map(|c| (r, c)))
            .collect();
        let empty = Assignment::new();
        let specs: Vec<assignor::MemberSpec> = self
            .members
            .values()
            .map(|m| {
                let re = m
                    .meta
                    .subscribed_topic_regex
                    .as_deref()
                    .and_then(|r| regexes.get(r));
                let topics = self
                    .subscribed
                    .values()
                    .filter(|t| {
                        m.meta.subscribed_topic_names.contains(&t.name)
                            || re.is_some_and(|r| r.is_match(&t.name))
                    })
                    .map(|t| t.id)
                    .collect();
                assignor::MemberSpec {
                    id: &m.id,
                    instance_id: m.meta.instance_id.as_deref(),
                    rack: m.meta.rack_id.as_deref(),
                    topics,
                    current: self.target.get(&m.id).unwrap_or(&empty),
                }
            })
            .collect();
        let new = assignor::assign(&assignor, &specs, &topics);
        for (id, a) in new {
            if self.target.get(&id) != Some(&a) {
                records.push(Record::Target(id.clone(), Some(a.clone())));
                self.target.insert(id, a);
            }
        }
        self.assignment_epoch = self.epoch;
        records.push(Record::TargetEpoch(Some(self.epoch)));
    }

    /// The assignor most members asked for, else the default.
    pub fn assignor_name(&self, s: &Settings) -> String {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = m.meta.server_assignor.as_deref() {
                *votes.entry(a).or_default() += 1;
            }
        }
        let best = votes.iter().max_by_key(|(_, n)| **n).map(|(a, _)| *a);
        best.map(str::to_string)
            .or_else(|| s.assignors.first().cloned())
            .unwrap_or_else(|| assignor::UNIFORM.to_string())
    }

    /// Moves a member toward its target (Kafka's `CurrentAssignmentBuilder`). Returns the new
    /// current assignment, or None when nothing moves.
    fn next_current(&self, m: &Member, owned: Option<&Assignment>) -> Option<CurrentAssignment> {
        let c = &m.current;
        let empty = Assignment::new();
        let target = self.target.get(&m.id).unwrap_or(&empty);
        let owns_any = |pending: &Assignment| owned.is_none_or(|o| overlaps(o, pending));
        let next = match c.state {
            MemberState::Stable if c.epoch == self.assignment_epoch => return None,
            MemberState::Stable | MemberState::UnreleasedPartitions => {
                self.compute_next(m, c.epoch, target, owned)
            }
            MemberState::UnrevokedPartitions => {
                if owns_any(&c.pending_revocation) {
                    return None;
                }
                self.compute_next(m, c.epoch + 1, target, owned)
            }
            MemberState::Unknown => self.compute_next(m, self.assignment_epoch, target, owned),
        };
        (next != *c).then_some(next)
    }

    fn compute_next(
        &self,
        m: &Member,
        epoch: i32,
        target: &Assignment,
        owned: Option<&Assignment>,
    ) -> CurrentAssignment {
        let c = &m.current;
        let mut assigned = Assignment::new();
        let mut revoke = Assignment::new();
        let mut gain = Assignment::new();
        let mut unreleased = false;
        for (t, p) in pairs(&c.assigned) {
            if contains(target, &t, p) {
                insert(&mut assigned, t, p);
            } else {
                insert(&mut revoke, t, p);
            }
        }
        for (t, ps) in target {
            for p in ps {
                if contains(&assigned, t, *p) {
                    continue;
                }
                match self.owners.get(&(*t, *p)) {
                    Some(o) if o != &m.id => unreleased = true,
                    _ => insert(&mut gain, *t, *p),
                }
            }
        }
        let owns_revoked = owned.is_none_or(|o| overlaps(o, &revoke));
        if !revoke.is_empty() && owns_revoked {
            let mut next = c.with_epoch(epoch);
            next.state = MemberState::UnrevokedPartitions;
            next.assigned = assigned;
            next.pending_revocation = revoke;
            return next;
        }
        for (t, p) in pairs(&gain) {
            insert(&mut assigned, t, p);
        }
        let mut next = c.with_epoch(self.assignment_epoch);
        next.state = if unreleased {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        };
        next.assigned = assigned;
        next.pending_revocation = Assignment::new();
        next
    }

    /// Handles a ConsumerGroupHeartbeat: join, heartbeat or leave.
    pub fn heartbeat(
        &mut self,
        hb: Heartbeat,
        view: &dyn TopicView,
        s: &Settings,
        now_ms: i64,
    ) -> Result<(Reply, Vec<Record>), Error> {
        validate(&hb, s)?;
        if hb.member_epoch == LEAVE_EPOCH || hb.member_epoch == STATIC_LEAVE_EPOCH {
            return self.leave(&hb, view, now_ms);
        }
        let joining = hb.member_epoch == 0;
        let replacing = hb
            .instance_id
            .as_deref()
            .and_then(|i| self.static_member(i))
            .is_some();
        if self.members.len() >= s.max_size
            && !self.members.contains_key(&hb.member_id)
            && !replacing
        {
            return Err(Error::GroupMaxSizeReached);
        }
        let mut records = Vec::new();
        let existing = self.find_member(&hb, joining, &mut records)?;
        let was_new = existing.is_none();
        let old = existing.unwrap_or_else(|| Member::new(&hb.member_id));

        let mut meta = old.meta.clone();
        if hb.instance_id.is_some() {
            meta.instance_id = hb.instance_id.clone();
        }
        if hb.rack_id.is_some() {
            meta.rack_id = hb.rack_id.clone();
        }
        if hb.rebalance_timeout_ms != -1 {
            meta.rebalance_timeout_ms = hb.rebalance_timeout_ms;
        }
        if let Some(a) = &hb.server_assignor {
            meta.server_assignor = Some(a.clone());
        }
        if let Some(n) = &hb.subscribed_topic_names {
            meta.subscribed_topic_names = n.clone();
        }
        if let Some(r) = &hb.subscribed_topic_regex {
            meta.subscribed_topic_regex = (!r.is_empty()).then(|| r.clone());
        }
        meta.client_id = hb.client_id.clone();
        meta.client_host = hb.client_host.clone();
        meta.classic = None;

        let id = old.id.clone();
        let before = self.update_member(
            old,
            meta,
            was_new,
            hb.owned.as_ref(),
            view,
            s,
            now_ms,
            &mut records,
        );
        let current = self.members[&id].current.clone();
        let full = joining
            || (hb.rebalance_timeout_ms != -1
                && hb.subscribed_topic_names.is_some()
                && hb.owned.is_some());
        let changed = current.assigned != before.assigned;
        Ok((
            Reply {
                member_id: id,
                member_epoch: current.epoch,
                assignment: (full || changed).then(|| current.assigned.clone()),
            },
            records,
        ))
    }

    /// Records a member's metadata, moves the group epoch (and so the target assignment) when
    /// its subscription or the subscribed topics changed, reconciles the member one step with
    /// what it reports owning, and restarts its timers. Returns its assignment from before.
    #[allow(clippy::too_many_arguments)]
    fn update_member(
        &mut self,
        old: Member,
        meta: MemberMetadata,
        was_new: bool,
        owned: Option<&Assignment>,
        view: &dyn TopicView,
        s: &Settings,
        now_ms: i64,
        records: &mut Vec<Record>,
    ) -> CurrentAssignment {
        let id = old.id.clone();
        let subscription_changed = was_new
            || meta.subscribed_topic_names != old.meta.subscribed_topic_names
            || meta.subscribed_topic_regex != old.meta.subscribed_topic_regex;
        if was_new || meta != old.meta {
            records.push(Record::Member(id.clone(), Some(meta.clone())));
        }
        let before = old.current.clone();
        self.members.insert(
            id.clone(),
            Member {
                id: id.clone(),
                meta,
                current: old.current,
            },
        );
        let mut bump = subscription_changed;
        if subscription_changed || self.seen_version != Some(view.version()) {
            bump |= self.refresh_subscribed(view, records);
        }
        if bump {
            self.bump_epoch(records);
        }
        if self.epoch > self.assignment_epoch {
            self.update_target(view, s, records);
        }

        let member = self.members[&id].clone();
        if let Some(next) = self.next_current(&member, owned) {
            self.set_current(&id, next.clone());
            records.push(Record::Current(id.clone(), Some(next)));
        }
        let current = self.members[&id].current.clone();
        // Classic members have no rebalance deadline here: they are told to rejoin, and
        // their session bounds them.
        let revoking =
            member.meta.classic.is_none() && current.state == MemberState::UnrevokedPartitions;
        let rebalance = revoking.then(|| {
            let prior = self.timers.get(&id).and_then(|t| t.rebalance);
            let restart = current.epoch != member.current.epoch
                || current.state != member.current.state
                || prior.is_none();
            if restart {
                now_ms + member.meta.rebalance_timeout_ms.max(0) as i64
            } else {
                prior.unwrap_or(now_ms)
            }
        });
        self.timers.insert(
            id,
            Timers {
                session: now_ms + session_ms(&member, s),
                rebalance,
            },
        );
        before
    }

    /// The member a heartbeat speaks for: None for a new one.
    ///
    /// A member rejoining under its own id (epoch 0, after it was fenced) has released
    /// everything it held, so its current assignment starts again. A static member rejoining
    /// under a new member id takes over the place, target and partitions of the one that left
    /// with epoch -2 (at epoch 0, so it reconciles them again); while that one has not left,
    /// the instance id is not released.
    fn find_member(
        &mut self,
        hb: &Heartbeat,
        joining: bool,
        records: &mut Vec<Record>,
    ) -> Result<Option<Member>, Error> {
        let existing = match hb.instance_id.as_deref() {
            None => self.members.get(&hb.member_id).cloned(),
            Some(iid) => self.static_member(iid).cloned(),
        };
        let Some(m) = existing else {
            return if joining {
                Ok(None)
            } else {
                Err(Error::UnknownMemberId)
            };
        };
        if !joining {
            if m.id != hb.member_id {
                return Err(Error::FencedInstanceId);
            }
            check_epoch(&m, hb.member_epoch, hb.owned.as_ref())?;
            return Ok(Some(m));
        }
        if m.id == hb.member_id {
            if m.current != CurrentAssignment::default() {
                self.set_current(&m.id, CurrentAssignment::default());
                records.push(Record::Current(
                    m.id.clone(),
                    Some(CurrentAssignment::default()),
                ));
            }
            return Ok(self.members.get(&m.id).cloned());
        }
        if m.current.epoch != STATIC_LEAVE_EPOCH {
            return Err(Error::UnreleasedInstanceId);
        }
        Ok(Some(self.take_over(&m, &hb.member_id, records)))
    }

    /// A static member's new instance (member id `id`) takes the place, target and
    /// partitions of the old one `m`, at epoch 0, so it reconciles them again.
    fn take_over(&mut self, m: &Member, id: &str, records: &mut Vec<Record>) -> Member {
        let target = self.target.remove(&m.id);
        self.set_current(&m.id, CurrentAssignment::default());
        self.members.remove(&m.id);
        self.timers.remove(&m.id);
        records.push(Record::Current(m.id.clone(), None));
        if target.is_some() {
            records.push(Record::Target(m.id.clone(), None));
        }
        records.push(Record::Member(m.id.clone(), None));
        let id = id.to_string();
        self.members.insert(
            id.clone(),
            Member {
                id: id.clone(),
                meta: m.meta.clone(),
                current: CurrentAssignment::default(),
            },
        );
        records.push(Record::Member(id.clone(), Some(m.meta.clone())));
        if let Some(t) = target {
            records.push(Record::Target(id.clone(), Some(t.clone())));
            self.target.insert(id.clone(), t);
        }
        let current = CurrentAssignment {
            epoch: 0,
            previous_epoch: 0,
            ..m.current.clone()
        };
        self.set_current(&id, current.clone());
        records.push(Record::Current(id.clone(), Some(current)));
        self.members[&id].clone()
    }

    fn leave(
        &mut self,
        hb: &Heartbeat,
        view: &dyn TopicView,
        now_ms: i64,
    ) -> Result<(Reply, Vec<Record>), Error> {
        let mut records = Vec::new();
        let id = match hb.instance_id.as_deref() {
            None => {
                if !self.members.contains_key(&hb.member_id) {
                    return Err(Error::UnknownMemberId);
                }
                hb.member_id.clone()
            }
            Some(iid) => {
                let m = self.static_member(iid).ok_or(Error::UnknownMemberId)?;
                if m.id != hb.member_id {
                    return Err(Error::FencedInstanceId);
                }
                m.id.clone()
            }
        };
        if hb.member_epoch == STATIC_LEAVE_EPOCH {
            // Keeps its partitions (nobody else gets them) until its session ends.
            let mut c = self.members[&id].current.clone();
            c.epoch = STATIC_LEAVE_EPOCH;
            c.pending_revocation = Assignment::new();
            self.set_current(&id, c.clone());
            records.push(Record::Current(id.clone(), Some(c)));
        } else {
            self.remove_member(&id, view, now_ms, &mut records);
        }
        Ok((
            Reply {
                member_id: id,
                member_epoch: hb.member_epoch,
                assignment: None,
            },
            records,
        ))
    }

    /// Members whose session ended, or who did not revoke in time, are removed. Returns the
    /// removed member ids and the records to write.
    pub fn tick(&mut self, view: &dyn TopicView, now_ms: i64) -> (Vec<String>, Vec<Record>) {
        let expired: Vec<String> = self
            .timers
            .iter()
            .filter(|(_, t)| t.session <= now_ms || t.rebalance.is_some_and(|r| r <= now_ms))
            .map(|(id, _)| id.clone())
            .collect();
        let mut records = Vec::new();
        for id in &expired {
            self.remove_member(id, view, now_ms, &mut records);
        }
        (expired, records)
    }

    /// After a load: every member gets a full session from now.
    pub fn start_timers(&mut self, s: &Settings, now_ms: i64) {
        self.timers = self
            .members
            .values()
            .map(|m| {
                (
                    m.id.clone(),
                    Timers {
                        session: now_ms + session_ms(m, s),
                        rebalance: None,
                    },
                )
            })
            .collect();
    }

    /// Kafka's check of an offset commit or fetch by a member of these groups: an unknown
    /// member is refused, and so is any epoch but the member's own (stale: the member must
    /// first learn its epoch from a heartbeat).
    pub fn check_member_epoch(&self, member_id: &str, epoch: i32) -> Result<(), EpochCheck> {
        let m = self
            .members
            .get(member_id)
            .ok_or(EpochCheck::UnknownMember)?;
        if epoch != m.current.epoch {
            // A classic member learns of it as a generation it does not have.
            return Err(if m.meta.classic.is_some() {
                EpochCheck::IllegalGeneration
            } else {
                EpochCheck::Stale
            });
        }
        Ok(())
    }

    /// The records that delete an empty group.
    pub fn tombstones(&self) -> Vec<Record> {
        vec![
            Record::TargetEpoch(None),
            Record::Subscription(None),
            Record::GroupEpoch(None),
        ]
    }

    /// Applies a record read back from `__consumer_offsets`.
    pub fn replay(&mut self, r: Record) {
        match r {
            Record::GroupEpoch(Some(e)) => self.epoch = e,
            Record::GroupEpoch(None) => {}
            Record::Subscription(v) => {
                self.subscribed = v
                    .unwrap_or_default()
                    .into_iter()
                    .map(|t| (t.name.clone(), t))
                    .collect();
            }
            Record::Member(id, Some(meta)) => {
                let m = self
                    .members
                    .entry(id.clone())
                    .or_insert_with(|| Member::new(&id));
                m.meta = meta;
            }
            Record::Member(id, None) => {
                self.set_current(&id, CurrentAssignment::default());
                self.members.remove(&id);
            }
            Record::TargetEpoch(e) => self.assignment_epoch = e.unwrap_or(0),
            Record::Target(id, Some(a)) => {
                self.target.insert(id, a);
            }
            Record::Target(id, None) => {
                self.target.remove(&id);
            }
            Record::Current(id, Some(c)) => {
                self.members
                    .entry(id.clone())
                    .or_insert_with(|| Member::new(&id));
                self.set_current(&id, c);
            }
            Record::Current(id, None) => {
                if self.members.contains_key(&id) {
                    self.set_current(&id, CurrentAssignment::default());
                }
            }
        }
    }
}

/// Why an offset commit or fetch of a member is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochCheck {
    UnknownMember,
    Stale,
    IllegalGeneration,
}

/// A member's session: its own for classic members, the group setting for the others.
fn session_ms(m: &Member, s: &Settings) -> i64 {
    m.meta
        .classic
        .as_ref()
        .map_or(s.session_timeout_ms, |c| c.session_timeout_ms) as i64
}
