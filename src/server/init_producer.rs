//! InitProducerId for idempotent producers: a producer id from the controller, epoch 0, or
//! the same id with the next epoch when a producer asks to bump its epoch (KIP-360).
//!
//! A transactional id goes to its transaction coordinator (`transactions`).

use std::rc::Rc;

use futures::future::LocalBoxFuture;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::{errors, reply, Outcome};
use crate::protocol::{decode_body, Request};
use crate::security::acl::{AclOperation, ResourceType, CLUSTER_NAME};
use crate::shard::Shard;

pub fn handle(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body: InitProducerIdRequest = match decode_body(&req) {
        Ok(b) => b,
        Err(e) => return super::ready(Outcome::Close(e.to_string())),
    };
    let answer = |code: i16, id: i64, epoch: i16| {
        InitProducerIdResponse::default()
            .with_error_code(code)
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch)
    };
    // Kafka's checks: WRITE on the transactional id; an idempotent producer needs
    // IDEMPOTENT_WRITE on the cluster or WRITE on some topic.
    let access = super::access::Access::of(shard, &req);
    if let Some(id) = body.transactional_id.as_ref().map(|t| t.0.to_string()) {
        if !access.transactional_id(AclOperation::Write, &id) {
            let e = ResponseError::TransactionalIdAuthorizationFailed;
            return super::ready(reply(&req, &answer(e.code(), -1, -1)));
        }
        return super::transactions::init_producer_id(shard, &req, body, id);
    }
    if !access.shows(
        AclOperation::IdempotentWrite,
        ResourceType::Cluster,
        CLUSTER_NAME,
    ) && !access.any(AclOperation::Write, ResourceType::Topic)
    {
        let e = ResponseError::ClusterAuthorizationFailed;
        return super::ready(reply(&req, &answer(e.code(), -1, -1)));
    }
    // An existing producer bumping its epoch keeps its id while the epoch has room.
    let (id, epoch) = (body.producer_id.0, body.producer_epoch);
    if id >= 0 && (0..i16::MAX - 1).contains(&epoch) {
        return super::ready(reply(&req, &answer(0, id, epoch + 1)));
    }
    let core = shard.metadata_core();
    let call = shard.invoke_on(core, |s| async move {
        s.next_producer_id().await.map_err(|e| errors::metadata(&e))
    });
    Box::pin(async move {
        let resp = match call.await {
            Ok(Ok(id)) => answer(0, id, 0),
            Ok(Err(e)) => answer(e.code(), -1, -1),
            Err(e) => answer(errors::shard(&e).code(), -1, -1),
        };
        reply(&req, &resp)
    })
}
