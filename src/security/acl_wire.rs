//! ACL bindings and filters as CreateAcls, DescribeAcls and DeleteAcls carry them: the one
//! translation both the broker's handlers and `gregor acls` use, each way.

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::delete_acls_response::DeleteAclsMatchingAcl;
use kafka_protocol::messages::DescribeAclsRequest;
use kafka_protocol::protocol::StrBytes;

use super::acl::{
    AclBinding, AclBindingFilter, AclOperation, AclPermissionType, PatternType, ResourceType,
};

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

pub fn creation(b: &AclBinding) -> AclCreation {
    AclCreation::default()
        .with_resource_type(b.resource_type.code())
        .with_resource_name(text(&b.resource_name))
        .with_resource_pattern_type(b.pattern_type.code())
        .with_principal(text(&b.principal))
        .with_host(text(&b.host))
        .with_operation(b.operation.code())
        .with_permission_type(b.permission.code())
}

pub fn binding_of_creation(c: &AclCreation) -> AclBinding {
    AclBinding {
        resource_type: ResourceType::from_code(c.resource_type),
        resource_name: c.resource_name.to_string(),
        pattern_type: PatternType::from_code(c.resource_pattern_type),
        principal: c.principal.to_string(),
        host: c.host.to_string(),
        operation: AclOperation::from_code(c.operation),
        permission: AclPermissionType::from_code(c.permission_type),
    }
}

pub fn matching(b: &AclBinding) -> DeleteAclsMatchingAcl {
    DeleteAclsMatchingAcl::default()
        .with_resource_type(b.resource_type.code())
        .with_resource_name(text(&b.resource_name))
        .with_pattern_type(b.pattern_type.code())
        .with_principal(text(&b.principal))
        .with_host(text(&b.host))
        .with_operation(b.operation.code())
        .with_permission_type(b.permission.code())
}

pub fn binding_of_matching(m: &DeleteAclsMatchingAcl) -> AclBinding {
    AclBinding {
        resource_type: ResourceType::from_code(m.resource_type),
        resource_name: m.resource_name.to_string(),
        pattern_type: PatternType::from_code(m.pattern_type),
        principal: m.principal.to_string(),
        host: m.host.to_string(),
        operation: AclOperation::from_code(m.operation),
        permission: AclPermissionType::from_code(m.permission_type),
    }
}

pub fn delete_filter(f: &AclBindingFilter) -> DeleteAclsFilter {
    DeleteAclsFilter::default()
        .with_resource_type_filter(f.resource_type.code())
        .with_resource_name_filter(f.resource_name.as_deref().map(text))
        .with_pattern_type_filter(f.pattern_type.code())
        .with_principal_filter(f.principal.as_deref().map(text))
        .with_host_filter(f.host.as_deref().map(text))
        .with_operation(f.operation.code())
        .with_permission_type(f.permission.code())
}

pub fn filter_of_delete(f: &DeleteAclsFilter) -> AclBindingFilter {
    filter(
        f.resource_type_filter,
        f.resource_name_filter.as_ref(),
        f.pattern_type_filter,
        f.principal_filter.as_ref(),
        f.host_filter.as_ref(),
        f.operation,
        f.permission_type,
    )
}

pub fn describe_request(f: &AclBindingFilter) -> DescribeAclsRequest {
    DescribeAclsRequest::default()
        .with_resource_type_filter(f.resource_type.code())
        .with_resource_name_filter(f.resource_name.as_deref().map(text))
        .with_pattern_type_filter(f.pattern_type.code())
        .with_principal_filter(f.principal.as_deref().map(text))
        .with_host_filter(f.host.as_deref().map(text))
        .with_operation(f.operation.code())
        .with_permission_type(f.permission.code())
}

pub fn filter_of_describe(r: &DescribeAclsRequest) -> AclBindingFilter {
    filter(
        r.resource_type_filter,
        r.resource_name_filter.as_ref(),
        r.pattern_type_filter,
        r.principal_filter.as_ref(),
        r.host_filter.as_ref(),
        r.operation,
        r.permission_type,
    )
}

/// A filter from the fields DescribeAcls and DeleteAcls both carry.
fn filter(
    resource_type: i8,
    resource_name: Option<&StrBytes>,
    pattern_type: i8,
    principal: Option<&StrBytes>,
    host: Option<&StrBytes>,
    operation: i8,
    permission: i8,
) -> AclBindingFilter {
    AclBindingFilter {
        resource_type: ResourceType::from_code(resource_type),
        resource_name: resource_name.map(|s| s.to_string()),
        pattern_type: PatternType::from_code(pattern_type),
        principal: principal.map(|s| s.to_string()),
        host: host.map(|s| s.to_string()),
        operation: AclOperation::from_code(operation),
        permission: AclPermissionType::from_code(permission),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_and_filters_round_trip() {
        let b = AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: "orders-".to_string(),
            pattern_type: PatternType::Prefixed,
            principal: "User:alice".to_string(),
            host: "10.0.0.1".to_string(),
            operation: AclOperation::Write,
            permission: AclPermissionType::Deny,
        };
        assert_eq!(binding_of_creation(&creation(&b)), b);
        assert_eq!(binding_of_matching(&matching(&b)), b);
        let f = AclBindingFilter {
            principal: Some("User:alice".to_string()),
            operation: AclOperation::Read,
            ..AclBindingFilter::any()
        };
        assert_eq!(filter_of_delete(&delete_filter(&f)), f);
        assert_eq!(filter_of_describe(&describe_request(&f)), f);
        assert_eq!(
            filter_of_describe(&describe_request(&AclBindingFilter::any())),
            AclBindingFilter::any()
        );
    }
}
