//! TLS for both servers, with rustls. Certificates are always verified: against the system's
//! roots (`SSL_CERT_FILE` overrides them, as with OpenSSL) plus, for PostgreSQL, the file the
//! URL names in `sslrootcert`. Whether TLS is used is the URL's business: `sslmode` for
//! PostgreSQL (`disable`, `prefer` — the default —, `require`), `https://` for ClickHouse.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::error::{Error, ErrorKind, Result};

/// A rustls client configuration trusting the system roots and `extra_roots` (PEM).
pub fn client_config(extra_roots: Option<&Path>) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable system certificates are skipped: an explicit root file may be all we need.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = extra_roots {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| {
                Error::with_source(
                    ErrorKind::Config,
                    format!("cannot read the root certificates in {}", path.display()),
                    e,
                )
            })?;
        if certs.is_empty() {
            return Err(Error::new(
                ErrorKind::Config,
                format!("{} holds no PEM certificate", path.display()),
            ));
        }
        roots.add_parsable_certificates(certs);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::with_source(ErrorKind::Config, "cannot set up TLS", e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// The PostgreSQL TLS connector for `pg`.
pub fn postgres(
    pg: &crate::config::PostgresConfig,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(
        client_config(pg.ssl_root_cert.as_deref())?,
    ))
}
