//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions (configs: see
//! [`super::configs`]).
//!
//! Changes are commands to the active controller (through this node's metadata core); each is
//! committed in the metadata quorum and visible on every shard of this node (logs opened or
//! deleted) before the answer is sent.

use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;

use futures::future::LocalBoxFuture;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::access::Access;
use super::{errors, reply, Outcome};
use crate::config::{Config, TOPIC_CONFIGS};
use crate::metadata::{Command, CreateTopic, MetadataError, Reply, TopicMeta};
use crate::protocol::{decode_body, Request};
use crate::security::acl::{AclOperation, ResourceType, CLUSTER_NAME};
use crate::shard::Shard;

/// A failed admin operation: the Kafka error code and a message for the client.
pub type AdminError = (i16, String);

fn admin_err(e: &MetadataError) -> AdminError {
    (errors::metadata(e).code(), e.to_string())
}

/// What a created topic looks like, as CreateTopics v5+ reports it.
#[derive(Debug, Clone)]
pub struct Created {
    pub id: Uuid,
    pub partitions: i32,
    pub replication_factor: i16,
    /// Every topic config with its value and whether the topic overrides it.
    pub configs: Vec<(String, String, bool)>,
}

fn created(meta: &TopicMeta) -> Created {
    let configs = TOPIC_CONFIGS
        .iter()
        .map(|(name, _)| {
            let value = meta.log_config.get_topic(name).unwrap_or_default();
            (name.to_string(), value, meta.configs.contains_key(*name))
        })
        .collect();
    Created {
        id: meta.id,
        partitions: meta.partitions,
        replication_factor: meta.replication_factor() as i16,
        configs,
    }
}

/// Creates topics through the active controller; each is visible on this node's shards when
/// its answer comes.
pub async fn create_on_controller(
    shard: &Rc<Shard>,
    topics: Vec<CreateTopic>,
    validate_only: bool,
) -> Vec<Result<Created, AdminError>> {
    let mut out = Vec::with_capacity(topics.len());
    for t in topics {
        let cmd = Command::CreateTopic {
            name: t.name.clone(),
            partitions: t.partitions,
            replication_factor: t.replication_factor,
            configs: t.configs.clone(),
            validate_only,
        };
        let r = match shard.execute(cmd).await {
            Ok(Reply::Created {
                id,
                partitions,
                replication_factor,
            }) => Ok(
                match shard.snapshot().topic(&t.name).filter(|m| m.id == id) {
                    Some(meta) => created(meta),
                    None => preview(&shard.config, &t, id, partitions, replication_factor),
                },
            ),
            Ok(other) => Err((
                ResponseError::UnknownServerError.code(),
                format!("unexpected answer {other:?}"),
            )),
            Err(e) => Err(admin_err(&e)),
        };
        out.push(r);
    }
    out
}

/// What a validate-only creation would make.
fn preview(config: &Config, t: &CreateTopic, id: Uuid, partitions: i32, rf: i16) -> Created {
    let log = crate::config::LogConfig::resolve(&config.log, &t.configs).unwrap_or_default();
    let configs = TOPIC_CONFIGS
        .iter()
        .map(|(name, _)| {
            let value = log.get_topic(name).unwrap_or_default();
            (name.to_string(), value, t.configs.contains_key(*name))
        })
        .collect();
    Created {
        id,
        partitions,
        replication_factor: rf,
        configs,
    }
}

/// Turns one CreateTopics entry into a command, filling in broker defaults (-1).
fn creatable(t: &CreatableTopic, config: &Config) -> Result<CreateTopic, AdminError> {
    let invalid = |code: ResponseError, msg: &str| Err((code.code(), msg.to_string()));
    let mut partitions = t.num_partitions;
    let mut replication_factor = t.replication_factor;
    if !t.assignments.is_empty() {
        if partitions != -1 || replication_factor != -1 {
            return invalid(
                ResponseError::InvalidRequest,
                "both partition count and replica assignments were given",
            );
        }
        if t.assignments.iter().any(|a| a.broker_ids.is_empty()) {
            return invalid(
                ResponseError::InvalidReplicaAssignment,
                "a partition has no replicas",
            );
        }
        partitions = t.assignments.len() as i32;
        replication_factor = t.assignments[0].broker_ids.len() as i16;
    }
    if partitions == -1 {
        partitions = config.num_partitions;
    }

    let mut configs = BTreeMap::new();
    for c in &t.configs {
        let Some(value) = &c.value else {
            return invalid(
                ResponseError::InvalidConfig,
                &format!("null value for config {}", c.name.as_str()),
            );
        };
        configs.insert(c.name.to_string(), value.to_string());
    }
    Ok(CreateTopic {
        name: t.name.to_string(),
        partitions,
        replication_factor,
        configs,
    })
}

pub fn create_topics(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body: CreateTopicsRequest = match decode_body(&req) {
        Ok(b) => b,
        Err(e) => return super::ready(Outcome::Close(e.to_string())),
    };
    // Kafka's check: CREATE on the cluster, or on the topic.
    let access = Access::of(shard, &req);
    let create_any = access.shows(AclOperation::Create, ResourceType::Cluster, CLUSTER_NAME);
    let shard = shard.clone();
    Box::pin(async move {
        let mut seen = HashSet::new();
        let dupes: HashSet<&str> = body
            .topics
            .iter()
            .filter(|t| !seen.insert(t.name.as_str()))
            .map(|t| t.name.as_str())
            .collect();
        let mut results: Vec<Result<Created, AdminError>> = Vec::new();
        let mut commands = Vec::new();
        let mut slots = Vec::new();
        for (i, t) in body.topics.iter().enumerate() {
            let cmd = if dupes.contains(t.name.as_str()) {
                Err((
                    ResponseError::InvalidRequest.code(),
                    "topic named more than once".to_string(),
                ))
            } else if !create_any && !access.topic(AclOperation::Create, t.name.as_str()) {
                Err(unauthorized())
            } else {
                creatable(t, &shard.config)
            };
            results.push(Err((0, String::new())));
            match cmd {
                Ok(c) => {
                    commands.push(c);
                    slots.push(i);
                }
                Err(e) => results[i] = Err(e),
            }
        }
        let done = create_on_controller(&shard, commands, body.validate_only).await;
        for (slot, r) in slots.into_iter().zip(done) {
            results[slot] = r;
        }
        let topics = body
            .topics
            .iter()
            .zip(results)
            .map(|(t, r)| create_result(t.name.clone(), r, req.api_version))
            .collect();
        reply(&req, &CreateTopicsResponse::default().with_topics(topics))
    })
}

fn create_result(
    name: TopicName,
    r: Result<Created, AdminError>,
    version: i16,
) -> CreatableTopicResult {
    let base = CreatableTopicResult::default().with_name(name);
    match r {
        Err((code, msg)) => base
            .with_error_code(code)
            .with_error_message(Some(StrBytes::from_string(msg)))
            .with_num_partitions(-1)
            .with_replication_factor(-1),
        Ok(c) => {
            let configs = (version >= 5).then(|| {
                c.configs
                    .into_iter()
                    .map(|(name, value, overridden)| {
                        CreatableTopicConfigs::default()
                            .with_name(StrBytes::from_string(name))
                            .with_value(Some(StrBytes::from_string(value)))
                            .with_config_source(if overridden { 1 } else { 5 })
                    })
                    .collect()
            });
            base.with_topic_id(c.id)
                .with_num_partitions(c.partitions)
                .with_replication_factor(c.replication_factor)
                .with_configs(configs)
        }
    }
}

/// A topic the principal may not act on, as Kafka answers it.
fn unauthorized() -> AdminError {
    let e = ResponseError::TopicAuthorizationFailed;
    (e.code(), e.to_string())
}

pub fn delete_topics(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body: DeleteTopicsRequest = match decode_body(&req) {
        Ok(b) => b,
        Err(e) => return super::ready(Outcome::Close(e.to_string())),
    };
    // v6 names topics by name or id; older versions by name only.
    let targets: Vec<(Option<String>, Uuid)> = if req.api_version >= 6 {
        body.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.to_string()), t.topic_id))
            .collect()
    } else {
        body.topic_names
            .iter()
            .map(|n| (Some(n.to_string()), Uuid::nil()))
            .collect()
    };
    let access = Access::of(shard, &req);
    let shard = shard.clone();
    Box::pin(async move {
        let results = delete_on_controller(shard, targets, access).await;
        let responses = results
            .into_iter()
            .map(|(name, id, err)| {
                let mut r = DeletableTopicResult::default()
                    .with_name(name.map(|n| TopicName(StrBytes::from_string(n))))
                    .with_topic_id(id);
                if let Some((code, msg)) = err {
                    r = r.with_error_code(code);
                    if req.api_version >= 5 {
                        r = r.with_error_message(Some(StrBytes::from_string(msg)));
                    }
                }
                r
            })
            .collect();
        reply(
            &req,
            &DeleteTopicsResponse::default().with_responses(responses),
        )
    })
}

type DeleteResult = (Option<String>, Uuid, Option<AdminError>);

/// Deletes each topic in turn; one the principal may not DELETE is refused (Kafka's check).
async fn delete_on_controller(
    s: Rc<Shard>,
    targets: Vec<(Option<String>, Uuid)>,
    access: Access,
) -> Vec<DeleteResult> {
    let mut out = Vec::with_capacity(targets.len());
    for (asked, id) in targets {
        let snap = s.snapshot();
        let name = match &asked {
            Some(n) => Ok(n.clone()),
            None => snap
                .topic_by_id(&id)
                .map(|t| t.name.clone())
                .ok_or(MetadataError::UnknownTopicId(id)),
        };
        if let Ok(n) = &name {
            if !access.topic(AclOperation::Delete, n) {
                out.push((asked, id, Some(unauthorized())));
                continue;
            }
            if crate::group::is_internal_topic(n) {
                let e = ResponseError::InvalidTopicException;
                out.push((
                    asked,
                    id,
                    Some((e.code(), format!("{n} is an internal topic"))),
                ));
                continue;
            }
        }
        let r = match name {
            Ok(n) => match s.execute(Command::DeleteTopic { name: n.clone() }).await {
                Ok(Reply::Deleted { id }) => (Some(n), id, None),
                Ok(_) => (Some(n), id, None),
                // Echo what was asked for, as Kafka does.
                Err(e) => (asked, id, Some(admin_err(&e))),
            },
            Err(e) => (asked, id, Some(admin_err(&e))),
        };
        out.push(r);
    }
    out
}

pub fn create_partitions(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body: CreatePartitionsRequest = match decode_body(&req) {
        Ok(b) => b,
        Err(e) => return super::ready(Outcome::Close(e.to_string())),
    };
    let asks: Vec<(String, i32)> = body
        .topics
        .iter()
        .map(|t| (t.name.to_string(), t.count))
        .collect();
    let validate_only = body.validate_only;
    let access = Access::of(shard, &req);
    let shard = shard.clone();
    Box::pin(async move {
        let mut results = Vec::with_capacity(asks.len());
        for (name, total) in asks {
            if !access.topic(AclOperation::Alter, &name) {
                results.push(Some(unauthorized()));
                continue;
            }
            let cmd = Command::CreatePartitions {
                name,
                total,
                validate_only,
            };
            results.push(shard.execute(cmd).await.err().map(|e| admin_err(&e)));
        }
        let out = body
            .topics
            .iter()
            .zip(results)
            .map(|(t, err)| {
                let r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
                match err {
                    Some((code, msg)) => r
                        .with_error_code(code)
                        .with_error_message(Some(StrBytes::from_string(msg))),
                    None => r,
                }
            })
            .collect();
        reply(&req, &CreatePartitionsResponse::default().with_results(out))
    })
}
