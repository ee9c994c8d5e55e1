//! `gateway verdict --admin URL [--admin URL ...] [--mirror NAME] [--wait DURATION]`: asks running
//! gateways for their mirrors' evidence, adds up the evidence of the replicas, judges, and prints
//! one line per mirror. Exit status: 0 every selected mirror passes, 1 one fails, 3 one is still
//! pending when `--wait` is over, 2 the question could not be asked (unreachable admin, unknown
//! mirror). Consistent sampling makes every replica copy the same requests, so their evidence adds
//! up to one mirror's, judged once with the mirror's own limits.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use super::api::{Evidence, Limits, MirrorKey, MirrorsDocument, State, Unresolved, Verdict};
use crate::verdict::judge;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Each admin's answer must come within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often pending mirrors are asked again while `--wait` lasts.
const POLL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Admin address of a gateway (`http://gw-0:9901`, or `gw-0:9901`); repeat for every replica
    #[arg(long = "admin", value_name = "URL", required = true)]
    pub admins: Vec<String>,
    /// Only this mirror: its name, or `route/mirror` when the name is on several routes
    #[arg(long, value_name = "NAME")]
    pub mirror: Option<String>,
    /// While a mirror is pending, ask again (every 2 s) for up to this long: `30s`, `10m`
    #[arg(long, value_name = "DURATION", value_parser = http_rules::duration::parse, default_value = "0s")]
    pub wait: Duration,
}

/// Exit statuses.
pub const PASS: u8 = 0;
pub const FAIL: u8 = 1;
pub const ERROR: u8 = 2;
pub const PENDING: u8 = 3;

/// Runs the subcommand on a runtime of its own.
pub fn run(args: Args) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("gateway verdict: cannot start a runtime: {error}");
            return ExitCode::from(ERROR);
        }
    };
    ExitCode::from(runtime.block_on(check(&args, &mut std::io::stdout())))
}

/// Asks, judges and prints to `out`; returns the exit status.
pub async fn check(args: &Args, out: &mut impl Write) -> u8 {
    let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let deadline = tokio::time::Instant::now() + args.wait;
    loop {
        let judged = match ask(&client, args).await {
            Ok(judged) => judged,
            Err(error) => {
                eprintln!("gateway verdict: {error}");
                return ERROR;
            }
        };
        let any = |state: State| judged.iter().any(|j| j.verdict.state == state);
        let done = any(State::Fail) || !any(State::Pending) || tokio::time::Instant::now() + POLL > deadline;
        if done {
            for j in &judged {
                let _ = writeln!(out, "{}", j.line());
            }
            return if any(State::Fail) {
                FAIL
            } else if any(State::Pending) {
                PENDING
            } else {
                PASS
            };
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One mirror's verdict over every replica's evidence.
pub struct Judged {
    pub key: MirrorKey,
    pub replicas: usize,
    pub verdict: Verdict,
}

impl Judged {
    /// `PASS shop → v2 (412 compared, 2 gateways): pass: mismatch rate ...; pass: ...`
    pub fn line(&self) -> String {
        let label = self.verdict.state.label();
        let gateways = if self.replicas == 1 { "1 gateway".to_owned() } else { format!("{} gateways", self.replicas) };
        format!(
            "{label} {} → {} ({} compared, {gateways}): {}",
            self.key.route,
            self.key.mirror,
            self.verdict.compared,
            self.verdict.reasons.join("; ")
        )
    }
}

/// Evidence and limits of one mirror, added up over the replicas that have it.
struct Combined {
    key: MirrorKey,
    limits: Option<Limits>,
    evidence: Evidence,
    replicas: usize,
}

async fn ask(client: &Client<HttpConnector, Empty<Bytes>>, args: &Args) -> Result<Vec<Judged>, String> {
    let mut combined: BTreeMap<MirrorKey, Combined> = BTreeMap::new();
    for admin in &args.admins {
        for remote in fetch(client, admin).await?.mirrors {
            let key = remote.key();
            let entry =
                combined.entry(key.clone()).or_insert_with(|| Combined { key, limits: None, evidence: Evidence::default(), replicas: 0 });
            entry.evidence.merge(&remote.evidence);
            entry.replicas += 1;
            if let (None, Some(verdict)) = (entry.limits, &remote.verdict) {
                entry.limits = Some(verdict.limits);
            }
        }
    }
    let selected: Vec<&Combined> = match &args.mirror {
        Some(name) => match MirrorKey::lookup(name, combined.values(), |c| c.key.clone()) {
            Ok(one) if one.limits.is_none() => {
                return Err(format!("mirror {name:?} has no verdict: it does not compare, or its verdict is off"));
            }
            Ok(one) => vec![one],
            Err(Unresolved::Unknown { known }) => return Err(format!("no mirror named {name:?} (known: {})", list(&known, ", "))),
            Err(Unresolved::Ambiguous { candidates }) => {
                return Err(format!(
                    "{name:?} is a mirror on several routes: say which with --mirror {}",
                    list(&candidates, " or --mirror ")
                ));
            }
        },
        None => combined.values().filter(|c| c.limits.is_some()).collect(),
    };
    if selected.is_empty() {
        return Err("no mirror has a verdict (a verdict needs `compare` on the mirror)".to_owned());
    }
    Ok(selected
        .into_iter()
        .filter_map(|c| {
            let limits = c.limits?;
            Some(Judged { key: c.key.clone(), replicas: c.replicas, verdict: judge(&limits, &c.evidence) })
        })
        .collect())
}

fn list(keys: &[MirrorKey], separator: &str) -> String {
    keys.iter().map(ToString::to_string).collect::<Vec<_>>().join(separator)
}

async fn fetch(client: &Client<HttpConnector, Empty<Bytes>>, admin: &str) -> Result<MirrorsDocument, String> {
    let base = admin.trim_end_matches('/');
    let url = if base.contains("://") { format!("{base}/mirrors") } else { format!("http://{base}/mirrors") };
    let uri: http::Uri = url.parse().map_err(|e| format!("--admin {admin}: not a URL: {e}"))?;
    let answer = async {
        let response = client.get(uri).await.map_err(|e| format!("{url}: {}", chain(&e)))?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(|e| format!("{url}: {e}"))?.to_bytes();
        if !status.is_success() {
            return Err(format!("{url}: HTTP {status}"));
        }
        serde_json::from_slice::<MirrorsDocument>(&body).map_err(|e| format!("{url}: not a gateway's mirror report: {e}"))
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, answer).await {
        Ok(result) => result,
        Err(_) => Err(format!("{url}: no answer within {}s", REQUEST_TIMEOUT.as_secs())),
    }
}

/// An error and its causes on one line: hyper's own message alone says only "client error".
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
