//! The outbox table's name and columns, and the SQL rendered for them.
//!
//! The defaults are the contract's `event_log (id, type, created_at, environment, context)`.
//! A team with an outbox of its own (a Django `EventLog` model is `events_eventlog`) names
//! its table and columns instead, and `migrate --adopt` installs only what the relay needs
//! beside it. The statements in `sql/postgres/` are templates: `{outbox}`, `{id}`, `{type}`,
//! `{created_at}`, `{environment}`, `{context}` and the relay's own tables `{waiting}`,
//! `{dead_letter}` and function `{notify}` are replaced by quoted identifiers once, when
//! the relay starts; names are validated identifiers, so nothing else can be injected.

use crate::postgres::quote_ident;

/// The relay's own objects are named after the outbox table with these suffixes; the
/// longest must still fit PostgreSQL's 63-byte identifiers.
const LONGEST_SUFFIX: &str = "_dead_letter";
/// PostgreSQL truncates identifiers past 63 bytes.
pub const MAX_IDENTIFIER: usize = 63;

/// Names of the outbox table and its columns (unquoted, validated identifiers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbox {
    pub table: String,
    pub id: String,
    pub event_type: String,
    pub created_at: String,
    pub environment: String,
    pub context: String,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox {
            table: "event_log".into(),
            id: "id".into(),
            event_type: "type".into(),
            created_at: "created_at".into(),
            environment: "environment".into(),
            context: "context".into(),
        }
    }
}

impl Outbox {
    /// The longest table name whose relay objects still fit in an identifier.
    pub const MAX_TABLE: usize = MAX_IDENTIFIER - LONGEST_SUFFIX.len();

    /// Whether this is the contract's own table (which `migrate` creates) or one adopted.
    pub fn is_default(&self) -> bool {
        *self == Outbox::default()
    }

    /// The NOTIFY channel for this outbox in `schema`, quoted for LISTEN.
    pub fn channel(&self, schema: &str) -> String {
        quote_ident(&self.channel_name(schema))
    }

    /// The channel, unquoted: `<schema>.<table>`.
    pub fn channel_name(&self, schema: &str) -> String {
        format!("{schema}.{}", self.table)
    }

    /// `template` with every placeholder replaced by its quoted identifier.
    pub fn render(&self, template: &str) -> String {
        let t = &self.table;
        template
            .replace("{outbox}", &quote_ident(t))
            .replace("{outbox_name}", t)
            .replace("{waiting}", &quote_ident(&format!("{t}_waiting")))
            .replace("{dead_letter}", &quote_ident(&format!("{t}_dead_letter")))
            .replace("{notify}", &quote_ident(&format!("{t}_notify")))
            .replace("{id}", &quote_ident(&self.id))
            .replace("{type}", &quote_ident(&self.event_type))
            .replace("{created_at}", &quote_ident(&self.created_at))
            .replace("{environment}", &quote_ident(&self.environment))
            .replace("{context}", &quote_ident(&self.context))
    }

    /// Every statement the relay runs, rendered for this outbox.
    pub fn statements(&self) -> Statements {
        Statements {
            claim: self.render(include_str!("../sql/postgres/claim.sql")),
            acknowledge: self.render(include_str!("../sql/postgres/acknowledge.sql")),
            dead_letter: self.render(include_str!("../sql/postgres/dead_letter.sql")),
            register: self.render(include_str!("../sql/postgres/register.sql")),
            deregister: self.render(include_str!("../sql/postgres/deregister.sql")),
            forget_dead_relays: self.render(include_str!("../sql/postgres/forget_dead_relays.sql")),
            sample: self.render(include_str!("../sql/postgres/sample.sql")),
        }
    }
}

/// The relay's statements for one outbox, rendered once.
#[derive(Debug, Clone)]
pub struct Statements {
    pub claim: String,
    pub acknowledge: String,
    pub dead_letter: String,
    pub register: String,
    pub deregister: String,
    pub forget_dead_relays: String,
    pub sample: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_renders_the_contract_names() {
        let sql = Outbox::default().render("SELECT {id}, {type} FROM {outbox} JOIN {waiting}");
        assert_eq!(
            sql,
            r#"SELECT "id", "type" FROM "event_log" JOIN "event_log_waiting""#
        );
    }

    #[test]
    fn an_adopted_table_renders_its_own_names() {
        let outbox = Outbox {
            table: "events_eventlog".into(),
            event_type: "kind".into(),
            ..Outbox::default()
        };
        assert_eq!(
            outbox.render("{type} {dead_letter} {notify}"),
            r#""kind" "events_eventlog_dead_letter" "events_eventlog_notify""#
        );
        assert!(outbox
            .statements()
            .claim
            .contains(r#"FROM "events_eventlog""#));
        assert_eq!(outbox.channel("app"), r#""app.events_eventlog""#);
    }
}
