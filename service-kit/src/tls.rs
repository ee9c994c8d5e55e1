//! TLS termination for a listener: the settings ([`TlsSettings`]), the certificates by server
//! name ([`CertificateStore`], SNI: exact name, then the longest wildcard, then the default), the
//! handshake with its deadline ([`TlsTerminator::accept`]) and the reload of certificate files
//! that change on disk ([`TlsTerminator::watch`]).
//!
//! rustls with the `ring` provider, TLS 1.2 and 1.3. ALPN offers `h2` and `http/1.1`; the
//! listener serves each connection as the ALPN result says ([`TlsConnection::alpn`]).
//!
//! A reload builds a whole new [`ServerConfig`] (certificates and the client CA bundle) and swaps
//! it in atomically: handshakes from then on use it, connections already up keep theirs, so none
//! is dropped. A file that fails to load leaves the running configuration in place.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderValue;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ProtocolVersion, RootCertStore, ServerConfig};
use serde::Deserialize;
use sha2::Digest;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// The TLS side of a listener. No certificate: the listener serves plain HTTP.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// Certificates and their keys (PEM files). The first is the default: a client whose SNI
    /// names no certificate (or who sends none) gets it, as Envoy's default filter chain does.
    pub certificates: Vec<CertificateFiles>,
    /// Istio's `tls.mode`: whether clients must present a certificate.
    pub mode: TlsMode,
    /// PEM bundle of the CAs that client certificates must chain to (`mutual`,
    /// `optional_mutual`); Istio's `caCertificates`.
    pub ca_certificates: Option<PathBuf>,
    /// A connection whose handshake has not completed in this time is closed, so half-open
    /// handshakes cannot hold the listener's resources (Envoy's
    /// `transport_socket_connect_timeout`).
    #[serde(with = "http_rules::duration")]
    pub handshake_timeout: Duration,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self { certificates: Vec::new(), mode: TlsMode::Simple, ca_certificates: None, handshake_timeout: Duration::from_secs(10) }
    }
}

impl TlsSettings {
    pub fn enabled(&self) -> bool {
        !self.certificates.is_empty()
    }
}

/// One certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateFiles {
    /// PEM: the leaf certificate first, then its intermediates.
    pub certificate: PathBuf,
    /// PEM: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub private_key: PathBuf,
    /// The names SNI selects this certificate for (`*.example.com` for a wildcard). Empty: the
    /// certificate's own DNS subjectAltNames.
    #[serde(default)]
    pub server_names: Vec<String>,
}

/// Client certificates, with Istio's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Server certificate only.
    Simple,
    /// A client certificate that chains to `ca_certificates` is required.
    Mutual,
    /// A client certificate is verified when presented; clients without one are served too.
    OptionalMutual,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls.{key}: {path}: {problem}")]
    File { key: &'static str, path: String, problem: String },
    #[error("tls.ca_certificates: required when tls.mode is mutual or optional_mutual")]
    MissingCa,
    #[error("tls.certificates: none given, yet tls.mode or tls.ca_certificates asks for TLS (the listener would serve in clear)")]
    NoCertificates,
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("tls.ca_certificates: {0}")]
    Verifier(String),
}

fn file_error(key: &'static str, path: &Path, problem: impl std::fmt::Display) -> TlsError {
    TlsError::File { key, path: path.display().to_string(), problem: problem.to_string() }
}

/// Certificates by server name, as SNI selects them.
#[derive(Debug)]
pub struct CertificateStore {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `(".example.com", key)`, longest suffix first.
    wildcards: Vec<(String, Arc<CertifiedKey>)>,
    default: Arc<CertifiedKey>,
}

impl CertificateStore {
    /// Loads every certificate of `files` (at least one). A name claimed twice goes to the
    /// first certificate that claims it.
    pub fn load(files: &[CertificateFiles], provider: &CryptoProvider) -> Result<Self, TlsError> {
        let mut loaded = Vec::with_capacity(files.len());
        for file in files {
            let (key, names) = load_certified_key(file, provider)?;
            loaded.push((Arc::new(key), names));
        }
        let default = loaded.first().map(|(key, _)| key.clone()).ok_or_else(|| TlsError::File {
            key: "certificates",
            path: String::new(),
            problem: "no certificate given".into(),
        })?;
        let mut exact = HashMap::new();
        let mut wildcards: Vec<(String, Arc<CertifiedKey>)> = Vec::new();
        for (key, names) in loaded {
            for name in names {
                let name = name.to_ascii_lowercase();
                match name.strip_prefix('*') {
                    Some(suffix) if suffix.starts_with('.') => {
                        if !wildcards.iter().any(|(s, _)| s == suffix) {
                            wildcards.push((suffix.to_owned(), key.clone()));
                        }
                    }
                    _ => {
                        exact.entry(name).or_insert_with(|| key.clone());
                    }
                }
            }
        }
        // Stable: among equal lengths the first certificate stays first.
        wildcards.sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        Ok(Self { exact, wildcards, default })
    }

    /// The certificate for `server_name` (SNI): exact, then the longest wildcard suffix, then
    /// the default. A wildcard matches any name under its suffix, as virtual hosts do.
    pub fn select(&self, server_name: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = server_name else { return &self.default };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(key) = self.exact.get(&name) {
            return key;
        }
        self.wildcards
            .iter()
            .find(|(suffix, _)| name.len() > suffix.len() && name.ends_with(suffix.as_str()))
            .map_or(&self.default, |(_, key)| key)
    }
}

impl ResolvesServerCert for CertificateStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.select(hello.server_name()).clone())
    }
}

/// A certificate chain, its signing key, and the names it is selected for.
fn load_certified_key(files: &CertificateFiles, provider: &CryptoProvider) -> Result<(CertifiedKey, Vec<String>), TlsError> {
    let chain = read_certificates("certificates.certificate", &files.certificate)?;
    let key =
        PrivateKeyDer::from_pem_file(&files.private_key).map_err(|e| file_error("certificates.private_key", &files.private_key, e))?;
    let signer = provider.key_provider.load_private_key(key).map_err(|e| file_error("certificates.private_key", &files.private_key, e))?;
    let certified = CertifiedKey::new(chain, signer);
    certified
        .keys_match()
        .map_err(|e| file_error("certificates.private_key", &files.private_key, format!("does not match the certificate: {e}")))?;
    let names = if files.server_names.is_empty() {
        let leaf = certified.end_entity_cert().map_err(|e| file_error("certificates.certificate", &files.certificate, e))?;
        dns_names(leaf).map_err(|e| file_error("certificates.certificate", &files.certificate, e))?
    } else {
        files.server_names.clone()
    };
    Ok((certified, names))
}

fn read_certificates(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates =
        CertificateDer::pem_file_iter(path).and_then(|iter| iter.collect::<Result<Vec<_>, _>>()).map_err(|e| file_error(key, path, e))?;
    if certificates.is_empty() {
        return Err(file_error(key, path, "no PEM certificate in the file"));
    }
    Ok(certificates)
}

/// The DNS names of a certificate's subjectAltName extension.
fn dns_names(certificate: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let names = parsed
        .subject_alternative_name()
        .map_err(|e| format!("bad subjectAltName: {e}"))?
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    x509_parser::extensions::GeneralName::DNSName(dns) => Some((*dns).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(names)
}

/// What the handshake of a connection settled, given to each of its requests as an extension
/// (next to [`crate::serve::ClientAddr`]).
#[derive(Debug)]
pub struct TlsConnection {
    /// `"1.2"` or `"1.3"` (OpenTelemetry's `tls.protocol.version`).
    pub protocol_version: &'static str,
    /// The ALPN protocol agreed on, if any.
    pub alpn: Option<Alpn>,
    /// The client's verified certificate, in Envoy's `x-forwarded-client-cert` form
    /// (`Hash=...;Subject="...";URI=...;DNS=...`), made once per connection. Only a certificate
    /// that chained to the CA bundle gets here: rustls refuses the handshake otherwise.
    pub client_certificate: Option<HeaderValue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    Http2,
    Http11,
}

/// The listener's TLS: the current [`ServerConfig`] (swapped whole on reload) and the
/// handshake deadline.
#[derive(Clone)]
pub struct TlsTerminator {
    config: Arc<ArcSwap<ServerConfig>>,
    settings: Arc<TlsSettings>,
    provider: Arc<CryptoProvider>,
}

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("TLS handshake not done within {0:?}")]
    TimedOut(Duration),
    #[error("TLS handshake failed: {0}")]
    Failed(#[from] std::io::Error),
}

impl TlsTerminator {
    /// The listener's TLS, or `None` for a plain listener: no certificate and no other `tls`
    /// key set. Client-certificate settings without a certificate are refused rather than
    /// served in clear.
    pub fn from_settings(settings: &TlsSettings) -> Result<Option<Self>, TlsError> {
        if settings.enabled() {
            return Self::new(settings).map(Some);
        }
        if settings.mode != TlsMode::Simple || settings.ca_certificates.is_some() {
            return Err(TlsError::NoCertificates);
        }
        Ok(None)
    }

    /// Loads the certificates (and CA bundle) of `settings`; errors name the key and the file.
    pub fn new(settings: &TlsSettings) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = build_config(settings, &provider)?;
        Ok(Self { config: Arc::new(ArcSwap::from_pointee(config)), settings: Arc::new(settings.clone()), provider })
    }

    /// Loads the files again and swaps the result in; on error the running configuration stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = build_config(&self.settings, &self.provider)?;
        self.config.store(Arc::new(config));
        Ok(())
    }

    /// The handshake, under the configured deadline.
    pub async fn accept(&self, stream: TcpStream) -> Result<(TlsStream<TcpStream>, TlsConnection), HandshakeError> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config.load_full());
        let deadline = self.settings.handshake_timeout;
        let stream = tokio::time::timeout(deadline, acceptor.accept(stream)).await.map_err(|_| HandshakeError::TimedOut(deadline))??;
        let (_, session) = stream.get_ref();
        let protocol_version = match session.protocol_version() {
            Some(ProtocolVersion::TLSv1_3) => "1.3",
            Some(ProtocolVersion::TLSv1_2) => "1.2",
            _ => "unknown",
        };
        let alpn = match session.alpn_protocol() {
            Some(b"h2") => Some(Alpn::Http2),
            Some(b"http/1.1") => Some(Alpn::Http11),
            _ => None,
        };
        let client_certificate = session.peer_certificates().and_then(|chain| chain.first()).map(forwarded_client_cert);
        Ok((stream, TlsConnection { protocol_version, alpn, client_certificate }))
    }

    /// Reloads on SIGHUP and whenever a certificate, key or CA file changes (checked every
    /// `poll`; zero: SIGHUP only), until `stop` resolves. Contents are compared, so Kubernetes'
    /// Secret symlink swaps are seen too.
    pub async fn watch(self, poll: Duration, stop: impl Future<Output = ()>) {
        let files = || {
            let certificates = self.settings.certificates.iter().flat_map(|c| [c.certificate.as_path(), c.private_key.as_path()]);
            crate::watch::contents(certificates.chain(self.settings.ca_certificates.as_deref()))
        };
        crate::watch::on_change(poll, stop, files, |_| match self.reload() {
            Ok(()) => tracing::info!(certificates = self.settings.certificates.len(), "TLS certificates reloaded"),
            Err(error) => tracing::error!(%error, "TLS certificates rejected; the previous ones keep serving"),
        })
        .await;
    }
}

fn build_config(settings: &TlsSettings, provider: &Arc<CryptoProvider>) -> Result<ServerConfig, TlsError> {
    let store = CertificateStore::load(&settings.certificates, provider)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match settings.mode {
        TlsMode::Simple => builder.with_no_client_auth(),
        TlsMode::Mutual | TlsMode::OptionalMutual => {
            let path = settings.ca_certificates.as_ref().ok_or(TlsError::MissingCa)?;
            let mut roots = RootCertStore::empty();
            for certificate in read_certificates("ca_certificates", path)? {
                roots.add(certificate).map_err(|e| file_error("ca_certificates", path, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let verifier = if settings.mode == TlsMode::OptionalMutual { verifier.allow_unauthenticated() } else { verifier };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| TlsError::Verifier(e.to_string()))?)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(store));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Envoy's `x-forwarded-client-cert` element for a verified client certificate:
/// `Hash=<SHA-256 of the DER, hex>;Subject="<subject>";URI=<uri SAN>;DNS=<dns SAN>`.
fn forwarded_client_cert(certificate: &CertificateDer<'_>) -> HeaderValue {
    let mut value = String::from("Hash=");
    for byte in sha2::Sha256::digest(certificate.as_ref()) {
        let _ = write!(value, "{byte:02x}");
    }
    if let Ok((_, parsed)) = x509_parser::parse_x509_certificate(certificate) {
        let subject = parsed.subject().to_string();
        if !subject.is_empty() {
            value.push_str(";Subject=\"");
            value.extend(subject.chars().flat_map(|c| if matches!(c, '"' | '\\') { vec!['\\', c] } else { vec![c] }));
            value.push('"');
        }
        if let Ok(Some(san)) = parsed.subject_alternative_name() {
            for name in &san.value.general_names {
                let (key, text) = match name {
                    x509_parser::extensions::GeneralName::URI(uri) => ("URI", *uri),
                    x509_parser::extensions::GeneralName::DNSName(dns) => ("DNS", *dns),
                    _ => continue,
                };
                // Values with the element's separators would need quoting; certificates do not
                // carry them in URI or DNS names, and one that did is left out rather than
                // misread downstream.
                if !text.contains([',', ';', '=', '"']) {
                    let _ = write!(value, ";{key}={text}");
                }
            }
        }
    }
    // Hex, a subject and SAN text: visible ASCII, unless a subject carries other bytes.
    HeaderValue::try_from(value).unwrap_or_else(|_| HeaderValue::from_static("Hash=unrepresentable"))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Issued {
        certificate: PathBuf,
        private_key: PathBuf,
        der: CertificateDer<'static>,
    }

    fn issue(dir: &Path, name: &str, sans: &[&str]) -> Issued {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let certificate = dir.join(format!("{name}.crt"));
        let private_key = dir.join(format!("{name}.key"));
        std::fs::write(&certificate, cert.pem()).unwrap();
        std::fs::write(&private_key, key.serialize_pem()).unwrap();
        Issued { certificate, private_key, der: cert.der().clone() }
    }

    fn dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("service-kit-tls-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn files(issued: &Issued) -> CertificateFiles {
        CertificateFiles { certificate: issued.certificate.clone(), private_key: issued.private_key.clone(), server_names: vec![] }
    }

    #[test]
    fn sni_picks_exact_then_longest_wildcard_then_the_default() {
        let dir = dir("sni");
        let default = issue(&dir, "default", &["default.test"]);
        let wide = issue(&dir, "wide", &["*.test"]);
        let narrow = issue(&dir, "narrow", &["*.api.test"]);
        let exact = issue(&dir, "exact", &["www.api.test"]);
        let provider = rustls::crypto::ring::default_provider();
        let store = CertificateStore::load(&[files(&default), files(&wide), files(&narrow), files(&exact)], &provider).unwrap();
        let leaf = |name: Option<&str>| store.select(name).end_entity_cert().unwrap().clone();
        assert_eq!(leaf(Some("WWW.api.test.")), exact.der);
        assert_eq!(leaf(Some("v1.api.test")), narrow.der);
        assert_eq!(leaf(Some("a.b.test")), wide.der);
        assert_eq!(leaf(Some("default.test")), default.der);
        assert_eq!(leaf(Some("unknown.example")), default.der);
        assert_eq!(leaf(Some("test")), default.der, "a wildcard needs a label before its suffix");
        assert_eq!(leaf(None), default.der);
    }

    #[test]
    fn server_names_given_replace_the_certificates_own() {
        let dir = dir("override");
        let first = issue(&dir, "first", &["first.test"]);
        let second = issue(&dir, "second", &["second.test"]);
        let provider = rustls::crypto::ring::default_provider();
        let overridden = CertificateFiles { server_names: vec!["other.test".into()], ..files(&second) };
        let store = CertificateStore::load(&[files(&first), overridden], &provider).unwrap();
        assert_eq!(store.select(Some("other.test")).end_entity_cert().unwrap(), &second.der);
        assert_eq!(store.select(Some("second.test")).end_entity_cert().unwrap(), &first.der);
    }

    #[test]
    fn bad_files_are_named_with_their_key() {
        let dir = dir("bad");
        let good = issue(&dir, "good", &["good.test"]);
        let other = issue(&dir, "other", &["other.test"]);
        let provider = rustls::crypto::ring::default_provider();
        let missing = CertificateFiles { certificate: dir.join("missing.crt"), ..files(&good) };
        let error = CertificateStore::load(&[missing], &provider).unwrap_err().to_string();
        assert!(error.starts_with("tls.certificates.certificate: ") && error.contains("missing.crt"), "{error}");
        let mismatched = CertificateFiles { private_key: other.private_key.clone(), ..files(&good) };
        let error = CertificateStore::load(&[mismatched], &provider).unwrap_err().to_string();
        assert!(error.contains("private_key") && error.contains("does not match"), "{error}");
        let not_pem = dir.join("not.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let error =
            CertificateStore::load(&[CertificateFiles { certificate: not_pem, ..files(&good) }], &provider).unwrap_err().to_string();
        assert!(error.contains("no PEM certificate"), "{error}");
        let settings = TlsSettings { certificates: vec![files(&good)], mode: TlsMode::Mutual, ..TlsSettings::default() };
        assert!(matches!(TlsTerminator::new(&settings), Err(TlsError::MissingCa)));
        let no_certificate =
            TlsSettings { mode: TlsMode::Mutual, ca_certificates: Some(good.certificate.clone()), ..TlsSettings::default() };
        assert!(
            matches!(TlsTerminator::from_settings(&no_certificate), Err(TlsError::NoCertificates)),
            "never TLS settings served in clear"
        );
        assert!(matches!(TlsTerminator::from_settings(&TlsSettings::default()), Ok(None)));
    }

    #[test]
    fn a_reload_that_fails_keeps_the_running_certificates() {
        let dir = dir("reload");
        let first = issue(&dir, "first", &["reload.test"]);
        let second = issue(&dir, "second", &["reload.test"]);
        let settings = TlsSettings { certificates: vec![files(&first)], ..TlsSettings::default() };
        let tls = TlsTerminator::new(&settings).unwrap();
        let running = tls.config.load_full();
        std::fs::copy(&second.private_key, &first.private_key).unwrap();
        let error = tls.reload().unwrap_err().to_string();
        assert!(error.contains("does not match"), "{error}");
        assert!(Arc::ptr_eq(&running, &tls.config.load_full()), "the running configuration stays");
        std::fs::copy(&second.certificate, &first.certificate).unwrap();
        tls.reload().unwrap();
        assert!(!Arc::ptr_eq(&running, &tls.config.load_full()), "a good set is swapped in");
    }

    #[test]
    fn the_forwarded_client_cert_has_hash_subject_and_names() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["client.test".to_string()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "client \"one\"");
        params.subject_alt_names.push(rcgen::SanType::URI("spiffe://test/ns/a/sa/b".try_into().unwrap()));
        let cert = params.self_signed(&key).unwrap();
        let value = forwarded_client_cert(cert.der());
        let value = value.to_str().unwrap();
        let hash: String = sha2::Sha256::digest(cert.der().as_ref()).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(value, format!("Hash={hash};Subject=\"CN=client \\\"one\\\"\";DNS=client.test;URI=spiffe://test/ns/a/sa/b"));
    }
}
