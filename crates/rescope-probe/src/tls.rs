//! TLS for the probe's connections to `https://` apps: publishing, the control
//! websocket and pipes all use one client configuration. It trusts the system's
//! certificate authorities plus an optional CA file (an app with a self-signed or
//! private-CA certificate), or, when asked explicitly, any certificate at all.

use std::path::Path;
use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tracing::{debug, warn};

/// The client side of TLS, shared by every connection to an app.
#[derive(Debug, Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn builder() -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier> {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("invariant: aws-lc-rs's provider supports the default TLS versions")
}

/// The system's certificate authorities (`/etc/ssl/certs` and the like).
fn system_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    let system = rustls_native_certs::load_native_certs();
    for e in &system.errors {
        debug!(error = %e, "reading the system's certificate authorities");
    }
    let (added, _) = roots.add_parsable_certificates(system.certs);
    debug!(added, "system certificate authorities");
    roots
}

impl ClientTls {
    /// Trusts the system's authorities and the certificates in `ca_file`; with
    /// `insecure`, trusts any certificate (a warning says so). Fails only on an
    /// unreadable CA file or one without a certificate.
    pub fn new(ca_file: Option<&Path>, insecure: bool) -> Result<Self, String> {
        let config = if insecure {
            warn!(
                "--insecure: the probe accepts any certificate from https apps, so anyone on \
                 the path can read and change its reports and controls"
            );
            builder()
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
                .with_no_client_auth()
        } else if let Some(path) = ca_file {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("CA file {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!(
                    "CA file {}: no PEM certificate in it",
                    path.display()
                ));
            }
            let mut roots = system_roots();
            for cert in &certs {
                roots
                    .add(cert.clone())
                    .map_err(|e| format!("CA file {}: {e}", path.display()))?;
            }
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .map_err(|e| format!("CA file {}: {e}", path.display()))?;
            builder()
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedOrWebPki {
                    webpki,
                    pinned: certs,
                }))
                .with_no_client_auth()
        } else {
            builder()
                .with_root_certificates(system_roots())
                .with_no_client_auth()
        };
        Ok(ClientTls {
            config: Arc::new(config),
        })
    }

    /// The system's authorities only: what a probe without TLS flags trusts.
    pub fn system() -> Self {
        let config = builder()
            .with_root_certificates(system_roots())
            .with_no_client_auth();
        ClientTls {
            config: Arc::new(config),
        }
    }

    /// An HTTP client builder that uses this configuration for `https://` URLs.
    pub fn http_builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder().tls_backend_preconfigured((*self.config).clone())
    }

    /// The websocket connector for `wss://` URLs.
    pub fn ws_connector(&self) -> tokio_tungstenite::Connector {
        tokio_tungstenite::Connector::Rustls(self.config.clone())
    }
}

/// The usual chain and name checks, except that a server presenting exactly one of the
/// certificates of `--tls-ca-file` is trusted as it is: `openssl req -x509` makes
/// self-signed certificates marked as CAs, which strict chain validation refuses to
/// accept as a server's own certificate.
#[derive(Debug)]
struct PinnedOrWebPki {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for PinnedOrWebPki {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Ok(verified) => Ok(verified),
            Err(_)
                if self
                    .pinned
                    .iter()
                    .any(|p| p.as_ref() == end_entity.as_ref()) =>
            {
                Ok(ServerCertVerified::assertion())
            }
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// Accepts any server certificate, but still checks that the handshake was signed by
/// the key in it (so the connection is at least encrypted to whoever answered).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_refused_with_its_name() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "hello\n").expect("write");
        let e = ClientTls::new(Some(&path), false).expect_err("no certificate");
        assert!(
            e.contains("ca.pem") && e.contains("no PEM certificate"),
            "{e}"
        );
        let e = ClientTls::new(Some(&dir.path().join("absent.pem")), false).expect_err("missing");
        assert!(e.contains("absent.pem"), "{e}");
        assert!(ClientTls::new(None, false).is_ok());
        assert!(ClientTls::new(None, true).is_ok());
    }
}
