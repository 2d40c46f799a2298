use super::*;
use crate::fill::FillEnd;
use bytes::Bytes;

fn settings(memory_bytes: u64) -> CacheSettings {
    CacheSettings { memory_bytes, max_object_bytes: memory_bytes }
}

fn object(body: &'static [u8], ttl: Duration, vary: Vec<(HeaderName, Option<HeaderValue>)>) -> Object {
    Object {
        status: StatusCode::OK,
        headers: HeaderMap::new(),
        body: Arc::new(Fill::complete(vec![Bytes::from_static(body)])),
        content_length: Some(body.len() as u64),
        received: SystemTime::now(),
        initial_age: Duration::ZERO,
        fresh_until: Instant::now() + ttl,
        stale_while_revalidate: Duration::ZERO,
        stale_if_error: Duration::ZERO,
        namespace: "d".into(),
        generation: 1,
        viewer_target: "/a".into(),
        origin_target: "/a".into(),
        vary,
    }
}

fn all(_: &Object) -> bool {
    true
}

#[tokio::test]
async fn one_leader_and_waiters_get_its_object() {
    let cache = Cache::new(settings(1 << 20));
    let req = HeaderMap::new();
    let Lookup::Miss(leader) = cache.lookup("k", &req, Instant::now(), all) else { panic!("first lookup must miss") };
    let Lookup::Wait(pending) = cache.lookup("k", &req, Instant::now(), all) else { panic!("second must wait") };
    let waiter = tokio::spawn(async move { pending.wait().await });
    let stored = leader.store(object(b"body", Duration::from_secs(60), Vec::new()));
    match waiter.await.expect("waiter") {
        Outcome::Stored(o) => assert!(Arc::ptr_eq(&o, &stored)),
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(cache.lookup("k", &req, Instant::now(), all), Lookup::Fresh(_)));
}

#[tokio::test]
async fn a_dropped_leader_fails_its_waiters_and_frees_the_key() {
    let cache = Cache::new(settings(1 << 20));
    let req = HeaderMap::new();
    let Lookup::Miss(leader) = cache.lookup("k", &req, Instant::now(), all) else { panic!("miss") };
    let Lookup::Wait(pending) = cache.lookup("k", &req, Instant::now(), all) else { panic!("wait") };
    drop(leader);
    assert!(matches!(pending.wait().await, Outcome::Failed));
    assert!(matches!(cache.lookup("k", &req, Instant::now(), all), Lookup::Miss(_)), "the key is free again");
}

#[test]
fn stale_objects_elect_one_revalidator() {
    let cache = Cache::new(settings(1 << 20));
    let req = HeaderMap::new();
    let Lookup::Miss(leader) = cache.lookup("k", &req, Instant::now(), all) else { panic!("miss") };
    leader.store(object(b"old", Duration::ZERO, Vec::new()));
    let first = cache.lookup("k", &req, Instant::now(), all);
    assert!(matches!(&first, Lookup::Stale { leader: Some(_), pending: None, .. }));
    let second = cache.lookup("k", &req, Instant::now(), all);
    assert!(matches!(&second, Lookup::Stale { leader: None, pending: Some(_), .. }));
}

#[test]
fn variants_are_kept_apart() {
    let cache = Cache::new(settings(1 << 20));
    let name = HeaderName::from_static("accept-encoding");
    let mut gzip = HeaderMap::new();
    gzip.insert(&name, HeaderValue::from_static("gzip"));
    let plain = HeaderMap::new();
    let Lookup::Miss(l) = cache.lookup("k", &gzip, Instant::now(), all) else { panic!("miss") };
    l.store(object(b"gz", Duration::from_secs(60), vec![(name.clone(), Some(HeaderValue::from_static("gzip")))]));
    assert!(matches!(cache.lookup("k", &gzip, Instant::now(), all), Lookup::Fresh(_)));
    let Lookup::Miss(l) = cache.lookup("k", &plain, Instant::now(), all) else { panic!("other variant misses") };
    l.store(object(b"plain", Duration::from_secs(60), vec![(name, None)]));
    assert_eq!(cache.usage().1, 2);
    match cache.lookup("k", &plain, Instant::now(), all) {
        Lookup::Fresh(o) => assert_eq!(o.body.len(), 5),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn least_recently_used_goes_first() {
    let cache = Cache::new(settings(3 * (OVERHEAD + 100)));
    let req = HeaderMap::new();
    let body: &'static [u8] = &[7u8; 100];
    for k in ["a", "b", "c"] {
        let Lookup::Miss(l) = cache.lookup(k, &req, Instant::now(), all) else { panic!("miss {k}") };
        l.store(object(body, Duration::from_secs(60), Vec::new()));
    }
    assert!(matches!(cache.lookup("a", &req, Instant::now(), all), Lookup::Fresh(_)), "touch a");
    let Lookup::Miss(l) = cache.lookup("d", &req, Instant::now(), all) else { panic!("miss d") };
    l.store(object(body, Duration::from_secs(60), Vec::new()));
    assert_eq!(cache.usage(), (3 * (OVERHEAD + 100), 3));
    assert!(matches!(cache.lookup("b", &req, Instant::now(), all), Lookup::Miss(_)), "b was least recently used");
}

#[test]
fn invalid_objects_are_dropped_on_lookup_and_purge() {
    let cache = Cache::new(settings(1 << 20));
    let req = HeaderMap::new();
    for k in ["x", "y"] {
        let Lookup::Miss(l) = cache.lookup(k, &req, Instant::now(), all) else { panic!("miss") };
        l.store(object(b"v", Duration::from_secs(60), Vec::new()));
    }
    assert!(matches!(cache.lookup("x", &req, Instant::now(), |o| o.generation > 1), Lookup::Miss(_)));
    assert_eq!(cache.purge(|k, _| k == "y"), 1);
    assert_eq!(cache.usage(), (0, 0));
}

#[tokio::test]
async fn unknown_sizes_are_settled_when_the_fill_ends() {
    let cache = Cache::new(settings(1 << 20));
    let req = HeaderMap::new();
    let Lookup::Miss(l) = cache.lookup("k", &req, Instant::now(), all) else { panic!("miss") };
    let mut o = object(b"", Duration::from_secs(60), Vec::new());
    o.body = Arc::new(Fill::new());
    o.content_length = None;
    let stored = l.store(o);
    assert_eq!(cache.usage().0, OVERHEAD);
    stored.body.push(Bytes::from_static(&[0u8; 1000]));
    stored.body.finish(FillEnd::Complete);
    cache.settle("k", &stored);
    assert_eq!(cache.usage().0, OVERHEAD + 1000);
    cache.remove("k", &stored);
    assert_eq!(cache.usage(), (0, 0));
}
