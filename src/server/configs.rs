//! Config management: DescribeConfigs, IncrementalAlterConfigs and the legacy AlterConfigs, for
//! topics, brokers and groups.
//!
//! A change is a command to the active controller, committed in the metadata quorum (so it
//! survives restarts) and in effect on this node's logs before the answer is sent. Broker
//! resources hold the dynamic broker configs: a node's own (resource name = its id) or the
//! cluster-wide default (empty name); only the log defaults of topics may change at run time.

use std::collections::HashMap;
use std::rc::Rc;

use futures::future::LocalBoxFuture;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::access::Access;
use super::{errors, reply, Outcome};
use crate::config::alter::{self, AlterOp, ConfigChange};
use crate::config::group::{self, GroupSettings, GROUP_CONFIGS};
use crate::config::{Config, LogConfig, BROKER_CONFIGS, TOPIC_CONFIGS};
use crate::metadata::{Command, ConfigResource, Snapshot};
use crate::protocol::{decode_body, Request};
use crate::security::acl::AclOperation;
use crate::shard::Shard;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const RESOURCE_GROUP: i8 = 32;

/// DescribeConfigs' config sources.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DYNAMIC_BROKER: i8 = 2;
const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;
const SOURCE_GROUP: i8 = 8;

type Refusal = (ResponseError, String);

fn refuse(e: ResponseError, msg: impl Into<String>) -> Refusal {
    (e, msg.into())
}

/// Broker loggers are configured under the cluster's authority too.
const RESOURCE_BROKER_LOGGER: i8 = 8;

/// Kafka's checks: `operation` (DESCRIBE_CONFIGS or ALTER_CONFIGS) on the topic, or on the
/// cluster for a broker or broker-logger resource.
fn config_refusal(
    access: &Access,
    operation: AclOperation,
    kind: i8,
    name: &str,
) -> Option<Refusal> {
    let refused = |e: ResponseError| Some(refuse(e, e.to_string()));
    match kind {
        RESOURCE_TOPIC if !access.topic(operation, name) => {
            refused(ResponseError::TopicAuthorizationFailed)
        }
        RESOURCE_BROKER | RESOURCE_BROKER_LOGGER if !access.cluster(operation) => {
            refused(ResponseError::ClusterAuthorizationFailed)
        }
        RESOURCE_GROUP if !access.group(operation, name) => {
            refused(ResponseError::GroupAuthorizationFailed)
        }
        _ => None,
    }
}

/// The resource a request entry names, as the controller knows it. A broker resource must be
/// the cluster-wide default or this broker, as in Kafka (clients send a broker's resource to
/// that broker).
fn resource(config: &Config, kind: i8, name: &str) -> Result<ConfigResource, Refusal> {
    match kind {
        RESOURCE_TOPIC => Ok(ConfigResource::Topic(name.to_string())),
        RESOURCE_BROKER if name.is_empty() => Ok(ConfigResource::Broker(None)),
        RESOURCE_BROKER => match name.parse::<i32>() {
            Ok(id) if id == config.node_id => Ok(ConfigResource::Broker(Some(id))),
            Ok(_) => Err(refuse(
                ResponseError::InvalidRequest,
                format!(
                    "Unexpected broker id, expected {} or empty string, but received {name}",
                    config.node_id
                ),
            )),
            Err(_) => Err(refuse(
                ResponseError::InvalidRequest,
                format!("Failed to parse broker name as a base 10 number: {name}"),
            )),
        },
        RESOURCE_GROUP if name.is_empty() => Err(refuse(
            ResponseError::InvalidRequest,
            "Group name must not be empty",
        )),
        RESOURCE_GROUP => Ok(ConfigResource::Group(name.to_string())),
        other => Err(refuse(
            ResponseError::InvalidRequest,
            format!("Unsupported resource type {other} for config changes"),
        )),
    }
}

/// Runs one resource's change on the controller.
async fn alter_one(
    shard: &Rc<Shard>,
    resource: Result<ConfigResource, Refusal>,
    changes: Result<Vec<ConfigChange>, Refusal>,
    replace: bool,
    validate_only: bool,
) -> Option<Refusal> {
    let (resource, changes) = match (resource, changes) {
        (Ok(r), Ok(c)) => (r, c),
        (Err(e), _) | (_, Err(e)) => return Some(e),
    };
    let cmd = Command::AlterConfigs {
        resource,
        changes,
        replace,
        validate_only,
    };
    shard
        .execute(cmd)
        .await
        .err()
        .map(|e| (errors::metadata(&e), e.to_string()))
}

/// The resource each entry of a request names, in order. Every resource named more than once
/// is refused (Kafka refuses all of them).
fn targets<'a>(
    config: &Config,
    access: &Access,
    names: impl Iterator<Item = (i8, &'a str)> + Clone,
) -> Vec<Result<ConfigResource, Refusal>> {
    let mut count: HashMap<(i8, &str), usize> = HashMap::new();
    for key in names.clone() {
        *count.entry(key).or_insert(0) += 1;
    }
    names
        .map(|(kind, name)| {
            if let Some(refused) = config_refusal(access, AclOperation::AlterConfigs, kind, name) {
                Err(refused)
            } else if count[&(kind, name)] > 1 {
                Err(refuse(
                    ResponseError::InvalidRequest,
                    "Error due to duplicate resource in the request",
                ))
            } else {
                resource(config, kind, name)
            }
        })
        .collect()
}

pub fn incremental_alter_configs(
    shard: &Rc<Shard>,
    req: Request,
) -> LocalBoxFuture<'static, Outcome> {
    let body: IncrementalAlterConfigsRequest = match decode_body(&req) {
        Ok(b) => b,
        Err(e) => return super::ready(Outcome::Close(e.to_string())),
    };
    let access = Access::of(shard, &req);
    let shard = shard.clone();
    Box::pin(async move {
        let targets = targets(
            &shard.config,
            &access,
            body.resources
                .iter()
                .map(|r| (r.resource_type, r.resource_name.as_str())),
        );
        let mut responses = Vec::with_capacity(body.resources.len());
        for (r, target) in body.resources.iter().zip(targets) {
            let changes: Result<Vec<ConfigChange>, Refusal> = r
                .configs
                .iter()
                .map(|c| {
                    let op = AlterOp::from_code(c.config_operation).ok_or_else(|| {
                        refuse(
                            ResponseError::InvalidRequest,
                            format!("Unknown config operation {}", c.config_operation),
                        )
                    })?;
                    Ok(ConfigChange {
                        name: c.name.to_string(),
                        op,
                        value: c.value.as_ref().map(|v| v.to_string()),
                    })
                })
                .collect();
            let err = alter_one(&shard, target, changes, false, body.validate_only).await;
            let mut out =
                incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name.clone())
                    .with_error_message(None);
            if let Some((code, msg)) = err {
                out = out
                    .with_error_code(code.code())
                    .with_error_message(Some(StrBytes::from_string(msg)));
            }
            responses.push(out);
        }
        reply(
            &req,
            &IncrementalAlterConfigsResponse::default().with_responses(responses),
        )
    })
}

/// The legacy AlterConfigs: the given configs become the resource's whole set of overrides.
pub fn alter_configs(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body: AlterConfigsRequest = match decode_body(&req) {
        Ok(b) => b,
        Err(e) => return super::ready(Outcome::Close(e.to_string())),
    };
    let access = Access::of(shard, &req);
    let shard = shard.clone();
    Box::pin(async move {
        let targets = targets(
            &shard.config,
            &access,
            body.resources
                .iter()
                .map(|r| (r.resource_type, r.resource_name.as_str())),
        );
        let mut responses = Vec::with_capacity(body.resources.len());
        for (r, target) in body.resources.iter().zip(targets) {
            let changes: Result<Vec<ConfigChange>, Refusal> = r
                .configs
                .iter()
                .map(|c| match &c.value {
                    Some(v) => Ok(ConfigChange::set(c.name.as_str(), v.as_str())),
                    None => Err(refuse(
                        ResponseError::InvalidRequest,
                        format!("Null value not supported for : {}", c.name.as_str()),
                    )),
                })
                .collect();
            let err = alter_one(&shard, target, changes, true, body.validate_only).await;
            let mut out = alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone())
                .with_error_message(None);
            if let Some((code, msg)) = err {
                out = out
                    .with_error_code(code.code())
                    .with_error_message(Some(StrBytes::from_string(msg)));
            }
            responses.push(out);
        }
        reply(
            &req,
            &AlterConfigsResponse::default().with_responses(responses),
        )
    })
}

/// One described config: its value and where it comes from, then the synonyms beneath it.
struct Described {
    name: String,
    value: String,
    read_only: bool,
    /// Every level that sets the config, most important first; the head is the source.
    synonyms: Vec<(String, String, i8)>,
    info: Option<(i8, String)>,
}

/// The broker levels of a broker setting, most important first: this node's dynamic value,
/// the cluster-wide dynamic default, the static setting, the built-in default.
fn broker_levels(
    snap: &Snapshot,
    config: &Config,
    builtin: &Config,
    name: &str,
) -> Vec<(String, String, i8)> {
    let mut out = Vec::new();
    let dynamic = [
        (Some(config.node_id), SOURCE_DYNAMIC_BROKER),
        (None, SOURCE_DYNAMIC_DEFAULT_BROKER),
    ];
    for (level, source) in dynamic {
        if let Some(v) = snap.dynamic_broker_configs(level).and_then(|c| c.get(name)) {
            out.push((name.to_string(), v.clone(), source));
        }
    }
    if config.is_explicit(name) {
        if let Some(v) = config.get(name) {
            out.push((name.to_string(), v, SOURCE_STATIC_BROKER));
        }
    }
    if let Some(v) = builtin.get(name) {
        out.push((name.to_string(), v, SOURCE_DEFAULT));
    }
    out
}

fn describe_topic(
    snap: &Snapshot,
    config: &Config,
    builtin: &Config,
    topic: &str,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<Vec<Described>, Refusal> {
    let t = snap.topic(topic).ok_or_else(|| {
        refuse(
            ResponseError::UnknownTopicOrPartition,
            format!("The topic '{topic}' does not exist."),
        )
    })?;
    Ok(TOPIC_CONFIGS
        .iter()
        .filter(|(n, _)| wanted(n))
        .map(|(n, broker)| {
            let mut synonyms = Vec::new();
            if let Some(v) = t.configs.get(*n) {
                synonyms.push((n.to_string(), v.clone(), SOURCE_TOPIC));
            }
            match broker {
                Some(b) => synonyms.extend(broker_levels(snap, config, builtin, b)),
                None => synonyms.push((
                    n.to_string(),
                    LogConfig::default().get_topic(n).unwrap_or_default(),
                    SOURCE_DEFAULT,
                )),
            }
            Described {
                name: n.to_string(),
                value: t.log_config.get_topic(n).unwrap_or_default(),
                read_only: false,
                synonyms,
                info: alter::topic_config_info(n).map(|(t, d)| (t, d.to_string())),
            }
        })
        .collect())
}

fn describe_broker(
    snap: &Snapshot,
    config: &Config,
    builtin: &Config,
    name: &str,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<Vec<Described>, Refusal> {
    let default_resource = name.is_empty();
    if !default_resource && name != config.node_id.to_string() {
        return Err(refuse(
            ResponseError::InvalidRequest,
            format!(
                "Unexpected broker id, expected {} or empty string, but received {name}",
                config.node_id
            ),
        ));
    }
    Ok(BROKER_CONFIGS
        .iter()
        .filter(|n| wanted(n))
        .filter_map(|n| {
            let mut synonyms = broker_levels(snap, config, builtin, n);
            if default_resource {
                // The cluster-wide default resource holds only what is set at that level.
                synonyms.retain(|s| s.2 == SOURCE_DYNAMIC_DEFAULT_BROKER);
            }
            let value = match synonyms.first() {
                Some(s) => s.1.clone(),
                None if default_resource => return None,
                None => config.get(n).unwrap_or_default(),
            };
            Some(Described {
                name: n.to_string(),
                value,
                read_only: !alter::is_dynamic_broker_config(n),
                synonyms,
                info: alter::broker_config_info(n),
            })
        })
        .collect())
}

/// A group's configs: its overrides over the broker's group settings (Kafka describes any
/// group name, known or not).
fn describe_group(
    snap: &Snapshot,
    config: &Config,
    builtin: &Config,
    group: &str,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<Vec<Described>, Refusal> {
    let overrides = snap.group_configs.get(group);
    let settings = GroupSettings::of(&config.groups, overrides);
    let fallback = GroupSettings::of_broker(&builtin.groups);
    Ok(GROUP_CONFIGS
        .iter()
        .filter(|n| wanted(n))
        .map(|n| {
            let (config_type, doc, broker) = group::info(n).unwrap_or_default();
            let mut synonyms = Vec::new();
            if let Some(v) = overrides.and_then(|o| o.get(*n)) {
                synonyms.push((n.to_string(), v.clone(), SOURCE_GROUP));
            }
            match broker {
                Some(b) => synonyms.extend(broker_levels(snap, config, builtin, b)),
                None => synonyms.push((
                    n.to_string(),
                    fallback.get(n).unwrap_or_default(),
                    SOURCE_DEFAULT,
                )),
            }
            Described {
                name: n.to_string(),
                value: settings.get(n).unwrap_or_default(),
                read_only: false,
                synonyms,
                info: Some((config_type, doc.to_string())),
            }
        })
        .collect())
}

pub fn describe_configs(shard: &Rc<Shard>, req: &Request) -> LocalBoxFuture<'static, Outcome> {
    let body: DescribeConfigsRequest = match decode_body(req) {
        Ok(b) => b,
        Err(e) => return super::ready(Outcome::Close(e.to_string())),
    };
    let snap = shard.snapshot();
    let config = &shard.config;
    let builtin = Config::default();
    let version = req.api_version;
    let access = Access::of(shard, req);
    let results = body
        .resources
        .iter()
        .map(|r| {
            let keys: Option<Vec<String>> = r
                .configuration_keys
                .as_ref()
                .map(|k| k.iter().map(|s| s.to_string()).collect());
            let wanted = |name: &str| keys.as_ref().is_none_or(|k| k.iter().any(|x| x == name));
            let base = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let name = r.resource_name.as_str();
            let refused = config_refusal(
                &access,
                AclOperation::DescribeConfigs,
                r.resource_type,
                name,
            );
            let described = match (refused, r.resource_type) {
                (Some(refused), _) => Err(refused),
                (None, RESOURCE_TOPIC) => describe_topic(&snap, config, &builtin, name, &wanted),
                (None, RESOURCE_BROKER) => describe_broker(&snap, config, &builtin, name, &wanted),
                (None, RESOURCE_GROUP) => describe_group(&snap, config, &builtin, name, &wanted),
                (None, other) => Err(refuse(
                    ResponseError::InvalidRequest,
                    format!("Unsupported resource type {other}"),
                )),
            };
            match described {
                Err((e, msg)) => base
                    .with_error_code(e.code())
                    .with_error_message(Some(StrBytes::from_string(msg))),
                Ok(entries) => base.with_configs(
                    entries
                        .into_iter()
                        .map(|d| entry(d, version, &body))
                        .collect(),
                ),
            }
        })
        .collect();
    super::ready(reply(
        req,
        &DescribeConfigsResponse::default().with_results(results),
    ))
}

fn entry(
    d: Described,
    version: i16,
    body: &DescribeConfigsRequest,
) -> DescribeConfigsResourceResult {
    let source = d.synonyms.first().map_or(SOURCE_DEFAULT, |s| s.2);
    // Passwords and JAAS configs are never shown, as Kafka hides its PASSWORD configs.
    let sensitive = crate::config::security::is_sensitive(&d.name);
    let shown = |v: String| (!sensitive).then(|| StrBytes::from_string(v));
    let mut e = DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_string(d.name))
        .with_value(shown(d.value))
        .with_read_only(d.read_only)
        .with_is_sensitive(sensitive)
        .with_config_source(source);
    if body.include_synonyms {
        e = e.with_synonyms(
            d.synonyms
                .into_iter()
                .map(|(name, value, source)| {
                    DescribeConfigsSynonym::default()
                        .with_name(StrBytes::from_string(name))
                        .with_value(shown(value))
                        .with_source(source)
                })
                .collect(),
        );
    }
    if let Some((config_type, doc)) = d.info {
        if version >= 3 {
            e = e.with_config_type(config_type);
            if body.include_documentation {
                e = e.with_documentation(Some(StrBytes::from_string(doc)));
            }
        }
    }
    e
}
