//! The gateway terminating TLS, against real clients (curl, Python `ssl` and `httpx`) with
//! certificates made here (rcgen): HTTP/1.1 and h2 over TLS, SNI, ALPN, a certificate rotated
//! during a download, client certificates, a handshake flood, and mirrored HTTPS copies.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e_tests::gateway::{recorder, scratch_dir};
use e2e_tests::otlp::Receiver;
use e2e_tests::peers::run_client;
use e2e_tests::running::Running;
use e2e_tests::services::telemetry;
use e2e_tests::upstream::{Behaviour, Upstream};
use e2e_tests::wire::TrickleUpstream;
use e2e_tests::{client, eventually, python_peer};
use gateway::Gateway;
use gateway::settings::GatewaySettings;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType};
use serde_json::Value;
use service_kit::settings::{Layered, Sources};
use service_kit::tls::{CertificateFiles, TlsMode, TlsSettings};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// A CA of the test, and certificates it signs, written as PEM files into `dir`.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pem: PathBuf,
    dir: PathBuf,
}

/// A certificate and its key on disk, and the SHA-256 of its DER (what a client sees).
#[derive(Clone)]
struct Issued {
    certificate: PathBuf,
    private_key: PathBuf,
    sha256: String,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, format!("{name} test CA"));
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pem = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&pem, issuer.pem()).unwrap();
        Self { issuer, pem, dir: dir.to_owned() }
    }

    fn issue(&self, file: &str, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Issued {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("client"));
        let client = usage == ExtendedKeyUsagePurpose::ClientAuth;
        params.extended_key_usages = vec![usage];
        if client {
            params.subject_alt_names.push(SanType::URI("spiffe://test/ns/shop/sa/client".try_into().unwrap()));
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let issued = Issued {
            certificate: self.dir.join(format!("{file}.crt")),
            private_key: self.dir.join(format!("{file}.key")),
            sha256: sha256_hex(cert.der()),
        };
        std::fs::write(&issued.certificate, cert.pem()).unwrap();
        std::fs::write(&issued.private_key, key.serialize_pem()).unwrap();
        issued
    }

    fn server(&self, file: &str, names: &[&str]) -> Issued {
        self.issue(file, names, ExtendedKeyUsagePurpose::ServerAuth)
    }
}

fn sha256_hex(der: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(der).iter().map(|b| format!("{b:02x}")).collect()
}

fn files(issued: &Issued) -> CertificateFiles {
    CertificateFiles { certificate: issued.certificate.clone(), private_key: issued.private_key.clone(), server_names: vec![] }
}

/// A gateway whose data-plane listener is TLS, polling its certificate files every 50 ms.
struct TlsGateway {
    addr: SocketAddr,
    admin: SocketAddr,
    running: Running,
}

impl TlsGateway {
    async fn start(routing: &str, tls: TlsSettings, receiver: Option<&Receiver>) -> Self {
        let dir = scratch_dir("tls-config");
        let path = dir.join("gateway.yaml");
        std::fs::write(&path, routing).unwrap();
        let overrides = vec![("reload.poll_interval", "50ms".to_owned())];
        let settings = GatewaySettings::load(Sources { overrides, ..Sources::default() }).unwrap();
        let settings = GatewaySettings { config: vec![path.clone()], tls, ..settings };
        let loaded = gateway_config::load_files_with(&[path], &settings.load_options()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gateway = Gateway::with_listeners(listener, admin, settings, loaded, Some(recorder())).unwrap();
        let (addr, admin) = (gateway.local_addr().unwrap(), gateway.admin_addr().unwrap());
        let running = Running::spawn(telemetry("gateway", "test", receiver), |stopped| gateway.run_until(stopped));
        Self { addr, admin, running }
    }

    fn port(&self) -> String {
        self.addr.port().to_string()
    }

    /// `https://{name}:{port}{path}`, for curl with `--resolve`.
    fn url(&self, name: &str, path: &str) -> String {
        format!("https://{name}:{}{path}", self.addr.port())
    }

    fn resolve(&self, name: &str) -> String {
        format!("{name}:{}:127.0.0.1", self.addr.port())
    }

    async fn mirrors(&self) -> Value {
        let body = client().get(format!("http://{}/mirrors", self.admin)).send().await.unwrap().text().await.unwrap();
        serde_json::from_str(&body).unwrap()
    }
}

fn settings(certificates: &[&Issued]) -> TlsSettings {
    TlsSettings { certificates: certificates.iter().map(|c| files(c)).collect(), ..TlsSettings::default() }
}

fn routing(upstream: SocketAddr) -> String {
    format!("services:\n  app: [{upstream}]\nroutes:\n  - name: app\n    to: app\n")
}

/// What curl did: its exit status, the body, and `%{{http_version}}` on the last line.
struct Curl {
    ok: bool,
    body: String,
    http_version: String,
    stderr: String,
}

async fn curl(args: &[&str]) -> Curl {
    let output = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "20", "--noproxy", "*", "-w", "\n%{http_version}"])
        .args(args)
        .output()
        .await
        .expect("curl runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, version) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    Curl {
        ok: output.status.success(),
        body: body.to_owned(),
        http_version: version.to_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn handshake(gateway: &TlsGateway, server_name: Option<&str>, alpn: Option<&str>) -> Value {
    let port = gateway.port();
    let mut args = vec!["handshake", "127.0.0.1", &port];
    if let Some(name) = server_name {
        args.extend(["--server-name", name]);
    }
    if let Some(alpn) = alpn {
        args.extend(["--alpn", alpn]);
    }
    run_client("tls_client.py", &args).await
}

#[tokio::test(flavor = "multi_thread")]
async fn https_is_served_over_http1_and_h2_to_curl_and_httpx_with_forwarding_headers_and_span() {
    if !python_peer("httpx") || !python_peer("h2") {
        return;
    }
    let receiver = Receiver::start_local().await.unwrap();
    let dir = scratch_dir("tls-basic");
    let ca = Ca::new(&dir, "basic");
    let localhost = ca.server("localhost", &["localhost"]);
    let upstream = Upstream::start(Behaviour::ok("hello over tls")).await;
    let gateway = TlsGateway::start(&routing(upstream.addr), settings(&[&localhost]), Some(&receiver)).await;
    let ca_pem = ca.pem.to_str().unwrap();
    let url = gateway.url("localhost", "/hello");

    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let out = curl(&[flag, "--cacert", ca_pem, "-H", "x-forwarded-client-cert: Hash=forged", &url]).await;
        assert!(out.ok, "curl {flag}: {}", out.stderr);
        assert_eq!((out.body.as_str(), out.http_version.as_str()), ("hello over tls", version), "curl {flag}");
    }
    for (http2, version) in [(false, "HTTP/1.1"), (true, "HTTP/2")] {
        let mut args = vec!["fetch", &url, "--ca", ca_pem];
        if http2 {
            args.push("--http2");
        }
        let out = run_client("tls_client.py", &args).await;
        assert_eq!(out["status"], 200, "httpx: {out}");
        assert_eq!((out["body"].as_str(), out["http_version"].as_str()), (Some("hello over tls"), Some(version)), "{out}");
    }
    let seen = upstream.wait_for(4, Duration::from_secs(5)).await;
    assert_eq!(seen.len(), 4);
    for request in &seen {
        assert_eq!(request.headers["x-forwarded-proto"], "https");
        assert!(!request.headers.contains_key("x-forwarded-client-cert"), "a client's claim is stripped: {:?}", request.headers);
    }

    gateway.running.flush().await;
    let spans = receiver.wait_until(Duration::from_secs(10), |s| s.iter().filter(|s| s.kind == "server").count() >= 4).await;
    let servers: Vec<_> = spans.iter().filter(|s| s.kind == "server").collect();
    assert_eq!(servers.len(), 4, "a server span for each request, HTTP/2 streams too");
    let server = servers[0];
    assert_eq!(server.attr("tls.protocol.version").and_then(Value::as_str), Some("1.3"), "{:?}", server.attributes);
    assert_eq!(server.attr("tls.client.certificate_presented").and_then(Value::as_bool), Some(false));
    gateway.running.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sni_picks_exact_then_wildcard_and_unknown_names_get_the_default_and_alpn_is_honoured() {
    if !python_peer("ssl") {
        return;
    }
    let dir = scratch_dir("tls-sni");
    let ca = Ca::new(&dir, "sni");
    let default = ca.server("default", &["default.test"]);
    let wildcard = ca.server("wildcard", &["*.shop.test"]);
    let exact = ca.server("exact", &["api.shop.test", "exact.test"]);
    let upstream = Upstream::start(Behaviour::ok("sni")).await;
    let gateway = TlsGateway::start(&routing(upstream.addr), settings(&[&default, &wildcard, &exact]), None).await;

    for (name, expected, which) in [
        (Some("exact.test"), &exact, "exact"),
        (Some("API.shop.test"), &exact, "exact beats the wildcard, case-insensitively"),
        (Some("www.shop.test"), &wildcard, "wildcard"),
        (Some("default.test"), &default, "the default's own name"),
        (Some("unknown.example"), &default, "an unknown name gets the default"),
        (None, &default, "no SNI gets the default"),
    ] {
        let seen = handshake(&gateway, name, None).await;
        assert_eq!(seen["sha256"].as_str(), Some(expected.sha256.as_str()), "{which}: {seen}");
    }
    assert_ne!(default.sha256, wildcard.sha256);

    let h2 = handshake(&gateway, Some("exact.test"), Some("h2,http/1.1")).await;
    assert_eq!((h2["alpn"].as_str(), h2["version"].as_str()), (Some("h2"), Some("TLSv1.3")), "{h2}");
    let http1 = handshake(&gateway, Some("exact.test"), Some("http/1.1")).await;
    assert_eq!(http1["alpn"].as_str(), Some("http/1.1"), "{http1}");
    let none = handshake(&gateway, Some("exact.test"), None).await;
    assert_eq!(none["alpn"], Value::Null, "{none}");

    // Served as ALPN says: curl that negotiated h2 speaks h2, and one that offered only
    // http/1.1 gets HTTP/1.1.
    let ca_pem = ca.pem.to_str().unwrap();
    let (url, resolve) = (gateway.url("www.shop.test", "/"), gateway.resolve("www.shop.test"));
    let h2 = curl(&["--http2", "--cacert", ca_pem, "--resolve", &resolve, &url]).await;
    assert!(h2.ok && h2.http_version == "2", "{} {}", h2.http_version, h2.stderr);
    let http1 = curl(&["--http1.1", "--cacert", ca_pem, "--resolve", &resolve, &url]).await;
    assert!(http1.ok && http1.http_version == "1.1", "{} {}", http1.http_version, http1.stderr);
    gateway.running.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_rotated_on_disk_serves_new_connections_while_a_long_download_completes() {
    if !python_peer("ssl") {
        return;
    }
    let dir = scratch_dir("tls-rotate");
    let ca = Ca::new(&dir, "rotate");
    let first = ca.server("first", &["rotate.test"]);
    let second = ca.server("second", &["rotate.test"]);
    // The files the gateway reads: the first certificate now, the second one later.
    let live = Issued { certificate: dir.join("live.crt"), private_key: dir.join("live.key"), sha256: first.sha256.clone() };
    std::fs::copy(&first.certificate, &live.certificate).unwrap();
    std::fs::copy(&first.private_key, &live.private_key).unwrap();
    let chunks = 60;
    let trickle = TrickleUpstream::start(chunks, Duration::from_millis(100)).await;
    let gateway = TlsGateway::start(&routing(trickle.addr), settings(&[&live]), None).await;
    assert_eq!(handshake(&gateway, Some("rotate.test"), None).await["sha256"].as_str(), Some(first.sha256.as_str()));

    let (url, resolve, ca_pem) =
        (gateway.url("rotate.test", "/download"), gateway.resolve("rotate.test"), ca.pem.to_str().unwrap().to_owned());
    let download = tokio::spawn(async move { curl(&["--http1.1", "--cacert", &ca_pem, "--resolve", &resolve, &url]).await });
    eventually("the download is under way", Duration::from_secs(10), || async { trickle.sent() >= 2 }).await;

    // Replaced as Kubernetes does it: new files renamed over the old ones.
    for (from, to) in [(&second.private_key, &live.private_key), (&second.certificate, &live.certificate)] {
        let staged = to.with_extension("staged");
        std::fs::copy(from, &staged).unwrap();
        std::fs::rename(&staged, to).unwrap();
    }
    eventually("new connections get the new certificate", Duration::from_secs(10), || async {
        handshake(&gateway, Some("rotate.test"), None).await["sha256"].as_str() == Some(second.sha256.as_str())
    })
    .await;
    assert!(trickle.sent() < chunks, "the rotation happened while the download ran ({} chunks sent)", trickle.sent());

    let done = download.await.unwrap();
    assert!(done.ok, "the download survives the rotation: {}", done.stderr);
    assert_eq!(done.body.lines().count(), chunks, "every chunk arrived");
    assert!(!trickle.cut());
    gateway.running.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_serves_a_trusted_client_certificate_and_refuses_an_untrusted_or_missing_one() {
    if !python_peer("httpx") {
        return;
    }
    let receiver = Receiver::start_local().await.unwrap();
    let dir = scratch_dir("tls-mutual");
    let ca = Ca::new(&dir, "mutual");
    let stranger = Ca::new(&dir, "stranger");
    let server = ca.server("server", &["localhost"]);
    let good = ca.issue("good-client", &["client.test"], ExtendedKeyUsagePurpose::ClientAuth);
    let untrusted = stranger.issue("untrusted-client", &["client.test"], ExtendedKeyUsagePurpose::ClientAuth);
    let upstream = Upstream::start(Behaviour::ok("mutual")).await;
    let tls = TlsSettings { mode: TlsMode::Mutual, ca_certificates: Some(ca.pem.clone()), ..settings(&[&server]) };
    let gateway = TlsGateway::start(&routing(upstream.addr), tls, Some(&receiver)).await;
    let (url, ca_pem) = (gateway.url("localhost", "/who"), ca.pem.to_str().unwrap());
    let with = |c: &Issued| [c.certificate.to_str().unwrap().to_owned(), c.private_key.to_str().unwrap().to_owned()];

    let [cert, key] = with(&good);
    let out =
        curl(&["--http2", "--cacert", ca_pem, "--cert", &cert, "--key", &key, "-H", "x-forwarded-client-cert: Hash=forged", &url]).await;
    assert!(out.ok && out.body == "mutual", "good certificate over curl: {} {}", out.body, out.stderr);
    let out = run_client("tls_client.py", &["fetch", &url, "--ca", ca_pem, "--cert", &cert, "--key", &key]).await;
    assert_eq!(out["status"], 200, "good certificate over httpx: {out}");
    let seen = upstream.wait_for(2, Duration::from_secs(5)).await;
    let expected = format!("Hash={};Subject=\"CN=client.test\";DNS=client.test;URI=spiffe://test/ns/shop/sa/client", good.sha256);
    for request in &seen {
        assert_eq!(request.headers["x-forwarded-client-cert"], expected.as_str(), "the verified identity, not the client's claim");
        assert_eq!(request.headers["x-forwarded-proto"], "https");
    }

    let [cert, key] = with(&untrusted);
    let out = curl(&["--cacert", ca_pem, "--cert", &cert, "--key", &key, &url]).await;
    assert!(!out.ok, "an untrusted certificate is refused, got {}", out.body);
    let out = run_client("tls_client.py", &["fetch", &url, "--ca", ca_pem, "--cert", &cert, "--key", &key]).await;
    assert!(out["error"].is_string(), "an untrusted certificate is refused: {out}");
    let out = curl(&["--cacert", ca_pem, &url]).await;
    assert!(!out.ok, "no certificate is refused, got {}", out.body);
    let out = run_client("tls_client.py", &["fetch", &url, "--ca", ca_pem]).await;
    assert!(out["error"].is_string(), "no certificate is refused: {out}");
    assert_eq!(upstream.requests().len(), 2, "nothing refused reached the upstream");

    gateway.running.flush().await;
    let spans = receiver.wait_until(Duration::from_secs(10), |s| s.iter().filter(|s| s.kind == "server").count() >= 2).await;
    let server = spans.iter().find(|s| s.kind == "server").expect("a server span");
    assert_eq!(server.attr("tls.client.certificate_presented").and_then(Value::as_bool), Some(true), "{:?}", server.attributes);
    gateway.running.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_half_open_handshakes_does_not_stop_other_clients_and_is_cut_at_the_deadline() {
    let dir = scratch_dir("tls-flood");
    let ca = Ca::new(&dir, "flood");
    let server = ca.server("server", &["localhost"]);
    let upstream = Upstream::start(Behaviour::ok("still served")).await;
    let deadline = Duration::from_secs(5);
    let tls = TlsSettings { handshake_timeout: deadline, ..settings(&[&server]) };
    let gateway = TlsGateway::start(&routing(upstream.addr), tls, None).await;

    // 200 connections that never send a ClientHello, and 50 that send half of a record header.
    let mut flood = Vec::new();
    for i in 0..250 {
        let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
        if i % 5 == 0 {
            stream.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
        }
        flood.push(stream);
    }
    let url = gateway.url("localhost", "/");
    let started = tokio::time::Instant::now();
    for flag in ["--http1.1", "--http2", "--http1.1"] {
        let out = curl(&[flag, "--cacert", ca.pem.to_str().unwrap(), &url]).await;
        assert!(out.ok && out.body == "still served", "{flag} during the flood: {}", out.stderr);
    }
    let open = flood.iter().filter(|s| is_open(s)).count();
    assert!(started.elapsed() < deadline, "served before the flood's deadline ({:?})", started.elapsed());
    assert_eq!(open, flood.len(), "the flood was still held open while the others were served");

    eventually("the half-open handshakes are closed at the deadline", Duration::from_secs(15), || async {
        flood.iter().all(|s| !is_open(s))
    })
    .await;
    gateway.running.stop().await;
}

/// Whether the gateway has not closed this connection (nothing to read yet, no end of stream).
fn is_open(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(stream.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[tokio::test(flavor = "multi_thread")]
async fn https_traffic_is_mirrored_and_compared_as_plain_traffic_is() {
    let dir = scratch_dir("tls-mirror");
    let ca = Ca::new(&dir, "mirror");
    let server = ca.server("server", &["localhost"]);
    let json = |body: &str| Behaviour::Answer {
        status: reqwest::StatusCode::OK,
        body: body.to_owned(),
        headers: vec![("content-type", "application/json".to_owned())],
    };
    let primary = Upstream::start(json(r#"{"user":{"name":"Ann","id":7}}"#)).await;
    let shadow = Upstream::start(json(r#"{"user":{"name":"Anne","id":7}}"#)).await;
    let routing = format!(
        "services: {{ app: {{ v1: [{}], v2: [{}] }} }}\nroutes:\n  - name: app\n    to: app/v1\n    mirrors:\n      - {{ to: app/v2, name: v2, timeout: 2s, compare: true }}\n",
        primary.addr, shadow.addr
    );
    let gateway = TlsGateway::start(&routing, settings(&[&server]), None).await;
    let out = curl(&["--http2", "--cacert", ca.pem.to_str().unwrap(), &gateway.url("localhost", "/users/7")]).await;
    assert!(out.ok && out.body == r#"{"user":{"name":"Ann","id":7}}"#, "{} {}", out.body, out.stderr);

    eventually("the HTTPS copy is compared", Duration::from_secs(30), || async {
        gateway.mirrors().await["mirrors"][0]["comparison"]["mismatched"].as_u64() == Some(1)
    })
    .await;
    let report = gateway.mirrors().await;
    let mismatch = &report["mirrors"][0]["recent_mismatches"][0];
    assert_eq!(mismatch["differences"][0]["field"], "$.user.name", "{report}");
    let copy = shadow.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(copy[0].headers["x-forwarded-proto"], "https", "the copy says how the original came");
    gateway.running.stop().await;
}

/// Istio's HTTPS server hosts, which plain HTTP never serves (`istio::plain_http_redirects_...`),
/// are served on the TLS listener, and a redirecting one too.
#[tokio::test(flavor = "multi_thread")]
async fn hosts_of_an_istio_https_server_are_served_over_tls() {
    let dir = scratch_dir("tls-istio");
    let ca = Ca::new(&dir, "istio");
    let cert = ca.server("istio-hosts", &["secret.example.com", "web.example.com"]);
    let app = Upstream::start(Behaviour::ok("app")).await;
    let gateway = TlsGateway::start(&crate::istio::tls_routing(app.addr), settings(&[&cert]), None).await;
    let ca_pem = ca.pem.to_str().unwrap();
    for host in ["secret.example.com", "web.example.com"] {
        let out = curl(&["--cacert", ca_pem, "--resolve", &gateway.resolve(host), &gateway.url(host, "/a")]).await;
        assert!(out.ok, "{host}: {}", out.stderr);
        assert_eq!(out.body, "app", "{host}");
    }
    assert_eq!(app.requests().len(), 2);
    gateway.running.stop().await;
}
