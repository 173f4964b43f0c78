//! The CloudFront simulator (docs/simulator.md): in-process under tokio's paused clock for quota accounting and
//! timing, then over HTTP through the real SDK client and the worker's adapter, so what the worker sees is
//! CloudFront's wire format; and the `cloudfront-sim` binary.

mod common;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cf_invalidator::aws::cloudfront::CloudFront;
use cf_invalidator::fake::cloudfront_http::{SimServer, sdk_client};
use cf_invalidator::fake::{Completion, CreateRate, FakeCdn, Report, SimConfig};
use cf_invalidator::model::{CallerReference, DistributionId};
use cf_invalidator::ports::Allowance;
use cf_invalidator::ports::{Cdn, CdnError};
use tokio::time::Instant;

const SECOND: Duration = Duration::from_secs(1);

fn distribution(id: &str) -> DistributionId {
    DistributionId::parse(id).unwrap()
}

fn files(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("/{prefix}/{i}.html")).collect()
}

fn wildcards(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("/{prefix}/{i}/*")).collect()
}

/// A simulator knowing EAAA and EBBB.
fn simulator(config: SimConfig) -> Arc<FakeCdn> {
    let cdn = FakeCdn::simulator(config);
    cdn.add_distribution(distribution("EAAA"));
    cdn.add_distribution(distribution("EBBB"));
    Arc::new(cdn)
}

/// Creates with a fresh worker reference.
async fn create(cdn: &impl Cdn, paths: &[String]) -> Result<String, CdnError> {
    cdn.create_invalidation(&distribution("EAAA"), &CallerReference::mint(), paths).await.map(|i| i.id)
}

fn in_progress(report: &Report, id: &str) -> Allowance {
    report.distributions[id].in_progress
}

// ---- In-process, on tokio's paused clock ----

#[tokio::test(start_paused = true)]
async fn the_path_allowance_returns_as_invalidations_complete() {
    let cdn = simulator(SimConfig::cloudfront());
    create(&*cdn, &files("a", 2_000)).await.unwrap();
    tokio::time::sleep(10 * SECOND).await;
    create(&*cdn, &files("b", 1_000)).await.expect("exactly 3,000 in progress is allowed");
    let refused_at = Instant::now();
    let refused = create(&*cdn, &files("c", 1)).await;
    assert!(matches!(refused, Err(CdnError::TooManyInProgress(_))), "{refused:?}");

    tokio::time::sleep(20 * SECOND).await;
    create(&*cdn, &files("c", 1)).await.expect("the first 2,000 completed 30 s after their creation");

    let report = cdn.report();
    assert_eq!(in_progress(&report, "EAAA"), Allowance { paths: 1_001, wildcards: 0 });
    assert_eq!(report.distributions["EAAA"].peak, Allowance { paths: 3_000, wildcards: 0 });
    assert_eq!(report.distributions["EAAA"].worker_peak, Allowance { paths: 3_000, wildcards: 0 });
    assert_eq!(report.distributions["EBBB"].peak, Allowance::default(), "quotas are per distribution");
    let rejections = cdn.rejections();
    assert_eq!(rejections.len(), 1);
    assert_eq!((rejections[0].code, rejections[0].at), ("TooManyInvalidationsInProgress", refused_at));
    assert_eq!(rejections[0].caller_reference, cdn.calls()[2].caller_reference);
}

/// Completion times vary, so a page of completed invalidations does not prove the older ones completed: a list
/// reaching back to a time finds every invalidation made since, however many newer ones completed first.
#[tokio::test(start_paused = true)]
async fn a_list_reaches_back_past_newer_completed_pages_to_the_time_asked() {
    let cdn = simulator(SimConfig::default());
    let before = cdn.wall_time(Instant::now());
    cdn.complete_after(60 * SECOND);
    let slow = create(&*cdn, &files("slow", 1)).await.unwrap();
    tokio::time::sleep(SECOND).await;
    for n in 0..150 {
        cdn.complete_after(SECOND);
        create(&*cdn, &files(&format!("quick{n}"), 1)).await.unwrap();
    }
    tokio::time::sleep(10 * SECOND).await;
    let now = cdn.wall_time(Instant::now());
    let ids = |listed: Vec<cf_invalidator::ports::Invalidation>| -> Vec<String> {
        listed.into_iter().map(|i| i.id).collect()
    };
    assert_eq!(ids(cdn.list_in_progress(&distribution("EAAA"), before).await.unwrap()), std::slice::from_ref(&slow));
    assert!(ids(cdn.list_recent(&distribution("EAAA"), before).await.unwrap()).contains(&slow));
    assert!(
        ids(cdn.list_in_progress(&distribution("EAAA"), now).await.unwrap()).is_empty(),
        "the newest page alone, all completed, is all a list since now reads"
    );
}

#[tokio::test(start_paused = true)]
async fn wildcards_have_their_own_allowance_and_a_batch_over_either_is_refused_whole() {
    let cdn = simulator(SimConfig::cloudfront());
    create(&*cdn, &wildcards("w", 15)).await.unwrap();
    let mixed = ["/one.html".to_owned(), "/more/*".to_owned()];
    assert!(matches!(create(&*cdn, &mixed).await, Err(CdnError::TooManyInProgress(_))));
    assert_eq!(in_progress(&cdn.report(), "EAAA"), Allowance { paths: 0, wildcards: 15 }, "nothing of it was taken");

    create(&*cdn, &files("f", 3_000)).await.expect("3,000 files fit beside 15 wildcards");
    let tags = ["#product:1".to_owned()];
    assert!(matches!(create(&*cdn, &tags).await, Err(CdnError::TooManyInProgress(_))), "tags count as paths");
}

#[tokio::test(start_paused = true)]
async fn a_retried_reference_gets_its_invalidation_back_even_when_the_distribution_is_full() {
    let cdn = simulator(SimConfig::cloudfront());
    let (reference, paths) = (CallerReference::mint(), files("a", 3_000));
    let first = cdn.create_invalidation(&distribution("EAAA"), &reference, &paths).await.unwrap();
    let again = cdn.create_invalidation(&distribution("EAAA"), &reference, &paths).await.unwrap();
    assert_eq!(again.id, first.id);

    let report = cdn.report();
    assert_eq!((report.all.created, report.all.paths_billed), (1, 3_000), "billed once");
    assert!(cdn.rejections().is_empty());
}

#[tokio::test(start_paused = true)]
async fn someone_elses_invalidations_take_quota_and_are_listed_but_are_not_the_workers() {
    let cdn = simulator(SimConfig::cloudfront());
    let console = cdn.create_as_someone_else(distribution("EAAA"), &files("console", 2_990)).unwrap();
    assert!(matches!(create(&*cdn, &files("w", 20)).await, Err(CdnError::TooManyInProgress(_))));
    let mine = create(&*cdn, &files("w", 10)).await.unwrap();

    let listed: Vec<String> = cdn
        .list_in_progress(&distribution("EAAA"), SystemTime::now())
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(listed, [mine, console.id.clone()], "most recent first");
    let detail = cdn.get_invalidation(&distribution("EAAA"), &console.id).await.unwrap();
    assert!(!detail.caller_reference.starts_with("cfi-"), "{}", detail.caller_reference);
    assert_eq!(detail.paths.len(), 2_990);

    let report = cdn.report();
    assert_eq!(report.distributions["EAAA"].peak.paths, 3_000);
    assert_eq!(report.distributions["EAAA"].worker_peak.paths, 10);
    assert_eq!((report.all.created, report.worker.created), (2, 1));
    assert_eq!((report.all.paths_billed, report.worker.paths_billed), (3_000, 10));
    assert_eq!(report.worker.rejections["TooManyInvalidationsInProgress"], 1);

    let over = cdn.create_as_someone_else(distribution("EAAA"), &files("console", 1));
    assert!(matches!(over, Err(CdnError::TooManyInProgress(_))), "a person hits the quota too: {over:?}");
    assert_eq!(cdn.report().all.rejections["TooManyInvalidationsInProgress"], 2);
}

#[tokio::test(start_paused = true)]
async fn completion_times_are_spread_between_min_and_max_the_same_way_every_run() {
    let spread = || async {
        let config = SimConfig { completion: Completion::Between(10 * SECOND, 60 * SECOND), ..SimConfig::cloudfront() };
        let cdn = simulator(config);
        let start = Instant::now();
        let mut ids = Vec::new();
        for i in 0..20 {
            ids.push(create(&*cdn, &[format!("/{i}")]).await.unwrap());
        }
        let mut completed_after = vec![None; ids.len()];
        while completed_after.iter().any(Option::is_none) {
            for (id, done) in ids.iter().zip(&mut completed_after) {
                let detail = cdn.get_invalidation(&distribution("EAAA"), id).await.unwrap();
                if done.is_none() && detail.invalidation.is_completed() {
                    *done = Some(start.elapsed().as_secs());
                }
            }
            tokio::time::sleep(SECOND).await;
        }
        completed_after.into_iter().map(Option::unwrap).collect::<Vec<u64>>()
    };
    let first = spread().await;
    assert!(first.iter().all(|s| (10..=60).contains(s)), "{first:?}");
    assert!(first.iter().min() < Some(&25) && first.iter().max() > Some(&45), "spread out: {first:?}");
    assert_eq!(first, spread().await, "reproducible");
}

#[tokio::test(start_paused = true)]
async fn the_create_rate_allows_a_burst_then_throttles_until_a_token_returns() {
    let rate = CreateRate { per_second: 1.0, burst: NonZeroU32::new(3).unwrap() };
    let cdn = simulator(SimConfig { create_rate: Some(rate), ..SimConfig::cloudfront() });
    let first = create(&*cdn, &files("0", 1)).await.unwrap();
    for i in 1..3 {
        create(&*cdn, &files(&i.to_string(), 1)).await.unwrap();
    }
    let throttled = create(&*cdn, &files("x", 1)).await;
    assert!(matches!(throttled, Err(CdnError::Throttled(_))), "{throttled:?}");
    tokio::time::sleep(SECOND).await;
    create(&*cdn, &files("x", 1)).await.expect("one token back after a second");
    assert!(matches!(create(&*cdn, &files("y", 1)).await, Err(CdnError::Throttled(_))));
    assert_eq!(cdn.report().worker.rejections["Throttling"], 2);
    assert!(cdn.get_invalidation(&distribution("EAAA"), &first).await.is_ok(), "reads are not limited");
}

#[tokio::test(start_paused = true)]
async fn latency_delays_every_answer() {
    let cdn = simulator(SimConfig { latency: Duration::from_millis(250), ..SimConfig::cloudfront() });
    let start = Instant::now();
    let id = create(&*cdn, &files("a", 1)).await.unwrap();
    cdn.get_invalidation(&distribution("EAAA"), &id).await.unwrap();
    cdn.list_in_progress(&distribution("EAAA"), SystemTime::now()).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(750));
}

#[tokio::test(start_paused = true)]
async fn a_fail_rate_answers_that_share_of_calls_unavailable_the_same_calls_every_run() {
    let outcomes = || async {
        let cdn = simulator(SimConfig { fail_rate: 0.3, ..SimConfig::default() });
        let mut failed = Vec::new();
        for i in 0..300 {
            if let Err(error) = create(&*cdn, &files(&i.to_string(), 1)).await {
                assert!(matches!(error, CdnError::Unavailable(_)), "{error:?}");
                failed.push(i);
            }
        }
        failed
    };
    let failed = outcomes().await;
    assert!((60..120).contains(&failed.len()), "about 90 of 300: {}", failed.len());
    assert_eq!(failed, outcomes().await);
}

#[tokio::test(start_paused = true)]
async fn the_plain_fake_enforces_nothing_and_completes_at_once() {
    let cdn = FakeCdn::with_distributions(["EAAA"]);
    let id = create(&cdn, &files("a", 4_000)).await.unwrap();
    create(&cdn, &wildcards("w", 20)).await.unwrap();
    create(&cdn, &["no-leading-slash".to_owned()]).await.expect("path rules are the simulator's, opt-in");
    assert!(cdn.get_invalidation(&distribution("EAAA"), &id).await.unwrap().invalidation.is_completed());
    assert!(cdn.list_in_progress(&distribution("EAAA"), SystemTime::now()).await.unwrap().is_empty());
}

// ---- Over HTTP, through the SDK and the worker's adapter (real time) ----

/// The simulator served on a loopback port, and the worker's adapter on an SDK client pointed at it.
async fn served(config: SimConfig) -> (Arc<FakeCdn>, SimServer, CloudFront) {
    let cdn = simulator(config);
    let server = SimServer::start(Arc::clone(&cdn)).await.unwrap();
    let adapter = CloudFront::new(server.client());
    (cdn, server, adapter)
}

fn quick(completion: Duration) -> SimConfig {
    SimConfig { completion: Completion::After(completion), ..SimConfig::cloudfront() }
}

/// A plain HTTP/1.1 request for the admin endpoints: (status, body).
#[tokio::test]
async fn over_http_an_invalidation_is_in_progress_until_its_completion_time_then_completed() {
    let completion = Duration::from_millis(600);
    let (_, _server, cloudfront) = served(quick(completion)).await;
    // Characters XML must escape, and an encoded one, come back as sent.
    let paths = vec!["/a&b<c>.html".to_owned(), "/caf%C3%A9/*".to_owned()];
    let reference = CallerReference::mint();
    let start = Instant::now();
    let created = cloudfront.create_invalidation(&distribution("EAAA"), &reference, &paths).await.unwrap();
    assert_eq!(created.status, "InProgress");

    let detail = cloudfront.get_invalidation(&distribution("EAAA"), &created.id).await.unwrap();
    assert_eq!(
        (detail.invalidation.status.as_str(), detail.caller_reference.as_str()),
        ("InProgress", reference.as_str())
    );
    assert_eq!(detail.paths, paths);
    assert_eq!(
        cloudfront.list_in_progress(&distribution("EAAA"), SystemTime::now()).await.unwrap(),
        std::slice::from_ref(&created)
    );

    loop {
        let status = cloudfront.get_invalidation(&distribution("EAAA"), &created.id).await.unwrap().invalidation;
        if status.is_completed() {
            assert_eq!(status.status, "Completed");
            break;
        }
        assert!(start.elapsed() < 10 * completion, "never completed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(start.elapsed() >= completion, "completed early: {:?}", start.elapsed());
    assert!(cloudfront.list_in_progress(&distribution("EAAA"), SystemTime::now()).await.unwrap().is_empty());
}

#[tokio::test]
async fn over_http_a_repeated_reference_returns_the_first_invalidation_or_batch_already_exists() {
    let (cdn, server, cloudfront) = served(quick(SECOND)).await;
    let (reference, paths) = (CallerReference::mint(), files("a", 2));
    let first = cloudfront.create_invalidation(&distribution("EAAA"), &reference, &paths).await.unwrap();
    let again = cloudfront.create_invalidation(&distribution("EAAA"), &reference, &paths).await.unwrap();
    assert_eq!(again.id, first.id);
    let changed = cloudfront.create_invalidation(&distribution("EAAA"), &reference, &files("b", 2)).await;
    assert!(matches!(changed, Err(CdnError::BatchAlreadyExists(_))), "{changed:?}");

    let report = common::simulator_report(&server.url()).await;
    assert_eq!((report.all.created, report.all.paths_billed), (1, 2), "no new billing");
    assert_eq!(report.worker.rejections["InvalidationBatchAlreadyExists"], 1);
    assert_eq!(report, cdn.report(), "the admin endpoint shows the simulator's own report");
}

#[tokio::test]
async fn over_http_quota_refusals_are_too_many_in_progress_for_paths_and_wildcards_apart() {
    let (cdn, _server, cloudfront) = served(quick(60 * SECOND)).await;
    create(&cloudfront, &files("a", 2_999)).await.unwrap();
    let over = create(&cloudfront, &files("b", 2)).await;
    assert!(
        matches!(&over, Err(CdnError::TooManyInProgress(m)) if m.contains("maximum number of in-progress")),
        "{over:?}"
    );
    create(&cloudfront, &wildcards("w", 15)).await.expect("wildcards are counted apart from paths");
    let over = create(&cloudfront, &wildcards("x", 1)).await;
    assert!(matches!(over, Err(CdnError::TooManyInProgress(_))), "{over:?}");
    create(&cloudfront, &files("b", 1)).await.expect("the last path still fits");

    let codes: Vec<&str> = cdn.rejections().iter().map(|r| r.code).collect();
    assert_eq!(codes, ["TooManyInvalidationsInProgress", "TooManyInvalidationsInProgress"]);
    assert_eq!(cdn.report().distributions["EAAA"].peak, Allowance { paths: 3_000, wildcards: 15 });
}

#[tokio::test]
async fn over_http_calls_beyond_the_burst_are_throttled() {
    let rate = CreateRate { per_second: 0.01, burst: NonZeroU32::new(2).unwrap() };
    let (cdn, _server, cloudfront) = served(SimConfig { create_rate: Some(rate), ..quick(SECOND) }).await;
    create(&cloudfront, &files("a", 1)).await.unwrap();
    create(&cloudfront, &files("b", 1)).await.unwrap();
    let throttled = create(&cloudfront, &files("c", 1)).await;
    assert!(matches!(&throttled, Err(CdnError::Throttled(m)) if m.contains("Rate exceeded")), "{throttled:?}");
    assert_eq!(cdn.rejections()[0].code, "Throttling");
}

#[tokio::test]
async fn over_http_a_person_in_the_console_takes_quota_and_shows_in_the_listing() {
    let (_, server, cloudfront) = served(quick(60 * SECOND)).await;
    let (status, body) =
        common::simulator_request(&server.url(), "POST", "/_sim/human/EAAA", &files("console", 2_995).join("\n")).await;
    assert_eq!(status, 201, "{body}");
    let refused = create(&cloudfront, &files("w", 10)).await;
    assert!(matches!(refused, Err(CdnError::TooManyInProgress(_))), "{refused:?}");
    let mine = create(&cloudfront, &files("w", 5)).await.unwrap();

    let listed = cloudfront.list_in_progress(&distribution("EAAA"), SystemTime::now()).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].id, mine);
    let console = cloudfront.get_invalidation(&distribution("EAAA"), &listed[1].id).await.unwrap();
    assert!(console.caller_reference.starts_with("console-"), "{}", console.caller_reference);
    assert_eq!(console.paths.len(), 2_995);

    let report = common::simulator_report(&server.url()).await;
    assert_eq!(report.distributions["EAAA"].peak.paths, 3_000);
    assert_eq!(report.distributions["EAAA"].worker_peak.paths, 5);
    assert_eq!(report.worker.rejections["TooManyInvalidationsInProgress"], 1);
}

#[tokio::test]
async fn over_http_refusals_map_to_the_ports_errors() {
    let (cdn, _server, cloudfront) = served(quick(SECOND)).await;
    cdn.refuse_paths_containing("forbidden");
    let refused = create(&cloudfront, &["/forbidden.html".to_owned()]).await;
    assert!(
        matches!(&refused, Err(CdnError::InvalidArgument(m)) if m.contains("invalid invalidation paths")),
        "{refused:?}"
    );
    for bad in ["no-leading-slash.html", "/star*in-the-middle"] {
        let refused = create(&cloudfront, &[bad.to_owned()]).await;
        assert!(matches!(refused, Err(CdnError::InvalidArgument(_))), "{bad}: {refused:?}");
    }
    let missing =
        cloudfront.create_invalidation(&distribution("ENOSUCH"), &CallerReference::mint(), &files("a", 1)).await;
    assert!(matches!(missing, Err(CdnError::NoSuchDistribution(_))), "{missing:?}");
    let unknown = cloudfront.get_invalidation(&distribution("EAAA"), "INOSUCH").await;
    assert!(matches!(unknown, Err(CdnError::NoSuchInvalidation(_))), "{unknown:?}");
    let listed = cloudfront.list_in_progress(&distribution("ENOSUCH"), SystemTime::now()).await;
    assert!(matches!(listed, Err(CdnError::NoSuchDistribution(_))), "{listed:?}");

    let (_, _server, failing) = served(SimConfig { fail_rate: 1.0, ..quick(SECOND) }).await;
    let unavailable = create(&failing, &files("a", 1)).await;
    assert!(matches!(unavailable, Err(CdnError::Unavailable(_))), "{unavailable:?}");
}

#[tokio::test]
async fn over_http_list_invalidations_pages_most_recent_first() {
    let (_, server, cloudfront) = served(quick(60 * SECOND)).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(create(&cloudfront, &files(&i.to_string(), 1)).await.unwrap());
    }
    ids.reverse();

    let sdk = server.client();
    let (mut pages, mut marker) = (Vec::new(), None);
    loop {
        let list =
            sdk.list_invalidations().distribution_id("EAAA").max_items(2).set_marker(marker).send().await.unwrap();
        let list = list.invalidation_list().unwrap().clone();
        pages.push(list.items().iter().map(|s| s.id().to_owned()).collect::<Vec<_>>());
        assert!(list.items().iter().all(|s| s.status() == "InProgress"));
        if !list.is_truncated() {
            break;
        }
        marker = list.next_marker().map(str::to_owned);
    }
    assert_eq!(pages, [ids[0..2].to_vec(), ids[2..4].to_vec(), ids[4..].to_vec()]);
    let listed: Vec<String> = cloudfront
        .list_in_progress(&distribution("EAAA"), SystemTime::now())
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(listed, ids);
}

#[tokio::test]
async fn over_http_distributions_can_be_added_and_unknown_routes_are_refused() {
    let (_, server, cloudfront) = served(quick(SECOND)).await;
    assert_eq!(common::simulator_request(&server.url(), "POST", "/_sim/distributions/ENEW", "").await.0, 201);
    assert_eq!(
        common::simulator_request(&server.url(), "POST", "/_sim/distributions/ENEW", "").await.0,
        200,
        "already there"
    );
    cloudfront.create_invalidation(&distribution("ENEW"), &CallerReference::mint(), &files("a", 1)).await.unwrap();
    assert_eq!(common::simulator_request(&server.url(), "POST", "/_sim/distributions/not-an-id", "").await.0, 400);
    let (status, body) = common::simulator_request(&server.url(), "GET", "/2020-05-31/distribution/EAAA", "").await;
    assert_eq!(status, 404);
    assert!(body.contains("<Code>NotFound</Code>"), "{body}");
}

/// The binary, stopped when dropped.
#[tokio::test]
async fn the_binary_prints_its_url_and_serves_the_flags_configuration() {
    let simulator = common::SimulatorProcess::start(&[
        "--distribution",
        "EBIN",
        "--completion",
        "1s",
        "--max-paths",
        "10",
        "--rate",
        "0",
    ]);
    let url = simulator.url.clone();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let cloudfront = CloudFront::new(sdk_client(&url));
    let ebin = distribution("EBIN");
    cloudfront.create_invalidation(&ebin, &CallerReference::mint(), &files("a", 10)).await.unwrap();
    let over = cloudfront.create_invalidation(&ebin, &CallerReference::mint(), &files("b", 1)).await;
    assert!(matches!(over, Err(CdnError::TooManyInProgress(_))), "--max-paths 10: {over:?}");

    let report = common::simulator_report(&url).await;
    assert_eq!(report.distributions["EBIN"].peak.paths, 10);
    assert_eq!(report.worker.rejections["TooManyInvalidationsInProgress"], 1);
    drop(simulator);
}

#[tokio::test]
async fn over_http_each_call_is_billed_to_the_account_that_signed_it_with_its_own_rate_quota() {
    use cf_invalidator::fake::cloudfront_http::sdk_client_as;
    use cf_invalidator::fake::{AccountRates, RateQuota};

    // Two paths a long while for each account: a third is refused, whoever's distribution it is for.
    let rates = AccountRates { paths: Some(RateQuota { per_second: 0.001, burst: 2 }), wildcards: None };
    let (cdn, server, _) = served(SimConfig { account_rates: rates, ..quick(SECOND) }).await;
    let first = CloudFront::new(sdk_client_as(&server.url(), "AKIAFIRST"));
    let second = CloudFront::new(sdk_client_as(&server.url(), "AKIASECOND"));
    let create = |cloudfront: &CloudFront, id: &str, paths: Vec<String>| {
        let (cloudfront, id) = (cloudfront.clone(), distribution(id));
        async move { cloudfront.create_invalidation(&id, &CallerReference::mint(), &paths).await }
    };

    create(&first, "EAAA", files("a", 2)).await.unwrap();
    let over = create(&first, "EBBB", files("b", 1)).await;
    assert!(matches!(over, Err(CdnError::TooManyInProgress(_))), "{over:?}");
    create(&second, "EBBB", files("c", 2)).await.unwrap();

    let accounts = cdn.report().accounts;
    assert_eq!(accounts.keys().collect::<Vec<_>>(), ["AKIAFIRST", "AKIASECOND"]);
    assert_eq!((accounts["AKIAFIRST"].created, accounts["AKIAFIRST"].paths_billed), (1, 2));
    assert_eq!(accounts["AKIAFIRST"].rejections["TooManyInvalidationsInProgress"], 1);
    assert_eq!((accounts["AKIASECOND"].created, accounts["AKIASECOND"].paths_billed), (1, 2));
    assert!(cdn.created().iter().all(|c| c.account.starts_with("AKIA")), "every call came signed");
}
