//! Kafka's authorizer model with StandardAuthorizer's semantics (Kafka 4): ACL bindings and
//! filters with their wire codes, CreateAcls/DeleteAcls validation, an indexed ACL set, and the
//! allow/deny decision. Pure: the connection edge supplies principal, host and action.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

/// The only name a CLUSTER resource may have.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// The literal resource name, host and principal name that match everything.
pub const WILDCARD: &str = "*";
/// The principal every ACL for `User:*` applies to.
pub const WILDCARD_PRINCIPAL: &str = "User:*";

/// A name given to `FromStr` that is none of the enum's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} '{value}'")]
pub struct ParseAclEnumError {
    pub kind: &'static str,
    pub value: String,
}

/// Lower-cases and drops underscores, so "CLUSTER_ACTION", "ClusterAction" and "clusteraction"
/// all name the same value (the Java enum name and kafka-acls' Pascal case both parse).
fn normalize_name(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Defines one of Kafka's i8-coded ACL enums: wire code, Java name for Display, and
/// case-insensitive parsing. Unknown codes decode to `Unknown`, as Kafka's `fromCode` does.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal { $($variant:ident = $code:literal => $java:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($variant,)+
        }

        impl $name {
            /// Every value, in wire-code order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn code(self) -> i8 {
                match self {
                    $($name::$variant => $code,)+
                }
            }

            /// The value for a wire code; codes Kafka does not know are `Unknown`.
            pub fn from_code(code: i8) -> $name {
                match code {
                    $($code => $name::$variant,)+
                    _ => $name::Unknown,
                }
            }

            /// The name Kafka prints (its Java enum constant).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $java,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ParseAclEnumError;

            fn from_str(s: &str) -> Result<$name, ParseAclEnumError> {
                let wanted = normalize_name(s);
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| normalize_name(v.as_str()) == wanted)
                    .ok_or_else(|| ParseAclEnumError { kind: $kind, value: s.to_string() })
            }
        }
    };
}

wire_enum! {
    /// What kind of thing an ACL protects.
    ResourceType, "resource type" {
        Unknown = 0 => "UNKNOWN",
        Any = 1 => "ANY",
        Topic = 2 => "TOPIC",
        Group = 3 => "GROUP",
        Cluster = 4 => "CLUSTER",
        TransactionalId = 5 => "TRANSACTIONAL_ID",
        DelegationToken = 6 => "DELEGATION_TOKEN",
        User = 7 => "USER",
    }
}

wire_enum! {
    /// How an ACL's resource name is matched. Any and Match exist only in filters.
    PatternType, "pattern type" {
        Unknown = 0 => "UNKNOWN",
        Any = 1 => "ANY",
        Match = 2 => "MATCH",
        Literal = 3 => "LITERAL",
        Prefixed = 4 => "PREFIXED",
    }
}

wire_enum! {
    /// The operation an ACL allows or denies.
    AclOperation, "operation" {
        Unknown = 0 => "UNKNOWN",
        Any = 1 => "ANY",
        All = 2 => "ALL",
        Read = 3 => "READ",
        Write = 4 => "WRITE",
        Create = 5 => "CREATE",
        Delete = 6 => "DELETE",
        Alter = 7 => "ALTER",
        Describe = 8 => "DESCRIBE",
        ClusterAction = 9 => "CLUSTER_ACTION",
        DescribeConfigs = 10 => "DESCRIBE_CONFIGS",
        AlterConfigs = 11 => "ALTER_CONFIGS",
        IdempotentWrite = 12 => "IDEMPOTENT_WRITE",
        CreateTokens = 13 => "CREATE_TOKENS",
        DescribeTokens = 14 => "DESCRIBE_TOKENS",
    }
}

wire_enum! {
    /// Whether an ACL allows or denies.
    AclPermissionType, "permission type" {
        Unknown = 0 => "UNKNOWN",
        Any = 1 => "ANY",
        Deny = 2 => "DENY",
        Allow = 3 => "ALLOW",
    }
}

impl AclOperation {
    /// An ALLOW for `self` also allows `requested`: Read, Write, Delete and Alter imply
    /// Describe; AlterConfigs implies DescribeConfigs; All implies everything. Deny ACLs get
    /// no such implication (denying Read does not deny Describe), as in StandardAuthorizer.
    fn allow_implies(self, requested: AclOperation) -> bool {
        use AclOperation::*;
        match (self, requested) {
            (All, _) => true,
            (Read | Write | Delete | Alter, Describe) => true,
            (AlterConfigs, DescribeConfigs) => true,
            (granted, requested) => granted == requested,
        }
    }
}

/// Why CreateAcls or DeleteAcls/DescribeAcls refuses a binding or filter (the messages are
/// Kafka's; the server answers each with INVALID_REQUEST, see `server::errors::acl`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    #[error("The only valid name for the CLUSTER resource is kafka-cluster")]
    InvalidClusterName,
    #[error("Invalid empty resource name")]
    EmptyResourceName,
    #[error("Invalid resourceType {0}")]
    InvalidResourceType(ResourceType),
    #[error("Invalid patternType {0}")]
    InvalidPatternType(PatternType),
    #[error("Invalid operation {0}")]
    InvalidOperation(AclOperation),
    #[error("Invalid permissionType {0}")]
    InvalidPermissionType(AclPermissionType),
    #[error("expected a string in format principalType:principalName but got {0}")]
    InvalidPrincipal(String),
    #[error("Unknown patternFilter.")]
    UnknownPatternFilter,
    #[error("Unknown entryFilter.")]
    UnknownEntryFilter,
}

/// Checks a principal has Kafka's `Type:name` form with both parts non-empty.
fn validate_principal(principal: &str) -> Result<(), AclError> {
    match principal.split_once(':') {
        Some((kind, name)) if !kind.is_empty() && !name.is_empty() => Ok(()),
        _ => Err(AclError::InvalidPrincipal(principal.to_string())),
    }
}

/// One ACL: a resource pattern and an access control entry, as stored in the metadata log.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern_type: PatternType,
    pub principal: String,
    pub host: String,
    pub operation: AclOperation,
    pub permission: AclPermissionType,
}

impl AclBinding {
    /// Checks a binding as CreateAcls does: first the broker's checks (cluster name, empty
    /// name), then the controller's (concrete types, operation and permission), then the
    /// principal's form.
    pub fn validate(&self) -> Result<(), AclError> {
        if self.resource_type == ResourceType::Cluster && self.resource_name != CLUSTER_NAME {
            return Err(AclError::InvalidClusterName);
        }
        if self.resource_name.is_empty() {
            return Err(AclError::EmptyResourceName);
        }
        if matches!(
            self.resource_type,
            ResourceType::Unknown | ResourceType::Any
        ) {
            return Err(AclError::InvalidResourceType(self.resource_type));
        }
        if !matches!(
            self.pattern_type,
            PatternType::Literal | PatternType::Prefixed
        ) {
            return Err(AclError::InvalidPatternType(self.pattern_type));
        }
        if matches!(self.operation, AclOperation::Unknown | AclOperation::Any) {
            return Err(AclError::InvalidOperation(self.operation));
        }
        if !matches!(
            self.permission,
            AclPermissionType::Allow | AclPermissionType::Deny
        ) {
            return Err(AclError::InvalidPermissionType(self.permission));
        }
        validate_principal(&self.principal)
    }

    /// True if this ACL's resource pattern covers the (literal) resource `name`.
    fn covers_resource(&self, name: &str) -> bool {
        match self.pattern_type {
            PatternType::Literal => self.resource_name == name || self.resource_name == WILDCARD,
            PatternType::Prefixed => name.starts_with(self.resource_name.as_str()),
            _ => false,
        }
    }
}

impl fmt::Display for AclBinding {
    /// Kafka's AclBinding.toString layout, for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "(pattern=ResourcePattern(resourceType={}, name={}, patternType={}), \
             entry=(principal={}, host={}, operation={}, permissionType={}))",
            self.resource_type,
            self.resource_name,
            self.pattern_type,
            self.principal,
            self.host,
            self.operation,
            self.permission
        )
    }
}

/// A DescribeAcls/DeleteAcls filter: `None` strings and the Any values match everything; the
/// Match pattern type matches every pattern that would apply to the named resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AclBindingFilter {
    pub resource_type: ResourceType,
    pub resource_name: Option<String>,
    pub pattern_type: PatternType,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: AclOperation,
    pub permission: AclPermissionType,
}

impl AclBindingFilter {
    /// The filter matching every binding.
    pub fn any() -> AclBindingFilter {
        AclBindingFilter {
            resource_type: ResourceType::Any,
            resource_name: None,
            pattern_type: PatternType::Any,
            principal: None,
            host: None,
            operation: AclOperation::Any,
            permission: AclPermissionType::Any,
        }
    }

    /// Checks a filter as the controller's validateFilter does: no Unknown values.
    pub fn validate(&self) -> Result<(), AclError> {
        if self.resource_type == ResourceType::Unknown || self.pattern_type == PatternType::Unknown
        {
            return Err(AclError::UnknownPatternFilter);
        }
        if self.operation == AclOperation::Unknown || self.permission == AclPermissionType::Unknown
        {
            return Err(AclError::UnknownEntryFilter);
        }
        Ok(())
    }

    pub fn matches(&self, binding: &AclBinding) -> bool {
        self.matches_pattern(binding) && self.matches_entry(binding)
    }

    /// Kafka's ResourcePatternFilter.matches.
    fn matches_pattern(&self, binding: &AclBinding) -> bool {
        if self.resource_type != ResourceType::Any && self.resource_type != binding.resource_type {
            return false;
        }
        let any_pattern = matches!(self.pattern_type, PatternType::Any | PatternType::Match);
        if !any_pattern && self.pattern_type != binding.pattern_type {
            return false;
        }
        let Some(name) = self.resource_name.as_deref() else {
            return true;
        };
        if self.pattern_type == PatternType::Any || self.pattern_type == binding.pattern_type {
            return name == binding.resource_name;
        }
        // Match: every stored pattern that applies to the resource `name`.
        binding.covers_resource(name)
    }

    /// Kafka's AccessControlEntryFilter.matches.
    fn matches_entry(&self, binding: &AclBinding) -> bool {
        self.principal
            .as_deref()
            .is_none_or(|p| p == binding.principal)
            && self.host.as_deref().is_none_or(|h| h == binding.host)
            && (self.operation == AclOperation::Any || self.operation == binding.operation)
            && (self.permission == AclPermissionType::Any || self.permission == binding.permission)
    }
}

/// ACLs of one resource type keyed by resource name.
type ByName = BTreeMap<String, BTreeSet<AclBinding>>;

/// The set of ACL bindings, indexed so an authorization looks only at the ACLs whose pattern
/// can cover the resource: literal ACLs by exact name (and `*`), prefixed ACLs by each prefix
/// of the resource name.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(from = "Vec<AclBinding>", into = "Vec<AclBinding>")]
pub struct Acls {
    all: BTreeSet<AclBinding>,
    literal: HashMap<ResourceType, ByName>,
    prefixed: HashMap<ResourceType, ByName>,
}

impl Acls {
    pub fn new() -> Acls {
        Acls::default()
    }

    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    pub fn contains(&self, binding: &AclBinding) -> bool {
        self.all.contains(binding)
    }

    fn index_mut(
        &mut self,
        pattern_type: PatternType,
    ) -> Option<&mut HashMap<ResourceType, ByName>> {
        match pattern_type {
            PatternType::Literal => Some(&mut self.literal),
            PatternType::Prefixed => Some(&mut self.prefixed),
            _ => None,
        }
    }

    /// Adds a binding; false if it was already present. Bindings with a pattern type other
    /// than Literal or Prefixed (which `validate` refuses) are kept for listing but never match
    /// a request.
    pub fn add(&mut self, binding: AclBinding) -> bool {
        if self.all.contains(&binding) {
            return false;
        }
        if let Some(index) = self.index_mut(binding.pattern_type) {
            index
                .entry(binding.resource_type)
                .or_default()
                .entry(binding.resource_name.clone())
                .or_default()
                .insert(binding.clone());
        }
        self.all.insert(binding)
    }

    /// Removes a binding; false if it was not present.
    pub fn remove(&mut self, binding: &AclBinding) -> bool {
        if !self.all.remove(binding) {
            return false;
        }
        if let Some(index) = self.index_mut(binding.pattern_type) {
            remove_indexed(index, binding);
        }
        true
    }

    /// All bindings, in a stable order.
    pub fn iter(&self) -> impl Iterator<Item = &AclBinding> {
        self.all.iter()
    }

    /// The bindings a DescribeAcls/DeleteAcls filter matches.
    pub fn filter<'a>(
        &'a self,
        filter: &'a AclBindingFilter,
    ) -> impl Iterator<Item = &'a AclBinding> + 'a {
        self.all.iter().filter(move |b| filter.matches(b))
    }

    /// Every binding whose pattern covers the resource: literal name, literal `*`, and
    /// prefixed patterns that are prefixes of the name (one map lookup per prefix).
    fn covering<'a>(
        &'a self,
        resource_type: ResourceType,
        name: &'a str,
    ) -> impl Iterator<Item = &'a AclBinding> + 'a {
        let literal = self.literal.get(&resource_type);
        let exact = literal.and_then(|m| m.get(name));
        let wildcard = literal
            .filter(|_| name != WILDCARD)
            .and_then(|m| m.get(WILDCARD));
        let prefixed = self.prefixed.get(&resource_type);
        let prefixes = prefixed
            .into_iter()
            .flat_map(move |m| prefix_ends(name).filter_map(move |end| m.get(&name[..end])));
        exact.into_iter().chain(wildcard).chain(prefixes).flatten()
    }
}

/// Stored in the metadata image as the list of bindings; the indexes are rebuilt.
impl From<Vec<AclBinding>> for Acls {
    fn from(bindings: Vec<AclBinding>) -> Acls {
        let mut acls = Acls::new();
        for b in bindings {
            acls.add(b);
        }
        acls
    }
}

impl From<Acls> for Vec<AclBinding> {
    fn from(acls: Acls) -> Vec<AclBinding> {
        acls.all.into_iter().collect()
    }
}

/// Byte offsets at which `name` can be cut into a prefix: 0, every char boundary, and the end.
fn prefix_ends(name: &str) -> impl Iterator<Item = usize> + '_ {
    name.char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(name.len()))
}

fn remove_indexed(index: &mut HashMap<ResourceType, ByName>, binding: &AclBinding) {
    let Some(by_name) = index.get_mut(&binding.resource_type) else {
        return;
    };
    if let Some(set) = by_name.get_mut(&binding.resource_name) {
        set.remove(binding);
        if set.is_empty() {
            by_name.remove(&binding.resource_name);
        }
    }
    if by_name.is_empty() {
        index.remove(&binding.resource_type);
    }
}

/// One request to authorize: who (principal as `Type:name`, e.g. `User:alice`), from where
/// (the client's IP as a string), and what (operation on a literal resource).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authorization<'a> {
    pub principal: &'a str,
    pub host: &'a str,
    pub operation: AclOperation,
    pub resource_type: ResourceType,
    pub resource_name: &'a str,
}

/// The rule a decision rests on, for the audit log (Kafka's MatchingRule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecisionReason {
    /// The principal is in `super.users`.
    SuperUser,
    /// A DENY ACL matched; denies win over allows.
    DeniedBy(AclBinding),
    /// An ALLOW ACL matched and no DENY did.
    AllowedBy(AclBinding),
    /// No ACL exists on the resource, so `allow.everyone.if.no.acl.found` decided.
    NoAclFound,
    /// The resource has ACLs but none allows this principal, host and operation.
    NoMatchingAllow,
}

/// The answer to an [`Authorization`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: DecisionReason,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let result = if self.allowed { "ALLOWED" } else { "DENIED" };
        match &self.reason {
            DecisionReason::SuperUser => f.write_str("SuperUser"),
            DecisionReason::DeniedBy(acl) | DecisionReason::AllowedBy(acl) => {
                write!(f, "MatchingAcl(acl={acl}, result={result})")
            }
            DecisionReason::NoAclFound | DecisionReason::NoMatchingAllow => {
                f.write_str(if self.allowed {
                    "DefaultAllow"
                } else {
                    "DefaultDeny"
                })
            }
        }
    }
}

/// The principal and host an ACL's entry names match the request's (wildcards included).
fn entry_applies(acl: &AclBinding, principal: &str, host: &str) -> bool {
    (acl.principal == principal || acl.principal == WILDCARD_PRINCIPAL)
        && (acl.host == WILDCARD || acl.host == host)
}

/// What one ACL says about a request whose resource it covers.
fn acl_verdict(acl: &AclBinding, ctx: &Authorization<'_>) -> Option<AclPermissionType> {
    if !entry_applies(acl, ctx.principal, ctx.host) {
        return None;
    }
    let operation_matches = match acl.permission {
        AclPermissionType::Allow => acl.operation.allow_implies(ctx.operation),
        AclPermissionType::Deny => {
            acl.operation == AclOperation::All || acl.operation == ctx.operation
        }
        _ => false,
    };
    operation_matches.then_some(acl.permission)
}

/// StandardAuthorizer's policy: `super.users` and `allow.everyone.if.no.acl.found`, applied
/// to the ACLs of the metadata image the request is checked against.
#[derive(Debug, Clone, Default)]
pub struct Authorizer {
    /// Principals (`User:admin`) allowed everything.
    pub super_users: Vec<String>,
    pub allow_everyone_if_no_acl_found: bool,
}

impl Authorizer {
    pub fn new(super_users: Vec<String>, allow_everyone_if_no_acl_found: bool) -> Authorizer {
        Authorizer {
            super_users,
            allow_everyone_if_no_acl_found,
        }
    }

    /// Kafka's rules: super users may do anything; otherwise a matching DENY wins, then a
    /// matching ALLOW; a resource with no ACLs at all falls back to
    /// `allow.everyone.if.no.acl.found`, one with ACLs but no match is denied.
    pub fn authorize(&self, acls: &Acls, ctx: &Authorization<'_>) -> Decision {
        if self.super_users.iter().any(|s| s == ctx.principal) {
            return Decision {
                allowed: true,
                reason: DecisionReason::SuperUser,
            };
        }
        let mut has_resource_acls = false;
        let mut allow = None;
        for acl in acls.covering(ctx.resource_type, ctx.resource_name) {
            has_resource_acls = true;
            match acl_verdict(acl, ctx) {
                Some(AclPermissionType::Deny) => {
                    return Decision {
                        allowed: false,
                        reason: DecisionReason::DeniedBy(acl.clone()),
                    }
                }
                Some(AclPermissionType::Allow) if allow.is_none() => allow = Some(acl),
                _ => {}
            }
        }
        match allow {
            Some(acl) => Decision {
                allowed: true,
                reason: DecisionReason::AllowedBy(acl.clone()),
            },
            None if !has_resource_acls => Decision {
                allowed: self.allow_everyone_if_no_acl_found,
                reason: DecisionReason::NoAclFound,
            },
            None => Decision {
                allowed: false,
                reason: DecisionReason::NoMatchingAllow,
            },
        }
    }

    /// Kafka's authorizeByResourceType: may the principal do `operation` on some resource of
    /// this type? True for super users, and when an ALLOW (of the operation or All) names a
    /// literal or prefixed pattern that no DENY for the principal covers (a DENY on the
    /// literal name, on `*`, or on a prefix of it). With no ACL of the type at all,
    /// `allow.everyone.if.no.acl.found` decides.
    pub fn authorize_any(
        &self,
        acls: &Acls,
        principal: &str,
        host: &str,
        operation: AclOperation,
        resource_type: ResourceType,
    ) -> bool {
        if self.super_users.iter().any(|s| s == principal) {
            return true;
        }
        let of_type: Vec<&AclBinding> = acls
            .iter()
            .filter(|a| a.resource_type == resource_type)
            .collect();
        if of_type.is_empty() {
            return self.allow_everyone_if_no_acl_found;
        }
        let applies = |a: &&&AclBinding, permission: AclPermissionType| {
            a.permission == permission
                && (a.operation == operation || a.operation == AclOperation::All)
                && entry_applies(a, principal, host)
        };
        let denies: Vec<&AclBinding> = of_type
            .iter()
            .filter(|a| applies(a, AclPermissionType::Deny))
            .copied()
            .collect();
        let denied = |pattern: PatternType, name: &str| {
            denies.iter().any(|d| match d.pattern_type {
                PatternType::Literal => {
                    d.resource_name == WILDCARD
                        || (pattern == PatternType::Literal && d.resource_name == name)
                }
                PatternType::Prefixed => name.starts_with(d.resource_name.as_str()),
                _ => false,
            })
        };
        of_type
            .iter()
            .filter(|a| applies(a, AclPermissionType::Allow))
            .any(|a| !denied(a.pattern_type, &a.resource_name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(
        resource_type: ResourceType,
        name: &str,
        pattern_type: PatternType,
        principal: &str,
        host: &str,
        operation: AclOperation,
        permission: AclPermissionType,
    ) -> AclBinding {
        AclBinding {
            resource_type,
            resource_name: name.to_string(),
            pattern_type,
            principal: principal.to_string(),
            host: host.to_string(),
            operation,
            permission,
        }
    }

    fn topic_allow(
        name: &str,
        pattern: PatternType,
        principal: &str,
        op: AclOperation,
    ) -> AclBinding {
        acl(
            ResourceType::Topic,
            name,
            pattern,
            principal,
            "*",
            op,
            AclPermissionType::Allow,
        )
    }

    fn topic_deny(
        name: &str,
        pattern: PatternType,
        principal: &str,
        op: AclOperation,
    ) -> AclBinding {
        acl(
            ResourceType::Topic,
            name,
            pattern,
            principal,
            "*",
            op,
            AclPermissionType::Deny,
        )
    }

    /// A policy with the ACLs it is asked about.
    struct Fixture {
        policy: Authorizer,
        acls: Acls,
    }

    impl Fixture {
        fn new(super_users: Vec<String>, allow_everyone_if_no_acl_found: bool) -> Fixture {
            Fixture {
                policy: Authorizer::new(super_users, allow_everyone_if_no_acl_found),
                acls: Acls::new(),
            }
        }

        fn authorize(&self, ctx: &Authorization<'_>) -> Decision {
            self.policy.authorize(&self.acls, ctx)
        }
    }

    fn authorizer(acls: Vec<AclBinding>) -> Fixture {
        let mut a = Fixture::new(vec!["User:admin".to_string()], false);
        for b in acls {
            assert!(a.acls.add(b));
        }
        a
    }

    fn ask(a: &Fixture, principal: &str, host: &str, op: AclOperation, topic: &str) -> bool {
        a.authorize(&Authorization {
            principal,
            host,
            operation: op,
            resource_type: ResourceType::Topic,
            resource_name: topic,
        })
        .allowed
    }

    use AclOperation as Op;
    use PatternType::{Literal, Prefixed};

    #[test]
    fn literal_acl_allows_exact_name_only() {
        let a = authorizer(vec![topic_allow("foo", Literal, "User:alice", Op::Read)]);
        assert!(ask(&a, "User:alice", "10.0.0.1", Op::Read, "foo"));
        assert!(!ask(&a, "User:alice", "10.0.0.1", Op::Read, "foobar"));
        assert!(!ask(&a, "User:alice", "10.0.0.1", Op::Read, "fo"));
        assert!(!ask(&a, "User:bob", "10.0.0.1", Op::Read, "foo"));
        assert!(!ask(&a, "User:alice", "10.0.0.1", Op::Write, "foo"));
    }

    #[test]
    fn wildcard_literal_covers_every_name() {
        let a = authorizer(vec![topic_allow("*", Literal, "User:alice", Op::Write)]);
        assert!(ask(&a, "User:alice", "h", Op::Write, "anything"));
        assert!(ask(&a, "User:alice", "h", Op::Write, "*"));
        assert!(!ask(&a, "User:bob", "h", Op::Write, "anything"));
        // A wildcard for topics says nothing about groups.
        let group = Authorization {
            principal: "User:alice",
            host: "h",
            operation: Op::Write,
            resource_type: ResourceType::Group,
            resource_name: "g",
        };
        let d = a.authorize(&group);
        assert_eq!((d.allowed, d.reason), (false, DecisionReason::NoAclFound));
    }

    #[test]
    fn prefixed_acl_covers_names_starting_with_it() {
        let a = authorizer(vec![topic_allow(
            "orders-",
            Prefixed,
            "User:alice",
            Op::Read,
        )]);
        assert!(ask(&a, "User:alice", "h", Op::Read, "orders-eu"));
        assert!(ask(&a, "User:alice", "h", Op::Read, "orders-"));
        assert!(!ask(&a, "User:alice", "h", Op::Read, "orders"));
        assert!(!ask(&a, "User:alice", "h", Op::Read, "xorders-eu"));
        // A prefixed "*" is a prefix, not a wildcard.
        let b = authorizer(vec![topic_allow("*", Prefixed, "User:alice", Op::Read)]);
        assert!(!ask(&b, "User:alice", "h", Op::Read, "foo"));
        assert!(ask(&b, "User:alice", "h", Op::Read, "*foo"));
    }

    #[test]
    fn prefixes_with_multibyte_names() {
        let a = authorizer(vec![topic_allow("é", Prefixed, "User:alice", Op::Read)]);
        assert!(ask(&a, "User:alice", "h", Op::Read, "ééé"));
        assert!(!ask(&a, "User:alice", "h", Op::Read, "e"));
    }

    #[test]
    fn deny_beats_allow_whatever_the_pattern() {
        let deny_cases = [
            topic_deny("foo", Literal, "User:alice", Op::Read),
            topic_deny("*", Literal, "User:alice", Op::Read),
            topic_deny("f", Prefixed, "User:alice", Op::Read),
            topic_deny("foo", Literal, "User:*", Op::Read),
            topic_deny("foo", Literal, "User:alice", Op::All),
        ];
        for deny in deny_cases {
            let a = authorizer(vec![
                topic_allow("foo", Literal, "User:alice", Op::Read),
                topic_allow("*", Literal, "User:*", Op::All),
                deny.clone(),
            ]);
            let d = a.authorize(&Authorization {
                principal: "User:alice",
                host: "1.2.3.4",
                operation: Op::Read,
                resource_type: ResourceType::Topic,
                resource_name: "foo",
            });
            assert!(!d.allowed, "{deny}");
            let denies_all = deny.operation == Op::All;
            assert_eq!(d.reason, DecisionReason::DeniedBy(deny));
            assert_eq!(
                ask(&a, "User:alice", "1.2.3.4", Op::Write, "foo"),
                !denies_all
            );
        }
    }

    #[test]
    fn allow_implies_describe_but_deny_does_not() {
        for op in [
            Op::Read,
            Op::Write,
            Op::Delete,
            Op::Alter,
            Op::Describe,
            Op::All,
        ] {
            let a = authorizer(vec![topic_allow("t", Literal, "User:alice", op)]);
            assert!(ask(&a, "User:alice", "h", Op::Describe, "t"), "{op}");
        }
        for op in [
            Op::Create,
            Op::AlterConfigs,
            Op::DescribeConfigs,
            Op::ClusterAction,
        ] {
            let a = authorizer(vec![topic_allow("t", Literal, "User:alice", op)]);
            assert!(!ask(&a, "User:alice", "h", Op::Describe, "t"), "{op}");
        }
        let a = authorizer(vec![topic_allow(
            "t",
            Literal,
            "User:alice",
            Op::AlterConfigs,
        )]);
        assert!(ask(&a, "User:alice", "h", Op::DescribeConfigs, "t"));
        let a = authorizer(vec![topic_allow("t", Literal, "User:alice", Op::Read)]);
        assert!(!ask(&a, "User:alice", "h", Op::Write, "t"));
        // Describe does not imply Read.
        let a = authorizer(vec![topic_allow("t", Literal, "User:alice", Op::Describe)]);
        assert!(!ask(&a, "User:alice", "h", Op::Read, "t"));
        // A DENY of Read does not deny Describe; a DENY of All does.
        let a = authorizer(vec![
            topic_allow("t", Literal, "User:alice", Op::Describe),
            topic_deny("t", Literal, "User:alice", Op::Read),
        ]);
        assert!(ask(&a, "User:alice", "h", Op::Describe, "t"));
        assert!(!ask(&a, "User:alice", "h", Op::Read, "t"));
        let a = authorizer(vec![
            topic_allow("t", Literal, "User:alice", Op::Describe),
            topic_deny("t", Literal, "User:alice", Op::All),
        ]);
        assert!(!ask(&a, "User:alice", "h", Op::Describe, "t"));
        let a = authorizer(vec![
            topic_allow("t", Literal, "User:alice", Op::DescribeConfigs),
            topic_deny("t", Literal, "User:alice", Op::AlterConfigs),
        ]);
        assert!(ask(&a, "User:alice", "h", Op::DescribeConfigs, "t"));
    }

    #[test]
    fn super_users_are_allowed_everything() {
        let a = authorizer(vec![topic_deny("t", Literal, "User:*", Op::All)]);
        let d = a.authorize(&Authorization {
            principal: "User:admin",
            host: "h",
            operation: Op::Delete,
            resource_type: ResourceType::Topic,
            resource_name: "t",
        });
        assert_eq!(
            (d.allowed, d.reason.clone()),
            (true, DecisionReason::SuperUser)
        );
        assert_eq!(d.to_string(), "SuperUser");
        assert!(!ask(&a, "User:alice", "h", Op::Delete, "t"));
        // Super users are whole principals: "admin" alone or another type is not one.
        assert!(!ask(&a, "Group:admin", "h", Op::Delete, "t"));
    }

    #[test]
    fn no_acl_found_follows_the_setting() {
        let mut a = authorizer(vec![topic_allow("other", Literal, "User:alice", Op::Read)]);
        let ctx = Authorization {
            principal: "User:bob",
            host: "h",
            operation: Op::Read,
            resource_type: ResourceType::Topic,
            resource_name: "t",
        };
        let d = a.authorize(&ctx);
        assert_eq!(
            (d.allowed, d.reason.clone()),
            (false, DecisionReason::NoAclFound)
        );
        assert_eq!(d.to_string(), "DefaultDeny");
        a.policy.allow_everyone_if_no_acl_found = true;
        let d = a.authorize(&ctx);
        assert_eq!(
            (d.allowed, d.reason.clone()),
            (true, DecisionReason::NoAclFound)
        );
        assert_eq!(d.to_string(), "DefaultAllow");
        // Any ACL on the resource, even for someone else, turns the default off.
        a.acls
            .add(topic_allow("t", Literal, "User:alice", Op::Read));
        let d = a.authorize(&ctx);
        assert_eq!(
            (d.allowed, d.reason),
            (false, DecisionReason::NoMatchingAllow)
        );
        // So does a prefixed or wildcard ACL that covers it.
        let mut b = Fixture::new(vec![], true);
        b.acls
            .add(topic_allow("t", Prefixed, "User:alice", Op::Write));
        assert!(!b.authorize(&ctx).allowed);
        let mut c = Fixture::new(vec![], true);
        c.acls
            .add(topic_allow("*", Literal, "User:alice", Op::Write));
        assert!(!c.authorize(&ctx).allowed);
    }

    #[test]
    fn host_must_match_or_be_wildcard() {
        let a = authorizer(vec![acl(
            ResourceType::Topic,
            "t",
            Literal,
            "User:alice",
            "10.0.0.1",
            Op::Read,
            AclPermissionType::Allow,
        )]);
        assert!(ask(&a, "User:alice", "10.0.0.1", Op::Read, "t"));
        assert!(!ask(&a, "User:alice", "10.0.0.2", Op::Read, "t"));
        let b = authorizer(vec![
            topic_allow("t", Literal, "User:alice", Op::Read),
            acl(
                ResourceType::Topic,
                "t",
                Literal,
                "User:alice",
                "10.0.0.9",
                Op::Read,
                AclPermissionType::Deny,
            ),
        ]);
        assert!(ask(&b, "User:alice", "10.0.0.1", Op::Read, "t"));
        assert!(!ask(&b, "User:alice", "10.0.0.9", Op::Read, "t"));
    }

    #[test]
    fn principal_wildcard_is_user_star_only() {
        let a = authorizer(vec![topic_allow("t", Literal, "User:*", Op::Read)]);
        assert!(ask(&a, "User:alice", "h", Op::Read, "t"));
        assert!(ask(&a, "User:bob", "h", Op::Read, "t"));
        let b = authorizer(vec![topic_allow("t", Literal, "*", Op::Read)]);
        assert!(!ask(&b, "User:alice", "h", Op::Read, "t"));
    }

    #[test]
    fn allowed_by_reports_the_acl() {
        let allow = topic_allow("t", Literal, "User:alice", Op::Read);
        let a = authorizer(vec![allow.clone()]);
        let d = a.authorize(&Authorization {
            principal: "User:alice",
            host: "h",
            operation: Op::Read,
            resource_type: ResourceType::Topic,
            resource_name: "t",
        });
        assert_eq!(d.reason, DecisionReason::AllowedBy(allow));
        assert!(d.to_string().starts_with("MatchingAcl(acl=(pattern=ResourcePattern(resourceType=TOPIC, name=t, patternType=LITERAL)"));
    }

    #[test]
    fn add_remove_and_index_stay_consistent() {
        let mut a = authorizer(vec![]);
        let b1 = topic_allow("foo", Prefixed, "User:alice", Op::Read);
        let b2 = topic_allow("foo", Literal, "User:alice", Op::Read);
        assert!(a.acls.add(b1.clone()));
        assert!(!a.acls.add(b1.clone()));
        assert!(a.acls.add(b2.clone()));
        assert_eq!(a.acls.len(), 2);
        assert!(ask(&a, "User:alice", "h", Op::Read, "foobar"));
        assert!(a.acls.remove(&b1));
        assert!(!a.acls.remove(&b1));
        assert!(!ask(&a, "User:alice", "h", Op::Read, "foobar"));
        assert!(ask(&a, "User:alice", "h", Op::Read, "foo"));
        assert!(a.acls.remove(&b2));
        assert!(a.acls.is_empty());
        assert!(a.acls.literal.is_empty() && a.acls.prefixed.is_empty());
    }

    fn sample_acls() -> Acls {
        let mut acls = Acls::new();
        for b in [
            topic_allow("foo", Literal, "User:alice", Op::Read),
            topic_allow("*", Literal, "User:bob", Op::Write),
            topic_allow("fo", Prefixed, "User:alice", Op::Describe),
            topic_deny("bar", Prefixed, "User:carol", Op::Read),
            acl(
                ResourceType::Group,
                "foo",
                Literal,
                "User:alice",
                "1.1.1.1",
                Op::Read,
                AclPermissionType::Allow,
            ),
        ] {
            acls.add(b);
        }
        acls
    }

    fn names(acls: &Acls, filter: &AclBindingFilter) -> Vec<(ResourceType, String, PatternType)> {
        acls.filter(filter)
            .map(|b| (b.resource_type, b.resource_name.clone(), b.pattern_type))
            .collect()
    }

    #[test]
    fn filter_any_and_exact_patterns() {
        let acls = sample_acls();
        assert_eq!(acls.filter(&AclBindingFilter::any()).count(), 5);
        let mut f = AclBindingFilter::any();
        f.resource_type = ResourceType::Topic;
        assert_eq!(acls.filter(&f).count(), 4);
        f.resource_name = Some("foo".into());
        // Any pattern type with a name: exact name equality, any pattern type.
        assert_eq!(
            names(&acls, &f),
            vec![(ResourceType::Topic, "foo".into(), Literal)]
        );
        f.resource_name = Some("fo".into());
        f.pattern_type = Prefixed;
        assert_eq!(
            names(&acls, &f),
            vec![(ResourceType::Topic, "fo".into(), Prefixed)]
        );
        f.pattern_type = Literal;
        assert_eq!(acls.filter(&f).count(), 0);
    }

    #[test]
    fn filter_match_pattern_finds_every_applicable_acl() {
        let acls = sample_acls();
        let mut f = AclBindingFilter::any();
        f.resource_type = ResourceType::Topic;
        f.pattern_type = PatternType::Match;
        f.resource_name = Some("foo".into());
        let mut got = names(&acls, &f);
        got.sort();
        let mut want = vec![
            (ResourceType::Topic, "foo".to_string(), Literal),
            (ResourceType::Topic, "*".to_string(), Literal),
            (ResourceType::Topic, "fo".to_string(), Prefixed),
        ];
        want.sort();
        assert_eq!(got, want);
        f.resource_name = Some("barn".into());
        let got = names(&acls, &f);
        assert!(got.contains(&(ResourceType::Topic, "bar".into(), Prefixed)));
        assert!(got.contains(&(ResourceType::Topic, "*".into(), Literal)));
        assert_eq!(got.len(), 2);
        // Match without a name matches every pattern.
        f.resource_name = None;
        assert_eq!(acls.filter(&f).count(), 4);
    }

    #[test]
    fn filter_entry_fields() {
        let acls = sample_acls();
        let mut f = AclBindingFilter::any();
        f.principal = Some("User:alice".into());
        assert_eq!(acls.filter(&f).count(), 3);
        f.host = Some("1.1.1.1".into());
        assert_eq!(acls.filter(&f).count(), 1);
        let mut f = AclBindingFilter::any();
        f.operation = Op::Read;
        assert_eq!(acls.filter(&f).count(), 3);
        f.permission = AclPermissionType::Deny;
        assert_eq!(acls.filter(&f).count(), 1);
        // Filters compare operations exactly: All in a filter is not Any.
        let mut f = AclBindingFilter::any();
        f.operation = Op::All;
        assert_eq!(acls.filter(&f).count(), 0);
    }

    #[test]
    fn removing_what_a_filter_matches() {
        let mut acls = sample_acls();
        let remove_matching = |acls: &mut Acls, f: &AclBindingFilter| {
            let doomed: Vec<AclBinding> = acls.filter(f).cloned().collect();
            doomed.iter().filter(|b| acls.remove(b)).count()
        };
        let mut f = AclBindingFilter::any();
        f.principal = Some("User:alice".into());
        assert_eq!(remove_matching(&mut acls, &f), 3);
        assert_eq!(acls.len(), 2);
        assert_eq!(acls.filter(&f).count(), 0);
        assert_eq!(remove_matching(&mut acls, &AclBindingFilter::any()), 2);
        assert!(acls.is_empty());
    }

    #[test]
    fn binding_validation() {
        let good = topic_allow("t", Literal, "User:alice", Op::Read);
        assert_eq!(good.validate(), Ok(()));
        assert_eq!(
            topic_allow("t", Prefixed, "User:*", Op::All).validate(),
            Ok(())
        );
        let cluster = |name: &str| {
            acl(
                ResourceType::Cluster,
                name,
                Literal,
                "User:a",
                "*",
                Op::Alter,
                AclPermissionType::Allow,
            )
        };
        assert_eq!(cluster("kafka-cluster").validate(), Ok(()));
        assert_eq!(
            cluster("other").validate(),
            Err(AclError::InvalidClusterName)
        );
        assert_eq!(cluster("").validate(), Err(AclError::InvalidClusterName));
        let with = |f: &dyn Fn(&mut AclBinding)| {
            let mut b = good.clone();
            f(&mut b);
            b.validate()
        };
        assert_eq!(
            with(&|b| b.resource_name.clear()),
            Err(AclError::EmptyResourceName)
        );
        for rt in [ResourceType::Any, ResourceType::Unknown] {
            assert_eq!(
                with(&|b| b.resource_type = rt),
                Err(AclError::InvalidResourceType(rt))
            );
        }
        for pt in [PatternType::Any, PatternType::Match, PatternType::Unknown] {
            assert_eq!(
                with(&|b| b.pattern_type = pt),
                Err(AclError::InvalidPatternType(pt))
            );
        }
        for op in [Op::Any, Op::Unknown] {
            assert_eq!(
                with(&|b| b.operation = op),
                Err(AclError::InvalidOperation(op))
            );
        }
        for p in [AclPermissionType::Any, AclPermissionType::Unknown] {
            assert_eq!(
                with(&|b| b.permission = p),
                Err(AclError::InvalidPermissionType(p))
            );
        }
        for bad in ["alice", "", ":alice", "User:"] {
            assert_eq!(
                with(&|b| b.principal = bad.to_string()),
                Err(AclError::InvalidPrincipal(bad.to_string()))
            );
        }
        assert_eq!(with(&|b| b.principal = "User:a:b".into()), Ok(()));
        let err = with(&|b| b.operation = Op::Any).unwrap_err();
        assert_eq!(err.to_string(), "Invalid operation ANY");
    }

    #[test]
    fn filter_validation() {
        assert_eq!(AclBindingFilter::any().validate(), Ok(()));
        let mut f = AclBindingFilter::any();
        f.pattern_type = PatternType::Match;
        assert_eq!(f.validate(), Ok(()));
        f.resource_type = ResourceType::Unknown;
        assert_eq!(f.validate(), Err(AclError::UnknownPatternFilter));
        let mut f = AclBindingFilter::any();
        f.pattern_type = PatternType::Unknown;
        assert_eq!(f.validate(), Err(AclError::UnknownPatternFilter));
        let mut f = AclBindingFilter::any();
        f.operation = Op::Unknown;
        assert_eq!(f.validate(), Err(AclError::UnknownEntryFilter));
        let mut f = AclBindingFilter::any();
        f.permission = AclPermissionType::Unknown;
        assert_eq!(f.validate(), Err(AclError::UnknownEntryFilter));
    }

    #[test]
    fn wire_codes_round_trip() {
        for (i, rt) in ResourceType::ALL.iter().enumerate() {
            assert_eq!(rt.code(), i as i8);
            assert_eq!(ResourceType::from_code(rt.code()), *rt);
        }
        for (i, pt) in PatternType::ALL.iter().enumerate() {
            assert_eq!(pt.code(), i as i8);
            assert_eq!(PatternType::from_code(pt.code()), *pt);
        }
        for (i, op) in AclOperation::ALL.iter().enumerate() {
            assert_eq!(op.code(), i as i8);
            assert_eq!(AclOperation::from_code(op.code()), *op);
        }
        for (i, p) in AclPermissionType::ALL.iter().enumerate() {
            assert_eq!(p.code(), i as i8);
            assert_eq!(AclPermissionType::from_code(p.code()), *p);
        }
        assert_eq!(ResourceType::ALL.len(), 8);
        assert_eq!(AclOperation::ALL.len(), 15);
        assert_eq!(AclOperation::DescribeTokens.code(), 14);
        assert_eq!(ResourceType::User.code(), 7);
        assert_eq!(ResourceType::from_code(99), ResourceType::Unknown);
        assert_eq!(AclOperation::from_code(-1), AclOperation::Unknown);
        assert_eq!(PatternType::from_code(5), PatternType::Unknown);
        assert_eq!(AclPermissionType::from_code(4), AclPermissionType::Unknown);
    }

    #[test]
    fn names_display_and_parse() {
        assert_eq!(AclOperation::ClusterAction.to_string(), "CLUSTER_ACTION");
        assert_eq!(
            ResourceType::TransactionalId.to_string(),
            "TRANSACTIONAL_ID"
        );
        assert_eq!(PatternType::Prefixed.to_string(), "PREFIXED");
        assert_eq!(AclPermissionType::Allow.to_string(), "ALLOW");
        for op in AclOperation::ALL {
            assert_eq!(op.to_string().parse::<AclOperation>(), Ok(*op));
            assert_eq!(
                op.to_string().to_lowercase().parse::<AclOperation>(),
                Ok(*op)
            );
        }
        assert_eq!("ClusterAction".parse(), Ok(AclOperation::ClusterAction));
        assert_eq!(
            "idempotent_write".parse(),
            Ok(AclOperation::IdempotentWrite)
        );
        assert_eq!("topic".parse(), Ok(ResourceType::Topic));
        assert_eq!("TransactionalId".parse(), Ok(ResourceType::TransactionalId));
        assert_eq!("prefixed".parse(), Ok(PatternType::Prefixed));
        assert_eq!("Deny".parse(), Ok(AclPermissionType::Deny));
        let err = "fly".parse::<AclOperation>().unwrap_err();
        assert_eq!(err.to_string(), "unknown operation 'fly'");
        assert!("".parse::<ResourceType>().is_err());
    }

    #[test]
    fn binding_serde_round_trip_and_order() {
        let b = topic_allow("t", Prefixed, "User:alice", Op::Read);
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(serde_json::from_str::<AclBinding>(&json).unwrap(), b);
        let a = topic_allow("a", Literal, "User:alice", Op::Read);
        let mut v = vec![b.clone(), a.clone()];
        v.sort();
        assert_eq!(v, vec![a, b]);
    }

    #[test]
    fn authorize_any_finds_an_allow_no_deny_covers() {
        let alice = |a: &Fixture| {
            a.policy
                .authorize_any(&a.acls, "User:alice", "h", Op::Write, ResourceType::Topic)
        };
        let none = Fixture::new(vec![], false);
        assert!(!alice(&none));
        let open = Fixture::new(vec![], true);
        assert!(alice(&open));
        let a = authorizer(vec![topic_allow(
            "orders",
            Literal,
            "User:alice",
            Op::Write,
        )]);
        assert!(alice(&a));
        let a = authorizer(vec![topic_allow("orders", Literal, "User:alice", Op::Read)]);
        assert!(!alice(&a));
        let a = authorizer(vec![
            topic_allow("orders", Literal, "User:alice", Op::Write),
            topic_deny("ord", Prefixed, "User:alice", Op::Write),
        ]);
        assert!(!alice(&a));
        let a = authorizer(vec![
            topic_allow("orders", Prefixed, "User:alice", Op::All),
            topic_deny("orders", Literal, "User:alice", Op::Write),
        ]);
        // The literal deny does not cover every topic the prefix allows.
        assert!(alice(&a));
        let a = authorizer(vec![
            topic_allow("orders", Prefixed, "User:*", Op::Write),
            topic_deny("*", Literal, "User:alice", Op::Write),
        ]);
        assert!(!alice(&a));
        assert!(a
            .policy
            .authorize_any(&a.acls, "User:bob", "h", Op::Write, ResourceType::Topic));
    }

    #[test]
    fn acls_round_trip_through_their_stored_form() {
        let a = authorizer(vec![
            topic_allow("orders", Literal, "User:alice", Op::Write),
            topic_deny("ord", Prefixed, "User:*", Op::Read),
        ]);
        let json = serde_json::to_string(&a.acls).unwrap();
        let back: Acls = serde_json::from_str(&json).unwrap();
        assert_eq!(
            back.iter().collect::<Vec<_>>(),
            a.acls.iter().collect::<Vec<_>>()
        );
        assert!(!back.is_empty());
        let f = Fixture {
            policy: a.policy.clone(),
            acls: back,
        };
        assert!(ask(&f, "User:alice", "h", Op::Write, "orders"));
        assert!(!ask(&f, "User:bob", "h", Op::Read, "orders"));
    }
}
