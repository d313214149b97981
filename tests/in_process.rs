//! The daemon started in-process through the library (the mini-redis shape):
//! `daemon::run(config, options, shutdown)` serves until the token is cancelled.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use hubkeeper::cli::socket_client;
use hubkeeper::{config, daemon};
use hyper::{Method, StatusCode};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_in_process_and_stops_on_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("hk.toml");
    std::fs::write(
        &cfg,
        "socket = \"hk.sock\"\nsecrets_dir = \"secrets\"\nhub_id = \"hub-in\"\n",
    )
    .unwrap();
    let loaded = config::load_with(&cfg, None).unwrap();
    let socket = loaded.config.socket.clone();
    let stop = CancellationToken::new();
    let task = tokio::spawn(daemon::run(
        loaded,
        daemon::RunOptions::default(),
        stop.clone(),
    ));

    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let (code, body) = loop {
        match socket_client::call(&socket, Method::GET, "/v1/status").await {
            Ok(r) => break r,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(code, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["hub_id"], "hub-in");

    stop.cancel();
    task.await.unwrap().unwrap();
    assert!(!socket.exists(), "socket removed after shutdown");
}
