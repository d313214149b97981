//! Footprint probe for the lead: builds a client, puts and gets one object, idles
//! 3 s, then prints its own memory (from /proc/self/status) and binary size.
//!
//! `footprint <endpoint> <bucket>` with the keys in `HK_S3_KEY_ID` and
//! `HK_S3_SECRET` (the environment, not argv, which other users can read).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use hubkeeper_s3::{Client, Limits, REGION_AUTO, Target};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (endpoint, bucket) = (&args[1], &args[2]);
    let key_id = std::env::var("HK_S3_KEY_ID").expect("HK_S3_KEY_ID");
    let secret = std::env::var("HK_S3_SECRET").expect("HK_S3_SECRET");
    let target = Target {
        endpoint,
        bucket,
        access_key_id: &key_id,
        secret_access_key: &secret,
        region: REGION_AUTO,
        path_style: true,
    };
    let client = Client::new(&target, Limits::default(), None).unwrap();
    let body = "hubkeeper footprint probe\n";
    client.put_object("footprint/probe", body).await.unwrap();
    let got = client.get_object("footprint/probe", 1 << 20).await.unwrap();
    assert_eq!(got, body.as_bytes());
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    for line in status.lines() {
        if ["VmRSS:", "RssAnon:", "RssFile:"]
            .iter()
            .any(|p| line.starts_with(p))
        {
            println!("{line}");
        }
    }
    let exe = std::env::current_exe().unwrap();
    println!("binary: {} bytes", std::fs::metadata(exe).unwrap().len());
    drop(client);
}
