//! Cost of edge compression per MiB, and the ratios it buys, on a mix of
//! the text assets a game studio's edge serves: JavaScript, CSS and HTML
//! (the admin UI's own files), JSON (a web ACL, and a patch manifest with
//! one path, size and content hash per file, whose hashes do not
//! compress), and a text lock file. Run with `cargo bench -p shardgate-http
//! --bench compress`; the ratios are printed once per asset and setting.
//! Criterion reports the throughput (MiB/s of input).

#![allow(missing_docs)] // criterion_group! generates undocumented items.

use std::fmt::Write as _;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use shardgate_http::compress::{Coding, compress_at};

/// A patch manifest of `files` entries, as a launcher downloads it.
fn manifest(files: u64) -> Vec<u8> {
    let mut s = String::from("{\"version\":\"1.42.0\",\"files\":[\n");
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..files {
        // xorshift: hashes as random as real content hashes.
        let mut hash = String::new();
        for _ in 0..4 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            write!(hash, "{x:016x}").ok();
        }
        let dir = ["maps", "audio/sfx", "audio/music", "textures/ui", "textures/world", "shaders"][(i % 6) as usize];
        writeln!(
            s,
            "{{\"path\":\"{dir}/asset_{i:06}.pak\",\"size\":{},\"sha256\":\"{hash}\"}},",
            (x % 50_000_000) + 1024
        )
        .ok();
    }
    s.push_str("]}\n");
    s.into_bytes()
}

fn assets() -> Vec<(&'static str, Vec<u8>)> {
    let js = [
        include_str!("../../admin/ui/app.js"),
        include_str!("../../admin/ui/api.js"),
        include_str!("../../admin/ui/chart.js"),
        include_str!("../../admin/ui/form.js"),
        include_str!("../../admin/ui/table.js"),
        include_str!("../../admin/ui/pages/distributions.js"),
        include_str!("../../admin/ui/pages/web_acls.js"),
    ]
    .concat();
    vec![
        ("js", js.into_bytes()),
        ("css", include_bytes!("../../admin/ui/app.css").to_vec()),
        ("html", include_bytes!("../../admin/ui/index.html").to_vec()),
        ("json-acl", include_bytes!("../../waf/benches/seed_rule.json").to_vec()),
        ("json-manifest", manifest(8_000)),
        ("text-lock", include_bytes!("../../../Cargo.lock").to_vec()),
    ]
}

fn settings() -> Vec<(Coding, u32)> {
    vec![
        (Coding::Gzip, 1),
        (Coding::Gzip, 6),
        (Coding::Gzip, 9),
        (Coding::Br, 1),
        (Coding::Br, 4),
        (Coding::Br, 5),
        (Coding::Br, 6),
        (Coding::Br, 9),
        (Coding::Br, 11),
    ]
}

fn bench(c: &mut Criterion) {
    for (name, body) in assets() {
        let mut group = c.benchmark_group(format!("compress/{name}"));
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.sample_size(10);
        for (coding, level) in settings() {
            let packed = compress_at(coding, level, [body.as_slice()]).expect("compresses");
            eprintln!(
                "ratio {name} ({} bytes) {}-{level}: {} bytes, {:.1}% of the original",
                body.len(),
                coding.token(),
                packed.len(),
                100.0 * packed.len() as f64 / body.len() as f64
            );
            // Chunked as a stored body is (64 KiB pieces).
            let pieces: Vec<&[u8]> = body.chunks(64 * 1024).collect();
            group.bench_with_input(BenchmarkId::new(coding.token(), level), &pieces, |b, pieces| {
                b.iter(|| compress_at(coding, level, pieces.iter().copied()).expect("compresses"))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
