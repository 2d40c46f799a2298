//! The README's edge walkthrough (seed 003), run as written: every `sh`
//! block of that section but the one that starts the servers, which the
//! test replaces with its own origin (Python's file server, as the README
//! uses) and gateway on free ports.

mod common;

use common::{bash, file_origin, gateway, text};

const SECTION: &str = "## Seed 003: the edge, step by step";

fn blocks() -> Vec<(bool, String)> {
    common::readme_blocks(SECTION)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_edge_walkthrough_runs_as_written() {
    let blocks = blocks();
    assert!(blocks.len() >= 6, "the walkthrough has its blocks: {}", blocks.len());
    assert_eq!(blocks.iter().filter(|(setup, _)| *setup).count(), 1, "one setup block");
    let dir = tempfile::tempdir().expect("tempdir");

    // The first block writes the origin's files.
    let (setup, files) = &blocks[0];
    assert!(!setup);
    let out = bash(format!("set -e\n{files}"), dir.path()).await;
    assert!(out.status.success(), "{}", text(&out));

    // The setup block's servers, on free ports: the origin binds port 0 and
    // says which port it got (no other test can take it in between).
    let origin = file_origin(dir.path().join("demo/origin")).await;
    let origin_port = origin.port;
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;

    let vars = format!(
        "K='X-API-KEY: {}'; A=http://{}/apisix/admin\nO=127.0.0.1:{origin_port}; E={}\n",
        shardgate_e2e::ADMIN_KEY,
        gw.admin,
        gw.edge_plain[0]
    );
    let rest: Vec<&str> = blocks[1..].iter().filter(|(setup, _)| !setup).map(|(_, b)| b.as_str()).collect();
    let script = format!("set -e\n{vars}{}\n", rest.join("\n"));
    let out = bash(script, &dir.path().join("demo")).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", text(&out));
    assert!(!stdout.contains("error_msg"), "every Admin API call succeeded:\n{stdout}");

    let lines: Vec<&str> = stdout.lines().map(str::trim).filter(|l| !l.starts_with('{')).collect();
    let expected = [
        // Channels: a miss per channel, then hits, each with its file.
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
        // Invalidation: the cached copy, then the patched file.
        "This content is for a vendor!",
        "This content is for a vendor, patched!",
        // Canary: the header's request, production, then everyone after the promote.
        "This content is the new version!",
        "This content is for general usage without vendor!",
        "This content is the new version!",
        // WAF: Postman blocked, the game client served.
        "403",
        "200",
    ];
    assert_eq!(lines, expected, "the walkthrough's output:\n{stdout}");
    assert!(stdout.contains("\"SampledRequests\""), "sampled requests answered:\n{stdout}");
}
