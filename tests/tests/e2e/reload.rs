//! Reload under load (issue 11): ten reloads during a steady stream of requests, none failed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use e2e_tests::gateway::TestGateway;
use e2e_tests::upstream::{Behaviour, Upstream};
use e2e_tests::{client, eventually};

#[tokio::test(flavor = "multi_thread")]
async fn ten_reloads_during_a_steady_stream_of_requests_fail_none() {
    let a = Upstream::start(Behaviour::ok("a")).await;
    let b = Upstream::start(Behaviour::ok("b")).await;
    let shadow = Upstream::start(Behaviour::ok("shadow")).await;
    // Each generation routes elsewhere and has its own mirror runtime: copies in flight cross
    // every swap.
    let config = |to: &str| {
        format!(
            "services: {{ app: {{ a: [{}], b: [{}], shadow: [{}] }} }}\nroutes: [{{ name: app, to: app/{to}, mirrors: [{{ to: app/shadow, name: s }}] }}]\n",
            a.addr, b.addr, shadow.addr
        )
    };
    let gateway = Arc::new(TestGateway::builder().file("g.yaml", &config("a")).start().await);

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for worker in 0..4 {
        let (gateway, stop, done, failures) = (gateway.clone(), stop.clone(), done.clone(), failures.clone());
        clients.push(tokio::spawn(async move {
            let client = client();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let outcome = match client.get(gateway.url(&format!("/w{worker}/{i}"))).send().await {
                    Ok(response) if response.status() == 200 => match response.text().await {
                        Ok(body) if body == "a" || body == "b" => None,
                        other => Some(format!("body {other:?}")),
                    },
                    Ok(response) => Some(format!("status {}", response.status())),
                    Err(error) => Some(format!("error {error}")),
                };
                if let Some(failure) = outcome {
                    failures.lock().unwrap().push(failure);
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }

    for n in 1..=10 {
        // Every reload lands while requests are flowing: some complete between two reloads.
        let before = done.load(Ordering::SeqCst);
        eventually("requests flow before the next reload", Duration::from_secs(30), || async {
            done.load(Ordering::SeqCst) >= before + 20
        })
        .await;
        std::fs::write(&gateway.files[0], config(if n % 2 == 1 { "b" } else { "a" })).unwrap();
        assert_eq!(gateway.reloader.reload(), Ok(1), "reload {n}");
    }
    let before = done.load(Ordering::SeqCst);
    eventually("requests flow after the last reload", Duration::from_secs(30), || async { done.load(Ordering::SeqCst) >= before + 20 })
        .await;
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }

    let failures = failures.lock().unwrap().clone();
    let total = done.load(Ordering::SeqCst);
    assert!(failures.is_empty(), "{} of {total} requests failed across 10 reloads: {failures:?}", failures.len());
    assert_eq!(gateway.reloader.reload_count(), 10);
    assert!(!a.requests().is_empty() && !b.requests().is_empty(), "both generations served");
    eprintln!("reload under load: {total} requests, 10 reloads, 0 failed");
    Arc::try_unwrap(gateway).ok().expect("clients are done").stop().await;
}
