//! Unit tests of `validate`: every bad value names its setting.
use super::*;
use clap::Parser;

fn parse(args: &[&str]) -> Result<Config, ConfigError> {
    let mut argv = vec!["outbox-relay"];
    argv.extend_from_slice(args);
    validate(Cli::try_parse_from(argv).expect("clap accepts the arguments"))
}

const RUN: &[&str] = &[
    "run",
    "--database-url",
    "postgresql://u:pw@localhost/db",
    "--clickhouse-url",
    "http://localhost:8123",
];

fn run_with(extra: &[&str]) -> Result<Config, ConfigError> {
    let mut args = RUN.to_vec();
    args.extend_from_slice(extra);
    parse(&args)
}

#[test]
fn defaults_are_valid() {
    let Command::Run { relay, sinks, .. } = run_with(&[]).unwrap().command else {
        panic!("not run")
    };
    assert_eq!(relay.batch_size, 1000);
    assert_eq!(relay.claims_per_insert, 10);
    assert_eq!(relay.poll_interval, Duration::from_secs(5));
    assert_eq!(sinks.clickhouse.unwrap().database, "default");
    assert!(sinks.archive.is_none());
}

#[test]
fn bad_batch_size_names_the_variable() {
    let err = run_with(&["--batch-size", "many"]).unwrap_err().to_string();
    assert!(err.contains("EVENT_BATCH_SIZE"), "{err}");
    assert!(err.contains("'many'"), "{err}");
    let err = run_with(&["--batch-size", "0"]).unwrap_err().to_string();
    assert!(err.contains("out of range"), "{err}");
}

#[test]
fn bad_insert_grouping_names_the_variable() {
    let err = run_with(&["--claims-per-insert", "0"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("CLAIMS_PER_INSERT"), "{err}");
    let err = run_with(&["--max-insert-bytes", "16MB"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("MAX_INSERT_BYTES"), "{err}");
}

#[test]
fn bad_observability_settings_name_the_variable() {
    let err = run_with(&["--metrics-addr", "localhost"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("METRICS_ADDR"), "{err}");
    let err = run_with(&["--sample-interval", "often"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("SAMPLE_INTERVAL"), "{err}");
    for rate in ["1.5", "-0.1", "NaN", "some"] {
        let flag = format!("--sentry-traces-sample-rate={rate}");
        let err = run_with(&[&flag]).unwrap_err().to_string();
        assert!(err.contains("SENTRY_TRACES_SAMPLE_RATE"), "{rate}: {err}");
    }
    let Command::Run { metrics_addr, .. } = run_with(&["--metrics-addr", "127.0.0.1:9187"])
        .unwrap()
        .command
    else {
        panic!("not run")
    };
    assert_eq!(metrics_addr, Some("127.0.0.1:9187".parse().unwrap()));
}

#[test]
fn outbox_names_must_be_identifiers() {
    let err = run_with(&["--outbox-table", "events; DROP TABLE x"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("OUTBOX_TABLE"), "{err}");
    let long = "t".repeat(52);
    let err = run_with(&["--outbox-table", &long])
        .unwrap_err()
        .to_string();
    assert!(err.contains("at most 51 bytes"), "{err}");
    let err = run_with(&["--outbox-context-column", "ctx-json"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("OUTBOX_CONTEXT_COLUMN"), "{err}");
    let Command::Run { postgres, .. } = run_with(&["--outbox-table", "events_eventlog"])
        .unwrap()
        .command
    else {
        panic!("not run")
    };
    assert_eq!(postgres.outbox.table, "events_eventlog");
    assert_eq!(postgres.outbox.event_type, "type");
}

#[test]
fn sinks_are_listed_and_each_needs_its_url() {
    let err = run_with(&["--sinks", "clickhouse,kafka"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("SINKS") && err.contains("'kafka'"), "{err}");
    let err = run_with(&["--sinks", "clickhouse,postgres"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("ARCHIVE_DATABASE_URL"), "{err}");
    let err = run_with(&[
        "--sinks",
        "postgres,postgres",
        "--archive-database-url",
        "postgresql://a@b/c",
    ])
    .unwrap_err()
    .to_string();
    assert!(err.contains("twice"), "{err}");
    let Command::Run { sinks, .. } = parse(&[
        "run",
        "--database-url",
        "postgresql://u@localhost/db",
        "--sinks",
        "postgres",
        "--archive-database-url",
        "postgresql://u:secret@archive/audit",
    ])
    .unwrap()
    .command
    else {
        panic!("not run")
    };
    assert!(sinks.clickhouse.is_none(), "no CLICKHOUSE_URL needed");
    let archive = sinks.archive.unwrap();
    assert_eq!(archive.table, "event_archive");
    assert!(!format!("{archive:?}").contains("secret"));
    let err = parse(&["run", "--database-url", "postgresql://u@localhost/db"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("CLICKHOUSE_URL"), "{err}");
}

#[test]
fn a_cluster_needs_a_plain_name_and_http_nodes() {
    let err = run_with(&["--clickhouse-cluster", "two shards"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("CLICKHOUSE_CLUSTER"), "{err}");
    let err = run_with(&[
        "--clickhouse-cluster",
        "main",
        "--clickhouse-cluster-nodes",
        "http://a:8123,b:8123",
    ])
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("CLICKHOUSE_CLUSTER_NODES") && err.contains("'b:8123'"),
        "{err}"
    );
    let Command::Run { sinks, .. } = run_with(&[
        "--clickhouse-cluster",
        "main",
        "--clickhouse-cluster-nodes",
        "http://a:8123/, http://b:8123",
    ])
    .unwrap()
    .command
    else {
        panic!("not run")
    };
    let cluster = sinks.clickhouse.unwrap().cluster.unwrap();
    assert_eq!(cluster.name, "main");
    assert_eq!(cluster.nodes, ["http://a:8123", "http://b:8123"]);
}

#[test]
fn bad_durations_name_the_variable() {
    let err = run_with(&["--poll-interval", "soon"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("POLL_INTERVAL"), "{err}");
    let err = run_with(&["--insert-timeout", "0s"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("INSERT_TIMEOUT"), "{err}");
}

#[test]
fn clickhouse_database_must_be_an_identifier() {
    let err = run_with(&["--clickhouse-database", "x`; DROP TABLE y"]).unwrap_err();
    assert!(err.to_string().contains("CLICKHOUSE_DATABASE"));
}

#[test]
fn clickhouse_url_needs_http() {
    let err = parse(&[
        "run",
        "--database-url",
        "postgresql://h/db",
        "--clickhouse-url",
        "h:8123",
    ])
    .unwrap_err();
    assert!(err.to_string().contains("CLICKHOUSE_URL"), "{err}");
}

#[test]
fn emit_rejects_invalid_json() {
    let err = parse(&[
        "emit",
        "--database-url",
        "postgresql://h/db",
        "--type",
        "t",
        "--context",
        "{oops",
    ])
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("--context") && err.contains("not valid JSON"),
        "{err}"
    );
}

#[test]
fn sslrootcert_is_taken_out_of_the_url() {
    let pg = PostgresConfig::parse(
        "postgresql://u@h/db?sslmode=require&sslrootcert=%2Ftmp%2Fca.pem&options=-cx%3Dy",
    )
    .unwrap();
    assert_eq!(
        pg.ssl_root_cert.as_deref(),
        Some(std::path::Path::new("/tmp/ca.pem"))
    );
    assert_eq!(
        pg.config.get_ssl_mode(),
        tokio_postgres::config::SslMode::Require
    );
    let pg = PostgresConfig::parse("host=h dbname=db sslrootcert=/ca.pem sslmode=require").unwrap();
    assert_eq!(
        pg.ssl_root_cert.as_deref(),
        Some(std::path::Path::new("/ca.pem"))
    );
    assert!(PostgresConfig::parse("postgresql://h/db")
        .unwrap()
        .ssl_root_cert
        .is_none());
}

#[test]
fn passwords_are_redacted() {
    assert_eq!(
        redact_url("postgresql://u:secret@h:5432/db"),
        "postgresql://u:***@h:5432/db"
    );
    assert_eq!(redact_url("http://h:8123"), "http://h:8123");
    assert_eq!(redact_url("postgresql://u@h/db"), "postgresql://u@h/db");
    let err = parse(&[
        "run",
        "--database-url",
        "postgresql://u:secret@h:notaport/db",
        "--clickhouse-url",
        "http://h",
    ])
    .unwrap_err()
    .to_string();
    assert!(!err.contains("secret"), "{err}");
}
