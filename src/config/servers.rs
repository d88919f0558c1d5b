//! Validation of where the outbox lives and where events go: PostgreSQL (and the outbox
//! table's names), ClickHouse (and its cluster), the list of sinks.

use super::*;

pub(super) fn postgres_config(args: &cli::PostgresArgs) -> Result<PostgresConfig, ConfigError> {
    let mut config = PostgresConfig::parse(&args.database_url)?;
    let name = |setting: &'static str, value: &str, max: usize| {
        if !is_identifier(value) || value.len() > max {
            return Err(invalid(
                setting,
                format!("'{value}' is not a plain identifier of at most {max} bytes (letters, digits, underscore; not starting with a digit)"),
            ));
        }
        Ok(value.to_owned())
    };
    use crate::outbox::{Outbox, MAX_IDENTIFIER};
    config.outbox = Outbox {
        table: name(
            "OUTBOX_TABLE (--outbox-table)",
            &args.outbox_table,
            Outbox::MAX_TABLE,
        )?,
        id: name(
            "OUTBOX_ID_COLUMN (--outbox-id-column)",
            &args.outbox_id_column,
            MAX_IDENTIFIER,
        )?,
        event_type: name(
            "OUTBOX_TYPE_COLUMN (--outbox-type-column)",
            &args.outbox_type_column,
            MAX_IDENTIFIER,
        )?,
        created_at: name(
            "OUTBOX_CREATED_AT_COLUMN (--outbox-created-at-column)",
            &args.outbox_created_at_column,
            MAX_IDENTIFIER,
        )?,
        environment: name(
            "OUTBOX_ENVIRONMENT_COLUMN (--outbox-environment-column)",
            &args.outbox_environment_column,
            MAX_IDENTIFIER,
        )?,
        context: name(
            "OUTBOX_CONTEXT_COLUMN (--outbox-context-column)",
            &args.outbox_context_column,
            MAX_IDENTIFIER,
        )?,
    };
    Ok(config)
}

/// The sinks a relay delivers to, in `SINKS` order (ClickHouse first when both).
#[derive(Debug, Clone)]
pub struct SinksConfig {
    pub clickhouse: Option<ClickHouseConfig>,
    pub archive: Option<crate::sink::postgres::ArchiveConfig>,
}

pub(super) fn sinks_config(
    clickhouse: cli::ClickHouseArgs,
    args: cli::SinkArgs,
) -> Result<SinksConfig, ConfigError> {
    const SINKS: &str = "SINKS (--sinks)";
    let mut config = SinksConfig {
        clickhouse: None,
        archive: None,
    };
    let mut clickhouse = Some(clickhouse);
    let mut archive = Some(args.archive_database_url);
    for name in args.sinks.split(',').map(str::trim) {
        match name {
            "clickhouse" => {
                let Some(ch) = clickhouse.take() else {
                    return Err(invalid(SINKS, "lists clickhouse twice"));
                };
                config.clickhouse = Some(clickhouse_config(ch)?);
            }
            "postgres" => {
                let Some(url) = archive.take() else {
                    return Err(invalid(SINKS, "lists postgres twice"));
                };
                let url = url.filter(|u| !u.trim().is_empty()).ok_or_else(|| {
                    invalid(
                        "ARCHIVE_DATABASE_URL (--archive-database-url)",
                        "required when SINKS lists postgres",
                    )
                })?;
                let postgres = PostgresConfig::parse(&url).map_err(|e| {
                    invalid("ARCHIVE_DATABASE_URL (--archive-database-url)", e.reason)
                })?;
                if !is_identifier(&args.archive_table) {
                    return Err(invalid(
                        "ARCHIVE_TABLE (--archive-table)",
                        format!("'{}' is not a plain identifier", args.archive_table),
                    ));
                }
                config.archive = Some(crate::sink::postgres::ArchiveConfig {
                    postgres,
                    table: args.archive_table.clone(),
                });
            }
            other => {
                return Err(invalid(
                    SINKS,
                    format!("'{other}' is not a sink (clickhouse, postgres)"),
                ))
            }
        }
    }
    Ok(config)
}

pub(super) fn clickhouse_config(
    args: cli::ClickHouseArgs,
) -> Result<ClickHouseConfig, ConfigError> {
    let url = args.clickhouse_url.unwrap_or_default();
    if url.trim().is_empty() {
        return Err(invalid(
            "CLICKHOUSE_URL (--clickhouse-url)",
            "required when SINKS lists clickhouse (the default)",
        ));
    }
    let url = url.trim_end_matches('/').to_owned();
    let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
    if !scheme_ok || url.len() <= "https://".len() {
        return Err(invalid(
            "CLICKHOUSE_URL (--clickhouse-url)",
            format!("'{}' is not an http:// or https:// URL", redact_url(&url)),
        ));
    }
    if !is_identifier(&args.clickhouse_database) {
        return Err(invalid(
            "CLICKHOUSE_DATABASE (--clickhouse-database)",
            format!(
                "'{}' is not a plain identifier (letters, digits, underscore; not starting with a digit)",
                args.clickhouse_database
            ),
        ));
    }
    let cluster = match args.clickhouse_cluster.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(name) if is_identifier(name) => Some(ClusterConfig {
            name: name.to_owned(),
            nodes: args
                .clickhouse_cluster_nodes
                .iter()
                .flat_map(|n| n.split(','))
                .map(|n| n.trim().trim_end_matches('/').to_owned())
                .filter(|n| !n.is_empty())
                .map(|n| {
                    if n.starts_with("http://") || n.starts_with("https://") {
                        Ok(n)
                    } else {
                        Err(invalid(
                            "CLICKHOUSE_CLUSTER_NODES (--clickhouse-cluster-nodes)",
                            format!("'{}' is not an http:// or https:// URL", redact_url(&n)),
                        ))
                    }
                })
                .collect::<Result<_, _>>()?,
        }),
        Some(name) => {
            return Err(invalid(
                "CLICKHOUSE_CLUSTER (--clickhouse-cluster)",
                format!("'{name}' is not a plain identifier"),
            ))
        }
    };
    Ok(ClickHouseConfig {
        cluster,
        url,
        database: args.clickhouse_database,
        user: args.clickhouse_user.filter(|u| !u.is_empty()),
        password: args.clickhouse_password.filter(|p| !p.is_empty()),
    })
}
