//! The README's section on seed 003's CloudFront Function, run as written:
//! its one `sh` block, against the origin files of the seed 003
//! walkthrough (that section's first block) served by Python's file server,
//! and a test gateway on free ports.

mod common;

use common::{bash, file_origin, gateway, text};

const SECTION: &str = "## Seed 003's CloudFront Function, as written";
const WALKTHROUGH: &str = "## Seed 003: the edge, step by step";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_function_runs_as_the_readme_shows() {
    let blocks = common::readme_blocks(SECTION);
    assert_eq!(blocks.len(), 1, "the section has one block");
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, files) = &common::readme_blocks(WALKTHROUGH)[0];
    let out = bash(format!("set -e\n{files}"), dir.path()).await;
    assert!(out.status.success(), "{}", text(&out));

    let origin = file_origin(dir.path().join("demo/origin")).await;
    let origin_port = origin.port;
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;

    let vars = format!(
        "K='X-API-KEY: {}'; A=http://{}/apisix/admin\nO=127.0.0.1:{origin_port}; E={}\n",
        shardgate_e2e::ADMIN_KEY,
        gw.admin,
        gw.edge_plain[0]
    );
    let script = format!("set -e\n{vars}{}\n", blocks[0].1);
    let out = bash(script, &dir.path().join("demo")).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", text(&out));
    assert!(!stdout.contains("error_msg"), "every Admin API call succeeded:\n{stdout}");
    assert!(
        stdout.contains(r#""uri":"/a_vendor/example.file""#),
        "the test endpoint shows the rewritten request:\n{stdout}"
    );

    let lines: Vec<&str> = stdout.lines().map(str::trim).filter(|l| !l.starts_with('{')).collect();
    let expected = [
        "< X-Cache: Miss from shardgate",
        "This content is for a vendor!",
        "< X-Cache: Miss from shardgate",
        "This content is for b vendor!",
        "< X-Cache: Miss from shardgate",
        "This content is for general usage without vendor!",
        "< X-Cache: Hit from shardgate",
        "This content is for a vendor!",
        "< X-Cache: Hit from shardgate",
        "This content is for b vendor!",
        "< X-Cache: Hit from shardgate",
        "This content is for general usage without vendor!",
    ];
    assert_eq!(lines, expected, "the section's output:\n{stdout}");
}
