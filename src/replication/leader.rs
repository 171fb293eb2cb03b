//! The leader's view of one replicated partition, as a pure machine: followers' log ends, the
//! in-sync set (ISR) and the high watermark. Fed by follower fetches, local writes and a clock
//! tick; answers with effects for the shard to carry out (move the log's high watermark, ask
//! the controller for a new ISR). No I/O, no clock of its own.
//!
//! Kafka's rules (`Partition` and `Replica` in Kafka's core):
//! - the high watermark is the smallest log end among the ISR (the leader's counts once its own
//!   write completed: our durability rule), and never goes down;
//! - a follower is caught up at a fetch whose offset reaches the leader's end (or the end the
//!   leader had at its previous fetch); one not caught up for `replica.lag.time.max.ms` leaves
//!   the ISR; one whose end reaches the high watermark joins it;
//! - an ISR change is proposed to the controller and takes effect when committed; while one is
//!   pending no other is proposed, and the high watermark counts the larger of the two sets
//!   (Kafka's "maximal ISR"), so it never moves on a set that might not be committed.
//!
//! Lives on the shard that owns the partition; mutated only there.

use std::collections::BTreeMap;

use crate::types::NodeId;

/// What the shard must do after a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Move the log's high watermark to this offset (consumers and acks=all waiters go on).
    HighWatermark(i64),
    /// Ask the controller to make this the ISR (AlterPartition).
    ProposeIsr(Vec<NodeId>),
}

/// How long a leader waits after a refused ISR change before it proposes another.
pub const REPROPOSE_AFTER_MS: i64 = 500;

#[derive(Debug, Clone, Default)]
struct Follower {
    /// The follower's log end, from its last fetch offset; unknown before its first fetch.
    end: Option<i64>,
    last_fetch_ms: i64,
    /// The leader's end at the follower's previous fetch (Kafka's lastFetchLeaderLogEndOffset).
    leader_end_at_last_fetch: i64,
    last_caught_up_ms: i64,
}

#[derive(Debug, Clone)]
pub struct LeaderState {
    me: NodeId,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    replicas: Vec<NodeId>,
    /// As the controller last committed it.
    isr: Vec<NodeId>,
    /// Proposed and not yet committed.
    pending_isr: Option<Vec<NodeId>>,
    followers: BTreeMap<NodeId, Follower>,
    /// Where this leader's epoch starts; a follower below it cannot join the ISR.
    epoch_start: i64,
    hw: i64,
    lag_max_ms: i64,
    /// After a refused proposal, none is made before this time.
    propose_after_ms: i64,
}

impl LeaderState {
    /// Where this leader's epoch starts: its log end when it was elected.
    pub fn epoch_start(&self) -> i64 {
        self.epoch_start
    }

    /// A new leadership. `hw` is the log's high watermark now; followers start as caught up at
    /// `now` (Kafka gives them a full lag window after a leader change).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        me: NodeId,
        leader_epoch: i32,
        partition_epoch: i32,
        replicas: Vec<NodeId>,
        isr: Vec<NodeId>,
        epoch_start: i64,
        hw: i64,
        now_ms: i64,
        lag_max_ms: i64,
    ) -> LeaderState {
        let followers = replicas
            .iter()
            .filter(|r| **r != me)
            .map(|r| {
                let f = Follower {
                    last_caught_up_ms: now_ms,
                    last_fetch_ms: now_ms,
                    ..Follower::default()
                };
                (*r, f)
            })
            .collect();
        LeaderState {
            me,
            leader_epoch,
            partition_epoch,
            replicas,
            isr,
            pending_isr: None,
            followers,
            epoch_start,
            hw,
            lag_max_ms,
            propose_after_ms: i64::MIN,
        }
    }

    pub fn high_watermark(&self) -> i64 {
        self.hw
    }

    pub fn isr(&self) -> &[NodeId] {
        &self.isr
    }

    pub fn replicas(&self) -> &[NodeId] {
        &self.replicas
    }

    pub fn is_replica(&self, node: NodeId) -> bool {
        self.replicas.contains(&node)
    }

    /// The committed ISR is what min.insync.replicas counts (Kafka's `isUnderMinIsr`).
    pub fn isr_size(&self) -> usize {
        self.isr.len()
    }

    /// ISR members for the high watermark: the larger of the committed and pending sets.
    fn maximal_isr(&self) -> Vec<NodeId> {
        let mut all = self.isr.clone();
        if let Some(p) = &self.pending_isr {
            for n in p {
                if !all.contains(n) {
                    all.push(*n);
                }
            }
        }
        all
    }

    /// A follower fetched from `fetch_offset` (so it holds everything below it, written).
    /// `eligible`: the metadata says the follower's broker is live (not fenced), so it may
    /// join the ISR (Kafka's isReplicaIsrEligible; the controller refuses others).
    pub fn on_follower_fetch(
        &mut self,
        node: NodeId,
        fetch_offset: i64,
        leader_end: i64,
        eligible: bool,
        now_ms: i64,
    ) -> Vec<Effect> {
        let Some(f) = self.followers.get_mut(&node) else {
            return Vec::new();
        };
        if fetch_offset >= leader_end {
            f.last_caught_up_ms = now_ms;
        } else if fetch_offset >= f.leader_end_at_last_fetch {
            f.last_caught_up_ms = f.last_caught_up_ms.max(f.last_fetch_ms);
        }
        f.end = Some(fetch_offset);
        f.last_fetch_ms = now_ms;
        f.leader_end_at_last_fetch = leader_end;
        let mut effects = self.advance_hw(leader_end);
        if self.pending_isr.is_none()
            && eligible
            && now_ms >= self.propose_after_ms
            && !self.isr.contains(&node)
            && fetch_offset >= self.hw
            && fetch_offset >= self.epoch_start
        {
            let mut grown = self.isr.clone();
            grown.push(node);
            grown.sort_by_key(|n| self.replicas.iter().position(|r| r == n));
            effects.push(self.propose(grown));
        }
        effects
    }

    /// The leader's own write completed up to `leader_end`.
    pub fn on_local_write(&mut self, leader_end: i64) -> Vec<Effect> {
        self.advance_hw(leader_end)
    }

    /// Periodic check: ISR members that have not caught up for the lag window leave it.
    pub fn on_tick(&mut self, leader_end: i64, now_ms: i64) -> Vec<Effect> {
        if self.pending_isr.is_some() || now_ms < self.propose_after_ms {
            return Vec::new();
        }
        let lagging: Vec<NodeId> = self
            .isr
            .iter()
            .filter(|n| **n != self.me)
            .filter(|n| {
                self.followers.get(n).is_some_and(|f| {
                    f.end != Some(leader_end) && now_ms - f.last_caught_up_ms > self.lag_max_ms
                })
            })
            .copied()
            .collect();
        if lagging.is_empty() {
            return Vec::new();
        }
        let shrunk: Vec<NodeId> = self
            .isr
            .iter()
            .filter(|n| !lagging.contains(n))
            .copied()
            .collect();
        vec![self.propose(shrunk)]
    }

    fn propose(&mut self, isr: Vec<NodeId>) -> Effect {
        self.pending_isr = Some(isr.clone());
        Effect::ProposeIsr(isr)
    }

    /// The controller committed an ISR for this leadership (ours or its own, e.g. a fenced
    /// broker removed). Clears a pending proposal; the high watermark may move.
    pub fn on_isr_committed(
        &mut self,
        isr: Vec<NodeId>,
        partition_epoch: i32,
        leader_end: i64,
    ) -> Vec<Effect> {
        self.isr = isr;
        self.partition_epoch = partition_epoch;
        self.pending_isr = None;
        self.advance_hw(leader_end)
    }

    /// A proposal the controller refused (a stale partition epoch, a fenced replica): propose
    /// again, but not before `REPROPOSE_AFTER_MS` (the metadata may be about to change).
    pub fn on_isr_rejected(&mut self, now_ms: i64) {
        self.pending_isr = None;
        self.propose_after_ms = now_ms + REPROPOSE_AFTER_MS;
    }

    fn advance_hw(&mut self, leader_end: i64) -> Vec<Effect> {
        let mut hw = leader_end;
        for n in self.maximal_isr() {
            if n == self.me {
                continue;
            }
            match self.followers.get(&n).and_then(|f| f.end) {
                Some(end) => hw = hw.min(end),
                // A member we have not heard from in this leadership holds the mark still.
                None => hw = hw.min(self.hw),
            }
        }
        if hw > self.hw {
            self.hw = hw;
            vec![Effect::HighWatermark(hw)]
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAG: i64 = 30_000;

    fn three(isr: &[NodeId]) -> LeaderState {
        LeaderState::new(1, 5, 7, vec![1, 2, 3], isr.to_vec(), 100, 100, 0, LAG)
    }

    #[test]
    fn the_high_watermark_is_the_smallest_end_in_the_isr() {
        let mut l = three(&[1, 2, 3]);
        // Nothing moves until every member has fetched in this leadership.
        assert_eq!(l.on_local_write(150), vec![]);
        assert_eq!(l.on_follower_fetch(2, 150, 150, true, 10), vec![]);
        assert_eq!(
            l.on_follower_fetch(3, 120, 150, true, 10),
            vec![Effect::HighWatermark(120)]
        );
        assert_eq!(
            l.on_follower_fetch(3, 150, 150, true, 20),
            vec![Effect::HighWatermark(150)]
        );
        // The leader's own end bounds it too.
        assert_eq!(l.on_follower_fetch(2, 160, 150, true, 30), vec![]);
        assert_eq!(l.high_watermark(), 150);
        // Never down, even if a follower reports less (a stale fetch).
        assert_eq!(l.on_follower_fetch(3, 140, 150, true, 40), vec![]);
        assert_eq!(l.high_watermark(), 150);
    }

    #[test]
    fn a_lone_leader_moves_the_mark_with_its_writes() {
        let mut l = three(&[1]);
        assert_eq!(l.on_local_write(130), vec![Effect::HighWatermark(130)]);
        assert_eq!(l.on_local_write(130), vec![]);
    }

    #[test]
    fn lagging_followers_leave_and_caught_up_ones_rejoin() {
        let mut l = three(&[1, 2, 3]);
        l.on_follower_fetch(2, 100, 100, true, 0);
        l.on_follower_fetch(3, 100, 100, true, 0);
        // 3 keeps fetching but never reaches the leader's end; 2 keeps up.
        for t in (1000..=31_000).step_by(1000) {
            l.on_follower_fetch(2, 100 + t, 100 + t, true, t);
            l.on_follower_fetch(3, 100, 100 + t, true, t);
        }
        assert_eq!(
            l.on_tick(31_100, 31_000),
            vec![Effect::ProposeIsr(vec![1, 2])]
        );
        assert_eq!(l.on_tick(31_100, 40_000), vec![], "one proposal at a time");
        l.on_isr_committed(vec![1, 2], 8, 31_100);
        assert_eq!(l.isr(), &[1, 2]);
        // The mark moves without 3 now.
        l.on_follower_fetch(2, 31_100, 31_100, true, 41_000);
        assert_eq!(l.high_watermark(), 31_100);
        // 3 catches up to the mark: it is proposed back, in replica order.
        let e = l.on_follower_fetch(3, 31_100, 31_100, true, 42_000);
        assert_eq!(e, vec![Effect::ProposeIsr(vec![1, 2, 3])]);
        l.on_isr_committed(vec![1, 2, 3], 9, 31_100);
        assert_eq!(l.partition_epoch, 9);
    }

    #[test]
    fn a_follower_below_the_epoch_start_does_not_join() {
        let mut l = LeaderState::new(1, 5, 7, vec![1, 2], vec![1], 500, 500, 0, LAG);
        l.on_local_write(600);
        assert_eq!(l.high_watermark(), 600);
        assert_eq!(l.on_follower_fetch(2, 400, 600, true, 10), vec![]);
        assert_eq!(
            l.on_follower_fetch(2, 600, 600, true, 20),
            vec![Effect::ProposeIsr(vec![1, 2])]
        );
    }

    #[test]
    fn a_pending_expansion_counts_for_the_mark_and_a_rejection_retries() {
        let mut l = LeaderState::new(1, 5, 7, vec![1, 2], vec![1], 0, 100, 0, LAG);
        l.on_local_write(100);
        assert_eq!(
            l.on_follower_fetch(2, 100, 100, true, 10),
            vec![Effect::ProposeIsr(vec![1, 2])]
        );
        // While 2 may be in the ISR, the mark waits for it.
        assert_eq!(l.on_local_write(200), vec![]);
        assert_eq!(
            l.on_follower_fetch(2, 150, 200, true, 20),
            vec![Effect::HighWatermark(150)]
        );
        l.on_isr_rejected(25);
        // Not again at once: the refusal holds proposals back for a moment.
        assert_eq!(
            l.on_follower_fetch(2, 200, 200, true, 30),
            vec![Effect::HighWatermark(200)]
        );
        let e = l.on_follower_fetch(2, 200, 200, true, 25 + REPROPOSE_AFTER_MS);
        assert_eq!(e, vec![Effect::ProposeIsr(vec![1, 2])]);
    }

    #[test]
    fn a_fenced_follower_does_not_join() {
        let mut l = LeaderState::new(1, 5, 7, vec![1, 2], vec![1], 0, 100, 0, LAG);
        l.on_local_write(100);
        assert_eq!(l.on_follower_fetch(2, 100, 100, false, 10), vec![]);
        assert_eq!(
            l.on_follower_fetch(2, 100, 100, true, 20),
            vec![Effect::ProposeIsr(vec![1, 2])]
        );
    }

    #[test]
    fn a_stalled_follower_at_the_end_stays_until_the_end_moves() {
        // Kafka's rule: a follower whose last fetch reached the leader's end is caught up
        // however long ago that was; once the end moves, the lag window counts.
        let mut l = three(&[1, 2, 3]);
        l.on_local_write(100);
        l.on_follower_fetch(2, 100, 100, true, 0);
        l.on_follower_fetch(3, 100, 100, true, 0);
        assert_eq!(l.on_tick(100, 10 * LAG), vec![]);
        l.on_follower_fetch(3, 150, 150, true, 10 * LAG);
        assert_eq!(
            l.on_tick(150, 10 * LAG + 1),
            vec![Effect::ProposeIsr(vec![1, 3])]
        );
    }

    #[test]
    fn strangers_are_ignored() {
        let mut l = three(&[1, 2, 3]);
        assert_eq!(l.on_follower_fetch(9, 1000, 100, true, 10), vec![]);
        assert!(!l.is_replica(9));
        assert_eq!(l.isr_size(), 3);
        assert_eq!(l.replicas(), &[1, 2, 3]);
    }
}
