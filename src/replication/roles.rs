//! Which role each replica on this shard plays, switched as the metadata says: leader (serves
//! produce and fetch, keeps the ISR and high watermark through [`LeaderState`]) or follower
//! (copies the leader's log through the fetcher). Runs on the shard that owns the partitions.
//!
//! A leader whose ISR is itself alone lets its high watermark follow its written end, as a
//! single replica's does; otherwise the high watermark moves only by the leader state.

use std::rc::Rc;
use std::time::Duration;

use super::{fetcher, Effect, LeaderState, Replicas, Role};
use crate::metadata::{Command, PartitionMeta, Reply, Snapshot};
use crate::shard::Shard;
use crate::storage::PartitionLog;
use crate::types::TopicPartition;

/// How often leaders look for followers that fell out of sync.
const TICK: Duration = Duration::from_millis(500);

/// A replica of this shard that started or stopped leading, for the subsystems that follow
/// leadership (the group coordinator of `__consumer_offsets`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleChange {
    Leading(TopicPartition),
    StoppedLeading(TopicPartition),
}

fn replicas(shard: &Shard) -> Rc<Replicas> {
    shard.service::<Replicas>()
}

fn role_of(shard: &Shard, tp: &TopicPartition) -> Option<Role> {
    replicas(shard).roles.borrow().get(tp).cloned()
}

fn set_role(shard: &Shard, tp: &TopicPartition, role: Role) {
    replicas(shard).roles.borrow_mut().insert(tp.clone(), role);
}

/// Brings every replica on this shard to the role `snap` gives it; returns the replicas that
/// started or stopped leading, in that order.
pub async fn reconcile(shard: &Rc<Shard>, snap: &Snapshot) -> Vec<RoleChange> {
    let me = shard.config.node_id;
    let mut changes = Vec::new();
    for (tp, log) in shard.all_logs() {
        let Some(meta) = snap.partition(&tp.topic, tp.partition) else {
            continue;
        };
        let change = if meta.leader == me {
            lead(shard, &tp, &log, meta)
        } else {
            follow(shard, &tp, &log, meta)
        };
        changes.extend(change);
    }
    let logs = shard.all_logs();
    replicas(shard)
        .roles
        .borrow_mut()
        .retain(|tp, _| logs.iter().any(|(t, _)| t == tp));
    changes
}

fn lead(
    shard: &Rc<Shard>,
    tp: &TopicPartition,
    log: &Rc<PartitionLog>,
    meta: &PartitionMeta,
) -> Option<RoleChange> {
    let me = shard.config.node_id;
    let current = role_of(shard, tp);
    if let Some(Role::Leader(mut state)) = current {
        if state.leader_epoch == meta.leader_epoch {
            if state.partition_epoch != meta.partition_epoch {
                // Counted here, where the leader learns of any committed change, its own
                // AlterPartition or the controller's (a fenced broker leaves every ISR).
                let before = state.isr().len();
                crate::metrics::count(|c| match meta.isr.len().cmp(&before) {
                    std::cmp::Ordering::Less => c.isr_shrinks += 1,
                    std::cmp::Ordering::Greater => c.isr_expands += 1,
                    std::cmp::Ordering::Equal => {}
                });
                let effects = state.on_isr_committed(
                    meta.isr.clone(),
                    meta.partition_epoch,
                    log.log_end_offset(),
                );
                log.set_hw_follows_written_end(meta.isr == [me]);
                set_role(shard, tp, Role::Leader(state));
                apply_effects(shard, tp, log, effects);
            }
            return None;
        }
    }
    if let Err(e) = log.become_leader(meta.leader_epoch) {
        tracing::error!(partition = %tp, error = %e, "cannot record the new leader epoch");
    }
    log.set_hw_managed(true);
    let state = LeaderState::new(
        me,
        meta.leader_epoch,
        meta.partition_epoch,
        meta.replicas.clone(),
        meta.isr.clone(),
        log.log_end_offset(),
        log.high_watermark(),
        shard.now_ms(),
        shard.config.cluster.replica_lag_time_max_ms,
    );
    log.set_hw_follows_written_end(meta.isr == [me]);
    set_role(shard, tp, Role::Leader(state));
    tracing::info!(
        partition = %tp,
        epoch = meta.leader_epoch,
        log_end = log.log_end_offset(),
        high_watermark = log.high_watermark(),
        "leading"
    );
    Some(RoleChange::Leading(tp.clone()))
}

fn follow(
    shard: &Rc<Shard>,
    tp: &TopicPartition,
    log: &Rc<PartitionLog>,
    meta: &PartitionMeta,
) -> Option<RoleChange> {
    let current = role_of(shard, tp);
    if let Some(Role::Follower {
        leader,
        leader_epoch,
    }) = current
    {
        if leader == meta.leader && leader_epoch == meta.leader_epoch {
            return None;
        }
    }
    let was_leader = matches!(current, Some(Role::Leader(_)));
    log.become_follower();
    log.set_hw_managed(true);
    set_role(
        shard,
        tp,
        Role::Follower {
            leader: meta.leader,
            leader_epoch: meta.leader_epoch,
        },
    );
    tracing::debug!(partition = %tp, leader = meta.leader, epoch = meta.leader_epoch, "following");
    if meta.leader >= 0 {
        fetcher::ensure(shard, meta.leader);
    }
    was_leader.then(|| RoleChange::StoppedLeading(tp.clone()))
}

/// Carries out what the leader state asked for.
pub fn apply_effects(
    shard: &Rc<Shard>,
    tp: &TopicPartition,
    log: &Rc<PartitionLog>,
    effects: Vec<Effect>,
) {
    for e in effects {
        match e {
            Effect::HighWatermark(hw) => {
                log.set_high_watermark(hw);
            }
            Effect::ProposeIsr(isr) => propose_isr(shard, tp, isr),
        }
    }
}

fn propose_isr(shard: &Rc<Shard>, tp: &TopicPartition, isr: Vec<i32>) {
    let Some(Role::Leader(state)) = role_of(shard, tp) else {
        return;
    };
    let cmd = Command::AlterPartition {
        topic: tp.topic.clone(),
        partition: tp.partition,
        leader: shard.config.node_id,
        leader_epoch: state.leader_epoch,
        partition_epoch: state.partition_epoch,
        isr: isr.clone(),
    };
    tracing::info!(partition = %tp, ?isr, "proposing a new ISR");
    let (shard, tp) = (shard.clone(), tp.clone());
    glommio::spawn_local(async move {
        let result = shard.execute(cmd).await;
        if !matches!(result, Ok(Reply::Partition { .. })) {
            if let Err(e) = &result {
                tracing::info!(partition = %tp, error = %e, "ISR change refused");
            }
            if let Some(Role::Leader(s)) = replicas(&shard).roles.borrow_mut().get_mut(&tp) {
                if s.leader_epoch == state.leader_epoch {
                    s.on_isr_rejected(shard.now_ms());
                }
            }
        }
    })
    .detach();
}

/// A follower fetched from `offset`: the leader state learns its end (and maybe moves the high
/// watermark or asks for a bigger ISR).
pub fn on_follower_fetch(shard: &Rc<Shard>, tp: &TopicPartition, node: i32, offset: i64) {
    let Some(log) = shard.log(tp) else {
        return;
    };
    let effects = {
        let replicas = replicas(shard);
        let mut roles = replicas.roles.borrow_mut();
        let Some(Role::Leader(state)) = roles.get_mut(tp) else {
            return;
        };
        let eligible = shard.snapshot().is_live(node);
        state.on_follower_fetch(node, offset, log.log_end_offset(), eligible, shard.now_ms())
    };
    apply_effects(shard, tp, &log, effects);
}

/// Leaders' periodic duties on this shard: shrink ISRs of lagging followers, and checkpoint
/// high watermarks.
pub async fn run_ticks(shard: Rc<Shard>) {
    let checkpoint_every = Duration::from_millis(
        shard
            .config
            .cluster
            .replica_high_watermark_checkpoint_interval_ms,
    );
    let mut since_checkpoint = Duration::ZERO;
    loop {
        glommio::timer::sleep(TICK).await;
        for (tp, log) in shard.all_logs() {
            let effects = {
                let replicas = replicas(&shard);
                let mut roles = replicas.roles.borrow_mut();
                match roles.get_mut(&tp) {
                    Some(Role::Leader(state)) => {
                        state.on_tick(log.log_end_offset(), shard.now_ms())
                    }
                    _ => continue,
                }
            };
            apply_effects(&shard, &tp, &log, effects);
        }
        since_checkpoint += TICK;
        if since_checkpoint >= checkpoint_every {
            since_checkpoint = Duration::ZERO;
            for (tp, log) in shard.all_logs() {
                if let Err(e) = log.checkpoint_high_watermark() {
                    tracing::warn!(partition = %tp, error = %e, "high watermark checkpoint failed");
                }
            }
        }
    }
}
