//! Route and certificate lookup cost on a table the size of a large studio's:
//! 2,000 game servers with exact SNIs, 50 wildcard zones, catch-alls.

#![allow(missing_docs)] // criterion_group! generates undocumented items.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use shardgate_model::SniPattern;
use shardgate_snapshot::stream_router::Filters;
use shardgate_snapshot::{RouteQuery, SniTable, StreamRouter};

fn table() -> StreamRouter<u32> {
    let mut r = StreamRouter::default();
    for zone in 0..50 {
        r.insert(
            &[SniPattern::parse(&format!("*.zone{zone}.game.com")).expect("sni")],
            Filters::default(),
            100_000 + zone,
        );
    }
    for i in 0..2000 {
        let sni = SniPattern::parse(&format!("gs-{i}.zone{}.game.com", i % 50)).expect("sni");
        r.insert(&[sni], Filters::default(), i);
    }
    r.insert(&[], Filters::default(), u32::MAX);
    r
}

fn bench(c: &mut Criterion) {
    let r = table();
    let q = |sni| RouteQuery {
        sni: Some(sni),
        server_port: 8888,
        server_addr: "127.0.0.1".parse().expect("ip"),
        remote_addr: "127.0.0.10".parse().expect("ip"),
    };
    c.bench_function("stream_route_exact", |b| b.iter(|| r.find(black_box(&q("gs-1234.zone34.game.com")))));
    c.bench_function("stream_route_wildcard", |b| b.iter(|| r.find(black_box(&q("new.zone7.game.com")))));
    c.bench_function("stream_route_fallthrough", |b| b.iter(|| r.find(black_box(&q("nothing.example.org")))));

    let mut certs: SniTable<u32> = SniTable::default();
    for i in 0..2000 {
        *certs.entry(&SniPattern::parse(&format!("gs-{i}.game.com")).expect("sni"), || i) = i;
    }
    *certs.entry(&SniPattern::parse("*.game.com").expect("sni"), || 0) = 0;
    c.bench_function("cert_lookup_wildcard", |b| b.iter(|| certs.find_cert(black_box("unknown.game.com"))));
}

criterion_group!(benches, bench);
criterion_main!(benches);
