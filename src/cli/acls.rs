//! `gregor acls`: add, remove and list ACLs, with kafka-acls.sh's options and output.
//!
//! `--add` makes every combination of the resources, principals, hosts and operations given;
//! `--producer` and `--consumer` expand to the operations those clients need, as kafka-acls.sh
//! does. `--remove` and `--list` take the same options as a filter (none: everything).

use std::io::Write;

use anyhow::{bail, Context};
use kafka_protocol::messages::{CreateAclsRequest, DeleteAclsRequest};

use super::BrokerArgs;
use crate::client::error::error_name;
use crate::security::acl::{
    AclBinding, AclBindingFilter, AclOperation, AclPermissionType, PatternType, ResourceType,
    CLUSTER_NAME, WILDCARD,
};
use crate::security::acl_wire;

#[derive(clap::Args, Debug)]
pub struct AclsArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    /// Add the ACLs the other options describe.
    #[arg(long, conflicts_with_all = ["remove", "list"])]
    add: bool,
    /// Remove the ACLs the other options match.
    #[arg(long, conflicts_with = "list")]
    remove: bool,
    /// List the ACLs the other options match (all when none is given).
    #[arg(long)]
    list: bool,
    /// Topics (`*` for all).
    #[arg(long)]
    topic: Vec<String>,
    /// Consumer groups (`*` for all).
    #[arg(long)]
    group: Vec<String>,
    /// The cluster resource.
    #[arg(long)]
    cluster: bool,
    /// Transactional ids (`*` for all).
    #[arg(long)]
    transactional_id: Vec<String>,
    /// LITERAL or PREFIXED for --add (default LITERAL); also ANY or MATCH for --list and
    /// --remove (default ANY).
    #[arg(long)]
    resource_pattern_type: Option<String>,
    /// Principals to allow (User:alice).
    #[arg(long)]
    allow_principal: Vec<String>,
    /// Principals to deny.
    #[arg(long)]
    deny_principal: Vec<String>,
    /// Hosts (IP addresses) the allow ACLs apply to (default `*`).
    #[arg(long)]
    allow_host: Vec<String>,
    /// Hosts the deny ACLs apply to (default `*`).
    #[arg(long)]
    deny_host: Vec<String>,
    /// Operations: Read, Write, Create, Delete, Alter, Describe, ClusterAction,
    /// DescribeConfigs, AlterConfigs, IdempotentWrite, All (default All).
    #[arg(long)]
    operation: Vec<String>,
    /// The ACLs a producer needs: Write, Describe and Create on the topics; Write and Describe
    /// on the transactional ids; IdempotentWrite on the cluster with --idempotent.
    #[arg(long)]
    producer: bool,
    /// The ACLs a consumer needs: Read and Describe on the topics, Read on the groups.
    #[arg(long)]
    consumer: bool,
    /// With --producer: also IdempotentWrite on the cluster.
    #[arg(long)]
    idempotent: bool,
    /// With --list: only ACLs of this principal.
    #[arg(long)]
    principal: Vec<String>,
    /// Accepted for kafka-acls.sh compatibility: gregor never asks for confirmation.
    #[arg(long)]
    force: bool,
}

/// A resource the options name: type and name.
type Resource = (ResourceType, String);

impl AclsArgs {
    fn resources(&self) -> Vec<Resource> {
        let mut out: Vec<Resource> = Vec::new();
        out.extend(self.topic.iter().map(|t| (ResourceType::Topic, t.clone())));
        out.extend(self.group.iter().map(|g| (ResourceType::Group, g.clone())));
        out.extend(
            self.transactional_id
                .iter()
                .map(|t| (ResourceType::TransactionalId, t.clone())),
        );
        if self.cluster {
            out.push((ResourceType::Cluster, CLUSTER_NAME.to_string()));
        }
        out
    }

    fn operations(&self) -> anyhow::Result<Vec<AclOperation>> {
        if self.operation.is_empty() {
            return Ok(vec![AclOperation::All]);
        }
        self.operation
            .iter()
            .map(|o| o.parse::<AclOperation>().map_err(anyhow::Error::from))
            .collect()
    }

    fn pattern_type(&self, default: PatternType) -> anyhow::Result<PatternType> {
        match &self.resource_pattern_type {
            None => Ok(default),
            Some(p) => Ok(p.parse()?),
        }
    }

    /// (principal, host, permission) entries for --add: each principal with each host of
    /// its kind.
    fn entries(&self) -> Vec<(String, String, AclPermissionType)> {
        let hosts = |given: &[String]| -> Vec<String> {
            if given.is_empty() {
                vec![WILDCARD.to_string()]
            } else {
                given.to_vec()
            }
        };
        let mut out = Vec::new();
        for (principals, given_hosts, permission) in [
            (
                &self.allow_principal,
                &self.allow_host,
                AclPermissionType::Allow,
            ),
            (
                &self.deny_principal,
                &self.deny_host,
                AclPermissionType::Deny,
            ),
        ] {
            for p in principals {
                for h in hosts(given_hosts) {
                    out.push((p.clone(), h, permission));
                }
            }
        }
        out
    }

    /// The operations each resource gets: --producer/--consumer expand per resource type.
    fn operations_for(&self, resource_type: ResourceType) -> anyhow::Result<Vec<AclOperation>> {
        use AclOperation::*;
        if !self.producer && !self.consumer {
            return self.operations();
        }
        let mut ops = Vec::new();
        if self.producer {
            ops.extend(match resource_type {
                ResourceType::Topic => vec![Write, Describe, Create],
                ResourceType::TransactionalId => vec![Write, Describe],
                ResourceType::Cluster if self.idempotent => vec![IdempotentWrite],
                _ => vec![],
            });
        }
        if self.consumer {
            ops.extend(match resource_type {
                ResourceType::Topic => vec![Read, Describe],
                ResourceType::Group => vec![Read],
                _ => vec![],
            });
        }
        let mut seen = std::collections::HashSet::new();
        ops.retain(|op| seen.insert(*op));
        Ok(ops)
    }

    /// The bindings --add creates.
    fn bindings(&self) -> anyhow::Result<Vec<AclBinding>> {
        let mut resources = self.resources();
        if self.producer && self.idempotent && !self.cluster {
            resources.push((ResourceType::Cluster, CLUSTER_NAME.to_string()));
        }
        if resources.is_empty() {
            bail!("--add needs a resource: --topic, --group, --cluster or --transactional-id");
        }
        let entries = self.entries();
        if entries.is_empty() {
            bail!("--add needs --allow-principal or --deny-principal");
        }
        let pattern_type = self.pattern_type(PatternType::Literal)?;
        let mut out = Vec::new();
        for (resource_type, name) in resources {
            for operation in self.operations_for(resource_type)? {
                for (principal, host, permission) in &entries {
                    let binding = AclBinding {
                        resource_type,
                        resource_name: name.clone(),
                        pattern_type,
                        principal: principal.clone(),
                        host: host.clone(),
                        operation,
                        permission: *permission,
                    };
                    binding
                        .validate()
                        .with_context(|| format!("ACL {binding}"))?;
                    out.push(binding);
                }
            }
        }
        Ok(out)
    }

    /// The filters --remove and --list use: per resource (or any resource), per principal
    /// given (or any), per operation given (or any).
    fn filters(&self) -> anyhow::Result<Vec<AclBindingFilter>> {
        let pattern_type = self.pattern_type(PatternType::Any)?;
        let resources: Vec<(ResourceType, Option<String>)> = if self.resources().is_empty() {
            vec![(ResourceType::Any, None)]
        } else {
            self.resources()
                .into_iter()
                .map(|(t, n)| (t, Some(n)))
                .collect()
        };
        let mut principals: Vec<(Option<String>, AclPermissionType)> = Vec::new();
        principals.extend(
            self.allow_principal
                .iter()
                .map(|p| (Some(p.clone()), AclPermissionType::Allow)),
        );
        principals.extend(
            self.deny_principal
                .iter()
                .map(|p| (Some(p.clone()), AclPermissionType::Deny)),
        );
        principals.extend(
            self.principal
                .iter()
                .map(|p| (Some(p.clone()), AclPermissionType::Any)),
        );
        if principals.is_empty() {
            principals.push((None, AclPermissionType::Any));
        }
        let operations: Vec<AclOperation> = if self.operation.is_empty() {
            vec![AclOperation::Any]
        } else {
            self.operations()?
        };
        let mut out = Vec::new();
        for (resource_type, name) in &resources {
            for (principal, permission) in &principals {
                for operation in &operations {
                    out.push(AclBindingFilter {
                        resource_type: *resource_type,
                        resource_name: name.clone(),
                        pattern_type,
                        principal: principal.clone(),
                        host: None,
                        operation: *operation,
                        permission: *permission,
                    });
                }
            }
        }
        Ok(out)
    }
}

pub fn run(args: AclsArgs) -> anyhow::Result<()> {
    if [args.add, args.remove, args.list]
        .iter()
        .filter(|b| **b)
        .count()
        != 1
    {
        bail!("give one of --add, --remove or --list");
    }
    let mut client = args.broker.connect("gregor-acls")?;
    let mut out = std::io::stdout().lock();
    if args.add {
        let bindings = args.bindings()?;
        let creations = bindings.iter().map(acl_wire::creation).collect();
        let resp = client.send(&CreateAclsRequest::default().with_creations(creations))?;
        let mut failed = 0;
        for (b, r) in bindings.iter().zip(&resp.results) {
            if r.error_code == 0 {
                writeln!(out, "Adding ACL {b}")?;
            } else {
                failed += 1;
                writeln!(
                    out,
                    "Error while adding ACL {b}: {} {}",
                    error_name(r.error_code),
                    r.error_message.as_deref().unwrap_or("")
                )?;
            }
        }
        if failed > 0 {
            bail!("{failed} ACL(s) could not be added");
        }
    } else if args.remove {
        let filters = args.filters()?;
        let wire = filters.iter().map(acl_wire::delete_filter).collect();
        let resp = client.send(&DeleteAclsRequest::default().with_filters(wire))?;
        let mut failed = 0;
        for r in &resp.filter_results {
            if r.error_code != 0 {
                failed += 1;
                writeln!(
                    out,
                    "Error while removing ACLs: {} {}",
                    error_name(r.error_code),
                    r.error_message.as_deref().unwrap_or("")
                )?;
                continue;
            }
            for m in &r.matching_acls {
                let b = acl_wire::binding_of_matching(m);
                writeln!(out, "Removing ACL {b}")?;
            }
        }
        if failed > 0 {
            bail!("{failed} filter(s) failed");
        }
    } else {
        for f in args.filters()? {
            let req = acl_wire::describe_request(&f);
            let resp = client.send(&req)?;
            if resp.error_code != 0 {
                bail!(
                    "listing ACLs failed: {} {}",
                    error_name(resp.error_code),
                    resp.error_message.as_deref().unwrap_or("")
                );
            }
            for r in &resp.resources {
                writeln!(
                    out,
                    "Current ACLs for resource `ResourcePattern(resourceType={}, name={}, patternType={})`: ",
                    ResourceType::from_code(r.resource_type),
                    r.resource_name.as_str(),
                    PatternType::from_code(r.pattern_type)
                )?;
                for a in &r.acls {
                    writeln!(
                        out,
                        " \t(principal={}, host={}, operation={}, permissionType={})",
                        a.principal.as_str(),
                        a.host.as_str(),
                        AclOperation::from_code(a.operation),
                        AclPermissionType::from_code(a.permission_type)
                    )?;
                }
                writeln!(out)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        acls: AclsArgs,
    }

    fn args(a: &[&str]) -> AclsArgs {
        Cli::parse_from(std::iter::once("acls").chain(a.iter().copied())).acls
    }

    #[test]
    fn add_makes_every_combination() {
        let b = args(&[
            "--add",
            "--allow-principal",
            "User:alice",
            "--allow-principal",
            "User:bob",
            "--allow-host",
            "10.0.0.1",
            "--operation",
            "Read",
            "--operation",
            "describe",
            "--topic",
            "a",
            "--group",
            "g",
        ])
        .bindings()
        .unwrap();
        assert_eq!(b.len(), 2 * 2 * 2);
        assert!(b.iter().all(|b| b.host == "10.0.0.1"
            && b.pattern_type == PatternType::Literal
            && b.permission == AclPermissionType::Allow));
        let deny = args(&["--add", "--deny-principal", "User:*", "--cluster"])
            .bindings()
            .unwrap();
        assert_eq!(deny.len(), 1);
        assert_eq!(
            (
                deny[0].resource_name.as_str(),
                deny[0].operation,
                deny[0].host.as_str()
            ),
            (CLUSTER_NAME, AclOperation::All, "*")
        );
        assert!(args(&["--add", "--topic", "t"]).bindings().is_err());
        assert!(
            args(&["--add", "--allow-principal", "alice", "--topic", "t"])
                .bindings()
                .is_err()
        );
    }

    #[test]
    fn producer_and_consumer_expand_as_kafka_acls_does() {
        let ops = |a: &AclsArgs, rt| -> Vec<(ResourceType, AclOperation)> {
            a.bindings()
                .unwrap()
                .into_iter()
                .filter(|b| b.resource_type == rt)
                .map(|b| (b.resource_type, b.operation))
                .collect()
        };
        use AclOperation::*;
        let p = args(&[
            "--add",
            "--producer",
            "--idempotent",
            "--allow-principal",
            "User:p",
            "--topic",
            "t",
            "--transactional-id",
            "tx",
        ]);
        let topic = ResourceType::Topic;
        assert_eq!(
            ops(&p, topic),
            vec![(topic, Write), (topic, Describe), (topic, Create)]
        );
        let txn = ResourceType::TransactionalId;
        assert_eq!(ops(&p, txn), vec![(txn, Write), (txn, Describe)]);
        let cluster = ResourceType::Cluster;
        assert_eq!(ops(&p, cluster), vec![(cluster, IdempotentWrite)]);
        let c = args(&[
            "--add",
            "--consumer",
            "--allow-principal",
            "User:c",
            "--topic",
            "t",
            "--group",
            "g",
        ]);
        assert_eq!(ops(&c, topic), vec![(topic, Read), (topic, Describe)]);
        let group = ResourceType::Group;
        assert_eq!(ops(&c, group), vec![(group, Read)]);
    }

    #[test]
    fn list_and_remove_filters() {
        let all = args(&["--list"]).filters().unwrap();
        assert_eq!(all, vec![AclBindingFilter::any()]);
        let f = args(&[
            "--remove",
            "--topic",
            "t",
            "--deny-principal",
            "User:x",
            "--resource-pattern-type",
            "match",
        ])
        .filters()
        .unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].resource_type, ResourceType::Topic);
        assert_eq!(f[0].resource_name.as_deref(), Some("t"));
        assert_eq!(f[0].pattern_type, PatternType::Match);
        assert_eq!(f[0].principal.as_deref(), Some("User:x"));
        assert_eq!(f[0].permission, AclPermissionType::Deny);
        assert_eq!(f[0].operation, AclOperation::Any);
    }
}
