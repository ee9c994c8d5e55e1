//! `gateway replay FILE... --candidate URL [--baseline URL] [--rate N] [--concurrency N]
//! [--methods safe|all] [--config FILE] [--report out.html] [--json out.json]`: sends the requests
//! of HAR captures ([`crate::capture`], or any HAR file) to a candidate build and judges its
//! answers as a live mirror is judged: the same differ, the same ignore rules and noise learning
//! ([`MirrorComparison`]), the same statistics and verdict ([`MirrorStats`]), the same page.
//!
//! Without `--baseline` the candidate is compared with the primary's recorded answers (and its
//! times with the recorded ones). With `--baseline URL` each request also goes to the baseline,
//! twice: what differs between its two answers is learned as noise, and the candidate is compared
//! with the baseline's first answer. Exit status as `gateway verdict`'s: 0 every mirror passes,
//! 1 one fails, 3 one is still pending (too few requests to decide), 2 cannot tell (unreadable
//! file, a candidate that answered nothing).

mod exchange;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gateway_config::{CompareSpec, VerdictSpec};
use http::{Method, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use response_diff::{Captured, Classified, CopyChanges, SkipReason};

use self::exchange::{Replayable, align_redactions};
use crate::admin::api::MirrorsDocument;
use crate::admin::cli::{ERROR, FAIL, PASS, PENDING, chain};
use crate::capture::har::Har;
use crate::compare::MirrorComparison;
use crate::settings::ReportSettings;
use crate::stats::{ANSWERED_BODY_BYTES, MirrorKey, MirrorStats, MismatchRecord, Observation, Pair, ShadowOutcome, now_epoch_seconds};
use crate::verdict::State;

/// Entries without `_route` / `_mirror` (a browser's HAR) are judged under this key.
const DEFAULT_ROUTE: &str = "replay";
const DEFAULT_MIRROR: &str = "candidate";

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// HAR files (a gateway capture, or any HAR 1.2 file); entries are replayed in file order
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The build under test: `http://host:port` (a path is prefixed to every request's)
    #[arg(long, value_name = "URL")]
    pub candidate: String,
    /// Compare with this live baseline instead of the recorded answers (asked twice per request
    /// to learn noise)
    #[arg(long, value_name = "URL")]
    pub baseline: Option<String>,
    /// Requests started per second at most; 0 = as fast as --concurrency allows
    #[arg(long, value_name = "N", default_value_t = 0.0)]
    pub rate: f64,
    /// Requests in flight at once
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub concurrency: usize,
    /// `safe` (GET, HEAD, OPTIONS: the default, as mirrors copy) or `all` (writes too: they change
    /// the candidate's state)
    #[arg(long, value_enum, default_value = "safe")]
    pub methods: Methods,
    /// Routing files whose mirrors' `compare:` and `verdict:` apply to the entries they recorded
    /// (by `_route` and `_mirror`); without: the defaults
    #[arg(long = "config", value_name = "FILE")]
    pub config: Vec<PathBuf>,
    /// Write the report page (the admin page's) here
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Write the report as JSON (`/mirrors`'s document) here
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// A Jaeger UI (`http://jaeger:16686`): the report links each mismatch to the trace it was
    /// recorded with (`_traceId`)
    #[arg(long, value_name = "URL", default_value = "")]
    pub trace_url: String,
    /// Each answer must come within this
    #[arg(long, value_name = "DURATION", value_parser = http_rules::duration::parse, default_value = "30s")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Methods {
    Safe,
    All,
}

/// Runs the subcommand on a runtime of its own.
pub fn run(args: Args) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("gateway replay: cannot start a runtime: {error}");
            return ExitCode::from(ERROR);
        }
    };
    let progress = std::io::stderr().is_terminal();
    ExitCode::from(runtime.block_on(replay(&args, &mut std::io::stdout(), progress)))
}

/// What one recorded mirror is judged with, and what it gathered.
struct Judge {
    comparison: MirrorComparison,
    stats: MirrorStats,
    verdict: VerdictSpec,
}

/// Replays, judges, prints to `out` and writes the reports; returns the exit status.
pub async fn replay(args: &Args, out: &mut impl Write, progress: bool) -> u8 {
    match try_replay(args, out, progress).await {
        Ok(status) => status,
        Err(error) => {
            eprintln!("gateway replay: {error}");
            ERROR
        }
    }
}

async fn try_replay(args: &Args, out: &mut impl Write, progress: bool) -> Result<u8, String> {
    let candidate = base_url("--candidate", &args.candidate)?;
    let baseline = args.baseline.as_deref().map(|b| base_url("--baseline", b)).transpose()?;
    let rules = rules(&args.config)?;
    let mut entries = Vec::new();
    let mut left_out = 0usize;
    for file in &args.files {
        let text = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let har: Har = serde_json::from_slice(&text).map_err(|e| format!("{}: not a HAR file: {e}", file.display()))?;
        for (n, entry) in har.log.entries.iter().enumerate() {
            let replayable = Replayable::from_entry(entry).map_err(|e| format!("{}: entry {n}: {e}", file.display()))?;
            if args.methods == Methods::Safe && !is_safe(&replayable.method) {
                left_out += 1;
                continue;
            }
            entries.push(replayable);
        }
    }
    if args.methods == Methods::All {
        let writes = entries.iter().filter(|e| !is_safe(&e.method)).count();
        eprintln!(
            "gateway replay: WARNING: --methods all: {writes} writes (POST, PUT, DELETE, ...) are sent to the candidate{}; they change its state: point it at a disposable environment",
            if baseline.is_some() { " and twice to the baseline" } else { "" }
        );
    } else if left_out > 0 {
        eprintln!(
            "gateway replay: {left_out} {} left out (only GET, HEAD and OPTIONS are replayed; --methods all sends {} too)",
            if left_out == 1 { "write" } else { "writes" },
            if left_out == 1 { "it" } else { "them" }
        );
    }
    if entries.is_empty() {
        return Err("no request to replay in the given files".to_owned());
    }

    let mut judges: BTreeMap<MirrorKey, Judge> = BTreeMap::new();
    for entry in &entries {
        let key = key(entry);
        judges.entry(key.clone()).or_insert_with(|| {
            let (compare, verdict) = rules.get(&key).cloned().unwrap_or_else(|| (CompareSpec::default(), VerdictSpec::default()));
            let stats = MirrorStats::new(
                &key.route,
                &key.mirror,
                &args.candidate,
                &ReportSettings { recent_mismatches: 20, max_bytes: 1 << 20, trace_url: String::new() },
            );
            stats.set_comparing(true);
            stats.set_verdict(Some(&verdict));
            Judge { comparison: MirrorComparison::new(&compare), stats, verdict }
        });
    }
    let judges = Arc::new(judges);
    let client = Arc::new(Clients::new());
    let total = entries.len();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(args.concurrency.max(1)));
    let pace = (args.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / args.rate));
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    let mut failures: Vec<String> = Vec::new();
    let mut answered = 0usize;
    let mut done = 0usize;
    let mut record = |outcome: Result<(), String>, done: &mut usize| {
        *done += 1;
        match outcome {
            Ok(()) => answered += 1,
            Err(error) => failures.push(error),
        }
        if progress {
            eprint!("\rgateway replay: {done}/{total} requests, {} without an answer", failures.len());
        }
    };
    for (n, entry) in entries.into_iter().enumerate() {
        if let Some(pace) = pace {
            tokio::time::sleep_until(tokio::time::Instant::from_std(started + pace * n as u32)).await;
        }
        let permit = semaphore.clone().acquire_owned().await.map_err(|e| e.to_string())?;
        while let Some(finished) = tasks.try_join_next() {
            record(finished.map_err(|e| e.to_string())?, &mut done);
        }
        let (judges, client, candidate, baseline, timeout) =
            (judges.clone(), client.clone(), candidate.clone(), baseline.clone(), args.timeout);
        tasks.spawn(async move {
            let outcome = one(&entry, &judges[&key(&entry)], &client, &candidate, baseline.as_ref(), timeout).await;
            drop(permit);
            outcome
        });
    }
    while let Some(finished) = tasks.join_next().await {
        record(finished.map_err(|e| e.to_string())?, &mut done);
    }
    if progress {
        eprintln!();
    }
    if answered == 0 {
        return Err(format!(
            "cannot tell: the candidate at {} answered none of the {total} requests ({})",
            args.candidate,
            failures.first().map_or("no error", String::as_str)
        ));
    }
    if !failures.is_empty() {
        eprintln!("gateway replay: {} of {total} requests got no answer; the first: {}", failures.len(), failures[0]);
    }

    let mut states = Vec::new();
    for (key, judge) in judges.iter() {
        let verdict = judge.stats.verdict().unwrap_or_else(|| crate::verdict::judge(&(&judge.verdict).into(), &Default::default()));
        states.push(verdict.state);
        let _ = writeln!(
            out,
            "{} {} → {} ({} compared, replayed against {}): {}",
            verdict.state.label(),
            key.route,
            key.mirror,
            verdict.compared,
            args.candidate,
            verdict.reasons.join("; ")
        );
    }
    let document = MirrorsDocument {
        mirrors: judges.values().map(|j| j.stats.report()).collect(),
        noise: judges.iter().map(|(k, j)| (k.clone(), j.comparison.noise_report())).collect(),
        noise_fields: judges.iter().map(|(k, j)| (k.clone(), j.comparison.noise_fields())).collect(),
        promotions: Vec::new(),
    };
    if let Some(path) = &args.json {
        let text = serde_json::to_vec_pretty(&document).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("--json {}: {e}", path.display()))?;
    }
    if let Some(path) = &args.report {
        let page = crate::admin::render_page(&document, &args.trace_url).map_err(|e| format!("--report: {e}"))?;
        std::fs::write(path, page).map_err(|e| format!("--report {}: {e}", path.display()))?;
    }
    Ok(if states.contains(&State::Fail) {
        FAIL
    } else if states.contains(&State::Pending) {
        PENDING
    } else {
        PASS
    })
}

/// Replays one entry and records its comparison; `Err` when the candidate did not answer.
async fn one(
    entry: &Replayable,
    judge: &Judge,
    clients: &Clients,
    candidate: &Uri,
    baseline: Option<&Uri>,
    timeout: Duration,
) -> Result<(), String> {
    let stats = &judge.stats;
    let cap = judge.comparison.max_body_bytes;
    let (mut expected, expected_ms, primary_again) = match baseline {
        Some(baseline) => {
            let first = clients.ask(entry, baseline, cap, timeout).await;
            let second = clients.ask(entry, baseline, cap, timeout).await;
            match (first, second) {
                (Ok((first, ms)), Ok((second, _))) => {
                    // Every request is asked twice: each one estimates how often the baseline
                    // differs from itself.
                    let again = judge.comparison.learn_noise(&entry.path_and_query, &first, &second, &CopyChanges::default());
                    (first, ms, again)
                }
                (Err(error), _) | (_, Err(error)) => {
                    stats.compared(&Classified::Skipped(SkipReason::Incomplete("baseline did not answer")), 0.0, || None);
                    eprintln!("gateway replay: the baseline did not answer {} {}: {error}", entry.method, entry.path_and_query);
                    return Ok(());
                }
            }
        }
        None => (entry.recorded.clone(), entry.recorded_ms, None),
    };
    stats.sent();
    let (mut answer, answer_ms) = match clients.ask(entry, candidate, cap, timeout).await {
        Ok(answered) => answered,
        Err(error) => {
            stats.outcome(ShadowOutcome::Error);
            stats.compared(&Classified::Skipped(SkipReason::Incomplete("shadow did not answer")), 0.0, || None);
            return Err(error);
        }
    };
    stats.outcome(ShadowOutcome::Ok);
    if baseline.is_none() {
        align_redactions(&mut expected, &mut answer);
    }
    let (result, noise) = judge.comparison.compare(&entry.path_and_query, &expected, &answer, &CopyChanges::default());
    let (primary_latency, shadow_latency) = (Duration::from_secs_f64(expected_ms.max(0.0) / 1e3), Duration::from_secs_f64(answer_ms / 1e3));
    stats.compared(&result, answer_ms - expected_ms, || match &result {
        Classified::Mismatch(differences) => Some(MismatchRecord {
            at: now_epoch_seconds(),
            method: entry.method.to_string(),
            path: entry.path_and_query.clone(),
            request_id: entry.request_id.clone(),
            trace_id: entry.trace_id.clone(),
            primary_status: expected.status,
            shadow_status: answer.status,
            differences: differences.clone(),
            // What each side answered, unless the mirror's rules redact bodies.
            primary_body: (!judge.comparison.redacts()).then(|| expected.answered_body(ANSWERED_BODY_BYTES)),
            shadow_body: (!judge.comparison.redacts()).then(|| answer.answered_body(ANSWERED_BODY_BYTES)),
        }),
        _ => None,
    });
    stats.evidence(&Observation {
        method: entry.method.as_str(),
        path: &entry.path_and_query,
        result: &result,
        noise: &noise,
        primary_again: primary_again.as_deref(),
        pair: Pair { primary_status: expected.status, shadow_status: answer.status, primary_latency, shadow_latency },
    });
    Ok(())
}

/// HTTP/1.1 and HTTP/2 (prior knowledge, as gRPC over h2c) clients: each entry goes in its
/// recorded version.
struct Clients {
    http1: Client<HttpConnector, Full<Bytes>>,
    http2: Client<HttpConnector, Full<Bytes>>,
}

impl Clients {
    fn new() -> Self {
        Self {
            http1: Client::builder(TokioExecutor::new()).build_http(),
            http2: Client::builder(TokioExecutor::new()).http2_only(true).build_http(),
        }
    }

    /// The answer of `base` to `entry`, its body kept up to `cap`, with the time to its headers.
    async fn ask(&self, entry: &Replayable, base: &Uri, cap: usize, timeout: Duration) -> Result<(Captured, f64), String> {
        let request = entry.request(base)?;
        let what = format!("{} {}{}", entry.method, base.to_string().trim_end_matches('/'), entry.path_and_query);
        let client = if entry.version == http::Version::HTTP_2 { &self.http2 } else { &self.http1 };
        let started = Instant::now();
        let answer = async {
            let response = client.request(request).await.map_err(|e| format!("{what}: {}", chain(&e)))?;
            let ms = started.elapsed().as_secs_f64() * 1e3;
            let captured = crate::mirror::send::read_answer(response, cap).await.map_err(|e| format!("{what}: {e}"))?;
            Ok((captured, ms))
        };
        tokio::time::timeout(timeout, answer).await.unwrap_or_else(|_| Err(format!("{what}: no answer within {timeout:?}")))
    }
}

fn key(entry: &Replayable) -> MirrorKey {
    MirrorKey::new(entry.route.as_deref().unwrap_or(DEFAULT_ROUTE), entry.mirror.as_deref().unwrap_or(DEFAULT_MIRROR))
}

fn is_safe(method: &Method) -> bool {
    *method == Method::GET || *method == Method::HEAD || *method == Method::OPTIONS
}

fn base_url(flag: &str, text: &str) -> Result<Uri, String> {
    let with_scheme = if text.contains("://") { text.to_owned() } else { format!("http://{text}") };
    let uri: Uri = with_scheme.parse().map_err(|e| format!("{flag} {text}: not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("{flag} {text}: only http:// is supported (put the gateway or a local port in front of a TLS service)"));
    }
    if uri.authority().is_none() {
        return Err(format!("{flag} {text}: no host"));
    }
    Ok(uri)
}

/// The `compare:` and `verdict:` of every mirror of the routing files, by route and mirror.
fn rules(files: &[PathBuf]) -> Result<BTreeMap<MirrorKey, (CompareSpec, VerdictSpec)>, String> {
    if files.is_empty() {
        return Ok(BTreeMap::new());
    }
    let loaded = gateway_config::load_files_with(files, &gateway_config::LoadOptions::default()).map_err(|e| format!("--config: {e}"))?;
    let mut rules = BTreeMap::new();
    for route in &loaded.table.routes {
        for mirror in &route.mirrors {
            let compare = mirror.compare.clone().unwrap_or_default();
            let verdict = mirror.verdict.clone().unwrap_or_default();
            rules.insert(MirrorKey::new(&route.name, &mirror.name), (compare, verdict));
        }
    }
    Ok(rules)
}
