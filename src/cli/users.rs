//! `gregor users`: SCRAM credentials, as `kafka-configs.sh --entity-type users` manages them.
//! The password is salted here (PBKDF2 with a fresh random salt) and only the salted form goes
//! to the broker, as Kafka's AdminClient sends it.

use std::io::Write;

use anyhow::{anyhow, bail};
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, DescribeUserScramCredentialsRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::BrokerArgs;
use crate::client::Client;
use crate::security::scram::ScramMechanism;

#[derive(clap::Args, Debug)]
pub struct UsersArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    #[command(subcommand)]
    action: UsersAction,
}

#[derive(clap::Subcommand, Debug)]
enum UsersAction {
    /// Adds or replaces a user's SCRAM credential for one mechanism (kafka-configs.sh
    /// --alter --add-config 'SCRAM-SHA-256=[iterations=8192,password=...]').
    Add {
        /// The user name (the principal is User:NAME).
        user: String,
        /// SCRAM-SHA-256 or SCRAM-SHA-512.
        #[arg(long, default_value = "SCRAM-SHA-512")]
        mechanism: String,
        #[arg(long)]
        password: String,
        /// PBKDF2 iterations, 4096 to 16384.
        #[arg(long, default_value_t = 8192)]
        iterations: i32,
    },
    /// Removes a user's credential for one mechanism (--delete-config SCRAM-SHA-256).
    Delete {
        user: String,
        #[arg(long, default_value = "SCRAM-SHA-512")]
        mechanism: String,
    },
    /// Lists users and their mechanisms (--describe); all users when none is named.
    Describe { users: Vec<String> },
}

pub fn run(args: UsersArgs) -> anyhow::Result<()> {
    let mut client = args.broker.connect("gregor-users")?;
    let mut out = std::io::stdout().lock();
    match args.action {
        UsersAction::Add {
            user,
            mechanism,
            password,
            iterations,
        } => {
            let m = mechanism_named(&mechanism)?;
            if iterations < 1 {
                bail!("--iterations must be positive");
            }
            let salt = uuid::Uuid::new_v4().as_bytes().to_vec();
            let salted = m.salted_password(&password, &salt, iterations as u32);
            let req = AlterUserScramCredentialsRequest::default().with_upsertions(vec![
                ScramCredentialUpsertion::default()
                    .with_name(StrBytes::from_string(user.clone()))
                    .with_mechanism(m.code())
                    .with_iterations(iterations)
                    .with_salt(salt.into())
                    .with_salted_password(salted.into()),
            ]);
            altered(&mut client, req)?;
            writeln!(out, "Completed updating config for user {user}.")?;
        }
        UsersAction::Delete { user, mechanism } => {
            let m = mechanism_named(&mechanism)?;
            let req = AlterUserScramCredentialsRequest::default().with_deletions(vec![
                ScramCredentialDeletion::default()
                    .with_name(StrBytes::from_string(user.clone()))
                    .with_mechanism(m.code()),
            ]);
            altered(&mut client, req)?;
            writeln!(out, "Completed updating config for user {user}.")?;
        }
        UsersAction::Describe { users } => {
            let names = (!users.is_empty()).then(|| {
                users
                    .iter()
                    .map(|u| UserName::default().with_name(StrBytes::from_string(u.clone())))
                    .collect()
            });
            let resp =
                client.send(&DescribeUserScramCredentialsRequest::default().with_users(names))?;
            if resp.error_code != 0 {
                bail!(
                    "describing users failed: error {} {}",
                    resp.error_code,
                    resp.error_message.as_deref().unwrap_or("")
                );
            }
            let mut failed = 0;
            for r in resp.results {
                if r.error_code != 0 {
                    failed += 1;
                    writeln!(
                        out,
                        "{}: error {} {}",
                        r.user.as_str(),
                        r.error_code,
                        r.error_message.as_deref().unwrap_or("")
                    )?;
                    continue;
                }
                let creds: Vec<String> = r
                    .credential_infos
                    .iter()
                    .map(|c| {
                        let name =
                            ScramMechanism::from_code(c.mechanism).map_or("UNKNOWN", |m| m.name());
                        format!("{name}=iterations={}", c.iterations)
                    })
                    .collect();
                writeln!(
                    out,
                    "SCRAM credential configs for user-principal '{}' are {}",
                    r.user.as_str(),
                    creds.join(", ")
                )?;
            }
            if failed > 0 {
                bail!("{failed} user(s) could not be described");
            }
        }
    }
    Ok(())
}

fn mechanism_named(name: &str) -> anyhow::Result<ScramMechanism> {
    ScramMechanism::from_name(&name.to_ascii_uppercase())
        .ok_or_else(|| anyhow!("unknown mechanism {name}: SCRAM-SHA-256 or SCRAM-SHA-512"))
}

fn altered(client: &mut Client, req: AlterUserScramCredentialsRequest) -> anyhow::Result<()> {
    let resp = client.send(&req)?;
    for r in resp.results {
        if r.error_code != 0 {
            bail!(
                "user {}: error {} {}",
                r.user.as_str(),
                r.error_code,
                r.error_message.as_deref().unwrap_or("")
            );
        }
    }
    Ok(())
}
