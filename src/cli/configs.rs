//! `gregor configs ...`: describe and change topic, broker and group configs over DescribeConfigs and
//! IncrementalAlterConfigs, like kafka-configs.sh (same flags, same output lines).

use std::io::Write;

use anyhow::{anyhow, bail};

use super::cluster::Cluster;
use super::BrokerArgs;
use crate::client::ops::{
    config_source_name, AlterEntry, ConfigEntry, RESOURCE_BROKER, RESOURCE_GROUP, RESOURCE_TOPIC,
};

#[derive(clap::Args, Debug)]
pub struct ConfigsArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    /// List the configs of the entity.
    #[arg(long, conflicts_with = "alter", required_unless_present = "alter")]
    describe: bool,
    /// Change configs of the entity (--add-config, --delete-config).
    #[arg(long)]
    alter: bool,
    /// `topics`, `brokers` or `groups`.
    #[arg(long, value_parser = ["topics", "brokers", "groups"])]
    entity_type: String,
    /// The topic name, broker id or group id.
    #[arg(long, conflicts_with = "entity_default")]
    entity_name: Option<String>,
    /// The cluster-wide default of every broker (brokers only).
    #[arg(long)]
    entity_default: bool,
    /// With --describe: every config, defaults included (otherwise only dynamic ones).
    #[arg(long)]
    all: bool,
    /// Configs to set: `k=v,k2=v2`; a list value goes in brackets: `cleanup.policy=[compact,delete]`.
    #[arg(long, value_name = "K=V,...")]
    add_config: Option<String>,
    /// Config names whose overrides are removed: `k,k2`.
    #[arg(long, value_name = "K,...")]
    delete_config: Option<String>,
}

/// Splits `k=v,k2=[a,b]` at the commas outside brackets; brackets are dropped from values.
pub(crate) fn parse_add_config(s: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut items = Vec::new();
    let mut depth = 0u32;
    let mut cur = String::new();
    for ch in s.chars() {
        match ch {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    items.push(cur);
    items
        .into_iter()
        .filter(|i| !i.trim().is_empty())
        .map(|i| {
            let (k, v) = super::parse_key_value(i.trim())?;
            let v = v.trim();
            let v = v
                .strip_prefix('[')
                .and_then(|v| v.strip_suffix(']'))
                .unwrap_or(v);
            Ok((k.trim().to_string(), v.to_string()))
        })
        .collect()
}

fn show(e: &ConfigEntry) -> String {
    let value = if e.sensitive {
        "null".to_string()
    } else {
        e.value.clone().unwrap_or_else(|| "null".to_string())
    };
    let synonyms: Vec<String> = e
        .synonyms
        .iter()
        .map(|(n, v, s)| {
            format!(
                "{}:{n}={}",
                config_source_name(*s),
                v.as_deref().unwrap_or("null")
            )
        })
        .collect();
    format!(
        "  {}={value} sensitive={} synonyms={{{}}}",
        e.name,
        e.sensitive,
        synonyms.join(", ")
    )
}

pub fn run(args: ConfigsArgs) -> anyhow::Result<()> {
    let (resource_type, name, label) = match args.entity_type.as_str() {
        "topics" => {
            if args.entity_default {
                bail!("--entity-default applies to brokers only");
            }
            let name = args
                .entity_name
                .clone()
                .ok_or_else(|| anyhow!("--entity-name is required for topics"))?;
            let label = format!("topic {name}");
            (RESOURCE_TOPIC, name, label)
        }
        "groups" => {
            if args.entity_default {
                bail!("--entity-default applies to brokers only");
            }
            let name = args
                .entity_name
                .clone()
                .ok_or_else(|| anyhow!("--entity-name is required for groups"))?;
            let label = format!("group {name}");
            (RESOURCE_GROUP, name, label)
        }
        _ => match (&args.entity_name, args.entity_default) {
            (Some(n), false) => {
                n.parse::<i32>()
                    .map_err(|_| anyhow!("the name of a broker entity is its id, not {n:?}"))?;
                (RESOURCE_BROKER, n.clone(), format!("broker {n}"))
            }
            (None, true) => (
                RESOURCE_BROKER,
                String::new(),
                "brokers in the cluster".to_string(),
            ),
            _ => bail!("brokers need --entity-name ID or --entity-default"),
        },
    };
    let mut cluster = Cluster::connect(&args.broker)?;
    let client = cluster.bootstrap()?;
    let mut out = std::io::stdout().lock();
    if args.describe {
        let entries = client.describe_configs(resource_type, &name, true)?;
        let dynamic = |s: i8| matches!(s, 1..=3 | 8);
        let heading = match (args.all, name.is_empty()) {
            (true, _) => format!("All configs for {label} are:"),
            (false, true) => "Default configs for brokers in the cluster are:".to_string(),
            (false, false) => format!("Dynamic configs for {label} are:"),
        };
        writeln!(out, "{heading}")?;
        for e in entries.iter().filter(|e| args.all || dynamic(e.source)) {
            writeln!(out, "{}", show(e))?;
        }
        return Ok(());
    }
    let mut changes: Vec<AlterEntry> = Vec::new();
    if let Some(add) = &args.add_config {
        for (k, v) in parse_add_config(add)? {
            changes.push(AlterEntry {
                name: k,
                value: Some(v),
            });
        }
    }
    if let Some(del) = &args.delete_config {
        for k in del.split(',').map(str::trim).filter(|k| !k.is_empty()) {
            changes.push(AlterEntry {
                name: k.to_string(),
                value: None,
            });
        }
    }
    if changes.is_empty() {
        bail!("--alter needs --add-config and/or --delete-config");
    }
    client.alter_configs(resource_type, &name, &changes)?;
    if name.is_empty() {
        writeln!(
            out,
            "Completed updating default config for brokers in the cluster."
        )?;
    } else {
        writeln!(out, "Completed updating config for {label}.")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_config_keeps_bracketed_lists_whole() {
        let got =
            parse_add_config("retention.ms=1000,cleanup.policy=[compact,delete],a=b=c").unwrap();
        let want = [
            ("retention.ms", "1000"),
            ("cleanup.policy", "compact,delete"),
            ("a", "b=c"),
        ];
        assert_eq!(got.len(), want.len());
        for ((k, v), (wk, wv)) in got.iter().zip(want) {
            assert_eq!((k.as_str(), v.as_str()), (wk, wv));
        }
        assert!(parse_add_config("novalue").is_err());
    }
}
