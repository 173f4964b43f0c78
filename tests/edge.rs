//! Proof at the edge (issue #28) against the simulator's edge (docs/edge.md): verification and warming in-process
//! on tokio's paused clock; then the HTTP client over loopback, in real time, for what only a real connection
//! shows: hostile paths reach no other host, redirects are not followed, the byte cap and the timeouts hold; and
//! the `cloudfront-sim` binary's edge.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use cf_invalidator::clock::WallClock;
use cf_invalidator::edge::http::{HttpEdge, Resolver};
use cf_invalidator::edge::sample::sample;
use cf_invalidator::edge::settings::{FetchLimits, VerifySettings, WarmSettings};
use cf_invalidator::edge::url::{EdgeBase, Pop, edge_url};
use cf_invalidator::edge::{BatchFacts, Verification, Verifier, Warmer};
use cf_invalidator::fake::edge_http::EdgeServer;
use cf_invalidator::fake::{EdgeCall, EdgeConfig, FakeCdn, FakeEdge, Misbehaviour, SimRequest};
use cf_invalidator::model::path::InvalidationPath;
use cf_invalidator::model::{CallerReference, DistributionId};
use cf_invalidator::ports::Cdn;
use cf_invalidator::ports::edge::{Edge, EdgeError, EdgeMethod, EdgeRequest};
use serde::Deserialize;
use tokio::time::Instant;

const SECOND: Duration = Duration::from_secs(1);
const DOMAIN: &str = "d111111abcdef8.cloudfront.net";
const IAD: &str = "IAD89-C1";
const FRA: &str = "FRA56-P2";
/// What the batch invalidates: seven objects, a wildcard and a tag, which are never requested.
const BATCH: [&str; 9] = [
    "/index.html",
    "/css/site.css",
    "/js/app.js",
    "/img/logo.png",
    "/about.html",
    "/docs/a.html",
    "/docs/b.html",
    "/img/*",
    "#product-1",
];

fn distribution(id: &str) -> DistributionId {
    DistributionId::parse(id).unwrap()
}

/// The simulator with one distribution, completing invalidations after 30 s, and its edge.
struct Sim {
    cdn: Arc<FakeCdn>,
    edge: Arc<FakeEdge>,
    clock: WallClock,
}

impl Sim {
    fn new(id: &str) -> Self {
        let cdn = Arc::new(FakeCdn::with_distributions([id]));
        cdn.complete_after(30 * SECOND);
        let edge = Arc::new(FakeEdge::new(Arc::clone(&cdn), EdgeConfig::default()));
        Self { cdn, edge, clock: WallClock::following_tokio() }
    }

    /// Version 1 of every object at the origin, cached at both POPs for browsers.
    fn publish_and_cache(&self, id: &str) {
        for path in objects() {
            self.edge.put_object(&distribution(id), path, format!("{path} v1"));
        }
        self.cache_everywhere(id);
    }

    /// A browser's GET of every object at both POPs.
    fn cache_everywhere(&self, id: &str) {
        for path in objects() {
            for pop in [IAD, FRA] {
                let request = SimRequest {
                    method: EdgeMethod::Get,
                    path_and_query: &format!("/{id}{path}"),
                    host: DOMAIN,
                    pop: Some(pop),
                    accept_encoding: Some("br, gzip"),
                };
                assert_eq!(self.edge.respond(&request).unwrap().status, 200);
            }
        }
    }

    /// A deploy: version 2 at the origin, then the invalidation; returns when it was created.
    async fn deploy(&self, id: &str) -> SystemTime {
        for path in objects() {
            self.edge.put_object(&distribution(id), path, format!("{path} v2"));
        }
        let created = self.clock.now();
        let paths: Vec<String> = BATCH.map(String::from).to_vec();
        self.cdn.create_invalidation(&distribution(id), &CallerReference::mint(), &paths).await.unwrap();
        created
    }

    fn verifier(&self) -> Verifier<FakeEdge> {
        Verifier::new(Arc::clone(&self.edge), VerifySettings::default(), self.clock)
    }
}

fn objects() -> impl Iterator<Item = &'static str> {
    BATCH.into_iter().filter(|path| !path.ends_with('*') && !path.starts_with('#'))
}

/// The batch as the tracker will describe it: requested through the simulator's edge, routed by the id.
fn facts(id: &str, created: SystemTime) -> BatchFacts {
    BatchFacts {
        distribution: distribution(id),
        edge: EdgeBase::parse(&format!("https://{DOMAIN}/{id}")).unwrap(),
        domain: Some(DOMAIN.into()),
        origin: None,
        paths: BATCH.map(String::from).to_vec(),
        invalidation_created: created,
    }
}

fn stale_pops(verification: &Verification) -> BTreeSet<&str> {
    verification.stale.iter().filter_map(|stale| stale.pop.as_deref()).collect()
}

// ---- Verification, in-process on tokio's paused clock ----

#[tokio::test(start_paused = true)]
async fn a_normal_invalidation_is_verified_fresh_once_it_completes_and_not_before() {
    let sim = Sim::new("EDGE1");
    sim.publish_and_cache("EDGE1");
    tokio::time::sleep(60 * SECOND).await;
    let created = sim.deploy("EDGE1").await;

    tokio::time::sleep(10 * SECOND).await;
    let early = sim.verifier().verify(&facts("EDGE1", created)).await;
    assert_eq!((early.checked, early.fresh, early.stale.len()), (5, 0, 5), "in progress, every copy is the old one");
    assert!(early.stale.iter().all(|stale| stale.reason.contains("cached 70 s ago")), "{:?}", early.stale);

    tokio::time::sleep(21 * SECOND).await;
    let verified = sim.verifier().verify(&facts("EDGE1", created)).await;
    assert_eq!((verified.checked, verified.fresh), (5, 5), "{verified:?}");
    assert!(verified.all_fresh() && verified.errors.is_empty());
    assert_eq!(verified.pops, BTreeSet::from([IAD.to_owned(), FRA.to_owned()]), "both POPs answered");

    let calls = sim.edge.calls();
    let checks: Vec<&EdgeCall> = calls.iter().filter(|call| call.method == EdgeMethod::Head).collect();
    assert_eq!(checks.len(), 10, "five paths, checked twice, HEAD only");
    assert!(checks.iter().all(|call| call.host == DOMAIN && objects().any(|path| path == call.path)));
    assert_eq!(checks.iter().map(|call| call.path.as_str()).collect::<BTreeSet<_>>().len(), 5, "the same sample");
}

#[tokio::test(start_paused = true)]
async fn a_lagging_pop_is_stale_until_its_lag_has_passed() {
    let sim = Sim::new("EDGE1");
    sim.edge.set_lag(FRA, 60 * SECOND);
    sim.publish_and_cache("EDGE1");
    tokio::time::sleep(5 * SECOND).await;
    let created = sim.deploy("EDGE1").await;
    tokio::time::sleep(31 * SECOND).await;

    let lagging = sim.verifier().verify(&facts("EDGE1", created)).await;
    assert!(!lagging.stale.is_empty() && lagging.fresh > 0, "{lagging:?}");
    assert_eq!(stale_pops(&lagging), BTreeSet::from([FRA]), "only the lagging POP serves old copies");
    assert_eq!(lagging.fresh + lagging.stale.len(), lagging.checked);

    tokio::time::sleep(60 * SECOND).await;
    let caught_up = sim.verifier().verify(&facts("EDGE1", created)).await;
    assert!(caught_up.all_fresh(), "{caught_up:?}");
}

#[tokio::test(start_paused = true)]
async fn a_pop_or_path_kept_stale_stays_stale() {
    let sim = Sim::new("EDGE1");
    let batch: Vec<String> = BATCH.map(String::from).to_vec();
    let kept = sample(&batch, 5)[0].to_owned();
    sim.edge.keep_stale_pop(FRA);
    sim.edge.keep_stale_path(&distribution("EDGE1"), &kept);
    sim.publish_and_cache("EDGE1");
    tokio::time::sleep(5 * SECOND).await;
    let created = sim.deploy("EDGE1").await;
    tokio::time::sleep(3_600 * SECOND).await;

    let verifier = sim.verifier();
    let mut stale = BTreeSet::new();
    for _ in 0..2 {
        // Twice, so each sampled path meets both POPs in turn.
        let verification = verifier.verify(&facts("EDGE1", created)).await;
        assert_eq!(verification.fresh + verification.stale.len(), 5, "{verification:?}");
        assert!(verification.stale.iter().all(|stale| stale.reason.contains("before the invalidation")));
        stale.extend(verification.stale.iter().map(|stale| (stale.path.clone(), stale.pop.clone().unwrap())));
    }
    let expected: BTreeSet<(String, String)> = sample(&batch, 5)
        .into_iter()
        .map(|path| (path.to_owned(), FRA.to_owned()))
        .chain([(kept.clone(), IAD.to_owned())])
        .collect();
    assert_eq!(stale, expected, "every path at the stale POP, and the stale path at both");
}

#[tokio::test(start_paused = true)]
async fn a_fresh_copy_of_an_outdated_origin_object_is_stale_against_the_origin() {
    let sim = Sim::new("EDGE1");
    sim.publish_and_cache("EDGE1");
    // The invalidation went out before the upload: the edge refetched version 1, then version 2 arrived.
    let created = sim.clock.now();
    sim.cdn.create_invalidation(&distribution("EDGE1"), &CallerReference::mint(), &["/*".into()]).await.unwrap();
    tokio::time::sleep(31 * SECOND).await;
    sim.cache_everywhere("EDGE1");
    for path in objects() {
        sim.edge.put_object(&distribution("EDGE1"), path, format!("{path} v2"));
    }
    let by_age = sim.verifier().verify(&facts("EDGE1", created)).await;
    assert!(by_age.all_fresh(), "by X-Cache and Age alone it looks fresh: {by_age:?}");

    let mut with_origin = facts("EDGE1", created);
    with_origin.origin = Some(EdgeBase::parse("https://origin.example.com/_origin/EDGE1").unwrap());
    let checked = sim.verifier().verify(&with_origin).await;
    assert_eq!((checked.checked, checked.fresh, checked.stale.len()), (5, 0, 5), "{checked:?}");
    assert!(checked.stale.iter().all(|stale| stale.reason.contains("ETag \"1-") && stale.reason.contains("ETag \"2-")));
    let origin_calls = sim.edge.calls().into_iter().filter(|call| call.pop.is_none()).count();
    assert_eq!(origin_calls, 5, "one HEAD to the origin a path");
}

// ---- Warming, in-process on tokio's paused clock ----

fn many(count: usize) -> Vec<String> {
    (0..count).map(|n| format!("/page/{n}.html")).collect()
}

fn warm_facts(id: &str, paths: &[String]) -> BatchFacts {
    BatchFacts { paths: paths.to_vec(), ..facts(id, SystemTime::UNIX_EPOCH) }
}

/// Requests the edge received per whole second since `start`, per distribution.
fn per_second(calls: &[EdgeCall], start: Instant) -> BTreeMap<(String, u64), usize> {
    let mut counts = BTreeMap::new();
    for call in calls {
        *counts.entry((call.distribution.clone(), call.at.duration_since(start).as_secs())).or_default() += 1;
    }
    counts
}

#[tokio::test(start_paused = true)]
async fn warming_keeps_to_its_rate_per_distribution_however_many_batches_warm_at_once() {
    let sim = Sim::new("EDGE1");
    sim.cdn.add_distribution(distribution("EDGE2"));
    let paths = many(10);
    for id in ["EDGE1", "EDGE2"] {
        for path in &paths {
            sim.edge.put_object(&distribution(id), path, "body");
        }
    }
    let warmer = Warmer::new(Arc::clone(&sim.edge), WarmSettings::default());
    let start = Instant::now();
    let (edge1, edge2) = (warm_facts("EDGE1", &paths), warm_facts("EDGE2", &paths));
    let (first, second, other) = tokio::join!(warmer.warm(&edge1), warmer.warm(&edge1), warmer.warm(&edge2));
    for warming in [&first, &second, &other] {
        assert_eq!((warming.warmed, warming.failed), (20, 0), "ten paths, br and gzip: {warming:?}");
    }

    let calls = sim.edge.calls();
    assert_eq!(calls.len(), 60);
    let counts = per_second(&calls, start);
    assert!(counts.values().all(|&count| count <= 5), "at most 5 a second per distribution: {counts:?}");
    assert_eq!(counts.keys().filter(|(id, _)| id == "EDGE1").count(), 8, "40 requests at 5 a second: 8 seconds");
    let encodings: BTreeSet<(&str, &str)> = calls
        .iter()
        .filter(|call| call.distribution == "EDGE2")
        .map(|call| (call.path.as_str(), call.accept_encoding.as_deref().unwrap()))
        .collect();
    assert_eq!(encodings.len(), 20, "each path once per encoding");
    assert!(calls.iter().all(|call| call.method == EdgeMethod::Get && call.host == DOMAIN));
}

#[tokio::test(start_paused = true)]
async fn warming_through_named_pops_fills_each_of_them() {
    let sim = Sim::new("EDGE1");
    let paths = many(3);
    for path in &paths {
        sim.edge.put_object(&distribution("EDGE1"), path, "body");
    }
    let pops = vec![Pop::parse(IAD).unwrap(), Pop::parse(FRA).unwrap()];
    let settings = WarmSettings { pops, encodings: vec!["br".into()], ..WarmSettings::default() };
    let warming = Warmer::new(Arc::clone(&sim.edge), settings).warm(&warm_facts("EDGE1", &paths)).await;
    assert_eq!((warming.warmed, warming.failed), (6, 0));
    let mut filled: Vec<(String, String)> =
        sim.edge.calls().into_iter().map(|call| (call.pop.unwrap(), call.path)).collect();
    filled.sort();
    let expected: Vec<(String, String)> =
        [FRA, IAD].iter().flat_map(|pop| paths.iter().map(move |path| (pop.to_string(), path.clone()))).collect();
    assert_eq!(filled, expected);

    let unnamed = Warmer::new(
        Arc::clone(&sim.edge),
        WarmSettings { pops: vec![Pop::parse("NRT57-P3").unwrap()], ..WarmSettings::default() },
    );
    let failed = unnamed.warm(&warm_facts("EDGE1", &paths)).await;
    assert_eq!((failed.warmed, failed.failed), (0, 6), "a POP that does not exist: {failed:?}");
}

// ---- The HTTP client against the edge over loopback (real time) ----

/// A server that must never be reached: it counts the connections it accepts.
struct Trap {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl Trap {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&connections);
        tokio::spawn(async move {
            while listener.accept().await.is_ok() {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        });
        Self { addr, connections }
    }
}

/// The edge over HTTP, its host names pinned to loopback (`evil.com` to the trap), and the client.
struct Served {
    sim: Sim,
    server: EdgeServer,
    trap: Trap,
    client: Arc<HttpEdge>,
}

async fn served(limits: FetchLimits) -> Served {
    let sim = Sim::new("EDGE1");
    let server = EdgeServer::start(Arc::clone(&sim.edge)).await.unwrap();
    let trap = Trap::start().await;
    let main = server.url().trim_start_matches("http://").parse::<SocketAddr>().unwrap();
    let mut pins = vec![(DOMAIN.to_owned(), main)];
    for host in ["evil.com", "www.evil.com"] {
        pins.push((host.to_owned(), trap.addr));
    }
    for (pop, addr) in server.pops() {
        pins.push((format!("d111111abcdef8.{pop}.cloudfront.net"), *addr));
    }
    let client = Arc::new(HttpEdge::new(limits, Resolver::pinned(pins)).unwrap());
    Served { sim, server, trap, client }
}

impl Served {
    /// `http://d111111abcdef8.cloudfront.net:<port>/EDGE1`: the distribution's name, the simulator's port.
    fn base(&self) -> EdgeBase {
        let port = self.server.url().rsplit(':').next().unwrap().to_owned();
        EdgeBase::parse(&format!("http://{DOMAIN}:{port}/EDGE1")).unwrap()
    }

    fn host_header(&self) -> String {
        format!("{DOMAIN}:{}", self.server.url().rsplit(':').next().unwrap())
    }

    fn get(&self, path: &str) -> EdgeRequest {
        EdgeRequest {
            method: EdgeMethod::Get,
            url: edge_url(&self.base(), path).unwrap(),
            via: None,
            accept_encoding: None,
        }
    }
}

#[derive(Debug, Deserialize)]
struct HostilePath {
    note: String,
    path: String,
}

#[tokio::test]
async fn hostile_paths_never_reach_another_host() {
    let served = served(FetchLimits::default()).await;
    let corpus: Vec<HostilePath> =
        include_str!("hostile/edge_paths.jsonl").lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    // What a producer could get past intake (encoded once), and the raw text too, as if intake had let it through.
    let mut batch = Vec::new();
    for case in &corpus {
        if let Ok(parsed) = InvalidationPath::parse(&case.path) {
            batch.push(parsed.into_string());
        }
        batch.push(case.path.clone());
    }
    for path in &batch {
        served.sim.edge.put_object(&distribution("EDGE1"), path, "object");
    }
    let facts = BatchFacts { edge: served.base(), paths: batch.clone(), ..facts("EDGE1", SystemTime::now()) };
    let settings = VerifySettings { sample: 100, ..VerifySettings::default() };
    let verification = Verifier::new(Arc::clone(&served.client), settings, WallClock::System).verify(&facts).await;
    let pops = vec![Pop::parse(IAD).unwrap()];
    let warming =
        Warmer::new(Arc::clone(&served.client), WarmSettings { pops, rate: 1_000.0, ..WarmSettings::default() })
            .warm(&facts)
            .await;

    assert_eq!(served.trap.connections.load(Ordering::SeqCst), 0, "nothing reached evil.com");
    let calls = served.sim.edge.calls();
    assert!(calls.iter().all(|call| call.host == served.host_header()), "every request named the distribution's host");
    let requested: BTreeSet<&str> = calls.iter().map(|call| call.path.as_str()).collect();
    assert!(
        requested.iter().all(|path| batch.iter().any(|given| given == path)),
        "only the paths given: {requested:?}"
    );
    for harmless in ["/@evil.com/x", "/x?@evil.com", "/%40evil.com", "/user:pass@evil.com/", "/%0d%0aHost:%20evil.com"]
    {
        assert!(requested.contains(harmless), "{harmless} is a path on the distribution's host, and was requested");
    }
    for refused in ["//evil.com/x", "/%2F%2Fevil.com", "/..%2F..", "/a/../../x", "http://evil.com/x", "/x#@evil.com"] {
        assert!(!requested.iter().any(|path| path.contains(&refused[1..])), "{refused} was never requested");
    }
    let warmed_at: BTreeSet<Option<&str>> =
        calls.iter().filter(|call| call.method == EdgeMethod::Get).map(|call| call.pop.as_deref()).collect();
    assert_eq!(warmed_at, BTreeSet::from([Some(IAD)]), "warmed through the named POP's own address");
    assert_eq!(verification.checked, requested.len(), "{verification:?}");
    assert!(verification.errors.is_empty() && warming.failed == 0, "{verification:?} {warming:?}");
    let notes: Vec<&str> = corpus.iter().map(|case| case.note.as_str()).collect();
    assert!(notes.len() >= 20, "the corpus: {notes:?}");
}

#[tokio::test]
async fn redirects_are_reported_not_followed() {
    let served = served(FetchLimits::default()).await;
    served.sim.edge.put_object(&distribution("EDGE1"), "/moved", "object");
    served.sim.edge.misbehave(&distribution("EDGE1"), "/moved", Misbehaviour::Redirect("http://evil.com/x".into()));
    let facts = BatchFacts { edge: served.base(), paths: vec!["/moved".into()], ..facts("EDGE1", SystemTime::now()) };

    let verification =
        Verifier::new(Arc::clone(&served.client), VerifySettings::default(), WallClock::System).verify(&facts).await;
    assert_eq!(verification.errors.len(), 1, "{verification:?}");
    assert_eq!(verification.errors[0].reason, "a 301 redirect to http://evil.com/x, not followed");
    let warming = Warmer::new(Arc::clone(&served.client), WarmSettings::default()).warm(&facts).await;
    assert_eq!((warming.warmed, warming.failed), (0, 2));
    assert!(warming.failures[0].reason.contains("not followed"), "{warming:?}");
    assert_eq!(served.trap.connections.load(Ordering::SeqCst), 0, "the redirect's host was never contacted");
    assert_eq!(served.sim.edge.calls().len(), 3, "one HEAD, two GETs: no request after any of them");
}

#[tokio::test]
async fn a_huge_body_is_read_up_to_the_cap() {
    let limits = FetchLimits { max_body_bytes: 100_000, ..FetchLimits::default() };
    let served = served(limits).await;
    served.sim.edge.put_object(&distribution("EDGE1"), "/small", "twelve bytes");
    served.sim.edge.put_object(&distribution("EDGE1"), "/huge", "object");
    served.sim.edge.misbehave(&distribution("EDGE1"), "/huge", Misbehaviour::Huge(50 << 20));

    let small = served.client.fetch(&served.get("/small")).await.unwrap();
    assert_eq!((small.status, small.bytes_read, small.truncated), (200, 12, false));
    let huge = served.client.fetch(&served.get("/huge")).await.unwrap();
    assert_eq!((huge.status, huge.bytes_read, huge.truncated), (200, 100_000, true));
    let head = EdgeRequest { method: EdgeMethod::Head, ..served.get("/huge") };
    assert_eq!(served.client.fetch(&head).await.unwrap().bytes_read, 0);
}

#[tokio::test]
async fn a_trickling_edge_runs_out_of_total_time_and_a_silent_one_of_answer_time() {
    // Each limit far from the other, so which one runs out first does not depend on the machine's load.
    let trickling = served(FetchLimits {
        read_timeout: Duration::from_secs(10),
        total_timeout: Duration::from_millis(500),
        ..FetchLimits::default()
    })
    .await;
    let silent = served(FetchLimits {
        read_timeout: Duration::from_millis(300),
        total_timeout: Duration::from_secs(30),
        ..FetchLimits::default()
    })
    .await;
    for (served, path, misbehaviour) in [
        (&trickling, "/trickle", Misbehaviour::Trickle(Duration::from_millis(20))),
        (&silent, "/silent", Misbehaviour::Silent),
    ] {
        served.sim.edge.put_object(&distribution("EDGE1"), path, "object");
        served.sim.edge.misbehave(&distribution("EDGE1"), path, misbehaviour);
    }

    let trickled = trickling.client.fetch(&trickling.get("/trickle")).await;
    assert!(matches!(trickled, Err(EdgeError::Timeout { what: "finish", .. })), "{trickled:?}");
    let unanswered = silent.client.fetch(&silent.get("/silent")).await;
    assert!(matches!(unanswered, Err(EdgeError::Timeout { what: "answer", .. })), "{unanswered:?}");
}

#[tokio::test]
async fn a_closed_port_or_an_unknown_name_is_an_error_that_says_which() {
    let served = served(FetchLimits::default()).await;
    let fetch = |base: &str| {
        let url = edge_url(&EdgeBase::parse(base).unwrap(), "/a").unwrap();
        let client = Arc::clone(&served.client);
        async move { client.fetch(&EdgeRequest { method: EdgeMethod::Head, url, via: None, accept_encoding: None }).await }
    };
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let refused = fetch(&format!("http://127.0.0.1:{closed_port}")).await;
    assert!(matches!(&refused, Err(EdgeError::Connect { .. })), "{refused:?}");
    // RFC 6761: `.invalid` never resolves.
    let unresolved = fetch("http://no-such-host.invalid").await;
    assert!(
        matches!(&unresolved, Err(EdgeError::Resolve { host, .. }) if host == "no-such-host.invalid"),
        "{unresolved:?}"
    );
}

// ---- The `cloudfront-sim` binary's edge (real time) ----

/// The binary with its edge, stopped when dropped: the CloudFront URL, the edge's, and each POP's.
struct SimulatorWithEdge {
    process: std::process::Child,
    lines: Vec<String>,
}

impl SimulatorWithEdge {
    fn start(args: &[&str]) -> Self {
        use std::io::BufRead;
        let mut process = std::process::Command::new(env!("CARGO_BIN_EXE_cloudfront-sim"))
            .args(["--port", "0", "--edge-port", "0"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = std::io::BufReader::new(process.stdout.take().unwrap());
        let lines = stdout.lines().take(4).map(Result::unwrap).collect();
        Self { process, lines }
    }
}

impl Drop for SimulatorWithEdge {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

#[tokio::test]
async fn the_binary_serves_an_edge_whose_lagging_pop_is_seen_stale() {
    let simulator =
        SimulatorWithEdge::start(&["--distribution", "EBIN", "--completion", "1s", "--edge-lag", "FRA56-P2=1h"]);
    let [cloudfront_url, edge_at, fra, iad] = &simulator.lines[..] else { panic!("{:?}", simulator.lines) };
    assert!(fra.starts_with("FRA56-P2 http://") && iad.starts_with("IAD89-C1 http://"), "{:?}", simulator.lines);
    let (status, body) = common::simulator_request(edge_at, "PUT", "/_edge/objects/EBIN/index.html", "v1").await;
    assert_eq!(status, 201, "{body}");

    let client = Arc::new(HttpEdge::new(FetchLimits::default(), Resolver::System).unwrap());
    let edge = EdgeBase::parse(&format!("{edge_at}/EBIN")).unwrap();
    let get = EdgeRequest {
        method: EdgeMethod::Get,
        url: edge_url(&edge, "/index.html").unwrap(),
        via: None,
        accept_encoding: Some("br, gzip".into()),
    };
    // The POPs answer in turn: both cache version 1, for browsers (the encoding verification asks for).
    for _ in [IAD, FRA] {
        let cached = client.fetch(&get).await.unwrap();
        assert_eq!(cached.x_cache.as_deref(), Some("Miss from cloudfront"), "{cached:?}");
    }

    let cloudfront = cf_invalidator::aws::cloudfront::CloudFront::new(
        cf_invalidator::fake::cloudfront_http::sdk_client(cloudfront_url),
    );
    let created = SystemTime::now();
    cloudfront
        .create_invalidation(&distribution("EBIN"), &CallerReference::mint(), &["/index.html".into()])
        .await
        .unwrap();
    common::simulator_request(edge_at, "PUT", "/_edge/objects/EBIN/index.html", "v2").await;
    let completed = common::wait_until(Duration::from_secs(10), || async {
        let listed = cloudfront.list_in_progress(&distribution("EBIN"), created).await.unwrap();
        listed.is_empty()
    })
    .await;
    assert!(completed, "the invalidation never completed");

    let origin = EdgeBase::parse(&format!("{edge_at}/_origin/EBIN")).unwrap();
    let facts = BatchFacts {
        distribution: distribution("EBIN"),
        edge,
        domain: None,
        origin: Some(origin),
        paths: vec!["/index.html".into()],
        invalidation_created: created,
    };
    let verifier = Verifier::new(client, VerifySettings::default(), WallClock::System);
    let (first, second) = (verifier.verify(&facts).await, verifier.verify(&facts).await);
    assert_eq!(first.fresh + second.fresh, 1, "{first:?} {second:?}");
    let stale: Vec<_> = first.stale.iter().chain(&second.stale).collect();
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0].pop.as_deref(), Some(FRA), "the POP that lags an hour: {stale:?}");
}
