//! PEM files for mutual TLS (the device agent's client side, the edge gateway's server side),
//! with errors that name the flag and the file.

use std::path::Path;

use anyhow::Context;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::RootCertStore;

fn pem_error(flag: &str, path: &Path, e: &dyn std::fmt::Debug) -> anyhow::Error {
    anyhow::anyhow!("--{flag} {}: {e:?}", path.display())
}

/// Every certificate of a PEM file (a leaf and its chain, or CA certificates); at least one.
pub fn certificates(flag: &str, path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(flag, path, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(flag, path, &e))?;
    if certs.is_empty() {
        anyhow::bail!("--{flag} {}: no certificate in the file", path.display());
    }
    Ok(certs)
}

/// The private key of a PEM file.
pub fn private_key(flag: &str, path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error(flag, path, &e))
}

/// A trust store of the CA certificates of a PEM file.
pub fn roots(flag: &str, path: &Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for c in certificates(flag, path)? {
        roots
            .add(c)
            .with_context(|| format!("--{flag} {}", path.display()))?;
    }
    Ok(roots)
}
