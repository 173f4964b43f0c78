//! The page built from the in-memory fakes: what is seeded through the ports shows, hostile text stays text.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::StatusPage;
use super::page::{render, render_batch};
use super::view::{StatusSettings, view};
use crate::fake::{MemoryLedger, MemoryQueue, pending_record};
use crate::limit::WaitingBoard;
use crate::model::{CallerReference, DistributionId, MessageId};
use crate::ports::budget::{Allowance, Budgets, Reservation};
use crate::ports::cdn::Invalidation;
use crate::ports::ledger::{Batches, DeadLetterRecord, DeadLetters};
use crate::ports::queue::Queue;

const HOSTILE: &str = "bad path <script>alert('x')</script> & \"more\"";

fn distribution(raw: &str) -> DistributionId {
    DistributionId::parse(raw).unwrap()
}

fn settings() -> StatusSettings {
    StatusSettings {
        table: "invalidations".into(),
        quota: crate::ports::budget::QUOTA,
        reserve: Allowance { paths: 100, wildcards: 2 },
        monthly_path_budget: Some(2_000),
    }
}

/// A ledger with one busy distribution (near its quota), one pending batch, an accepted invalidation and a dead
/// letter with a hostile reason; a queue with two messages, one of them received.
async fn seeded(now: SystemTime) -> StatusPage<MemoryLedger, MemoryQueue> {
    let ledger = MemoryLedger::default();
    let busy = distribution("EBUSY");
    let reservation = |paths, wildcards| Reservation {
        id: CallerReference::mint(),
        owner: "worker-a".into(),
        need: Allowance { paths, wildcards },
        until: now + Duration::from_secs(60),
        invalidation_id: None,
    };
    assert!(ledger.write_reservation(&busy, 0, &reservation(2_500, 1), &[]).await.unwrap());
    let expired = Reservation { until: now - Duration::from_secs(1), ..reservation(400, 0) };
    assert!(ledger.write_reservation(&busy, 1, &expired, &[]).await.unwrap());

    let later = now + Duration::from_secs(3_600);
    let pending = pending_record("EQUIET", &["/a"], &["m1"], now - Duration::from_secs(90));
    let pending = crate::ports::BatchRecord {
        owner: "worker-b".into(),
        lease_until: now + Duration::from_secs(20),
        expires_at: later,
        ..pending
    };
    ledger.record_intent(&pending).await.unwrap();
    let mut accepted = pending_record("EBUSY", &["/x", "/y/*"], &["m2"], now - Duration::from_secs(30));
    accepted.expires_at = later;
    accepted.requesters = vec![HOSTILE.into()];
    ledger.record_intent(&accepted).await.unwrap();
    accepted
        .accept(&Invalidation { id: "I2NEWEST".into(), status: "InProgress".into() }, now - Duration::from_secs(29));
    ledger.record_outcome(&accepted).await.unwrap();
    ledger
        .record_dead_letter(&DeadLetterRecord {
            message_id: MessageId("m-dead".into()),
            reason: HOSTILE.into(),
            code: "malformed".into(),
            distribution_id: None,
            requester: None,
            created_at: now - Duration::from_secs(5),
            expires_at: later,
            outbox: false,
        })
        .await
        .unwrap();

    let queue = MemoryQueue::default();
    queue.send("{}", &[]).await.unwrap();
    queue.send("{}", &[]).await.unwrap();
    queue.receive(1, Duration::ZERO, Duration::from_secs(60)).await.unwrap();
    StatusPage {
        ledger: Arc::new(ledger),
        queue: Arc::new(queue),
        dead_letter_queue: Some(Arc::new(MemoryQueue::default())),
        settings: settings(),
        waiting: None,
        limits: None,
        accounts: None,
        edge: None,
    }
}

#[tokio::test]
async fn the_view_shows_headroom_backlog_and_the_newest_invalidation() {
    let now = SystemTime::now();
    let page = seeded(now).await;
    let shown = view(&page.snapshot(now).await.unwrap(), &page.settings);

    let busy = &shown.distributions[0];
    assert_eq!(busy.id, "EBUSY", "the fullest distribution comes first");
    assert_eq!(busy.in_progress, Allowance { paths: 2_500, wildcards: 1 }, "expired reservations do not count");
    assert_eq!(busy.headroom, Allowance { paths: 400, wildcards: 12 });
    assert!(busy.near_quota);
    let quiet = &shown.distributions[1];
    assert_eq!((quiet.id.as_str(), quiet.pending_batches, quiet.near_quota), ("EQUIET", 1, false));
    assert_eq!(quiet.oldest_pending.as_deref(), Some("1m 30s"));
    assert_eq!(quiet.waiting_batches, None, "only a worker knows its waiting batches");

    let depth = shown.queue.clone().unwrap();
    assert_eq!((depth.visible, depth.in_flight), (1, 1));
    assert_eq!(shown.recent[0].invalidation_id.as_deref(), Some("I2NEWEST"));
    assert_eq!(shown.recent[1].status, "pending");
    assert_eq!(shown.failures[0].reason, HOSTILE);
    let owners: Vec<_> = shown.workers.iter().map(|w| (w.owner.as_str(), w.reservations, w.leases)).collect();
    assert_eq!(owners, [("worker-a", 1, 0), ("worker-b", 0, 1)]);
    assert_eq!(shown.cost.budget.map(|b| b.paths), Some(2_000));
}

#[tokio::test]
async fn a_worker_checking_at_the_edge_shows_its_outcomes_and_a_batch_page_its_verification() {
    use crate::edge::tally::EdgeTally;
    use crate::ports::AuditLog;
    use crate::ports::ledger::{EdgeOutcome, VerificationRecord};
    use crate::telemetry::Pages;
    let now = SystemTime::now();
    let mut page = seeded(now).await;
    let html = page.page("/").await.unwrap().html;
    assert!(!html.contains("Checks at the edge"), "a page that does not check says nothing of it");

    let verified = VerificationRecord {
        stale_paths: vec!["/stale.html".into()],
        healed_by: Some("heal-x".into()),
        ..crate::fake::verification(EdgeOutcome::Healed, now)
    };
    let tally = EdgeTally::default();
    let newest = page.ledger.batch_by_invalidation("I2NEWEST").await.unwrap().unwrap();
    tally.add(&newest.caller_reference, &verified);
    tally.add(&newest.caller_reference, &VerificationRecord { outcome: EdgeOutcome::Healing, ..verified.clone() });
    page.edge = Some(Arc::new(tally));
    let html = page.page("/").await.unwrap().html;
    assert!(html.contains("Checks at the edge by this worker: 1 healed; last: "), "{html}");
    assert!(html.contains("/stale.html"), "the last check's stale paths");

    page.ledger.record_verification(&newest.caller_reference, &verified).await.unwrap();
    let batch_page = page.page("/invalidation/I2NEWEST").await.unwrap().html;
    assert!(batch_page.contains("at the edge") && batch_page.contains("healed: 4/5 fresh"), "{batch_page}");
}

#[tokio::test]
async fn a_worker_adds_its_batches_waiting_for_room() {
    let now = SystemTime::now();
    let mut page = seeded(now).await;
    let since = now - Duration::from_secs(300);
    let board = WaitingBoard::default();
    for started in [since, since + Duration::from_secs(60), now] {
        board.add(&distribution("EQUIET"), started);
    }
    page.waiting = Some(Arc::new(board));
    let shown = view(&page.snapshot(now).await.unwrap(), &page.settings);
    let quiet = shown.distributions.iter().find(|d| d.id == "EQUIET").unwrap();
    assert_eq!(quiet.waiting_batches, Some(3));
    assert_eq!(quiet.oldest_pending.as_deref(), Some("5m"), "the longest wait is the oldest pending path");
    let busy = shown.distributions.iter().find(|d| d.id == "EBUSY").unwrap();
    assert_eq!(busy.waiting_batches, Some(0));
}

#[tokio::test]
async fn a_worker_lists_the_limits_it_believes_below_their_configuration() {
    use crate::limit::belief::{LimitBoard, REFUSED};
    let now = SystemTime::now();
    let mut page = seeded(now).await;
    let board = LimitBoard::default();
    board.show("in_progress_paths", "EBUSY", 2_320.0, 2_900.0, REFUSED);
    board.show("in_progress_wildcards", "EBUSY", 13.0, 13.0, "accepted");
    board.show("account_paths_per_second", "account", 120.0, f64::INFINITY, REFUSED);
    page.limits = Some(Arc::new(board));
    let shown = view(&page.snapshot(now).await.unwrap(), &page.settings);
    let limits: Vec<_> =
        shown.limits.iter().map(|(limit, scope, believed, _)| (*limit, scope.as_str(), *believed)).collect();
    assert_eq!(limits, [("account_paths_per_second", "account", 120.0), ("in_progress_paths", "EBUSY", 2_320.0)]);
    let html = render(&shown);
    assert!(html.contains("Limits learned") && html.contains("not set"), "a rate nobody configured says so");
}

/// The worker's own account and 111122223333, which EOTHER is reached in through a role.
fn two_accounts() -> crate::limit::accounts::Accounts {
    use crate::limit::CreateRateLimiter;
    use crate::limit::account::{AccountQuota, AccountQuotas};
    use crate::model::role::{Role, Roles};
    let mut roles = Roles::default();
    roles.assign(distribution("EOTHER"), Role::parse("arn:aws:iam::111122223333:role/cfi").unwrap()).unwrap();
    let quotas = AccountQuotas { paths: AccountQuota::configured(150.0, 300), wildcards: None };
    let limiter = || CreateRateLimiter::new(2.0, std::num::NonZeroU32::MIN);
    crate::limit::accounts::Accounts::new(&roles, None, quotas, &Arc::default(), limiter)
}

#[tokio::test(start_paused = true)]
async fn a_worker_serving_two_accounts_shows_each_ones_bill_free_paths_and_budget() {
    let now = SystemTime::now();
    let mut page = seeded(now).await;
    // 1,200 paths billed in the other account, beside the seeded batch's 2 in the own.
    let paths: Vec<String> = (0..1_200).map(|n| format!("/p/{n}")).collect();
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    let mut other = pending_record("EOTHER", &paths, &["m9"], now - Duration::from_secs(20));
    (other.account, other.expires_at) = (Some("111122223333".into()), now + Duration::from_secs(3_600));
    page.ledger.record_intent(&other).await.unwrap();
    other.accept(&Invalidation { id: "I9OTHER".into(), status: "InProgress".into() }, now);
    page.ledger.record_outcome(&other).await.unwrap();
    let board = crate::limit::accounts::AccountBoard::default();
    board.show(&two_accounts());
    page.accounts = Some(Arc::new(board));

    let cost = view(&page.snapshot(now).await.unwrap(), &page.settings).cost;
    let rows: Vec<_> = cost
        .accounts
        .iter()
        .map(|a| (a.account.as_str(), a.paths_billed, a.free_paths_left, a.budget.map(|b| b.used_percent)))
        .collect();
    // The own account's budget as the workers hold it, from its own counter: the seeded batch, of a worker serving
    // one account, is in the total only.
    assert_eq!(rows, [("own", 2, 998, Some(0.0)), ("111122223333", 1_200, 0, Some(60.0))], "{cost:?}");
    assert!((cost.estimated_dollars - 1.0).abs() < 1e-9, "200 paths past the other's free ones, none past the own's");
    assert_eq!((cost.paths_billed, cost.budget), (1_202, None), "the budget shows per account");
    let html = render(&view(&page.snapshot(now).await.unwrap(), &page.settings));
    assert!(html.contains("<td>111122223333</td><td class=\"n\">1,200</td>"), "{html}");
    assert!(!html.contains("of CloudFront's free paths left"), "no single figure for two accounts' free paths");
}

#[tokio::test(start_paused = true)]
async fn a_worker_shows_each_accounts_rates_and_what_it_may_take_of_them_now() {
    use crate::limit::accounts::AccountBoard;
    let now = SystemTime::now();
    let mut page = seeded(now).await;
    let accounts = two_accounts();
    for (_, limits) in accounts.iter() {
        limits.buckets.set_workers(2);
    }
    accounts.of(&distribution("EOTHER")).buckets.take(Allowance { paths: 100, wildcards: 0 }).await;
    let board = AccountBoard::default();
    board.show(&accounts);
    page.accounts = Some(Arc::new(board));
    let shown = view(&page.snapshot(now).await.unwrap(), &page.settings);
    let rows: Vec<_> = shown
        .accounts
        .iter()
        .map(|row| (row.account.as_str(), row.calls_per_second, row.paths.map(|p| (p.per_second, p.available))))
        .collect();
    assert_eq!(
        rows,
        [("own", Some(2.0), Some((150.0, 150.0))), ("111122223333", Some(2.0), Some((150.0, 50.0)))],
        "one row per account; a take from one leaves the other's headroom whole"
    );
    let html = render(&shown);
    assert!(html.contains("Accounts") && html.contains("111122223333") && html.contains("50 of 150"), "{html}");
}

#[tokio::test]
async fn a_tenants_refused_batch_and_its_detail_page_name_the_tenant() {
    let now = SystemTime::now();
    let page = seeded(now).await;
    let mut refused = pending_record("ESAAS", &["/shop/a"], &["m3"], now - Duration::from_secs(10));
    refused.tenant_id = crate::model::TenantId::parse("dt_shop1").ok();
    refused.expires_at = now + Duration::from_secs(3_600);
    page.ledger.record_intent(&refused).await.unwrap();
    refused.accept(&Invalidation { id: "I3TENANT".into(), status: "InProgress".into() }, now);
    refused.fail("AccessDenied");
    page.ledger.record_outcome(&refused).await.unwrap();
    let shown = view(&page.snapshot(now).await.unwrap(), &page.settings);
    let row = shown.failures.iter().find(|f| f.subject == refused.caller_reference.to_string()).unwrap();
    assert_eq!(row.distribution, "ESAAS/dt_shop1");
    let detail = render_batch(&refused, "invalidations");
    assert!(detail.contains("<th>tenant</th><td>dt_shop1</td>"), "{detail}");
}

#[tokio::test]
async fn producer_text_renders_as_text() {
    let now = SystemTime::now();
    let page = seeded(now).await;
    let html = render(&view(&page.snapshot(now).await.unwrap(), &page.settings));
    assert!(!html.contains("<script>"), "a reason or requester must not become markup");
    assert!(html.contains("bad path &lt;script&gt;alert('x')&lt;/script&gt; &amp; &quot;more&quot;"));
    assert!(html.contains(r#"<meta http-equiv="refresh" content="5">"#));
    assert!(html.contains(r#"<tr class="near">"#), "a distribution near its quota stands out");
    assert!(html.contains(r#"<a href="/invalidation/I2NEWEST">"#));
}

#[tokio::test]
async fn the_detail_page_and_unknown_paths() {
    let now = SystemTime::now();
    let page = seeded(now).await;
    let detail = page.respond("/invalidation/I2NEWEST").await.unwrap();
    assert_eq!(detail.status, hyper::StatusCode::OK);
    assert!(detail.html.contains("/y/*") && !detail.html.contains("<script>"));
    let missing = page.respond("/invalidation/NOPE").await.unwrap();
    assert_eq!(missing.status, hyper::StatusCode::NOT_FOUND);
    assert!(page.respond("/elsewhere").await.is_none());
}

#[tokio::test]
async fn an_idle_worker_is_not_said_to_be_missing() {
    let page = StatusPage {
        ledger: Arc::new(MemoryLedger::default()),
        queue: Arc::new(MemoryQueue::default()),
        dead_letter_queue: None,
        settings: settings(),
        waiting: None,
        limits: None,
        accounts: None,
        edge: None,
    };
    let now = SystemTime::now();
    let html = render(&view(&page.snapshot(now).await.unwrap(), &page.settings));
    assert!(html.contains("an idle worker does not show here"), "{html}");
}
