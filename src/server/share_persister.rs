//! A share-partition leader's way to its group's coordinator, which stores share-partition
//! state (Kafka's persister): the coordinator's shard directly when this node coordinates the
//! group, else ReadShareGroupState / WriteShareGroupState / DeleteShareGroupState over a
//! broker-to-broker link to the node leading the group's `__consumer_offsets` partition.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use futures::future::LocalBoxFuture;

use crate::group::coordinator::offsets_partition;
use crate::group::coordinator::share as coordinator;
use crate::replication::link::Link;
use crate::shard::Shard;
use crate::share::partition::Persisted;
use crate::share::{Failure, StateKey};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle links of this shard to other brokers' coordinators, by address.
#[derive(Default)]
pub struct Links {
    idle: RefCell<HashMap<String, Vec<Link>>>,
}

/// Where the group's coordinator is: this node, or another broker's address.
enum Place {
    Here,
    There(String),
}

fn place(shard: &Shard, group: &str) -> Result<Place, Failure> {
    let tp = offsets_partition(&shard.config, group);
    let snap = shard.snapshot();
    let leader = snap
        .partition(&tp.topic, tp.partition)
        .map(|p| p.leader)
        .ok_or_else(|| Failure::Unavailable("no coordinator yet".into()))?;
    if leader == shard.config.node_id {
        return Ok(Place::Here);
    }
    let b = snap
        .brokers
        .get(&leader)
        .filter(|b| !b.fenced)
        .ok_or_else(|| Failure::Unavailable(format!("coordinator {leader} is not up")))?;
    Ok(Place::There(format!("{}:{}", b.host, b.port)))
}

fn refused(e: ResponseError) -> Failure {
    match e {
        ResponseError::FencedStateEpoch => Failure::Fenced,
        ResponseError::FencedLeaderEpoch => Failure::NotLeader,
        e => Failure::Unavailable(format!("{e:?}")),
    }
}

fn code(code: i16) -> Result<(), Failure> {
    match ResponseError::try_from_code(code) {
        None if code == 0 => Ok(()),
        Some(e) => Err(refused(e)),
        None => Err(Failure::Unavailable(format!("error {code}"))),
    }
}

/// One request to the coordinator at `addr`, on an idle link or a new one.
async fn call<R: kafka_protocol::protocol::Request>(
    shard: &Shard,
    addr: &str,
    req: &R,
    version: i16,
) -> Result<R::Response, Failure> {
    let links = shard.service::<Links>();
    let idle = links.idle.borrow_mut().get_mut(addr).and_then(Vec::pop);
    let mut link = match idle {
        Some(l) => l,
        None => Link::to_broker(shard, addr, "gregor-share-persister", CONNECT_TIMEOUT)
            .await
            .map_err(|e| Failure::Unavailable(format!("{addr}: {e}")))?,
    };
    let r = link
        .request(req, version)
        .await
        .map_err(|e| Failure::Unavailable(format!("{addr}: {e}")))?;
    let mut idle = links.idle.borrow_mut();
    let pool = idle.entry(addr.to_string()).or_default();
    if pool.len() < 4 {
        pool.push(link);
    }
    Ok(r)
}

fn to_batches(p: &Persisted) -> Vec<write_share_group_state_request::StateBatch> {
    p.runs
        .iter()
        .map(|&(first, last, state, count)| {
            write_share_group_state_request::StateBatch::default()
                .with_first_offset(first)
                .with_last_offset(last)
                .with_delivery_state(state as i8)
                .with_delivery_count(count)
        })
        .collect()
}

/// The stored state of a share-partition; None when it has none.
async fn read(shard: &Rc<Shard>, key: StateKey) -> Result<Option<Persisted>, Failure> {
    let StateKey {
        group,
        topic_id,
        partition,
        leader_epoch,
    } = key;
    let group = group.as_str();
    match place(shard, group)? {
        Place::Here => {
            let tp = offsets_partition(&shard.config, group);
            let owner = shard.owner_of(&tp.topic, tp.partition);
            let g = group.to_string();
            shard
                .invoke_on(owner, move |s| async move {
                    coordinator::read_state(&s, &g, topic_id, partition)
                })
                .await
                .map_err(|e| Failure::Unavailable(format!("{e:?}")))?
                .map_err(refused)
        }
        Place::There(addr) => {
            let req = ReadShareGroupStateRequest::default()
                .with_group_id(StrBytes::from_string(group.to_string()))
                .with_topics(vec![
                    read_share_group_state_request::ReadStateData::default()
                        .with_topic_id(topic_id)
                        .with_partitions(vec![
                            read_share_group_state_request::PartitionData::default()
                                .with_partition(partition)
                                .with_leader_epoch(leader_epoch),
                        ]),
                ]);
            let r = call(shard, &addr, &req, 0).await?;
            let p = r
                .results
                .first()
                .and_then(|t| t.partitions.first())
                .ok_or_else(|| Failure::Unavailable("an empty answer".into()))?;
            code(p.error_code)?;
            if p.start_offset < 0 {
                return Ok(None);
            }
            Ok(Some(Persisted {
                state_epoch: p.state_epoch,
                start: p.start_offset,
                runs: p
                    .state_batches
                    .iter()
                    .map(|b| {
                        (
                            b.first_offset,
                            b.last_offset,
                            b.delivery_state as u8,
                            b.delivery_count,
                        )
                    })
                    .collect(),
            }))
        }
    }
}

/// Stores a share-partition's state (None deletes it); returns once the coordinator wrote it.
async fn write(shard: &Rc<Shard>, key: StateKey, state: Option<Persisted>) -> Result<(), Failure> {
    let StateKey {
        group,
        topic_id,
        partition,
        leader_epoch,
    } = key;
    let group = group.as_str();
    match place(shard, group)? {
        Place::Here => {
            let tp = offsets_partition(&shard.config, group);
            let owner = shard.owner_of(&tp.topic, tp.partition);
            let g = group.to_string();
            shard
                .invoke_on(owner, move |s| {
                    coordinator::write_state(s, g, topic_id, partition, leader_epoch, state)
                })
                .await
                .map_err(|e| Failure::Unavailable(format!("{e:?}")))?
                .map_err(refused)
        }
        Place::There(addr) => {
            let gid = StrBytes::from_string(group.to_string());
            let r = match state {
                Some(p) => {
                    let req = WriteShareGroupStateRequest::default()
                        .with_group_id(gid)
                        .with_topics(vec![
                            write_share_group_state_request::WriteStateData::default()
                                .with_topic_id(topic_id)
                                .with_partitions(vec![
                                    write_share_group_state_request::PartitionData::default()
                                        .with_partition(partition)
                                        .with_state_epoch(p.state_epoch)
                                        .with_leader_epoch(leader_epoch)
                                        .with_start_offset(p.start)
                                        .with_state_batches(to_batches(&p)),
                                ]),
                        ]);
                    call(shard, &addr, &req, 0)
                        .await?
                        .results
                        .first()
                        .and_then(|t| t.partitions.first())
                        .map(|p| p.error_code)
                }
                None => {
                    let req = DeleteShareGroupStateRequest::default()
                        .with_group_id(gid)
                        .with_topics(vec![
                            delete_share_group_state_request::DeleteStateData::default()
                                .with_topic_id(topic_id)
                                .with_partitions(vec![
                                    delete_share_group_state_request::PartitionData::default()
                                        .with_partition(partition),
                                ]),
                        ]);
                    call(shard, &addr, &req, 0)
                        .await?
                        .results
                        .first()
                        .and_then(|t| t.partitions.first())
                        .map(|p| p.error_code)
                }
            };
            code(r.ok_or_else(|| Failure::Unavailable("an empty answer".into()))?)
        }
    }
}

/// The persister the composition root installs on each shard ([`crate::share::set_persister`]).
pub fn persister() -> Rc<dyn crate::share::Persister> {
    Rc::new(CoordinatorPersister)
}

struct CoordinatorPersister;

impl crate::share::Persister for CoordinatorPersister {
    fn read(
        &self,
        shard: Rc<Shard>,
        key: StateKey,
    ) -> LocalBoxFuture<'static, Result<Option<Persisted>, Failure>> {
        Box::pin(async move { read(&shard, key).await })
    }

    fn write(
        &self,
        shard: Rc<Shard>,
        key: StateKey,
        state: Option<Persisted>,
    ) -> LocalBoxFuture<'static, Result<(), Failure>> {
        Box::pin(async move { write(&shard, key, state).await })
    }
}
