//! Shared by the integration tests (each test file includes it with `mod common;`).

#![allow(dead_code)]

use std::process::Output;

use shardgate_e2e::{AdminClient, Gateway, GatewayBuilder};

/// A gateway builder for this package's binary.
pub fn gateway() -> GatewayBuilder {
    Gateway::builder(env!("CARGO_BIN_EXE_shardgate"))
}

/// Runs a bash script on a blocking thread (so in-process game servers keep
/// serving while it runs) and returns its output.
pub async fn bash(script: String, dir: &std::path::Path) -> Output {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new("bash").arg("-c").arg(&script).current_dir(dir).output().expect("run bash")
    })
    .await
    .expect("bash task")
}

/// stdout and stderr of a command, for assertion messages.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Python's file server (the README's stand-in for S3) serving `dir` on a
/// free loopback port; killed, by its handle, when dropped.
pub struct FileOrigin {
    child: std::process::Child,
    /// The port it listens on.
    pub port: u16,
}

impl Drop for FileOrigin {
    fn drop(&mut self) {
        if self.child.kill().is_ok() {
            drop(self.child.wait());
        }
    }
}

/// Starts a [`FileOrigin`] on port 0 and reads the port it got from its
/// first line, so no other test can take the port in between.
pub async fn file_origin(dir: std::path::PathBuf) -> FileOrigin {
    let mut child = std::process::Command::new("python3")
        .args(["-u", "-m", "http.server", "0", "--bind", "127.0.0.1"])
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 -m http.server");
    let stdout = child.stdout.take().expect("origin stdout");
    let mut origin = FileOrigin { child, port: 0 };
    let port = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line).expect("the origin's first line");
        // "Serving HTTP on 127.0.0.1 port 43117 (http://127.0.0.1:43117/) ..."
        line.split_whitespace()
            .skip_while(|w| *w != "port")
            .nth(1)
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"))
    })
    .await
    .expect("join");
    origin.port = port;
    origin
}

/// Marks the README block that a test replaces with its own servers.
pub const README_SETUP_MARK: &str = "<!-- readme-test: setup";

/// The `sh` blocks of the README section that starts with `heading`, in
/// order, each with whether it is the section's setup block.
pub fn readme_blocks(heading: &str) -> Vec<(bool, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).expect("README.md");
    let start = readme.find(heading).unwrap_or_else(|| panic!("README section {heading:?}"));
    let rest = &readme[start + heading.len()..];
    let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    let mut out = Vec::new();
    let mut setup_next = false;
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        if line.starts_with(README_SETUP_MARK) {
            setup_next = true;
        } else if line == "```sh" {
            let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            out.push((setup_next, body.join("\n")));
            setup_next = false;
        }
    }
    out
}

/// Stores the IP set `banned` holding `cidr` and the web ACL `acl` whose one
/// rule (`banned`) blocks it; everything else is allowed.
pub async fn ban_with_web_acl(admin: &AdminClient, cidr: &str, acl: &str) {
    let set = format!(r#"{{"Name": "banned", "IPAddressVersion": "IPV4", "Addresses": ["{cidr}"]}}"#);
    let r = admin.request("PUT", "/apisix/admin/ip_sets/banned", Some(&set)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let body = format!(
        r#"{{"Name": "{acl}", "DefaultAction": {{"Allow": {{}}}},
      "VisibilityConfig": {{"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": true, "MetricName": "{acl}"}},
      "Rules": [{{"Name": "banned", "Priority": 0, "Action": {{"Block": {{}}}},
         "Statement": {{"IPSetReferenceStatement": {{"ARN": "banned"}}}},
         "VisibilityConfig": {{"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": true, "MetricName": "banned"}}}}]}}"#
    );
    let r = admin.request("PUT", &format!("/apisix/admin/web_acls/{acl}"), Some(&body)).await;
    assert_eq!(r.status, 201, "{}", r.body);
}
