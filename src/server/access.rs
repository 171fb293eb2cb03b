//! Who may do what: each handler asks an [`Access`] built for its request, and answers a
//! refusal with the error code Kafka gives for that API. With no `authorizer.class.name`
//! every check passes and nothing is looked up.

use std::cell::OnceCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::metadata::image::Snapshot;
use crate::protocol::Request;
use crate::security::acl::{AclOperation, Authorization, Authorizer, ResourceType, CLUSTER_NAME};
use crate::shard::Shard;

/// This shard's authorizer, built from the config on first use (`None`: ACLs are off).
#[derive(Default)]
struct Policy(OnceCell<Option<Rc<Authorizer>>>);

fn policy(shard: &Shard) -> Option<Rc<Authorizer>> {
    shard
        .service::<Policy>()
        .0
        .get_or_init(|| {
            let security = &shard.config.security;
            security.authorizer_enabled().then(|| {
                Rc::new(Authorizer::new(
                    security.super_users(),
                    security.allow_everyone_if_no_acl_found(),
                ))
            })
        })
        .clone()
}

/// One request's principal and host, checked against the ACLs of the metadata image the
/// shard held when the request arrived (an ACL change applies to requests after it).
pub struct Access {
    policy: Option<(Rc<Authorizer>, Arc<Snapshot>)>,
    principal: Arc<str>,
    host: String,
}

impl Access {
    pub fn of(shard: &Shard, req: &Request) -> Access {
        let policy = policy(shard).map(|p| (p, shard.snapshot()));
        Access {
            host: if policy.is_some() {
                req.client_host.trim_start_matches('/').to_string()
            } else {
                String::new()
            },
            policy,
            principal: req.principal.clone(),
        }
    }

    /// Every check passes (no authorizer).
    #[cfg(test)]
    pub fn open() -> Access {
        Access {
            policy: None,
            principal: Arc::from(crate::protocol::ANONYMOUS),
            host: String::new(),
        }
    }

    /// Whether an authorizer is configured (the ACL APIs answer SECURITY_DISABLED without one).
    pub fn enabled(&self) -> bool {
        self.policy.is_some()
    }

    /// May the principal do `operation` on the resource? A refusal is logged, as Kafka's
    /// authorizer logger does.
    pub fn allows(&self, operation: AclOperation, resource_type: ResourceType, name: &str) -> bool {
        self.decide(operation, resource_type, name, true)
    }

    /// As [`Access::allows`], without logging a refusal: for filtering what a listing shows.
    pub fn shows(&self, operation: AclOperation, resource_type: ResourceType, name: &str) -> bool {
        self.decide(operation, resource_type, name, false)
    }

    fn decide(
        &self,
        operation: AclOperation,
        resource_type: ResourceType,
        name: &str,
        log_refusal: bool,
    ) -> bool {
        let Some((authorizer, image)) = &self.policy else {
            return true;
        };
        let decision = authorizer.authorize(
            &image.acls,
            &Authorization {
                principal: &self.principal,
                host: &self.host,
                operation,
                resource_type,
                resource_name: name,
            },
        );
        if !decision.allowed && log_refusal {
            tracing::info!(
                target: "gregor::authorizer",
                principal = %self.principal,
                host = %self.host,
                operation = %operation,
                resource = %format_args!("{resource_type}:{name}"),
                decision = %decision,
                "access denied"
            );
        }
        decision.allowed
    }

    pub fn topic(&self, operation: AclOperation, name: &str) -> bool {
        self.allows(operation, ResourceType::Topic, name)
    }

    pub fn group(&self, operation: AclOperation, name: &str) -> bool {
        self.allows(operation, ResourceType::Group, name)
    }

    pub fn transactional_id(&self, operation: AclOperation, name: &str) -> bool {
        self.allows(operation, ResourceType::TransactionalId, name)
    }

    pub fn cluster(&self, operation: AclOperation) -> bool {
        self.allows(operation, ResourceType::Cluster, CLUSTER_NAME)
    }

    /// May the principal do `operation` on some resource of the type (Kafka's
    /// authorizeByResourceType, used by InitProducerId for idempotent producers)?
    pub fn any(&self, operation: AclOperation, resource_type: ResourceType) -> bool {
        let Some((authorizer, image)) = &self.policy else {
            return true;
        };
        authorizer.authorize_any(
            &image.acls,
            &self.principal,
            &self.host,
            operation,
            resource_type,
        )
    }

    /// The "authorized operations" bit field of a resource: the bits of those of `supported`
    /// the principal may do (all of them without an authorizer, as Kafka reports).
    pub fn operations(
        &self,
        resource_type: ResourceType,
        name: &str,
        supported: &[AclOperation],
    ) -> i32 {
        supported
            .iter()
            .filter(|op| self.shows(**op, resource_type, name))
            .fold(0, |bits, op| bits | (1 << op.code()))
    }
}
