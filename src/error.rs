//! The crate's error type: opaque, with a [`ErrorKind`] to match on and the cause chain kept.
//!
//! Messages never carry credentials: URLs are redacted before they reach an error (see
//! [`crate::config::redact_url`]).

use std::fmt;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong, coarsely: enough for a caller to decide between retrying, fixing the
/// configuration or giving up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Configuration is invalid, or a server's schema does not match what we expect.
    Config,
    /// PostgreSQL refused a statement or could not be reached.
    Postgres,
    /// The sink (e.g. ClickHouse) refused a request or could not be reached.
    Sink,
    /// An operation took longer than its configured bound.
    Timeout,
    /// The caller's input was rejected (e.g. invalid JSON, a duplicate email).
    InvalidInput,
    /// The sink refused the data itself and always will (a value it cannot store, a parse
    /// or size error): retrying the same events cannot help. The relay isolates the
    /// offending events and dead-letters them.
    Rejected,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Config => "configuration",
            ErrorKind::Postgres => "postgres",
            ErrorKind::Sink => "sink",
            ErrorKind::Timeout => "timeout",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Rejected => "rejected",
        })
    }
}

/// An error of this crate. `Display` shows the context; `{:#}` through anyhow, or
/// [`std::error::Error::source`], reaches the cause.
#[derive(Debug, thiserror::Error)]
#[error("{context}")]
pub struct Error {
    kind: ErrorKind,
    context: String,
    #[source]
    source: Option<BoxError>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, context: impl Into<String>) -> Self {
        Error {
            kind,
            context: context.into(),
            source: None,
        }
    }

    pub(crate) fn with_source(
        kind: ErrorKind,
        context: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        Error {
            kind,
            context: context.into(),
            source: Some(source.into()),
        }
    }

    pub(crate) fn postgres(context: impl Into<String>, source: tokio_postgres::Error) -> Self {
        Error::with_source(ErrorKind::Postgres, context, source)
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The SQLSTATE code when PostgreSQL itself refused a statement.
    pub fn sql_state(&self) -> Option<&tokio_postgres::error::SqlState> {
        self.source
            .as_ref()?
            .downcast_ref::<tokio_postgres::Error>()?
            .code()
    }

    /// For metrics, a PostgreSQL failure coarsely: `statement` when the server refused a
    /// statement (it has a SQLSTATE), `connection` otherwise (unreachable, closed, pool).
    pub fn postgres_kind(&self) -> &'static str {
        if self.sql_state().is_some() {
            "statement"
        } else {
            "connection"
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
