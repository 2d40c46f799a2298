//! Seed 000 end to end: one TLS port in front of two game servers, routed by
//! SNI, configured with the seed's own commands (only host, port and the
//! node address changed).

mod common;

use common::{bash, gateway, text};
use shardgate_e2e::tls::{presented_cert, roundtrip};
use shardgate_e2e::{GameServer, TlsClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_000_walkthrough() {
    let gw = gateway().spawn().await;
    let gs1 = GameServer::start("test-server-1").await;
    let gs2 = GameServer::start("test-server-2").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let admin = format!("http://{}", gw.admin);

    // 配置證書: the seed's openssl commands, verbatim.
    let out = bash(
        r#"set -e
openssl req -new -newkey rsa:2048 -days 365 -nodes -x509 -keyout gs-1.key -out gs-1.crt -subj "/CN=gs-1.com"
openssl req -new -newkey rsa:2048 -days 365 -nodes -x509 -keyout gs-2.key -out gs-2.crt -subj "/CN=gs-2.com"
"#
        .to_owned(),
        dir.path(),
    )
    .await;
    assert!(out.status.success(), "openssl req: {}", text(&out));

    // 上傳證書到apisix / 驗證證書上傳: the seed's curl commands.
    let upload = format!(
        r#"set -e
curl -sS -X POST {admin}/apisix/admin/ssls -H 'X-API-KEY: edd1c9f034335f136f87ad84b625c8f1' -d '
{{
"cert": "'"$(cat gs-1.crt)"'",
"key": "'"$(cat gs-1.key)"'",
"snis": ["gs-1.com"]
}}'
echo
# Create SSL certificate for gs-2.com
curl -sS -X POST {admin}/apisix/admin/ssls -H 'X-API-KEY: edd1c9f034335f136f87ad84b625c8f1' -d '
{{
"cert": "'"$(cat gs-2.crt)"'",
"key": "'"$(cat gs-2.key)"'",
"snis": ["gs-2.com"]
}}'
echo
curl -sS -X GET {admin}/apisix/admin/ssls -H 'X-API-KEY: edd1c9f034335f136f87ad84b625c8f1'
"#
    );
    let out = bash(upload, dir.path()).await;
    assert!(out.status.success(), "ssl upload: {}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "two uploads and one list: {stdout}");
    for (line, sni) in lines[..2].iter().zip(["gs-1.com", "gs-2.com"]) {
        let v: serde_json::Value = serde_json::from_str(line).expect("upload answer is JSON");
        assert!(v["key"].as_str().is_some_and(|k| k.starts_with("/apisix/ssls/")), "{v}");
        assert_eq!(v["value"]["snis"][0], sni);
        assert!(v["value"].get("key").is_none(), "the private key is never echoed");
    }
    let list: serde_json::Value = serde_json::from_str(lines[2]).expect("list is JSON");
    assert_eq!(list["total"], 2, "{list}");
    assert!(!lines[2].contains("PRIVATE KEY"), "GET never returns private keys");

    // 配置路由: the seed's route commands; only the node address differs.
    let routes = format!(
        r#"set -e
curl -sS -i -X POST {admin}/apisix/admin/stream_routes -H 'X-API-KEY: edd1c9f034335f136f87ad84b625c8f1' -d '{{
"upstream": {{
"nodes": {{
"{gs1}": 1
}},
"type": "roundrobin"
}},
"sni": "gs-1.com"
}}'
curl -sS -i -X POST {admin}/apisix/admin/stream_routes -H 'X-API-KEY: edd1c9f034335f136f87ad84b625c8f1' -d '{{
"upstream": {{
"nodes": {{
"{gs2}": 1
}},
"type": "roundrobin"
}},
"sni": "gs-2.com"
}}'
"#,
        gs1 = gs1.node(),
        gs2 = gs2.node()
    );
    let out = bash(routes, dir.path()).await;
    let stdout = text(&out);
    assert!(out.status.success(), "routes: {stdout}");
    assert_eq!(stdout.matches("HTTP/1.1 201 Created").count(), 2, "{stdout}");

    // 測試基於SNI的訪問: a TLS client per SNI reaches its own game server...
    let client = TlsClient::default();
    let addr = gw.tls_addr();
    let mut s1 =
        shardgate_e2e::eventually(5, "gs-1.com routed", || async { client.connect(addr, Some("gs-1.com")).await.ok() })
            .await;
    assert_eq!(roundtrip(&mut s1, "hello from player 1").await, "[test-server-1] hello from player 1");
    let mut s2 = client.connect(addr, Some("gs-2.com")).await.expect("gs-2.com handshake");
    assert_eq!(roundtrip(&mut s2, "hello from player 2").await, "[test-server-2] hello from player 2");
    // ...with the certificate uploaded for that SNI.
    let gs1_der = bash("openssl x509 -in gs-1.crt -outform DER | od -An -tx1 | tr -d ' \\n'".into(), dir.path()).await;
    let served: String = presented_cert(&s1).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(served, String::from_utf8_lossy(&gs1_der.stdout), "gs-1.com gets gs-1.crt");

    // ...and the seed's own client, openssl s_client -servername ... -quiet.
    for (sni, name) in [("gs-1.com", "test-server-1"), ("gs-2.com", "test-server-2")] {
        let script = format!(
            "(printf 'ping {sni}\\n'; sleep 0.5) | timeout 10 openssl s_client -connect {addr} -servername {sni} -quiet -no_ign_eof 2>/dev/null"
        );
        let out = bash(script, dir.path()).await;
        let got = String::from_utf8_lossy(&out.stdout);
        assert!(got.contains(&format!("[{name}] ping {sni}")), "openssl s_client -servername {sni}: {}", text(&out));
    }
    assert!(gs1.accepted() >= 2 && gs2.accepted() >= 2);
}
