//! The status page as HTML. maud escapes every value it interpolates, so producers' texts (reasons, requesters)
//! render as text; the only raw HTML is the style sheet below.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::view::{CostView, View};
use crate::limit::account::BucketHeadroom;
use crate::ports::ledger::BatchRecord;
use crate::ports::queue::QueueDepth;

/// Seconds between reloads: fresh enough to watch a deploy, cheap enough for the ledger (a handful of reads each).
pub const REFRESH_SECONDS: u32 = 5;

const STYLE: &str = r#"
body { font-family: system-ui, sans-serif; margin: 1rem; color: #1b1b1b; background: #fff; }
h1 { font-size: 1.3rem; margin: 0 0 .25rem; }
h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; }
p.note { color: #555; font-size: .85rem; margin: .25rem 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: .9rem; }
th, td { padding: .25rem .6rem; border-bottom: 1px solid #ddd; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.near td { background: #fde2e1; }
tr.near td:first-child { border-left: 4px solid #c62828; font-weight: 600; }
tr.gone td { color: #888; }
code { font-size: .85rem; word-break: break-all; }
.bad { color: #c62828; font-weight: 600; }
.chart { display: flex; align-items: flex-end; gap: 2px; height: 6rem; border-bottom: 1px solid #999; max-width: 40rem; }
.chart div { flex: 0 0 calc(100% / 31 - 2px); background: #1565c0; }
.days { display: flex; gap: 2px; max-width: 40rem; font-size: .65rem; color: #555; }
.days span { flex: 0 0 calc(100% / 31 - 2px); text-align: center; }
"#;

fn layout(title: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta http-equiv="refresh" content=(REFRESH_SECONDS);
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body { (body) }
        }
    }
    .into_string()
}

fn count(n: impl Into<u64>) -> String {
    let digits = n.into().to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn queue_cells(depth: &Result<QueueDepth, String>) -> Markup {
    match depth {
        Ok(depth) => html! {
            td.n { (count(depth.visible)) } td.n { (count(depth.in_flight)) } td.n { (count(depth.delayed)) }
        },
        Err(why) => html! { td colspan="3" .bad { "unreadable: " (why) } },
    }
}

/// An account quota's rate and what this worker may take now, or "off".
fn bucket_cells(bucket: Option<BucketHeadroom>) -> Markup {
    match bucket {
        Some(bucket) => html! {
            td.n { (format!("{:.1}", bucket.per_second)) }
            td.n { (format!("{:.0} of {:.0}", bucket.available.floor(), bucket.burst)) }
        },
        None => html! { td.n { "off" } td.n { "—" } },
    }
}

pub fn render(view: &View) -> String {
    let body = html! {
        h1 { "cf-invalidator status" }
        p.note { "Ledger " code { (view.table) } " at " (view.generated_at) "; reloads every " (REFRESH_SECONDS) " s." }

        @if let Some(edge) = &view.edge {
            p.note { "Checks at the edge by this worker: " (edge) }
        }

        h2 { "Distributions" }
        p.note {
            "In progress against CloudFront's " (count(view.quota.paths)) " paths and " (view.quota.wildcards)
            " wildcards per distribution; workers leave " (count(view.reserve.paths)) " paths and "
            (view.reserve.wildcards) " wildcards to people, and headroom is what is left for them to start. "
            @if !view.waiting_known {
                "Batches waiting for room are known only to the worker that holds them: open its --metrics-addr page."
            }
        }
        @if view.distributions.is_empty() {
            p { "Nothing in progress." }
        } @else {
            div.scroll { table {
                thead { tr {
                    th { "distribution" } th.n { "paths in progress" } th.n { "wildcards in progress" }
                    th.n { "headroom paths" } th.n { "headroom wildcards" } th.n { "reservations" }
                    th.n { "pending batches" } th.n { "waiting for room" } th.n { "oldest pending" }
                } }
                tbody { @for row in &view.distributions {
                    tr.near[row.near_quota] {
                        td { (row.id) }
                        td.n { (count(row.in_progress.paths)) }
                        td.n { (row.in_progress.wildcards) }
                        td.n { (count(row.headroom.paths)) }
                        td.n { (row.headroom.wildcards) }
                        td.n { (row.reservations) }
                        td.n { (row.pending_batches) }
                        td.n { @match row.waiting_batches { Some(n) => (n), None => "unknown" } }
                        td.n { @match &row.oldest_pending { Some(age) => (age), None => "—" } }
                    }
                } }
            } }
        }

        @if !view.accounts.is_empty() {
            h2 { "Accounts" }
            p.note { "Each account's call rate and paths and wildcards per second hold apart. Rates are the account's as believed; available is what this worker may take now without waiting." }
            div.scroll { table {
                thead { tr {
                    th { "account" } th.n { "calls/s (this worker)" } th.n { "paths/s" } th.n { "paths available" }
                    th.n { "wildcards/s" } th.n { "wildcards available" }
                } }
                tbody { @for row in &view.accounts {
                    tr {
                        td { (row.account) }
                        td.n { @match row.calls_per_second { Some(rate) if rate > 0.0 => (format!("{rate:.2}")), Some(_) => "no limit", None => "awaiting share" } }
                        (bucket_cells(row.paths))
                        (bucket_cells(row.wildcards))
                    }
                } }
            } }
        }

        @if !view.limits.is_empty() {
            h2 { "Limits learned" }
            p.note { "CloudFront refused what these limits allowed, and nothing in progress explained it: this worker believes less, and probes back up after each success." }
            div.scroll { table {
                thead { tr { th { "limit" } th { "distribution" } th.n { "believed" } th.n { "configured" } } }
                tbody { @for (limit, scope, believed, configured) in &view.limits {
                    tr { td { (limit) } td { (scope) } td.n { (format!("{believed:.1}")) } td.n { @if configured.is_finite() { (format!("{configured:.1}")) } @else { "not set" } } }
                } }
            } }
        }

        h2 { "Queue" }
        div.scroll { table {
            thead { tr {
                th { "queue" } th.n { "visible" } th.n { "in flight" } th.n { "delayed" }
            } }
            tbody {
                tr { td { "requests" } (queue_cells(&view.queue)) }
                @match &view.dead_letter_queue {
                    Some(depth) => tr { td { "dead letters" } (queue_cells(depth)) },
                    None => tr { td { "dead letters" } td colspan="3" { "the queue has no dead-letter queue" } },
                }
            }
        } }
        p.note {
            "Age of the oldest message: not a queue attribute; SQS reports it only as the CloudWatch metric "
            code { "ApproximateAgeOfOldestMessage" } "."
        }

        h2 { "Newest dead letters and refused batches" }
        @if view.failures.is_empty() {
            p { "None recorded." }
        } @else {
            div.scroll { table {
                thead { tr {
                    th { "when" } th { "what" } th { "message or batch" } th { "distribution" } th { "code" }
                    th { "reason" }
                } }
                tbody { @for row in &view.failures {
                    tr {
                        td { (row.created_at) } td { (row.kind) } td { code { (row.subject) } }
                        td { (row.distribution) } td { (row.code) } td { (row.reason) }
                    }
                } }
            } }
        }

        h2 { "Recent invalidations" }
        @if view.recent.is_empty() {
            p { "None recorded yet." }
        } @else {
            div.scroll { table {
                thead { tr {
                    th { "created" } th { "distribution" } th { "invalidation" } th.n { "paths" }
                    th { "requesters" } th { "status" } th.n { "time to complete" }
                } }
                tbody { @for row in &view.recent {
                    tr {
                        td { (row.created_at) }
                        td { (row.distribution) }
                        td { @match &row.invalidation_id {
                            Some(id) => a href={ "/invalidation/" (id) } { (id) },
                            None => code { "cf-invalidator audit --table " (view.table) " --caller-reference " (row.caller_reference) },
                        } }
                        td.n { (count(row.paths as u64)) }
                        td { (row.requesters) }
                        td { (row.status) }
                        td.n { @if let Some(t) = &row.time_to_complete { (t) } }
                    }
                } }
            } }
        }

        h2 { "This month's cost" }
        (cost(&view.cost))

        h2 { "Workers" }
        @if view.workers.is_empty() {
            p { "No worker holds a reservation or a lease right now. A worker holds them only while it submits a batch or \
                 its invalidation is in progress: an idle worker does not show here (its /readyz does)." }
        } @else {
            div.scroll { table {
                thead { tr {
                    th { "worker" } th.n { "reservations" } th.n { "leased batches" } th { "holds until" }
                } }
                tbody { @for row in &view.workers {
                    tr.gone[!row.live] {
                        td { (row.owner) } td.n { (row.reservations) } td.n { (row.leases) }
                        td { (row.holds_until) @if !row.live { " (not renewed: stopped?)" } }
                    }
                } }
            } }
            p.note { "A live worker renews what it holds before it runs out; the time is its last renewal plus the lease." }
        }
    };
    layout("cf-invalidator status", body)
}

fn cost(cost: &CostView) -> Markup {
    html! {
        p {
            (count(cost.paths_billed)) " paths billed in " (count(cost.batches)) " invalidations in " (cost.month) "; "
            @if cost.accounts.is_empty() {
                (count(cost.free_paths_left)) " of CloudFront's free paths left; "
            }
            "estimated " (format!("${:.2}", cost.estimated_dollars)) "."
        }
        @if let Some(budget) = cost.budget {
            p.bad[budget.over] {
                "Monthly budget: " (count(budget.paths)) " paths, " (format!("{:.0}", budget.used_percent)) "% used."
            }
        }
        @if !cost.accounts.is_empty() {
            div.scroll { table {
                thead { tr {
                    th { "account" } th.n { "paths billed" } th.n { "free paths left" } th.n { "estimated" }
                    th.n { "monthly budget used" }
                } }
                tbody { @for row in &cost.accounts {
                    tr {
                        td { (row.account) } td.n { (count(row.paths_billed)) } td.n { (count(row.free_paths_left)) }
                        td.n { (format!("${:.2}", row.estimated_dollars)) }
                        @match row.budget {
                            Some(budget) => td.n.bad[budget.over] { (format!("{:.0}%", budget.used_percent)) },
                            None => td.n {},
                        }
                    }
                } }
            } }
        }
        p.note { "Free paths are per account: other tools' and people's invalidations use them too." }
        @if !cost.days.is_empty() {
            div.chart role="img" aria-label="paths billed per day" {
                @for day in &cost.days {
                    div style=(format!("height: {:.1}%", day.height_percent))
                        title=(format!("{}: {} paths", day.day, day.paths_billed)) {}
                }
            }
            div.days { @for day in &cost.days { span { (day.day) } } }
        }
    }
}

/// One batch in full: what `cf-invalidator audit --invalidation` prints.
pub fn render_batch(record: &BatchRecord, table: &str) -> String {
    let time = |t: Option<std::time::SystemTime>| {
        t.map(|t| humantime::format_rfc3339_seconds(t).to_string()).unwrap_or_default()
    };
    let fields: Vec<(&str, String)> = vec![
        ("invalidation", record.invalidation_id.clone().unwrap_or_default()),
        ("CallerReference", record.caller_reference.to_string()),
        ("distribution", record.distribution_id.to_string()),
        ("tenant", record.tenant_id.as_ref().map(ToString::to_string).unwrap_or_default()),
        ("status", record.status.as_str().to_owned()),
        ("created", time(Some(record.created_at))),
        ("submitted", time(record.submitted_at)),
        ("completed", time(record.completed_at)),
        ("requesters", record.requesters.join(", ")),
        ("messages", count(record.message_ids.len() as u64)),
        ("paths requested", count(record.requested_paths as u64)),
        ("sealed because", record.seal_reason.clone()),
        ("coalescing", record.coalescing.clone().unwrap_or_default()),
        ("failure", record.failure.clone().unwrap_or_default()),
        ("owner", record.owner.clone()),
        ("at the edge", record.verification.as_ref().map(|v| v.summary()).unwrap_or_default()),
    ];
    let body = html! {
        p { a href="/" { "← status" } }
        h1 { "Invalidation " (record.invalidation_id.as_deref().unwrap_or_default()) }
        p.note { "The same from the command line: " code { "cf-invalidator audit --table " (table) " --caller-reference " (record.caller_reference) } }
        table { tbody { @for (name, value) in &fields { tr { th { (name) } td { (value) } } } } }
        h2 { (count(record.paths.len() as u64)) " paths" }
        ul { @for path in &record.paths { li { code { (path) } } } }
    };
    layout("cf-invalidator invalidation", body)
}

/// A page saying what could not be read.
pub fn render_error(why: &str) -> String {
    layout("cf-invalidator status", html! { h1 { "cf-invalidator status" } p.bad { (why) } })
}
