//! Listeners with security protocols, driven by real clients: librdkafka (the rdkafka crate,
//! built with OpenSSL) and Debian's kcat over SSL with server-only and mutual TLS, over
//! SASL_SSL and SASL_PLAINTEXT with PLAIN and SCRAM; wrong passwords, unknown users, untrusted
//! and expired certificates and plaintext clients on TLS ports each fail cleanly while the
//! broker keeps serving everyone else. Raw protocol tests cover the SASL exchange itself,
//! KIP-368 re-authentication and the SCRAM credential APIs. Certificates are made here (rcgen);
//! none is committed.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::clients::{assert_same, consume_all, create_topic, produce, TestRecord};
use common::cluster::Cluster;
use common::{free_port, gregor_bin, Broker, RawClient};
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rdkafka::consumer::Consumer;
use rdkafka::ClientConfig;

const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const ILLEGAL_SASL_STATE: i16 = 34;
const SASL_AUTHENTICATION_FAILED: i16 = 58;
const RESOURCE_NOT_FOUND: i16 = 91;
const DUPLICATE_RESOURCE: i16 = 92;
const UNACCEPTABLE_CREDENTIAL: i16 = 93;

// ----- certificates -----

/// A CA, a broker certificate it signed (for 127.0.0.1 and localhost), a client certificate
/// it signed, one signed by a CA nobody trusts, and one that has expired; as PEM files.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let (ca, ca_key) = make_ca("gregor test CA");
        let (other_ca, other_key) = make_ca("nobody's CA");
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        write("ca.pem", ca.pem());

        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, "broker");
        let cert = p.signed_by(&key, &ca, &ca_key).unwrap();
        // The key store: the private key and the chain, leaf first.
        write(
            "broker.pem",
            format!("{}{}{}", key.serialize_pem(), cert.pem(), ca.pem()),
        );

        let client = |name: &str,
                      cn: &str,
                      signer: &rcgen::Certificate,
                      signer_key: &KeyPair,
                      expired: bool| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name = rcgen::DistinguishedName::new();
            p.distinguished_name
                .push(DnType::OrganizationName, "gregor tests");
            p.distinguished_name.push(DnType::CommonName, cn);
            if expired {
                p.not_before = rcgen::date_time_ymd(2020, 1, 1);
                p.not_after = rcgen::date_time_ymd(2021, 1, 1);
            }
            let cert = p.signed_by(&key, signer, signer_key).unwrap();
            write(&format!("{name}.crt"), cert.pem());
            write(&format!("{name}.key"), key.serialize_pem());
        };
        client("alice", "alice", &ca, &ca_key, false);
        client("mallory", "mallory", &other_ca, &other_key, false);
        client("old", "old", &ca, &ca_key, true);
        client("carol", "carol", &ca, &ca_key, false);
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

fn make_ca(cn: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, cn);
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let cert = p.self_signed(&key).unwrap();
    (cert, key)
}

// ----- a broker with every kind of listener -----

const JAAS: &str = "org.apache.kafka.common.security.plain.PlainLoginModule required \
    username=\"admin\" password=\"admin-secret\" user_admin=\"admin-secret\" \
    user_alice=\"alice-secret\";";

struct Secure {
    broker: Broker,
    pki: Pki,
    ssl: u16,
    mtls: u16,
    sasl_ssl: u16,
    sasl_plaintext: u16,
}

fn start_secure(extra: &[(&str, &str)]) -> Secure {
    let pki = Pki::new();
    let (ssl, mtls, sasl_ssl, sasl_plaintext) =
        (free_port(), free_port(), free_port(), free_port());
    let listeners = format!(
        "SSL://127.0.0.1:{ssl},MTLS://127.0.0.1:{mtls},SASL_SSL://127.0.0.1:{sasl_ssl},\
         SASL_PLAINTEXT://127.0.0.1:{sasl_plaintext}"
    );
    let keystore = pki.path("broker.pem");
    let truststore = pki.path("ca.pem");
    let mut settings: Vec<(&str, &str)> = vec![
        (
            "listener.security.protocol.map",
            "PLAINTEXT:PLAINTEXT,SSL:SSL,MTLS:SSL,SASL_SSL:SASL_SSL,SASL_PLAINTEXT:SASL_PLAINTEXT",
        ),
        ("inter.broker.listener.name", "PLAINTEXT"),
        ("ssl.keystore.location", &keystore),
        ("ssl.truststore.location", &truststore),
        ("listener.name.mtls.ssl.client.auth", "required"),
        // alice's subject maps to a user name; carol's, as trusted, matches no rule.
        (
            "listener.name.mtls.ssl.principal.mapping.rules",
            "RULE:^CN=(alice),O=gregor tests$/$1/U",
        ),
        ("listener.name.sasl_ssl.plain.sasl.jaas.config", JAAS),
        ("listener.name.sasl_plaintext.plain.sasl.jaas.config", JAAS),
        ("connection.failed.authentication.delay.ms", "20"),
    ];
    settings.extend_from_slice(extra);
    let broker = Broker::start_with_listeners(&listeners, &settings);
    Secure {
        broker,
        pki,
        ssl,
        mtls,
        sasl_ssl,
        sasl_plaintext,
    }
}

/// librdkafka settings for one way in: `protocol`, port, and its extra settings.
fn client(s: &Secure, port: u16, protocol: &str, more: &[(&str, &str)]) -> ClientConfig {
    let mut c = s.broker.producer_config();
    c.set("bootstrap.servers", format!("127.0.0.1:{port}"))
        .set("security.protocol", protocol)
        .set("ssl.ca.location", s.pki.path("ca.pem"));
    for (k, v) in more {
        c.set(*k, *v);
    }
    c
}

fn consumer_like(producer_cfg: &ClientConfig) -> ClientConfig {
    let mut c = producer_cfg.clone();
    c.remove("partitioner");
    c.remove("message.timeout.ms");
    c.remove("linger.ms");
    c.set("group.id", "security-tests")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "100");
    c
}

/// Produces 20 records over `cfg` and reads them back over the same way in.
fn round_trip(cfg: &ClientConfig, topic: &str) {
    create_topic(cfg, topic, 1, &[]);
    let records: Vec<TestRecord> = (0..20)
        .map(|i| TestRecord::value(format!("{topic}-{i}")).in_partition(0))
        .collect();
    let delivered = produce(cfg, topic, &records);
    let got = consume_all(
        &consumer_like(cfg),
        topic,
        1,
        records.len(),
        Duration::from_secs(60),
    );
    assert_same(&records, &delivered, &got);
}

/// Whether a client with these settings can fetch metadata at all.
fn can_connect(cfg: &ClientConfig) -> bool {
    let mut cfg = cfg.clone();
    cfg.set("socket.timeout.ms", "5000");
    let c: rdkafka::consumer::BaseConsumer = cfg.create().expect("create client");
    c.fetch_metadata(None, Duration::from_secs(5)).is_ok()
}

fn add_scram_user(s: &Secure, user: &str, mechanism: &str, password: &str) {
    let out = Command::new(gregor_bin())
        .args([
            "users",
            "--bootstrap-server",
            &s.broker.bootstrap(),
            "add",
            user,
            "--mechanism",
            mechanism,
            "--password",
            password,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "gregor users add: {out:?}");
}

#[test]
fn tls_and_sasl_clients_produce_and_consume() {
    let s = start_secure(&[]);
    add_scram_user(&s, "bob", "SCRAM-SHA-512", "bob-secret");
    add_scram_user(&s, "carol", "SCRAM-SHA-256", "carol-secret");
    let cases: Vec<(&str, ClientConfig)> = vec![
        ("ssl", client(&s, s.ssl, "ssl", &[])),
        (
            "mtls",
            client(
                &s,
                s.mtls,
                "ssl",
                &[
                    ("ssl.certificate.location", &s.pki.path("alice.crt")),
                    ("ssl.key.location", &s.pki.path("alice.key")),
                ],
            ),
        ),
        (
            "sasl-ssl-plain",
            client(
                &s,
                s.sasl_ssl,
                "sasl_ssl",
                &[
                    ("sasl.mechanisms", "PLAIN"),
                    ("sasl.username", "alice"),
                    ("sasl.password", "alice-secret"),
                ],
            ),
        ),
        (
            "sasl-ssl-scram-512",
            client(
                &s,
                s.sasl_ssl,
                "sasl_ssl",
                &[
                    ("sasl.mechanisms", "SCRAM-SHA-512"),
                    ("sasl.username", "bob"),
                    ("sasl.password", "bob-secret"),
                ],
            ),
        ),
        (
            "sasl-plaintext-scram-256",
            client(
                &s,
                s.sasl_plaintext,
                "sasl_plaintext",
                &[
                    ("sasl.mechanisms", "SCRAM-SHA-256"),
                    ("sasl.username", "carol"),
                    ("sasl.password", "carol-secret"),
                ],
            ),
        ),
    ];
    for (name, cfg) in &cases {
        round_trip(cfg, &format!("secure-{name}"));
    }
    let log = s.broker.stderr();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn bad_credentials_and_certificates_fail_cleanly() {
    let s = start_secure(&[]);
    add_scram_user(&s, "bob", "SCRAM-SHA-512", "bob-secret");
    let plain = |user: &str, password: &str| {
        client(
            &s,
            s.sasl_ssl,
            "sasl_ssl",
            &[
                ("sasl.mechanisms", "PLAIN"),
                ("sasl.username", user),
                ("sasl.password", password),
            ],
        )
    };
    let scram = |user: &str, password: &str| {
        client(
            &s,
            s.sasl_ssl,
            "sasl_ssl",
            &[
                ("sasl.mechanisms", "SCRAM-SHA-512"),
                ("sasl.username", user),
                ("sasl.password", password),
            ],
        )
    };
    let cert = |name: &str| {
        client(
            &s,
            s.mtls,
            "ssl",
            &[
                (
                    "ssl.certificate.location",
                    &s.pki.path(&format!("{name}.crt")),
                ),
                ("ssl.key.location", &s.pki.path(&format!("{name}.key"))),
            ],
        )
    };
    let good = plain("alice", "alice-secret");
    assert!(can_connect(&good));
    let bad: Vec<(&str, ClientConfig)> = vec![
        ("PLAIN with a wrong password", plain("alice", "wrong")),
        (
            "PLAIN with an unknown user",
            plain("nobody", "alice-secret"),
        ),
        ("SCRAM with a wrong password", scram("bob", "wrong")),
        ("SCRAM with an unknown user", scram("nobody", "bob-secret")),
        (
            "mutual TLS without a certificate",
            client(&s, s.mtls, "ssl", &[]),
        ),
        ("a certificate from an untrusted CA", cert("mallory")),
        ("an expired certificate", cert("old")),
        (
            "a certificate no ssl.principal.mapping.rules rule applies to",
            cert("carol"),
        ),
        (
            "a plaintext client on the SSL port",
            client(&s, s.ssl, "plaintext", &[]),
        ),
        (
            "a plaintext client on the SASL_SSL port",
            client(
                &s,
                s.sasl_ssl,
                "sasl_plaintext",
                &[
                    ("sasl.mechanisms", "PLAIN"),
                    ("sasl.username", "alice"),
                    ("sasl.password", "alice-secret"),
                ],
            ),
        ),
        (
            "a TLS client on the PLAINTEXT port",
            client(&s, s.broker.port, "ssl", &[]),
        ),
    ];
    for (what, cfg) in &bad {
        assert!(!can_connect(cfg), "{what} must not get in");
        // Everyone else is still served.
        s.broker.raw().assert_served(what);
        assert!(can_connect(&good), "a good client after {what}");
    }
    // Raw bytes that are not TLS at all on a TLS port: at most a TLS alert comes back (never
    // a Kafka response), and the connection is closed.
    let mut raw = RawClient::connect(std::net::SocketAddr::from(([127, 0, 0, 1], s.ssl)));
    raw.send_bytes(&[0, 0, 0, 8, 0, 18, 0, 3, 0, 0, 0, 1])
        .unwrap();
    let mut back = Vec::new();
    std::io::Read::read_to_end(&mut raw.stream, &mut back)
        .expect("the broker closes a TLS connection that does not speak TLS");
    assert!(
        back.is_empty() || back[0] == 0x15,
        "a TLS alert at most: {back:?}"
    );
    let log = s.broker.stderr();
    assert!(log.contains("authentication failed"), "failures are logged");
    assert!(
        log.contains("TLS handshake failed"),
        "TLS failures are logged"
    );
    round_trip(&good, "after-the-bad-ones");
}

#[test]
fn kcat_over_ssl_sasl_ssl_and_mutual_tls() {
    if !common::kcat_or_skip() {
        return;
    }
    let s = start_secure(&[]);
    add_scram_user(&s, "bob", "SCRAM-SHA-512", "bob-secret");
    let ca = s.pki.path("ca.pem");
    let (crt, key) = (s.pki.path("alice.crt"), s.pki.path("alice.key"));
    let sasl_ssl = format!("127.0.0.1:{}", s.sasl_ssl);
    let mtls = format!("127.0.0.1:{}", s.mtls);
    let ssl = format!("127.0.0.1:{}", s.ssl);
    let ways: Vec<(&str, Vec<String>)> = vec![
        (
            "kcat-scram",
            [
                "-b",
                &sasl_ssl,
                "-X",
                "security.protocol=SASL_SSL",
                "-X",
                "sasl.mechanisms=SCRAM-SHA-512",
                "-X",
                "sasl.username=bob",
                "-X",
                "sasl.password=bob-secret",
                "-X",
                &format!("ssl.ca.location={ca}"),
            ]
            .map(String::from)
            .to_vec(),
        ),
        (
            "kcat-plain",
            [
                "-b",
                &sasl_ssl,
                "-X",
                "security.protocol=SASL_SSL",
                "-X",
                "sasl.mechanisms=PLAIN",
                "-X",
                "sasl.username=alice",
                "-X",
                "sasl.password=alice-secret",
                "-X",
                &format!("ssl.ca.location={ca}"),
            ]
            .map(String::from)
            .to_vec(),
        ),
        (
            "kcat-ssl",
            [
                "-b",
                &ssl,
                "-X",
                "security.protocol=SSL",
                "-X",
                &format!("ssl.ca.location={ca}"),
            ]
            .map(String::from)
            .to_vec(),
        ),
        (
            "kcat-mtls",
            [
                "-b",
                &mtls,
                "-X",
                "security.protocol=SSL",
                "-X",
                &format!("ssl.ca.location={ca}"),
                "-X",
                &format!("ssl.certificate.location={crt}"),
                "-X",
                &format!("ssl.key.location={key}"),
            ]
            .map(String::from)
            .to_vec(),
        ),
    ];
    let lines: Vec<String> = (0..100).map(|i| format!("line-{i}")).collect();
    for (topic, args) in &ways {
        let mut p = Command::new("kcat")
            .args(args)
            .args(["-P", "-t", topic])
            .env_remove("LD_LIBRARY_PATH")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kcat -P");
        let mut stdin = p.stdin.take().unwrap();
        stdin
            .write_all((lines.join("\n") + "\n").as_bytes())
            .unwrap();
        drop(stdin);
        let out = p.wait_with_output().unwrap();
        assert!(out.status.success(), "kcat -P over {topic}: {out:?}");
        let out = Command::new("timeout")
            .arg("60")
            .arg("kcat")
            .args(args)
            .args(["-C", "-t", topic, "-e", "-q"])
            .env_remove("LD_LIBRARY_PATH")
            .output()
            .expect("kcat -C");
        assert!(out.status.success(), "kcat -C over {topic}: {out:?}");
        let got: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        assert_eq!(got, lines, "what kcat consumed over {topic}");
    }
    // A wrong password: kcat gives up with an error, nothing is written.
    let mut wrong = ways[0].1.clone();
    for a in wrong.iter_mut() {
        if a == "sasl.password=bob-secret" {
            *a = "sasl.password=wrong".to_string();
        }
    }
    let out = Command::new("timeout")
        .args(["30", "kcat"])
        .args(&wrong)
        .args(["-L", "-m", "5"])
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "kcat -L with a wrong password: {out:?}"
    );
}

/// `gregor ARGS` with `--command-config` for one way in; (success, stdout, stderr).
fn tool(
    s: &Secure,
    port: u16,
    properties: &str,
    args: &[&str],
    stdin: &str,
) -> (bool, String, String) {
    let file = s
        .pki
        .path(&format!("client-{port}-{}.properties", properties.len()));
    std::fs::write(&file, properties).unwrap();
    let mut p = Command::new(gregor_bin())
        .args(args)
        .args(["--bootstrap-server", &format!("127.0.0.1:{port}")])
        .args(["--command-config", &file])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_tools_connect_over_tls_and_sasl() {
    let s = start_secure(&[]);
    add_scram_user(&s, "bob", "SCRAM-SHA-512", "bob-secret");
    let ca = s.pki.path("ca.pem");
    let (crt, key) = (s.pki.path("alice.crt"), s.pki.path("alice.key"));
    let ways = [
        (
            "tools-scram",
            s.sasl_ssl,
            format!(
                "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n\
                 sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule \
                 required username=\"bob\" password=\"bob-secret\";\n\
                 ssl.truststore.location={ca}\n"
            ),
        ),
        (
            "tools-plain",
            s.sasl_plaintext,
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanisms=PLAIN\nsasl.username=alice\n\
             sasl.password=alice-secret\n"
                .to_string(),
        ),
        (
            "tools-ssl",
            s.ssl,
            format!("security.protocol=SSL\nssl.truststore.location={ca}\n"),
        ),
        (
            "tools-mtls",
            s.mtls,
            format!(
                "security.protocol=SSL\nssl.ca.location={ca}\nssl.certificate.location={crt}\n\
                 ssl.key.location={key}\n"
            ),
        ),
    ];
    let lines: Vec<String> = (0..50).map(|i| format!("v-{i}")).collect();
    let input = lines.join("\n") + "\n";
    for (topic, port, props) in &ways {
        let (ok, _, err) = tool(
            &s,
            *port,
            props,
            &["topics", "create", "--topic", topic, "--partitions", "2"],
            "",
        );
        assert!(ok, "topics create over {topic}: {err}");
        let (ok, _, err) = tool(&s, *port, props, &["produce", "--topic", topic], &input);
        assert!(ok, "produce over {topic}: {err}");
        let (ok, out, err) = tool(
            &s,
            *port,
            props,
            &[
                "consume",
                "--topic",
                topic,
                "--from-beginning",
                "--max-messages",
                "50",
                "--timeout-ms",
                "20000",
            ],
            "",
        );
        assert!(ok, "consume over {topic}: {err}");
        let mut got: Vec<String> = out.lines().map(str::to_string).collect();
        got.sort();
        let mut want = lines.clone();
        want.sort();
        assert_eq!(got, want, "what gregor consume read over {topic}");
        let (ok, out, err) = tool(&s, *port, props, &["groups", "list"], "");
        assert!(ok, "groups list over {topic}: {err} {out}");
    }
    // A wrong password fails with Kafka's error, and says so.
    let wrong = ways[0].2.replace("bob-secret", "wrong");
    let (ok, _, err) = tool(&s, s.sasl_ssl, &wrong, &["topics", "list"], "");
    assert!(!ok && err.contains("SASL_AUTHENTICATION_FAILED"), "{err}");
    // TLS without a trust store is refused before connecting.
    let (ok, _, err) = tool(
        &s,
        s.ssl,
        "security.protocol=SSL\n",
        &["topics", "list"],
        "",
    );
    assert!(!ok && err.contains("ssl.truststore.location"), "{err}");
}

// ----- between brokers -----

/// A 3-node cluster whose brokers reach each other over a SASL_SSL listener (PLAIN, as the
/// super user `broker`) and whose metadata quorum talks mutual TLS, with ACLs on: a client
/// with ACLs for one topic produces with acks=all on the PLAINTEXT listener, the followers
/// replicate over the secured one, and after the leader is killed the new leader (elected
/// over the TLS quorum) serves every record. A peer without a certificate is refused by the
/// controller listener.
#[test]
fn brokers_and_controllers_talk_over_sasl_ssl_and_mutual_tls() {
    let pki = Pki::new();
    let (keystore, truststore) = (pki.path("broker.pem"), pki.path("ca.pem"));
    let jaas = "org.apache.kafka.common.security.plain.PlainLoginModule required \
        username=\"broker\" password=\"broker-secret\" user_broker=\"broker-secret\";";
    let mut cl = Cluster::start(
        3,
        &[
            (
                "listeners",
                "PLAINTEXT://127.0.0.1:{broker_port},INTERNAL://127.0.0.1:{extra_port},\
                 CONTROLLER://127.0.0.1:{controller_port}",
            ),
            (
                "advertised.listeners",
                "PLAINTEXT://127.0.0.1:{advertised_port},INTERNAL://127.0.0.1:{extra_port}",
            ),
            (
                "listener.security.protocol.map",
                "PLAINTEXT:PLAINTEXT,INTERNAL:SASL_SSL,CONTROLLER:SSL",
            ),
            ("inter.broker.listener.name", "INTERNAL"),
            ("sasl.mechanism.inter.broker.protocol", "PLAIN"),
            ("listener.name.internal.plain.sasl.jaas.config", jaas),
            ("ssl.keystore.location", &keystore),
            ("ssl.truststore.location", &truststore),
            (
                "authorizer.class.name",
                "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            ),
            ("super.users", "User:broker"),
        ],
    );
    // The tools log in as the broker user on node 1's secured listener.
    let properties = pki.path("broker-client.properties");
    std::fs::write(
        &properties,
        format!(
            "security.protocol=SASL_SSL\nsasl.mechanism=PLAIN\nsasl.username=broker\n\
             sasl.password=broker-secret\nssl.truststore.location={truststore}\n"
        ),
    )
    .unwrap();
    let internal = format!("127.0.0.1:{}", cl.node(1).extra_port);
    let tool = |args: &[&str]| {
        let out = Command::new(gregor_bin())
            .args(args)
            .args([
                "--bootstrap-server",
                &internal,
                "--command-config",
                &properties,
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "gregor {args:?}: {out:?}");
    };
    let topic = "secured";
    tool(&[
        "acls",
        "--add",
        "--allow-principal",
        "User:ANONYMOUS",
        "--operation",
        "All",
        "--topic",
        topic,
    ]);
    tool(&[
        "topics",
        "create",
        "--topic",
        topic,
        "--partitions",
        "3",
        "--replication-factor",
        "3",
    ]);
    let full_isr = |cl: &Cluster, n: usize| {
        common::wait_until(Duration::from_secs(30), || {
            (0..3).all(|p| {
                cl.partition_view(topic, p)
                    .is_some_and(|v| v.isr.len() == n)
            })
        })
    };
    assert!(full_isr(&cl, 3), "the followers never joined the ISR");

    let mut cfg = cl.producer_config();
    cfg.set("acks", "all");
    let records: Vec<TestRecord> = (0..300)
        .map(|i| TestRecord::value(format!("secured-{i}")).in_partition(i % 3))
        .collect();
    let delivered = produce(&cfg, topic, &records);
    assert!(
        full_isr(&cl, 3),
        "followers fell out of the ISR while producing"
    );
    // Followers authenticated at their leaders: every leader but node 1 (where the tools
    // logged in) counts SASL logins from followers alone.
    let leaders: std::collections::BTreeSet<_> =
        (0..3).filter_map(|p| cl.node_of_leader(topic, p)).collect();
    let others: Vec<_> = leaders.into_iter().filter(|n| *n != 1).collect();
    assert!(!others.is_empty(), "every partition is led by node 1");
    for n in others {
        let logins = authentications(cl.node(n).admin_port);
        assert!(
            logins >= 1.0,
            "node {n} leads a partition but saw no SASL login"
        );
    }

    // The followers hold everything: kill the leader of partition 0 and read it all back.
    let leader = cl.node_of_leader(topic, 0).expect("a leader");
    cl.kill(leader);
    let new_leader = cl.wait_leader_moved(topic, 0, leader, Duration::from_secs(30));
    assert_ne!(new_leader, leader);
    let mut consumer = cl.consumer_config();
    consumer.set("bootstrap.servers", cl.node(new_leader).advertised());
    let got = consume_all(&consumer, topic, 3, records.len(), Duration::from_secs(60));
    assert_same(&records, &delivered, &got);
    // The controller listener wants a certificate: a TLS client without one is cut off.
    let up = cl.up_nodes()[0];
    assert!(
        controller_refuses_anonymous_tls(cl.node(up).controller_port, &truststore),
        "node {up}'s controller listener accepted a peer without a certificate"
    );
    for id in cl.up_nodes() {
        let log = cl.stderr(id);
        assert!(
            !log.contains("authentication failed") && !log.contains("inter-broker security"),
            "node {id} logged a failed authentication:\n{log}"
        );
    }
}

/// Whether a TLS client that trusts the CA but has no certificate of its own is refused by a
/// controller listener (the handshake fails, or the connection ends before any answer).
fn controller_refuses_anonymous_tls(port: u16, ca: &str) -> bool {
    use std::io::Read;
    let config = gregor::security::tls::client_config(ca, None, None).unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    // A frame of an unknown kind: a peer that got in is dropped for it without a TLS alert;
    // a peer refused gets the server's fatal alert (certificate required) instead.
    let _ = tls.write_all(&[0, 0, 0, 1, 9]).and_then(|_| tls.flush());
    let mut buf = [0u8; 1];
    match tls.read_exact(&mut buf) {
        Err(e) => e.to_string().contains("alert"),
        Ok(()) => false,
    }
}

/// `gregor_authentications_total` from a node's admin endpoint.
fn authentications(admin_port: u16) -> f64 {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", admin_port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut page = String::new();
    s.read_to_string(&mut page).unwrap();
    page.lines()
        .filter(|l| l.starts_with("gregor_authentications_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

// ----- the SASL exchange, raw -----

fn raw_at(port: u16) -> RawClient {
    RawClient::connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
}

fn handshake(c: &mut RawClient, mechanism: &str) -> SaslHandshakeResponse {
    c.request(
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(mechanism.into())),
        1,
    )
}

fn authenticate(c: &mut RawClient, bytes: &[u8]) -> SaslAuthenticateResponse {
    c.request(
        &SaslAuthenticateRequest::default().with_auth_bytes(bytes.to_vec().into()),
        2,
    )
}

fn metadata(c: &mut RawClient) -> MetadataResponse {
    c.request(&MetadataRequest::default().with_topics(None), 12)
}

#[test]
fn the_sasl_exchange_follows_kafka() {
    let s = start_secure(&[]);
    let port = s.sasl_plaintext;

    // Before authentication only ApiVersions and the SASL requests are served.
    let mut c = raw_at(port);
    c.assert_served("ApiVersions before authentication");
    let corr = 7;
    c.send_bytes(&common::encode_request(
        &MetadataRequest::default().with_topics(None),
        12,
        corr,
    ))
    .unwrap();
    c.expect_closed("Metadata before authentication");

    // An unknown mechanism: UNSUPPORTED_SASL_MECHANISM with the ones offered, then closed.
    let mut c = raw_at(port);
    let r = handshake(&mut c, "GSSAPI");
    assert_eq!(r.error_code, UNSUPPORTED_SASL_MECHANISM);
    let offered: Vec<&str> = r.mechanisms.iter().map(|m| m.as_str()).collect();
    assert_eq!(offered, ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]);
    c.expect_closed("after an unsupported mechanism");

    // A wrong password: SASL_AUTHENTICATION_FAILED with a message, then closed.
    let mut c = raw_at(port);
    assert_eq!(handshake(&mut c, "PLAIN").error_code, 0);
    let r = authenticate(&mut c, b"\0alice\0wrong");
    assert_eq!(r.error_code, SASL_AUTHENTICATION_FAILED);
    assert!(r
        .error_message
        .as_deref()
        .unwrap_or("")
        .contains("Invalid username or password"));
    c.expect_closed("after a failed authentication");

    // SaslAuthenticate without a handshake.
    let mut c = raw_at(port);
    let r = authenticate(&mut c, b"\0alice\0alice-secret");
    assert_eq!(r.error_code, ILLEGAL_SASL_STATE);
    c.expect_closed("SaslAuthenticate before SaslHandshake");

    // The right password: authenticated, no session lifetime (connections.max.reauth.ms=0).
    let mut c = raw_at(port);
    assert_eq!(handshake(&mut c, "PLAIN").error_code, 0);
    let r = authenticate(&mut c, b"\0alice\0alice-secret");
    assert_eq!(r.error_code, 0);
    assert_eq!(r.session_lifetime_ms, 0);
    let m = metadata(&mut c);
    // The broker advertises, to this listener's clients, this listener's address.
    assert_eq!(m.brokers[0].port, port as i32);
    // Without re-authentication enabled, another handshake is an illegal state.
    assert_eq!(handshake(&mut c, "PLAIN").error_code, ILLEGAL_SASL_STATE);
    c.assert_served("still served");

    // SaslHandshake v0 (old clients): the tokens follow bare, size-prefixed, no header.
    let mut c = raw_at(port);
    let r: SaslHandshakeResponse = c.request(
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
        0,
    );
    assert_eq!(r.error_code, 0);
    let token = b"\0alice\0alice-secret";
    let mut framed = (token.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(token);
    c.send_bytes(&framed).unwrap();
    assert_eq!(
        c.read_frame().unwrap(),
        Vec::<u8>::new(),
        "PLAIN answers an empty token"
    );
    metadata(&mut c);
    let mut c = raw_at(port);
    let _: SaslHandshakeResponse = c.request(
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
        0,
    );
    let token = b"\0alice\0wrong";
    let mut framed = (token.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(token);
    c.send_bytes(&framed).unwrap();
    c.expect_closed("a wrong v0 token");

    // On a PLAINTEXT listener the SASL requests are an illegal state too.
    let mut c = s.broker.raw();
    assert_eq!(handshake(&mut c, "PLAIN").error_code, ILLEGAL_SASL_STATE);
    assert_eq!(metadata(&mut c).brokers[0].port, s.broker.port as i32);
}

#[test]
fn sessions_expire_and_clients_reauthenticate() {
    let s = start_secure(&[("connections.max.reauth.ms", "1500")]);
    let port = s.sasl_plaintext;
    let mut c = raw_at(port);
    assert_eq!(handshake(&mut c, "PLAIN").error_code, 0);
    let r = authenticate(&mut c, b"\0alice\0alice-secret");
    assert_eq!((r.error_code, r.session_lifetime_ms), (0, 1500));
    // Re-authentication on the same connection, as the same user, renews the session.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(700));
        assert_eq!(handshake(&mut c, "PLAIN").error_code, 0);
        let r = authenticate(&mut c, b"\0alice\0alice-secret");
        assert_eq!((r.error_code, r.session_lifetime_ms), (0, 1500));
        metadata(&mut c);
    }
    // Another user may not take the connection over.
    assert_eq!(handshake(&mut c, "PLAIN").error_code, 0);
    let r = authenticate(&mut c, b"\0admin\0admin-secret");
    assert_eq!(r.error_code, SASL_AUTHENTICATION_FAILED);
    c.expect_closed("re-authentication as another user");

    // A session left to expire: the next request closes the connection.
    let mut c = raw_at(port);
    assert_eq!(handshake(&mut c, "PLAIN").error_code, 0);
    assert_eq!(authenticate(&mut c, b"\0alice\0alice-secret").error_code, 0);
    metadata(&mut c);
    std::thread::sleep(Duration::from_millis(1700));
    c.send_bytes(&common::encode_request(
        &MetadataRequest::default().with_topics(None),
        12,
        99,
    ))
    .unwrap();
    c.expect_closed("a request after the session expired");

    // librdkafka re-authenticates by itself (KIP-368) and keeps producing across sessions.
    let cfg = client(
        &s,
        port,
        "sasl_plaintext",
        &[
            ("sasl.mechanisms", "PLAIN"),
            ("sasl.username", "alice"),
            ("sasl.password", "alice-secret"),
        ],
    );
    create_topic(&cfg, "reauth", 1, &[]);
    let p = common::clients::producer(&cfg, 40);
    for round in 0..4 {
        let records: Vec<TestRecord> = (0..10)
            .map(|i| TestRecord::value(format!("r{round}-{i}")).in_partition(0))
            .collect();
        common::clients::send_all(&p, "reauth", &records, round * 10);
        std::thread::sleep(Duration::from_millis(1000));
    }
    let delivered = common::clients::wait_delivered(&p, Duration::from_secs(60));
    assert_eq!(delivered.len(), 40);
}

// ----- SCRAM credentials -----

fn salted(password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
    gregor::security::scram::ScramMechanism::Sha256.salted_password(password, salt, iterations)
}

fn upsert(name: &str, mechanism: i8, iterations: i32) -> ScramCredentialUpsertion {
    ScramCredentialUpsertion::default()
        .with_name(StrBytes::from_string(name.into()))
        .with_mechanism(mechanism)
        .with_iterations(iterations)
        .with_salt(b"0123456789abcdef".to_vec().into())
        .with_salted_password(salted("pw", b"0123456789abcdef", 4096).into())
}

fn deletion(name: &str, mechanism: i8) -> ScramCredentialDeletion {
    ScramCredentialDeletion::default()
        .with_name(StrBytes::from_string(name.into()))
        .with_mechanism(mechanism)
}

fn results(r: &AlterUserScramCredentialsResponse) -> Vec<(String, i16)> {
    let mut v: Vec<(String, i16)> = r
        .results
        .iter()
        .map(|r| (r.user.to_string(), r.error_code))
        .collect();
    v.sort();
    v
}

#[test]
fn scram_credentials_are_managed_and_kept_in_the_metadata_log() {
    let mut s = start_secure(&[]);
    let mut c = s.broker.raw();
    let r: AlterUserScramCredentialsResponse = c.request(
        &AlterUserScramCredentialsRequest::default()
            .with_upsertions(vec![
                upsert("dave", 1, 4096),
                upsert("erin", 1, 100),
                upsert("frank", 1, 20000),
                upsert("", 1, 4096),
                upsert("gina", 9, 4096),
                upsert("hank", 1, 4096),
                upsert("hank", 2, 4096),
            ])
            .with_deletions(vec![deletion("ivan", 1)]),
        0,
    );
    assert_eq!(
        results(&r),
        vec![
            ("".into(), UNACCEPTABLE_CREDENTIAL),
            ("dave".into(), 0),
            ("erin".into(), UNACCEPTABLE_CREDENTIAL),
            ("frank".into(), UNACCEPTABLE_CREDENTIAL),
            ("gina".into(), UNSUPPORTED_SASL_MECHANISM),
            ("hank".into(), DUPLICATE_RESOURCE),
            ("ivan".into(), RESOURCE_NOT_FOUND),
        ]
    );
    let d: DescribeUserScramCredentialsResponse = c.request(
        &DescribeUserScramCredentialsRequest::default().with_users(None),
        0,
    );
    let users: Vec<(String, Vec<(i8, i32)>)> = d
        .results
        .iter()
        .map(|r| {
            (
                r.user.to_string(),
                r.credential_infos
                    .iter()
                    .map(|i| (i.mechanism, i.iterations))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(users, vec![("dave".to_string(), vec![(1, 4096)])]);
    let d: DescribeUserScramCredentialsResponse = c.request(
        &DescribeUserScramCredentialsRequest::default().with_users(Some(vec![
            UserName::default().with_name(StrBytes::from_static_str("nobody"))
        ])),
        0,
    );
    assert_eq!(d.results[0].error_code, RESOURCE_NOT_FOUND);

    // dave logs in with SCRAM-SHA-256 over SASL_SSL; after a restart too (the metadata log).
    let dave = client(
        &s,
        s.sasl_ssl,
        "sasl_ssl",
        &[
            ("sasl.mechanisms", "SCRAM-SHA-256"),
            ("sasl.username", "dave"),
            ("sasl.password", "pw"),
        ],
    );
    assert!(can_connect(&dave));
    s.broker.restart();
    assert!(can_connect(&dave), "SCRAM users survive a restart");
    let mut c = s.broker.raw();
    let r: AlterUserScramCredentialsResponse = c.request(
        &AlterUserScramCredentialsRequest::default().with_deletions(vec![deletion("dave", 1)]),
        0,
    );
    assert_eq!(results(&r), vec![("dave".into(), 0)]);
    assert!(!can_connect(&dave), "a deleted user is refused at once");

    // DescribeConfigs never shows passwords or JAAS configs.
    let r: DescribeConfigsResponse = c.request(
        &DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(StrBytes::from_static_str("1"))
            .with_configuration_keys(Some(vec![
                StrBytes::from_static_str("ssl.key.password"),
                StrBytes::from_static_str("ssl.keystore.location"),
            ]))]),
        4,
    );
    let configs = &r.results[0].configs;
    let key_password = configs
        .iter()
        .find(|c| c.name.as_str() == "ssl.key.password")
        .unwrap();
    assert!(key_password.is_sensitive && key_password.value.is_none());
    let location = configs
        .iter()
        .find(|c| c.name.as_str() == "ssl.keystore.location")
        .unwrap();
    assert!(!location.is_sensitive);
    assert_eq!(
        location.value.as_deref(),
        Some(s.pki.path("broker.pem").as_str())
    );
}

// ----- configuration refused at start-up -----

fn refused(settings: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(gregor_bin());
    cmd.arg("serve")
        .arg("--set")
        .arg(format!("log.dirs={}", dir.path().join("data").display()))
        .arg("--set")
        .arg("admin.listeners=");
    for (k, v) in settings {
        cmd.arg("--set").arg(format!("{k}={v}"));
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "{settings:?} must be refused");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn insecure_or_incomplete_security_settings_stop_the_start() {
    let pki = Pki::new();
    let p = free_port();
    let keystore = pki.path("broker.pem");
    let missing = Path::new("/nonexistent/broker.pem").display().to_string();
    // The inter-broker listener may be secured, if this broker can reach the others on it:
    // a trust store for TLS, and a login of its own for SASL.
    let sasl_ssl = format!("SASL_SSL://127.0.0.1:{p}");
    let err = refused(&[
        ("listeners", &sasl_ssl),
        ("ssl.keystore.location", &keystore),
    ]);
    assert!(
        err.contains("inter-broker listener SASL_SSL: ssl.truststore.location"),
        "{err}"
    );
    let truststore = pki.path("ca.pem");
    let err = refused(&[
        ("listeners", &sasl_ssl),
        ("ssl.keystore.location", &keystore),
        ("ssl.truststore.location", &truststore),
    ]);
    assert!(
        err.contains("plain.sasl.jaas.config has no username"),
        "{err}"
    );
    let two = format!("PLAINTEXT://127.0.0.1:{p},SSL://127.0.0.1:{}", free_port());
    let err = refused(&[("listeners", &two)]);
    assert!(err.contains("ssl.keystore.location"), "{err}");
    let err = refused(&[("listeners", &two), ("ssl.keystore.location", &missing)]);
    assert!(err.contains(&missing), "{err}");
    let err = refused(&[
        ("listeners", &two),
        ("ssl.keystore.location", &keystore),
        ("ssl.client.auth", "required"),
    ]);
    assert!(err.contains("ssl.truststore.location"), "{err}");
    let err = refused(&[(
        "listeners",
        &format!(
            "PLAINTEXT://127.0.0.1:{p},INTERNAL://127.0.0.1:{}",
            free_port()
        ),
    )]);
    assert!(
        err.contains("no security protocol for listener INTERNAL"),
        "{err}"
    );
    let err = refused(&[("ssl.principal.mapping.rules", "RULE:^CN=(.*)$")]);
    assert!(err.contains("ssl.principal.mapping.rules"), "{err}");
    let err = refused(&[("sasl.enabled.mechanisms", "GSSAPI")]);
    assert!(err.contains("GSSAPI"), "{err}");
}
