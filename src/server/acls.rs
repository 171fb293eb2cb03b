//! CreateAcls, DescribeAcls and DeleteAcls: the ACLs kept in the metadata log. Creating and
//! deleting need ALTER on the cluster, describing DESCRIBE; with no authorizer configured each
//! answers SECURITY_DISABLED, as Kafka does.

use std::collections::BTreeMap;
use std::rc::Rc;

use futures::future::LocalBoxFuture;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::DeleteAclsFilterResult;
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::access::Access;
use super::{errors, reply, Outcome};
use crate::metadata::controller::{Command, Reply};
use crate::protocol::{decode_body, Request};
use crate::security::acl::{AclBinding, AclBindingFilter, AclOperation, PatternType, ResourceType};
use crate::security::acl_wire;
use crate::shard::Shard;

const NO_AUTHORIZER: &str = "No Authorizer is configured.";

/// A refusal of the whole request: (error, message).
type Refusal = (ResponseError, String);

/// Why the request as a whole is refused, if it is: no authorizer, or no `operation` on the
/// cluster.
fn refused(access: &Access, operation: AclOperation) -> Option<Refusal> {
    if !access.enabled() {
        return Some((ResponseError::SecurityDisabled, NO_AUTHORIZER.to_string()));
    }
    (!access.cluster(operation)).then(|| {
        (
            ResponseError::ClusterAuthorizationFailed,
            ResponseError::ClusterAuthorizationFailed.to_string(),
        )
    })
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

pub fn create(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body: CreateAclsRequest = match decode_body(&req) {
        Ok(b) => b,
        Err(e) => return super::ready(Outcome::Close(e.to_string())),
    };
    let access = Access::of(shard, &req);
    let failed = |(e, message): &Refusal| {
        AclCreationResult::default()
            .with_error_code(e.code())
            .with_error_message(Some(text(message)))
    };
    if let Some(refusal) = refused(&access, AclOperation::Alter) {
        let results = body.creations.iter().map(|_| failed(&refusal)).collect();
        return super::ready(reply(
            &req,
            &CreateAclsResponse::default().with_results(results),
        ));
    }
    // Each creation checked on its own; the valid ones go to the controller together.
    let checked: Vec<Result<AclBinding, Refusal>> = body
        .creations
        .iter()
        .map(|c| {
            let binding = acl_wire::binding_of_creation(c);
            binding
                .validate()
                .map(|()| binding)
                .map_err(|e| (errors::acl(&e), e.to_string()))
        })
        .collect();
    let bindings: Vec<AclBinding> = checked.iter().filter_map(|c| c.clone().ok()).collect();
    let shard = shard.clone();
    Box::pin(async move {
        let outcome = if bindings.is_empty() {
            Ok(())
        } else {
            for b in &bindings {
                tracing::info!(principal = %req.principal, acl = %b, "creating ACL");
            }
            shard
                .execute(Command::CreateAcls { bindings })
                .await
                .map(|_| ())
                .map_err(|e| (errors::metadata(&e), e.to_string()))
        };
        let results = checked
            .iter()
            .map(|c| match (c, &outcome) {
                (Err(refusal), _) | (Ok(_), Err(refusal)) => failed(refusal),
                (Ok(_), Ok(())) => AclCreationResult::default(),
            })
            .collect();
        reply(&req, &CreateAclsResponse::default().with_results(results))
    })
}

pub fn describe(shard: &Rc<Shard>, req: &Request) -> LocalBoxFuture<'static, Outcome> {
    let body: DescribeAclsRequest = match decode_body(req) {
        Ok(b) => b,
        Err(e) => return super::ready(Outcome::Close(e.to_string())),
    };
    let access = Access::of(shard, req);
    let error = |(e, message): Refusal| {
        DescribeAclsResponse::default()
            .with_error_code(e.code())
            .with_error_message(Some(text(&message)))
    };
    if let Some(refusal) = refused(&access, AclOperation::Describe) {
        return super::ready(reply(req, &error(refusal)));
    }
    let filter = acl_wire::filter_of_describe(&body);
    if let Err(e) = filter.validate() {
        return super::ready(reply(req, &error((errors::acl(&e), e.to_string()))));
    }
    let image = shard.snapshot();
    let mut by_resource: BTreeMap<(ResourceType, &str, PatternType), Vec<AclDescription>> =
        BTreeMap::new();
    for b in image.acls.filter(&filter) {
        by_resource
            .entry((b.resource_type, &b.resource_name, b.pattern_type))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(text(&b.principal))
                    .with_host(text(&b.host))
                    .with_operation(b.operation.code())
                    .with_permission_type(b.permission.code()),
            );
    }
    let resources = by_resource
        .into_iter()
        .map(|((rt, name, pattern), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(rt.code())
                .with_resource_name(text(name))
                .with_pattern_type(pattern.code())
                .with_acls(acls)
        })
        .collect();
    super::ready(reply(
        req,
        &DescribeAclsResponse::default().with_resources(resources),
    ))
}

pub fn delete(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body: DeleteAclsRequest = match decode_body(&req) {
        Ok(b) => b,
        Err(e) => return super::ready(Outcome::Close(e.to_string())),
    };
    let access = Access::of(shard, &req);
    let failed = |(e, message): &Refusal| {
        DeleteAclsFilterResult::default()
            .with_error_code(e.code())
            .with_error_message(Some(text(message)))
    };
    if let Some(refusal) = refused(&access, AclOperation::Alter) {
        let results = body.filters.iter().map(|_| failed(&refusal)).collect();
        return super::ready(reply(
            &req,
            &DeleteAclsResponse::default().with_filter_results(results),
        ));
    }
    let checked: Vec<Result<AclBindingFilter, Refusal>> = body
        .filters
        .iter()
        .map(|f| {
            let filter = acl_wire::filter_of_delete(f);
            filter
                .validate()
                .map(|()| filter)
                .map_err(|e| (errors::acl(&e), e.to_string()))
        })
        .collect();
    let filters: Vec<AclBindingFilter> = checked.iter().filter_map(|c| c.clone().ok()).collect();
    let shard = shard.clone();
    Box::pin(async move {
        let outcome = if filters.is_empty() {
            Ok(Vec::new())
        } else {
            match shard.execute(Command::DeleteAcls { filters }).await {
                Ok(Reply::AclsDeleted(matched)) => Ok(matched),
                Ok(other) => Err((
                    ResponseError::UnknownServerError,
                    format!("unexpected controller reply {other:?}"),
                )),
                Err(e) => Err((errors::metadata(&e), e.to_string())),
            }
        };
        let mut matched = match &outcome {
            Ok(m) => m.clone().into_iter(),
            Err(_) => Vec::new().into_iter(),
        };
        let results = checked
            .iter()
            .map(|c| match (c, &outcome) {
                (Err(refusal), _) | (Ok(_), Err(refusal)) => failed(refusal),
                (Ok(_), Ok(_)) => {
                    let removed = matched.next().unwrap_or_default();
                    for b in &removed {
                        tracing::info!(principal = %req.principal, acl = %b, "deleted ACL");
                    }
                    DeleteAclsFilterResult::default()
                        .with_matching_acls(removed.iter().map(acl_wire::matching).collect())
                }
            })
            .collect();
        reply(
            &req,
            &DeleteAclsResponse::default().with_filter_results(results),
        )
    })
}
