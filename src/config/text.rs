//! Small text helpers for configuration values: URL parameters, identifiers, redaction.

/// Removes `key` from a libpq URL's query string or a key=value connection string.
pub(super) fn take_param(url: &str, key: &str) -> (String, Option<String>) {
    let prefix = format!("{key}=");
    if url.contains("://") {
        let Some((base, query)) = url.split_once('?') else {
            return (url.to_owned(), None);
        };
        let mut value = None;
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| match pair.strip_prefix(&prefix) {
                Some(v) => {
                    value = Some(v.replace("%2F", "/").replace("%2f", "/"));
                    false
                }
                None => true,
            })
            .collect();
        let rebuilt = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        (rebuilt, value)
    } else {
        let mut value = None;
        let kept: Vec<&str> = url
            .split_whitespace()
            .filter(|pair| match pair.strip_prefix(&prefix) {
                Some(v) => {
                    value = Some(v.to_owned());
                    false
                }
                None => true,
            })
            .collect();
        (kept.join(" "), value)
    }
}

/// A ClickHouse database name we can splice into DDL safely.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64
}

/// Replaces the password of a URL (`scheme://user:password@host`) with `***`. Text that is
/// not such a URL comes back unchanged.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &authority[..colon],
            &rest[at..]
        ),
        _ => url.to_owned(),
    }
}
