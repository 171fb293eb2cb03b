//! Client commands (topics, produce, consume, groups, dump-log): they speak the Kafka protocol to a broker (dump-log reads a file).
//!
//! Each command lives in its own file and returns `anyhow::Result`; a broker-reported failure
//! carries the Kafka error name (`TOPIC_ALREADY_EXISTS`) in its message, and `main` turns any
//! `Err` into a non-zero exit.

mod acls;
mod cluster;
mod configs;
mod consume;
mod delete_records;
mod dump_log;
mod groups;
mod produce;
mod status;
mod topics;
mod transactions;
mod users;

use anyhow::{anyhow, Context};

/// Where every networked command connects first.
pub const BOOTSTRAP_DEFAULT: &str = "127.0.0.1:9092";
/// The client id the tools send in every request header.
const CLIENT_ID: &str = "gregor-cli";

/// Broker address shared by all networked commands.
#[derive(clap::Args, Debug, Clone)]
pub struct BrokerArgs {
    /// Broker to connect to first (host:port); partition leaders are found from its metadata.
    #[arg(long, default_value = BOOTSTRAP_DEFAULT, global = true)]
    pub bootstrap_server: String,
    /// Client properties for a secured listener, as Kafka's tools read them:
    /// security.protocol, sasl.mechanism, sasl.jaas.config (or sasl.username and
    /// sasl.password), ssl.truststore.location (PEM), ssl.keystore.location (PEM key and
    /// certificates) or ssl.certificate.location with ssl.key.location.
    #[arg(long, global = true)]
    pub command_config: Option<String>,
}

impl BrokerArgs {
    /// How to reach the brokers: plaintext, or what --command-config says.
    pub fn security(&self) -> anyhow::Result<crate::client::ClientSecurity> {
        match &self.command_config {
            None => Ok(crate::client::ClientSecurity::plaintext()),
            Some(path) => crate::client::ClientSecurity::from_file(path)
                .map_err(|e| anyhow!("--command-config {e}")),
        }
    }

    /// A connection to the bootstrap broker.
    pub fn connect(&self, client_id: &str) -> anyhow::Result<crate::client::Client> {
        Ok(crate::client::Client::connect_with(
            &self.bootstrap_server,
            client_id,
            &self.security()?,
        )?)
    }
}

/// The client subcommands of the `gregor` binary.
#[derive(clap::Subcommand, Debug)]
pub enum ClientCommand {
    /// Create, list, describe and delete topics, and add partitions.
    Topics(topics::TopicsArgs),
    /// Produce the lines of stdin as records.
    ///
    /// Each line (without its newline) is one record value; with --key-separator the text
    /// before the first separator is the key. Keyed records go to Kafka's murmur2 partition,
    /// unkeyed ones to one partition per batch, round-robin. A summary goes to stderr.
    #[command(verbatim_doc_comment)]
    Produce(produce::ProduceArgs),
    /// Fetch records and print them, one per line.
    ///
    /// Output: one line per record. Optional fields come first, in this order, each followed
    /// by a tab (kafka-console-consumer's layout):
    ///
    ///   [CreateTime:<ms>|LogAppendTime:<ms>] [Partition:<p>] [Offset:<o>]
    ///   [<hkey>:<hvalue>,...|NO_HEADERS] [<key>] <value>
    ///
    /// A missing key, value or header value prints as `null`; bytes are written as they are.
    /// Runs until interrupted unless --max-messages or --timeout-ms ends it; a summary goes to
    /// stderr.
    #[command(verbatim_doc_comment)]
    Consume(consume::ConsumeArgs),
    /// Print the batches of a segment `.log` file, or the entries of a `.index`/`.timeindex`
    /// file, without a broker (like kafka-dump-log.sh).
    DumpLog(dump_log::DumpLogArgs),
    /// List, describe and delete consumer groups, and reset their committed offsets (like
    /// kafka-consumer-groups.sh).
    Groups(groups::GroupsArgs),
    /// Describe and change topic and broker configs at run time (like kafka-configs.sh):
    /// `--describe` or `--alter --add-config k=v,... --delete-config k,...`, with
    /// `--entity-type topics|brokers` and `--entity-name NAME` (or `--entity-default`).
    Configs(configs::ConfigsArgs),
    /// Delete the records of partitions below an offset, moving their log start (like
    /// kafka-delete-records.sh; `--offset-json-file` takes its JSON).
    DeleteRecords(delete_records::DeleteRecordsArgs),
    /// The cluster: brokers, fenced or not, and the metadata quorum with each voter's lag
    /// (like kafka-metadata-quorum.sh describe --status --replication).
    Cluster(status::ClusterArgs),
    /// List and describe transactions, describe a partition's producers, find and abort
    /// hanging transactions (like kafka-transactions.sh).
    Transactions(transactions::TransactionsArgs),
    /// Add, delete and describe users' SCRAM credentials (like kafka-configs.sh
    /// --entity-type users): `gregor users add alice --mechanism SCRAM-SHA-512 --password ...`.
    Users(users::UsersArgs),
    /// Add, remove and list ACLs (like kafka-acls.sh): `gregor acls --add --allow-principal
    /// User:alice --operation Write --topic orders`, `--list`, `--remove ...`.
    Acls(Box<acls::AclsArgs>),
}

pub fn run(cmd: ClientCommand) -> anyhow::Result<()> {
    match cmd {
        ClientCommand::Topics(args) => topics::run(args),
        ClientCommand::Transactions(args) => transactions::run(args),
        ClientCommand::Produce(args) => produce::run(args),
        ClientCommand::Consume(args) => consume::run(args),
        ClientCommand::DumpLog(args) => dump_log::run(args),
        ClientCommand::Groups(args) => groups::run(args),
        ClientCommand::Cluster(args) => status::run(args),
        ClientCommand::Configs(args) => configs::run(args),
        ClientCommand::DeleteRecords(args) => delete_records::run(args),
        ClientCommand::Users(args) => users::run(args),
        ClientCommand::Acls(args) => acls::run(*args),
    }
}

/// Splits `k=v` at the first `=` (values may contain `=`).
fn parse_key_value(s: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| anyhow!("expected key=value, got {s:?}"))?;
    if k.is_empty() {
        return Err(anyhow!("empty key in {s:?}"));
    }
    Ok((k.to_string(), v.to_string()))
}

fn parse_key_values(items: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|s| parse_key_value(s).with_context(|| format!("bad argument {s:?}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Parser, Subcommand};

    /// Stands in for main.rs's command enum, which flattens ours.
    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        cmd: Top,
    }

    #[derive(Subcommand, Debug)]
    enum Top {
        Serve,
        #[command(flatten)]
        Client(ClientCommand),
    }

    fn parse(args: &[&str]) -> Result<Top, clap::Error> {
        Cli::try_parse_from(std::iter::once("gregor").chain(args.iter().copied())).map(|c| c.cmd)
    }

    #[test]
    fn command_tree_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_every_subcommand() {
        let ok: &[&[&str]] = &[
            &["topics", "create", "--topic", "t", "--partitions", "3"],
            &[
                "topics", "create", "--topic", "t", "--config", "a=b", "--config", "c=d",
            ],
            &["topics", "list", "--bootstrap-server", "h:1"],
            &["topics", "--bootstrap-server", "h:1", "describe"],
            &["topics", "describe", "--topic", "t"],
            &["topics", "delete", "--topic", "t"],
            &[
                "topics",
                "alter-partitions",
                "--topic",
                "t",
                "--partitions",
                "4",
            ],
            &[
                "produce",
                "--topic",
                "t",
                "--compression",
                "zstd",
                "--acks",
                "all",
            ],
            &[
                "produce",
                "--topic",
                "t",
                "--key-separator",
                ":",
                "--header",
                "a=b",
            ],
            &[
                "consume",
                "--topic",
                "t",
                "--from-beginning",
                "--max-messages",
                "5",
            ],
            &[
                "consume",
                "--topic",
                "t",
                "--offset",
                "7",
                "--partition",
                "0",
            ],
            &["consume", "--topic", "t", "--timestamp", "1700000000000"],
            &[
                "consume",
                "--topic",
                "t",
                "--isolation-level",
                "read_committed",
            ],
            &["dump-log", "x.log", "--print-data-log"],
            &["users", "add", "alice", "--password", "pw"],
            &[
                "users",
                "add",
                "alice",
                "--mechanism",
                "SCRAM-SHA-256",
                "--password",
                "pw",
                "--iterations",
                "4096",
            ],
            &["users", "delete", "alice", "--mechanism", "SCRAM-SHA-256"],
            &["users", "describe"],
            &["users", "describe", "alice", "bob"],
            &[
                "acls",
                "--add",
                "--allow-principal",
                "User:alice",
                "--operation",
                "Write",
                "--operation",
                "Describe",
                "--topic",
                "orders",
                "--resource-pattern-type",
                "prefixed",
            ],
            &[
                "acls",
                "--add",
                "--producer",
                "--idempotent",
                "--allow-principal",
                "User:a",
                "--topic",
                "t",
            ],
            &["acls", "--list"],
            &["acls", "--remove", "--topic", "orders", "--force"],
            &[
                "configs",
                "--describe",
                "--entity-type",
                "topics",
                "--entity-name",
                "t",
            ],
            &[
                "configs",
                "--alter",
                "--entity-type",
                "brokers",
                "--entity-default",
                "--add-config",
                "log.retention.ms=5",
            ],
        ];
        for args in ok {
            let parsed = parse(args);
            assert!(matches!(parsed, Ok(Top::Client(_))), "{args:?}: {parsed:?}");
        }
        let bad: &[&[&str]] = &[
            &["users", "add", "alice"],
            &["users", "delete"],
            &[
                "consume",
                "--topic",
                "t",
                "--from-beginning",
                "--offset",
                "1",
            ],
            &["produce", "--topic", "t", "--acks", "2"],
            &["produce", "--topic", "t", "--compression", "brotli"],
            &["topics", "create"],
            &["configs", "--entity-type", "topics", "--entity-name", "t"],
            &["configs", "--describe", "--entity-type", "users"],
        ];
        for args in bad {
            assert!(parse(args).is_err(), "{args:?} should not parse");
        }
    }

    #[test]
    fn key_values_split_at_first_equals() {
        assert_eq!(
            parse_key_value("a=b=c").unwrap(),
            ("a".to_string(), "b=c".to_string())
        );
        assert_eq!(parse_key_value("a=").unwrap(), ("a".into(), String::new()));
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=v").is_err());
    }
}
