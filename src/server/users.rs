//! DescribeUserScramCredentials and AlterUserScramCredentials: SCRAM users kept in the metadata
//! log. Each alteration is checked here against the image with Kafka's rules
//! (ScramControlManager): one alteration per user per request, a known mechanism, a user name,
//! 4096..=16384 iterations, and deletions of credentials that exist.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use futures::future::LocalBoxFuture;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::access::Access;
use super::{errors, reply, Outcome};
use crate::metadata::controller::Command;
use crate::metadata::image::Snapshot;
use crate::protocol::{decode_body, Request};
use crate::security::acl::AclOperation;
use crate::security::scram::{ScramCredential, ScramMechanism, MAX_ITERATIONS};
use crate::shard::Shard;

pub fn describe(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body: DescribeUserScramCredentialsRequest = match decode_body(&req) {
        Ok(b) => b,
        Err(e) => return super::ready(Outcome::Close(e.to_string())),
    };
    if !Access::of(shard, &req).cluster(AclOperation::Describe) {
        let e = ResponseError::ClusterAuthorizationFailed;
        return super::ready(reply(
            &req,
            &DescribeUserScramCredentialsResponse::default()
                .with_error_code(e.code())
                .with_error_message(Some(StrBytes::from_string(e.to_string()))),
        ));
    }
    let snap = shard.snapshot();
    let results = match &body.users {
        None => describe_all(&snap),
        Some(users) if users.is_empty() => describe_all(&snap),
        Some(users) => {
            let mut count: HashMap<&str, usize> = HashMap::new();
            for u in users {
                *count.entry(u.name.as_str()).or_default() += 1;
            }
            let mut seen = std::collections::HashSet::new();
            users
                .iter()
                .filter(|u| seen.insert(u.name.as_str()))
                .map(|u| {
                    let name = u.name.as_str();
                    if count[name] > 1 {
                        return failed(
                            name,
                            ResponseError::DuplicateResource,
                            "Cannot describe SCRAM credentials for the same user twice in a single request",
                        );
                    }
                    match snap.scram_credentials.get(name) {
                        Some(creds) => described(name, creds),
                        None => failed(
                            name,
                            ResponseError::ResourceNotFound,
                            &format!("Attempt to describe a user credential that does not exist: {name}"),
                        ),
                    }
                })
                .collect()
        }
    };
    super::ready(reply(
        &req,
        &DescribeUserScramCredentialsResponse::default().with_results(results),
    ))
}

fn describe_all(snap: &Snapshot) -> Vec<DescribeUserScramCredentialsResult> {
    snap.scram_credentials
        .iter()
        .map(|(user, creds)| described(user, creds))
        .collect()
}

fn described(
    user: &str,
    creds: &BTreeMap<ScramMechanism, ScramCredential>,
) -> DescribeUserScramCredentialsResult {
    DescribeUserScramCredentialsResult::default()
        .with_user(StrBytes::from_string(user.to_string()))
        .with_credential_infos(
            creds
                .iter()
                .map(|(m, c)| {
                    CredentialInfo::default()
                        .with_mechanism(m.code())
                        .with_iterations(c.iterations as i32)
                })
                .collect(),
        )
}

fn failed(user: &str, e: ResponseError, message: &str) -> DescribeUserScramCredentialsResult {
    DescribeUserScramCredentialsResult::default()
        .with_user(StrBytes::from_string(user.to_string()))
        .with_error_code(e.code())
        .with_error_message(Some(StrBytes::from_string(message.to_string())))
}

/// One user's alteration, checked.
type Checked = Result<Alteration, (ResponseError, &'static str)>;

enum Alteration {
    Set(ScramMechanism, ScramCredential),
    Remove(ScramMechanism),
}

pub fn alter(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body: AlterUserScramCredentialsRequest = match decode_body(&req) {
        Ok(b) => b,
        Err(e) => return super::ready(Outcome::Close(e.to_string())),
    };
    let snap = shard.snapshot();
    let mut by_user: BTreeMap<String, Checked> = BTreeMap::new();
    // Without ALTER on the cluster every alteration is refused, and nothing changes.
    let allowed = Access::of(shard, &req).cluster(AclOperation::Alter);
    let mut put = |user: &str, checked: Checked| {
        let checked = if allowed {
            checked
        } else {
            Err((
                ResponseError::ClusterAuthorizationFailed,
                "Cluster authorization failed.",
            ))
        };
        let duplicate = (
            ResponseError::DuplicateResource,
            "A user credential cannot be altered twice in the same request",
        );
        match by_user.get(user) {
            Some(Err(_)) => {}
            Some(Ok(_)) => {
                by_user.insert(user.to_string(), Err(duplicate));
            }
            None => {
                by_user.insert(user.to_string(), checked);
            }
        }
    };
    for d in &body.deletions {
        let user = d.name.as_str();
        let checked = check_user(user, d.mechanism).and_then(|m| {
            let exists = snap
                .scram_credentials
                .get(user)
                .is_some_and(|c| c.contains_key(&m));
            if exists {
                Ok(Alteration::Remove(m))
            } else {
                Err((
                    ResponseError::ResourceNotFound,
                    "Attempt to delete a user credential that does not exist",
                ))
            }
        });
        put(user, checked);
    }
    for u in &body.upsertions {
        let user = u.name.as_str();
        let checked = check_user(user, u.mechanism).and_then(|m| {
            if u.iterations < m.min_iterations() as i32 {
                return Err((ResponseError::UnacceptableCredential, "Too few iterations"));
            }
            if u.iterations > MAX_ITERATIONS as i32 {
                return Err((ResponseError::UnacceptableCredential, "Too many iterations"));
            }
            let credential = ScramCredential::from_salted_password(
                m,
                &u.salt,
                &u.salted_password,
                u.iterations as u32,
            );
            Ok(Alteration::Set(m, credential))
        });
        put(user, checked);
    }
    let mut set = Vec::new();
    let mut remove = Vec::new();
    for (user, checked) in &by_user {
        match checked {
            Ok(Alteration::Set(m, c)) => set.push((user.clone(), *m, c.clone())),
            Ok(Alteration::Remove(m)) => remove.push((user.clone(), *m)),
            Err(_) => {}
        }
    }
    let shard = shard.clone();
    Box::pin(async move {
        let outcome = if set.is_empty() && remove.is_empty() {
            Ok(())
        } else {
            shard
                .execute(Command::AlterScramCredentials { set, remove })
                .await
                .map(|_| ())
                .map_err(|e| (errors::metadata(&e), e.to_string()))
        };
        let results = by_user
            .into_iter()
            .map(|(user, checked)| {
                let r = AlterUserScramCredentialsResult::default()
                    .with_user(StrBytes::from_string(user));
                match (checked, &outcome) {
                    (Err((e, message)), _) => r
                        .with_error_code(e.code())
                        .with_error_message(Some(StrBytes::from_static_str(message))),
                    (Ok(_), Err((e, message))) => r
                        .with_error_code(e.code())
                        .with_error_message(Some(StrBytes::from_string(message.clone()))),
                    (Ok(_), Ok(())) => r,
                }
            })
            .collect();
        reply(
            &req,
            &AlterUserScramCredentialsResponse::default().with_results(results),
        )
    })
}

fn check_user(user: &str, mechanism: i8) -> Result<ScramMechanism, (ResponseError, &'static str)> {
    if user.is_empty() {
        return Err((
            ResponseError::UnacceptableCredential,
            "Username must not be empty",
        ));
    }
    ScramMechanism::from_code(mechanism).ok_or((
        ResponseError::UnsupportedSaslMechanism,
        "Unknown SCRAM mechanism",
    ))
}
