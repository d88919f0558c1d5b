//! Writing events: the producer side, usable inside the caller's own transaction.
//!
//! ```no_run
//! # async fn demo(client: &mut tokio_postgres::Client) -> Result<(), Box<dyn std::error::Error>> {
//! use outbox_relay::{publish, NewEvent};
//! let tx = client.transaction().await?;
//! // ... the business change, on `tx` ...
//! let id = publish(&tx, &NewEvent {
//!     event_type: "user_created".into(),
//!     environment: "Production".into(),
//!     context: serde_json::json!({"email": "a@example.com"}),
//! }).await?;
//! tx.commit().await?; // the event exists exactly when the business change does
//! # let _ = id; Ok(()) }
//! ```

use tokio_postgres::error::SqlState;
use tokio_postgres::GenericClient;

use crate::error::{Error, ErrorKind, Result};
use crate::event::NewEvent;

const PUBLISH_SQL: &str = include_str!("../sql/postgres/publish.sql");
const CREATE_USER_SQL: &str = include_str!("../sql/postgres/create_user.sql");

/// Publishes `event` through `outbox_publish` on `client` (a connection or a transaction) and
/// returns its id. It reaches the relay when the surrounding transaction commits.
pub async fn publish(client: &impl GenericClient, event: &NewEvent) -> Result<i64> {
    let row = client
        .query_one(
            PUBLISH_SQL,
            &[&event.event_type, &event.context, &event.environment],
        )
        .await
        .map_err(|e| Error::postgres("could not publish the event", e))?;
    Ok(row.get(0))
}

/// A user created by [`create_user`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub created_at: String,
}

/// The seed's flow: inserts a user and its `user_created` event (context = the user as
/// JSON) in one transaction. A duplicate email fails with [`ErrorKind::InvalidInput`] and
/// writes nothing.
pub async fn create_user(
    client: &mut tokio_postgres::Client,
    email: &str,
    name: &str,
    environment: &str,
) -> Result<(User, i64)> {
    let tx = client
        .transaction()
        .await
        .map_err(|e| Error::postgres("could not begin a transaction", e))?;
    let row = tx
        .query_one(CREATE_USER_SQL, &[&email, &name])
        .await
        .map_err(|e| {
            if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                Error::new(
                    ErrorKind::InvalidInput,
                    format!("a user with email {email} already exists"),
                )
            } else if e.code() == Some(&SqlState::UNDEFINED_TABLE) {
                Error::with_source(
                    ErrorKind::Config,
                    "the users table is missing: run `outbox-relay migrate --demo` first",
                    e,
                )
            } else {
                Error::postgres("could not insert the user", e)
            }
        })?;
    let user = User {
        id: row.get(0),
        email: row.get(1),
        name: row.get(2),
        created_at: row.get(3),
    };
    let context = serde_json::to_value(&user).expect("a User always serializes");
    let event = NewEvent {
        event_type: "user_created".into(),
        environment: environment.into(),
        context,
    };
    let event_id = publish(&tx, &event).await?;
    tx.commit()
        .await
        .map_err(|e| Error::postgres("could not commit the user", e))?;
    Ok((user, event_id))
}
