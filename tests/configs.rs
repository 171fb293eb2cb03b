//! Run-time config changes: AlterConfigs (rdkafka's admin client) and IncrementalAlterConfigs
//! (raw requests, and the `gregor configs` tool) change topic configs and dynamic broker
//! defaults; the changes act at once on the logs (retention, segment rolls, record size limit,
//! cleanup policy), survive a restart, are refused with Kafka's errors, and DescribeConfigs
//! reports where each value comes from.

mod common;

use std::process::Command;
use std::time::Duration;

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResourceResult;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{DescribeConfigsRequest, IncrementalAlterConfigsRequest};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigResource, ConfigSource, ResourceSpecifier,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::Producer;

use common::clients::{create_topic, produce, producer, send_all, watermarks, TestRecord};
use common::{gregor_bin, segment_files, wait_until, Broker};

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_CONFIG: i16 = 40;
const INVALID_REQUEST: i16 = 42;
const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

fn admin(broker: &Broker) -> AdminClient<DefaultClientContext> {
    broker.admin_config().create().expect("admin client")
}

fn opts() -> AdminOptions {
    AdminOptions::new().request_timeout(Some(Duration::from_secs(30)))
}

/// The legacy AlterConfigs through librdkafka: `pairs` become the topic's whole override set.
/// rdkafka-rust reports every resource as altered whatever the broker said, so callers check
/// the outcome with DescribeConfigs or by its effect.
fn alter_topic(broker: &Broker, topic: &str, pairs: &[(&str, &str)], validate_only: bool) {
    let mut a = AlterConfig::new(ResourceSpecifier::Topic(topic));
    for (k, v) in pairs {
        a = a.set(k, v);
    }
    let res = futures::executor::block_on(
        admin(broker).alter_configs([&a], &opts().validate_only(validate_only)),
    )
    .expect("AlterConfigs");
    assert!(
        res.iter().all(|r| r.is_ok()),
        "AlterConfigs {topic}: {res:?}"
    );
}

fn describe(broker: &Broker, spec: ResourceSpecifier<'_>) -> ConfigResource {
    let mut res = futures::executor::block_on(admin(broker).describe_configs([&spec], &opts()))
        .expect("DescribeConfigs");
    res.remove(0).expect("DescribeConfigs result")
}

fn topic_value(broker: &Broker, topic: &str, name: &str) -> (String, ConfigSource) {
    let r = describe(broker, ResourceSpecifier::Topic(topic));
    let e = r
        .entries
        .into_iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("{name} not described"));
    (e.value.unwrap_or_default(), e.source)
}

/// One IncrementalAlterConfigs entry: (name, operation, value).
type Op<'a> = (&'a str, i8, Option<&'a str>);

/// A raw IncrementalAlterConfigs of one resource: (error code, message).
fn incremental(
    broker: &Broker,
    kind: i8,
    name: &str,
    ops: &[Op<'_>],
    validate_only: bool,
) -> (i16, Option<String>) {
    let configs = ops
        .iter()
        .map(|(n, op, v)| {
            AlterableConfig::default()
                .with_name(StrBytes::from_string(n.to_string()))
                .with_config_operation(*op)
                .with_value(v.map(|v| StrBytes::from_string(v.to_string())))
        })
        .collect();
    let req = IncrementalAlterConfigsRequest::default()
        .with_validate_only(validate_only)
        .with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(kind)
            .with_resource_name(StrBytes::from_string(name.to_string()))
            .with_configs(configs)]);
    let resp = broker.raw().request(&req, 1);
    let r = &resp.responses[0];
    assert_eq!(r.resource_name.as_str(), name);
    (
        r.error_code,
        r.error_message.as_ref().map(|m| m.to_string()),
    )
}

/// A raw DescribeConfigs v4 of one config of a resource, with synonyms and documentation.
fn raw_describe(broker: &Broker, kind: i8, name: &str, key: &str) -> DescribeConfigsResourceResult {
    let req = DescribeConfigsRequest::default()
        .with_include_synonyms(true)
        .with_include_documentation(true)
        .with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(kind)
            .with_resource_name(StrBytes::from_string(name.to_string()))
            .with_configuration_keys(Some(vec![StrBytes::from_string(
                key.to_string(),
            )]))]);
    let resp = broker.raw().request(&req, 4);
    let r = &resp.results[0];
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    assert_eq!(r.configs.len(), 1, "{:?}", r.configs);
    r.configs[0].clone()
}

fn synonyms(e: &DescribeConfigsResourceResult) -> Vec<(String, String, i8)> {
    e.synonyms
        .iter()
        .map(|s| {
            (
                s.name.to_string(),
                s.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                s.source,
            )
        })
        .collect()
}

fn records(tag: &str, n: usize, size: usize) -> Vec<TestRecord> {
    (0..n)
        .map(|i| TestRecord {
            key: None,
            value: Some(format!("{tag}-{i:06}-{}", "r".repeat(size)).into_bytes()),
            timestamp: None,
            headers: Vec::new(),
            partition: Some(0),
        })
        .collect()
}

/// Produces small batches (under 1000 bytes) so that segments of a few KiB hold several of
/// them, and a max.message.bytes of 1000 lets them through.
fn produce_small(broker: &Broker, topic: &str, recs: &[TestRecord]) {
    let mut cfg = broker.producer_config();
    cfg.set("batch.num.messages", "5");
    cfg.set("linger.ms", "0");
    produce(&cfg, topic, recs);
}

/// The delivery result of one record: Ok or the error text.
fn try_produce_one(broker: &Broker, topic: &str, value_bytes: usize) -> Result<(), String> {
    let p = producer(&broker.producer_config(), 1);
    send_all(&p, topic, &records("big", 1, value_bytes), 0);
    p.flush(Duration::from_secs(30)).expect("flush");
    let got = p.context().results.lock().unwrap()[0].clone();
    match got {
        Some(Ok(_)) => Ok(()),
        Some(Err(e)) => Err(e),
        None => Err("no delivery report".to_string()),
    }
}

fn start() -> Broker {
    Broker::start(&[("log.retention.check.interval.ms", "200")])
}

#[test]
fn altered_topic_configs_act_at_once_and_after_a_restart() {
    let mut broker = start();
    let cfg = broker.admin_config();
    create_topic(&cfg, "live", 1, &[]);
    let dir = broker.partition_dir("live", 0);

    // segment.bytes: new segments roll at the new size.
    alter_topic(&broker, "live", &[("segment.bytes", "16384")], false);
    assert_eq!(
        topic_value(&broker, "live", "segment.bytes"),
        ("16384".to_string(), ConfigSource::DynamicTopic)
    );
    produce_small(&broker, "live", &records("a", 600, 100));
    let segs = segment_files(&dir);
    assert!(
        segs.len() >= 3,
        "70 KB of records in 16 KiB segments: {segs:?}"
    );
    for s in &segs[..segs.len() - 1] {
        let len = std::fs::metadata(s).unwrap().len();
        assert!(len <= 16384 + 4096, "{} is {len} bytes", s.display());
    }
    let (low, high) = watermarks(&broker.consumer_config(), "live", 0);
    assert_eq!((low, high), (0, 600));

    // retention.ms: lowered, the closed segments go within moments. The legacy AlterConfigs
    // replaces every override, so segment.bytes is given again.
    alter_topic(
        &broker,
        "live",
        &[("segment.bytes", "16384"), ("retention.ms", "1000")],
        false,
    );
    assert!(
        wait_until(Duration::from_secs(20), || {
            watermarks(&broker.consumer_config(), "live", 0).0 > 0
        }),
        "retention.ms=1000 deleted nothing; segments: {:?}",
        segment_files(&dir)
    );

    // max.message.bytes: a record that fitted before is refused once it is lowered.
    assert_eq!(try_produce_one(&broker, "live", 3000), Ok(()));
    alter_topic(
        &broker,
        "live",
        &[
            ("segment.bytes", "16384"),
            ("retention.ms", "1000"),
            ("max.message.bytes", "1000"),
        ],
        false,
    );
    let e = try_produce_one(&broker, "live", 3000).unwrap_err();
    assert!(e.contains("MessageSizeTooLarge"), "{e}");

    // cleanup.policy=compact: retention no longer deletes.
    alter_topic(
        &broker,
        "live",
        &[
            ("segment.bytes", "16384"),
            ("retention.ms", "1000"),
            ("max.message.bytes", "1000"),
            ("cleanup.policy", "compact"),
        ],
        false,
    );
    assert_eq!(
        topic_value(&broker, "live", "cleanup.policy"),
        ("compact".to_string(), ConfigSource::DynamicTopic)
    );
    // A compacted topic takes keyed records only.
    let keyed: Vec<TestRecord> = records("b", 600, 100)
        .into_iter()
        .enumerate()
        .map(|(i, mut r)| {
            r.key = Some(format!("key-{i}").into_bytes());
            r
        })
        .collect();
    produce_small(&broker, "live", &keyed);
    let low_before = watermarks(&broker.consumer_config(), "live", 0).0;
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        watermarks(&broker.consumer_config(), "live", 0).0,
        low_before,
        "a compacted topic lost segments to retention"
    );

    // After a restart every value is still in force.
    broker.restart();
    for (name, value) in [
        ("segment.bytes", "16384"),
        ("retention.ms", "1000"),
        ("max.message.bytes", "1000"),
        ("cleanup.policy", "compact"),
    ] {
        assert_eq!(
            topic_value(&broker, "live", name),
            (value.to_string(), ConfigSource::DynamicTopic),
            "{name} after restart"
        );
    }
    let e = try_produce_one(&broker, "live", 3000).unwrap_err();
    assert!(e.contains("MessageSizeTooLarge"), "after restart: {e}");

    // Back to delete: retention acts again, after the restart too.
    alter_topic(
        &broker,
        "live",
        &[("segment.bytes", "16384"), ("retention.ms", "1000")],
        false,
    );
    assert!(
        wait_until(Duration::from_secs(20), || {
            watermarks(&broker.consumer_config(), "live", 0).0 > low_before
        }),
        "retention did not resume with cleanup.policy back at delete"
    );
    // The overrides dropped by the last replace are back at their defaults.
    assert_eq!(
        topic_value(&broker, "live", "max.message.bytes"),
        ("1048588".to_string(), ConfigSource::Default)
    );
    assert_eq!(try_produce_one(&broker, "live", 3000), Ok(()));
}

#[test]
fn incremental_operations_and_refusals() {
    let broker = start();
    create_topic(&broker.admin_config(), "inc", 1, &[]);

    // APPEND starts from the value in effect, SUBTRACT removes, DELETE resets to the default.
    let r = incremental(
        &broker,
        TOPIC,
        "inc",
        &[
            ("cleanup.policy", APPEND, Some("compact")),
            ("retention.ms", SET, Some("1234")),
        ],
        false,
    );
    assert_eq!(r, (0, None));
    assert_eq!(
        topic_value(&broker, "inc", "cleanup.policy").0,
        "delete,compact"
    );
    assert_eq!(topic_value(&broker, "inc", "retention.ms").0, "1234");
    let r = incremental(
        &broker,
        TOPIC,
        "inc",
        &[("cleanup.policy", SUBTRACT, Some("delete"))],
        false,
    );
    assert_eq!(r, (0, None));
    assert_eq!(topic_value(&broker, "inc", "cleanup.policy").0, "compact");
    let r = incremental(
        &broker,
        TOPIC,
        "inc",
        &[("retention.ms", DELETE, None)],
        false,
    );
    assert_eq!(r, (0, None));
    assert_eq!(
        topic_value(&broker, "inc", "retention.ms"),
        ("604800000".to_string(), ConfigSource::Default)
    );

    // validate_only checks and changes nothing.
    let r = incremental(
        &broker,
        TOPIC,
        "inc",
        &[("retention.ms", SET, Some("99"))],
        true,
    );
    assert_eq!(r, (0, None));
    assert_eq!(topic_value(&broker, "inc", "retention.ms").0, "604800000");
    alter_topic(&broker, "inc", &[("retention.ms", "98")], true);
    assert_eq!(topic_value(&broker, "inc", "retention.ms").0, "604800000");
    assert_eq!(topic_value(&broker, "inc", "cleanup.policy").0, "compact");

    // Refusals, with Kafka's codes and messages; none changes anything.
    let cases: &[(i8, &str, Op<'_>, i16, &str)] = &[
        (
            TOPIC,
            "inc",
            ("no.such.config", SET, Some("1")),
            INVALID_CONFIG,
            "Unknown topic config name: no.such.config",
        ),
        (
            TOPIC,
            "inc",
            ("retention.ms", SET, Some("abc")),
            INVALID_CONFIG,
            "Invalid value abc for configuration retention.ms: Not a number of type LONG",
        ),
        (
            TOPIC,
            "inc",
            ("cleanup.policy", SET, Some("keep")),
            INVALID_CONFIG,
            "Invalid value keep for configuration cleanup.policy: String must be one of: \
             compact, delete",
        ),
        (
            TOPIC,
            "inc",
            ("retention.ms", APPEND, Some("5")),
            INVALID_CONFIG,
            "Can't APPEND to key retention.ms because its type is not LIST.",
        ),
        (
            TOPIC,
            "no-such-topic",
            ("retention.ms", SET, Some("5")),
            UNKNOWN_TOPIC_OR_PARTITION,
            "",
        ),
        (
            BROKER,
            "",
            ("log.dirs", SET, Some("/tmp/x")),
            INVALID_REQUEST,
            "Cannot update these configs dynamically: Set(log.dirs)",
        ),
        (
            BROKER,
            "",
            ("log.retention.ms", SET, Some("soon")),
            INVALID_REQUEST,
            "Invalid value soon for configuration log.retention.ms: Not a number of type LONG",
        ),
        (
            BROKER,
            "7",
            ("log.retention.ms", SET, Some("5")),
            INVALID_REQUEST,
            "Unexpected broker id, expected 1 or empty string, but received 7",
        ),
    ];
    for (kind, name, op, code, message) in cases {
        let (got, msg) = incremental(&broker, *kind, name, &[*op], false);
        assert_eq!(got, *code, "{name} {op:?}: {msg:?}");
        let msg = msg.unwrap_or_default();
        assert!(msg.contains(message), "{name} {op:?}: {msg}");
    }
    assert_eq!(topic_value(&broker, "inc", "retention.ms").0, "604800000");
    assert_eq!(topic_value(&broker, "inc", "cleanup.policy").0, "compact");

    // A real client's view (confluent-kafka-python; rdkafka-rust drops AlterConfigs'
    // per-resource errors): the legacy AlterConfigs refuses a bad value with Kafka's message,
    // incremental_alter_configs applies its operations.
    let script = r#"
import sys
from confluent_kafka.admin import (AdminClient, ConfigResource, ConfigEntry,
                                   AlterConfigOpType)
a = AdminClient({"bootstrap.servers": sys.argv[1]})
bad = ConfigResource("topic", "inc", set_config={"segment.bytes": "3"})
try:
    a.alter_configs([bad])[bad].result()
    print("accepted")
except Exception as e:
    print("refused", e.args[0].code(), e.args[0].str())
inc = ConfigResource("topic", "inc", incremental_configs=[
    ConfigEntry("retention.ms", "4321", incremental_operation=AlterConfigOpType.SET),
    ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.APPEND),
])
a.incremental_alter_configs([inc])[inc].result()
print("incremental ok")
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(broker.bootstrap())
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "refused 40 Invalid value 3 for configuration segment.bytes: Value must be at least 14"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("incremental ok"), "{stdout}");
    assert_eq!(
        topic_value(&broker, "inc", "retention.ms"),
        ("4321".to_string(), ConfigSource::DynamicTopic)
    );
    assert_eq!(
        topic_value(&broker, "inc", "cleanup.policy").0,
        "compact,delete"
    );
    assert_eq!(topic_value(&broker, "inc", "segment.bytes").0, "1073741824");
}

#[test]
fn describe_reports_each_source_and_broker_defaults_change_at_run_time() {
    let mut broker = Broker::start(&[
        ("log.retention.check.interval.ms", "200"),
        ("log.retention.ms", "3600000"),
    ]);
    create_topic(
        &broker.admin_config(),
        "src",
        1,
        &[("max.message.bytes", "5000")],
    );

    // Default, dynamic topic override, static broker setting.
    assert_eq!(
        topic_value(&broker, "src", "segment.ms"),
        ("604800000".to_string(), ConfigSource::Default)
    );
    assert_eq!(
        topic_value(&broker, "src", "max.message.bytes"),
        ("5000".to_string(), ConfigSource::DynamicTopic)
    );
    assert_eq!(
        topic_value(&broker, "src", "retention.ms"),
        ("3600000".to_string(), ConfigSource::StaticBroker)
    );
    let e = raw_describe(&broker, TOPIC, "src", "retention.ms");
    assert_eq!(
        synonyms(&e),
        vec![
            ("log.retention.ms".to_string(), "3600000".to_string(), 4),
            ("log.retention.ms".to_string(), "604800000".to_string(), 5),
        ]
    );
    assert!(
        e.documentation.as_ref().is_some_and(|d| !d.is_empty()),
        "no documentation: {e:?}"
    );
    assert_eq!(e.config_type, 5, "retention.ms is a LONG");

    // The cluster-wide dynamic default, then this broker's own value, win over the static one.
    let r = incremental(
        &broker,
        BROKER,
        "",
        &[("log.segment.bytes", SET, Some("20000"))],
        false,
    );
    assert_eq!(r, (0, None));
    assert_eq!(
        topic_value(&broker, "src", "segment.bytes"),
        ("20000".to_string(), ConfigSource::DynamicDefaultBroker)
    );
    let r = incremental(
        &broker,
        BROKER,
        "1",
        &[("log.segment.bytes", SET, Some("30000"))],
        false,
    );
    assert_eq!(r, (0, None));
    assert_eq!(
        topic_value(&broker, "src", "segment.bytes"),
        ("30000".to_string(), ConfigSource::DynamicBroker)
    );
    let e = raw_describe(&broker, TOPIC, "src", "segment.bytes");
    assert_eq!(
        synonyms(&e),
        vec![
            ("log.segment.bytes".to_string(), "30000".to_string(), 2),
            ("log.segment.bytes".to_string(), "20000".to_string(), 3),
            ("log.segment.bytes".to_string(), "1073741824".to_string(), 5),
        ]
    );
    let b = raw_describe(&broker, BROKER, "1", "log.segment.bytes");
    assert_eq!(
        (
            b.value.as_ref().map(|v| v.to_string()),
            b.config_source,
            b.read_only
        ),
        (Some("30000".to_string()), 2, false)
    );
    let b = raw_describe(&broker, BROKER, "1", "log.dirs");
    assert_eq!((b.config_source, b.read_only), (4, true));
    let d = describe(&broker, ResourceSpecifier::Broker(1));
    assert_eq!(
        d.get("log.retention.ms").map(|e| &e.source),
        Some(&ConfigSource::StaticBroker)
    );

    // The new default acts on the log at once: segments roll near 30000 bytes.
    produce_small(&broker, "src", &records("s", 700, 100));
    let segs = segment_files(&broker.partition_dir("src", 0));
    assert!(segs.len() >= 2, "80 KB in 30 KB segments: {segs:?}");

    // A dynamic retention default reaches topics without their own value.
    let r = incremental(
        &broker,
        BROKER,
        "",
        &[("log.retention.ms", SET, Some("1000"))],
        false,
    );
    assert_eq!(r, (0, None));
    assert!(
        wait_until(Duration::from_secs(20), || {
            watermarks(&broker.consumer_config(), "src", 0).0 > 0
        }),
        "a dynamic log.retention.ms=1000 deleted nothing"
    );

    // Dynamic broker configs are in the metadata log: a restart keeps them.
    broker.restart();
    assert_eq!(
        topic_value(&broker, "src", "segment.bytes"),
        ("30000".to_string(), ConfigSource::DynamicBroker)
    );
    assert_eq!(
        topic_value(&broker, "src", "retention.ms"),
        ("1000".to_string(), ConfigSource::DynamicDefaultBroker)
    );
    // Deleting the per-broker value falls back to the cluster-wide default.
    let r = incremental(
        &broker,
        BROKER,
        "1",
        &[("log.segment.bytes", DELETE, None)],
        false,
    );
    assert_eq!(r, (0, None));
    assert_eq!(
        topic_value(&broker, "src", "segment.bytes"),
        ("20000".to_string(), ConfigSource::DynamicDefaultBroker)
    );
}

fn gregor_cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(gregor_bin())
        .args(args)
        .output()
        .expect("run gregor");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_configs_tool_alters_and_describes() {
    let broker = start();
    create_topic(&broker.admin_config(), "tool", 1, &[]);
    let bs = broker.bootstrap();
    let base = ["configs", "--bootstrap-server", bs.as_str()];
    let run = |extra: &[&str]| {
        let args: Vec<&str> = base.iter().chain(extra.iter()).copied().collect();
        gregor_cli(&args)
    };
    let (ok, out, err) = run(&[
        "--alter",
        "--entity-type",
        "topics",
        "--entity-name",
        "tool",
        "--add-config",
        "retention.ms=5000,cleanup.policy=[compact,delete]",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("Completed updating config for topic tool."),
        "{out}"
    );
    let (ok, out, err) = run(&[
        "--describe",
        "--entity-type",
        "topics",
        "--entity-name",
        "tool",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("Dynamic configs for topic tool are:"),
        "{out}"
    );
    assert!(
        out.contains("  retention.ms=5000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=5000, DEFAULT_CONFIG:log.retention.ms=604800000}"),
        "{out}"
    );
    assert!(out.contains("  cleanup.policy=compact,delete "), "{out}");
    assert!(
        !out.contains("segment.bytes"),
        "only dynamic configs: {out}"
    );

    let (ok, _, err) = run(&[
        "--alter",
        "--entity-type",
        "topics",
        "--entity-name",
        "tool",
        "--delete-config",
        "retention.ms",
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        topic_value(&broker, "tool", "retention.ms"),
        ("604800000".to_string(), ConfigSource::Default)
    );

    let (ok, out, err) = run(&[
        "--alter",
        "--entity-type",
        "brokers",
        "--entity-default",
        "--add-config",
        "log.retention.ms=7000",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("Completed updating default config for brokers in the cluster."),
        "{out}"
    );
    let (ok, out, err) = run(&["--describe", "--entity-type", "brokers", "--entity-default"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("  log.retention.ms=7000 sensitive=false synonyms={DYNAMIC_DEFAULT_BROKER_CONFIG:log.retention.ms=7000}"),
        "{out}"
    );

    // A refusal is an error exit naming Kafka's error.
    let (ok, _, err) = run(&[
        "--alter",
        "--entity-type",
        "brokers",
        "--entity-name",
        "1",
        "--add-config",
        "num.partitions=3",
    ]);
    assert!(!ok);
    assert!(err.contains("INVALID_REQUEST"), "{err}");
    assert!(
        err.contains("Cannot update these configs dynamically"),
        "{err}"
    );

    // Group configs (`--entity-type groups`).
    let (ok, out, err) = run(&[
        "--alter",
        "--entity-type",
        "groups",
        "--entity-name",
        "tool-group",
        "--add-config",
        "share.auto.offset.reset=earliest,share.record.lock.duration.ms=15000",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("Completed updating config for group tool-group."),
        "{out}"
    );
    let (ok, out, err) = run(&[
        "--describe",
        "--entity-type",
        "groups",
        "--entity-name",
        "tool-group",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("Dynamic configs for group tool-group are:"),
        "{out}"
    );
    assert!(
        out.contains("  share.auto.offset.reset=earliest sensitive=false synonyms={GROUP_CONFIG:share.auto.offset.reset=earliest, DEFAULT_CONFIG:share.auto.offset.reset=latest}"),
        "{out}"
    );
    assert!(
        out.contains("  share.record.lock.duration.ms=15000 sensitive=false synonyms={GROUP_CONFIG:share.record.lock.duration.ms=15000, DEFAULT_CONFIG:group.share.record.lock.duration.ms=30000}"),
        "{out}"
    );
    assert!(!out.contains("consumer.session"), "only overrides: {out}");
    let (ok, _, err) = run(&[
        "--alter",
        "--entity-type",
        "groups",
        "--entity-name",
        "tool-group",
        "--add-config",
        "share.auto.offset.reset=sometimes",
    ]);
    assert!(!ok);
    assert!(err.contains("INVALID_CONFIG"), "{err}");
}
