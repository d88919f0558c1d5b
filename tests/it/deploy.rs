//! The deployment files agree with the relay they deploy: signals, timeouts, probe paths,
//! ports, and the metric names the alert rules use. (Checked as text: kubectl, promtool
//! and systemd-analyze are not on every machine; they were run by hand, see the README.)

use std::time::Duration;

use outbox_relay::config::RelayConfig;

use crate::harness::root;

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The value after `key` on its line, e.g. `TimeoutStopSec=` → `45s`.
fn value_of<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key}"))
        .trim()
}

fn seconds(raw: &str) -> Duration {
    humantime::parse_duration(raw.trim_matches('"'))
        .or_else(|_| raw.parse().map(Duration::from_secs))
        .unwrap_or_else(|_| panic!("not a duration: {raw}"))
}

/// What a clean stop needs: the grace period plus the bounded deregistration (2 s).
fn clean_stop() -> Duration {
    RelayConfig::default().shutdown_grace + Duration::from_secs(2)
}

#[test]
fn the_systemd_unit_gives_a_clean_stop_time() {
    let unit = read("deploy/systemd/outbox-relay.service");
    assert_eq!(value_of(&unit, "KillSignal="), "SIGTERM");
    assert!(seconds(value_of(&unit, "TimeoutStopSec=")) > clean_stop());
    assert_eq!(value_of(&unit, "Restart="), "on-failure");
    // Exit code 2 is invalid configuration (src/main.rs): restarting cannot fix it.
    assert_eq!(value_of(&unit, "RestartPreventExitStatus="), "2");
    assert!(value_of(&unit, "ExecStart=").ends_with(" run"));
}

#[test]
fn kubernetes_probes_the_relays_endpoints() {
    let deployment = read("deploy/kubernetes/deployment.yaml");
    assert_eq!(value_of(&deployment, "replicas:"), "2");
    assert!(seconds(value_of(&deployment, "terminationGracePeriodSeconds:")) > clean_stop());
    assert!(deployment.contains("path: /healthz"));
    assert!(deployment.contains("path: /readyz"));
    assert!(deployment.contains("containerPort: 9187"));
    let config = read("deploy/kubernetes/configmap.yaml");
    assert_eq!(value_of(&config, "METRICS_ADDR:"), "0.0.0.0:9187");
    let job = read("deploy/kubernetes/migrate-job.yaml");
    assert!(job.contains("kind: Job") && job.contains(r#"args: ["migrate"]"#));
    let kustomization = read("deploy/kubernetes/kustomization.yaml");
    for file in ["configmap.yaml", "migrate-job.yaml", "deployment.yaml"] {
        assert!(kustomization.contains(file), "{file}");
    }
}

#[test]
fn alert_rules_use_metrics_the_relay_exports() {
    let metrics = outbox_relay::observe::Metrics::new();
    metrics.init_sink("clickhouse");
    let exported = metrics.encode();
    let families: Vec<&str> = exported
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let rules = read("deploy/prometheus/alerts.yml");
    let mut used = 0;
    for word in rules.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if let Some(name) = word.strip_prefix("outbox_") {
            let name = format!("outbox_{name}");
            let family = name
                .strip_suffix("_total")
                .or_else(|| name.strip_suffix("_bucket"))
                .unwrap_or(&name);
            assert!(
                families.contains(&family),
                "{name} is not exported: {families:?}"
            );
            used += 1;
        }
    }
    assert!(rules.contains("outbox_lag_seconds"), "an alert on lag");
    assert!(used >= 4);
}

#[test]
fn compose_prometheus_scrapes_the_relay() {
    let compose = read("docker-compose.yml");
    assert!(compose.contains("METRICS_ADDR: 0.0.0.0:9187"));
    assert!(compose.contains("image: prom/prometheus:"));
    let prometheus = read("deploy/prometheus/prometheus.yml");
    assert!(prometheus.contains(r#"targets: ["relay:9187"]"#));
    assert!(prometheus.contains("/etc/prometheus/alerts.yml"));
}
