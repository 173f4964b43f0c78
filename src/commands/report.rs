//! `cf-invalidator report`: what this month's invalidations billed, from the ledger's month-to-date counters.

use std::collections::BTreeSet;
use std::time::SystemTime;

use anyhow::Context;

use cf_invalidator::aws::dynamodb::DynamoLedger;
use cf_invalidator::aws::roles::own_account;
use cf_invalidator::intake::routes::Routing;
use cf_invalidator::limit::accounts::AccountKey;
use cf_invalidator::model::role::Roles;
use cf_invalidator::plan::{FREE_PATHS_PER_MONTH, free_paths_left, month_dollars};
use cf_invalidator::ports::Bills;
use cf_invalidator::ports::ledger::{AccountBills, Billing, MonthBilling, billing_month, by_account};
use serde_json::{Value, json};

use super::exit::misconfigured;
use super::output::outln;
use crate::cli::ReportArgs;

pub async fn report(args: ReportArgs) -> anyhow::Result<()> {
    let month = match &args.month {
        Some(month) => checked_month(month)?,
        None => billing_month(SystemTime::now()),
    };
    if let Some(path) = &args.plot {
        checked_plot(path)?;
    }
    let config = super::aws_config().await?;
    let ledger = DynamoLedger::new(super::dynamodb(&config), &args.table);
    let routing = args.routes.as_deref().map(Routing::load).transpose()?.unwrap_or_default();
    let roles = super::roles(&args.accounts.roles, routing.roles())?;
    let own = if roles.is_empty() { None } else { own_account(&config).await };
    // The parts before the total: a batch accepted in between then counts in the own account, rather than being
    // taken off it without being in the total.
    let mut parts = Vec::new();
    for account in role_accounts(&roles, own.as_deref()) {
        let part = ledger.account_totals(&month, &account).await;
        parts.push((account, part.context("reading an account's part of the month")?.total));
    }
    let mut billing = ledger.month_billing(&month).await.context("reading the month's counters")?;
    let accounts = by_account(billing.total, at_least_listed(parts, &billing, &roles));
    if let Some(distribution) = &args.distribution {
        let distribution = super::parse_distribution(distribution)?;
        billing.distributions.retain(|(id, _)| *id == distribution);
        billing.tenants.retain(|(target, _)| target.distribution == distribution);
    }
    if let Some(path) = &args.plot {
        let chart = super::chart::render(&billing, dollars_by_account(&accounts, |b| b.paths_billed))?;
        std::fs::write(path, chart).with_context(|| format!("cannot write the chart to {}", path.display()))?;
    }
    if args.json {
        outln!("{}", as_json(&billing, &accounts))
    } else {
        outln!("{}", as_table(&billing, &accounts).trim_end())
    }
}

/// The accounts of the roles, but for `own` (the account the report runs in, if STS said), which is billed as the
/// own account.
fn role_accounts(roles: &Roles, own: Option<&str>) -> BTreeSet<String> {
    roles
        .iter()
        .map(|(_, role)| role.arn.account())
        .filter(|account| Some(*account) != own)
        .map(str::to_owned)
        .collect()
}

/// Each role account's part, or what its distributions among those listed billed when that is more: a month
/// written before the workers counted accounts apart (or by a worker that did not) has no part to read.
fn at_least_listed(parts: Vec<(String, Billing)>, billing: &MonthBilling, roles: &Roles) -> Vec<(String, Billing)> {
    let listed = |account: &str| {
        let behind_role = billing.distributions.iter().filter(|(id, _)| roles.account_of(id) == Some(account));
        behind_role.fold(Billing::default(), |mut sum, (_, b)| {
            sum.add(*b);
            sum
        })
    };
    parts
        .into_iter()
        .map(|(account, part)| {
            let listed = listed(&account);
            let more = if listed.paths_billed > part.paths_billed { listed } else { part };
            (account, more)
        })
        .collect()
}

/// Dollars beyond each account's free paths, for the paths `field` counts.
fn dollars_by_account(accounts: &AccountBills, field: impl Fn(&Billing) -> u64) -> f64 {
    accounts.values().map(|b| month_dollars(field(b))).sum()
}

/// The free paths used and left, summed over the accounts: each has its own.
fn free_paths(accounts: &AccountBills) -> (u64, u64) {
    let used = accounts.values().map(|b| b.paths_billed.min(FREE_PATHS_PER_MONTH)).sum();
    (used, accounts.len() as u64 * FREE_PATHS_PER_MONTH - used)
}

fn account_name(account: &Option<String>) -> String {
    account.clone().unwrap_or_else(|| AccountKey::Own.to_string())
}

fn checked_month(month: &str) -> anyhow::Result<String> {
    let valid = month.len() == 7
        && month.as_bytes()[4] == b'-'
        && month[..4].bytes().all(|b| b.is_ascii_digit())
        && month[5..].parse::<u8>().is_ok_and(|m| (1..=12).contains(&m));
    if !valid {
        return Err(misconfigured(format!("--month {month:?} is not a month: write it as YYYY-MM, e.g. 2026-12")));
    }
    Ok(month.to_owned())
}

/// The chart is SVG (no image libraries are built): a file named for another format would hold what it does not
/// say.
fn checked_plot(path: &std::path::Path) -> anyhow::Result<()> {
    let svg = path.extension().is_some_and(|extension| extension.eq_ignore_ascii_case("svg"));
    if !svg {
        return Err(misconfigured(format!(
            "--plot {}: the chart is SVG, so the file must end in .svg",
            path.display()
        )));
    }
    Ok(())
}

fn as_json(billing: &MonthBilling, accounts: &AccountBills) -> Value {
    let (free_used, free_left) = free_paths(accounts);
    let counters = |b: &Billing| json!({"batches": b.batches, "messages": b.messages, "paths_requested": b.paths_requested, "paths_distinct": b.paths_distinct, "paths_billed": b.paths_billed, "wildcards": b.wildcards});
    let total = &billing.total;
    json!({
        "month": billing.month,
        "total": counters(total),
        "free_paths_used": free_used,
        "free_paths_left": free_left,
        "estimated_dollars": dollars_by_account(accounts, |b| b.paths_billed),
        // What sending each message as its own invalidation would have billed, and batching with exact
        // deduplication alone (no wildcard covering paths, no coalescing).
        "one_call_per_message_dollars": dollars_by_account(accounts, |b| b.paths_requested),
        "exact_deduplication_only_dollars": dollars_by_account(accounts, |b| b.paths_distinct),
        "accounts": accounts.iter().map(|(account, b)| {
            let mut row = counters(b);
            row["account"] = account_name(account).into();
            row["free_paths_left"] = free_paths_left(b.paths_billed).into();
            row["estimated_dollars"] = month_dollars(b.paths_billed).into();
            row
        }).collect::<Vec<_>>(),
        "distributions": billing.distributions.iter().map(|(id, b)| {
            let mut row = counters(b);
            row["distribution_id"] = id.as_str().into();
            row
        }).collect::<Vec<_>>(),
        // A part of its distribution's row: CloudFront bills the account, not the tenant.
        "tenants": billing.tenants.iter().map(|(target, b)| {
            let mut row = counters(b);
            row["distribution_id"] = target.distribution.as_str().into();
            row["tenant_id"] = target.tenant.as_ref().map(|t| t.as_str()).into();
            row
        }).collect::<Vec<_>>(),
        // A requester's paths_billed is its share of its batches' bills, in proportion to the paths it requested.
        "requesters": billing.requesters.iter().map(|(requester, b)| {
            let mut row = counters(b);
            row["requester"] = requester.to_string().into();
            if let Some(fields) = row.as_object_mut() {
                fields.remove("paths_distinct");
            }
            row
        }).collect::<Vec<_>>(),
        "days": billing.days.iter().map(|(day, b)| {
            let mut row = counters(b);
            row["date"] = day.as_str().into();
            row
        }).collect::<Vec<_>>(),
    })
}

/// A heading and one row per name with its batches, messages, requested and billed paths and wildcards.
fn counter_table<'a>(heading: &str, width: usize, rows: impl Iterator<Item = (String, &'a Billing)>) -> String {
    let mut out = format!(
        "\n{heading:<width$} {:>8} {:>9} {:>10} {:>10} {:>9}\n",
        "batches", "messages", "requested", "billed", "wildcards"
    );
    for (name, b) in rows {
        out.push_str(&format!(
            "{name:<width$} {:>8} {:>9} {:>10} {:>10} {:>9}\n",
            b.batches, b.messages, b.paths_requested, b.paths_billed, b.wildcards
        ));
    }
    out
}

fn as_table(billing: &MonthBilling, accounts: &AccountBills) -> String {
    let (free_used, free_left) = free_paths(accounts);
    let total = &billing.total;
    let mut out = format!(
        "{}: {} paths billed in {} invalidations, from {} paths requested ({} wildcards)\n\
         free paths: {} used, {} left; estimated cost ${:.2} (one invalidation per message: ${:.2}; exact deduplication alone: ${:.2})\n\
         CloudFront's free paths are per account: other tools' and people's invalidations use them too.\n",
        billing.month,
        total.paths_billed,
        total.batches,
        total.paths_requested,
        total.wildcards,
        free_used,
        free_left,
        dollars_by_account(accounts, |b| b.paths_billed),
        dollars_by_account(accounts, |b| b.paths_requested),
        dollars_by_account(accounts, |b| b.paths_distinct),
    );
    if billing.distributions.is_empty() {
        return out;
    }
    if accounts.keys().any(Option::is_some) {
        out.push_str(&format!(
            "\n{:<14} {:>8} {:>10} {:>10} {:>9}\n",
            "account", "batches", "billed", "free left", "cost"
        ));
        for (account, b) in accounts {
            let free_left = free_paths_left(b.paths_billed);
            let cost = format!("${:.2}", month_dollars(b.paths_billed));
            out.push_str(&format!(
                "{:<14} {:>8} {:>10} {free_left:>10} {cost:>9}\n",
                account_name(account),
                b.batches,
                b.paths_billed
            ));
        }
    }
    out.push_str(&format!("\n{:<12} {:>8} {:>10} {:>10}\n", "day", "batches", "requested", "billed"));
    for (day, b) in &billing.days {
        out.push_str(&format!("{day:<12} {:>8} {:>10} {:>10}\n", b.batches, b.paths_requested, b.paths_billed));
    }
    let distributions = billing.distributions.iter().map(|(id, b)| (id.to_string(), b));
    out.push_str(&counter_table("distribution", 16, distributions));
    if !billing.tenants.is_empty() {
        let tenants = billing.tenants.iter().map(|(target, b)| (target.to_string(), b));
        out.push_str(&counter_table("tenant (part of its distribution)", 48, tenants));
    }
    if !billing.requesters.is_empty() {
        out.push_str(&format!(
            "\n{:<32} {:>8} {:>9} {:>10} {:>14}\n",
            "requester", "batches", "messages", "requested", "billed (share)"
        ));
        for (requester, b) in &billing.requesters {
            let name = cf_invalidator::model::text::excerpt(&requester.to_string());
            out.push_str(&format!(
                "{name:<32} {:>8} {:>9} {:>10} {:>14}\n",
                b.batches, b.messages, b.paths_requested, b.paths_billed
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use cf_invalidator::model::{DistributionId, Target, TenantId};

    use super::*;
    use cf_invalidator::ports::ledger::Requester;

    fn billing() -> MonthBilling {
        let big = Billing {
            batches: 40,
            messages: 900,
            paths_billed: 1_500,
            paths_requested: 9_000,
            paths_distinct: 4_000,
            wildcards: 12,
        };
        let small = Billing {
            batches: 2,
            messages: 3,
            paths_billed: 100,
            paths_requested: 100,
            paths_distinct: 100,
            wildcards: 0,
        };
        let mut total = big;
        total.add(small);
        MonthBilling {
            month: "2026-12".into(),
            total,
            distributions: vec![
                (DistributionId::parse("EBIG").unwrap(), big),
                (DistributionId::parse("ESMALL").unwrap(), small),
            ],
            requesters: vec![
                (Requester::Named("ci: site deploy".into()), big),
                (Requester::Named("alice".into()), small),
            ],
            days: vec![("2026-12-01".into(), big), ("2026-12-03".into(), small)],
            committed: 0,
            tenants: Vec::new(),
        }
    }

    #[test]
    fn the_free_tier_comes_off_the_account_total() {
        let billing = billing();
        let json = as_json(&billing, &by_account(billing.total, Vec::new()));
        assert_eq!(json["total"]["paths_billed"], 1_600);
        assert_eq!((json["free_paths_used"].as_u64(), json["free_paths_left"].as_u64()), (Some(1_000), Some(0)));
        assert!((json["estimated_dollars"].as_f64().unwrap() - 3.0).abs() < 1e-9, "600 paths at $0.005");
        assert!((json["one_call_per_message_dollars"].as_f64().unwrap() - 40.5).abs() < 1e-9);
        assert!((json["exact_deduplication_only_dollars"].as_f64().unwrap() - 15.5).abs() < 1e-9, "4,100 paths");
        assert_eq!(json["distributions"][0]["distribution_id"], "EBIG");
        assert_eq!(
            (json["requesters"][1]["requester"].as_str(), json["requesters"][1]["messages"].as_u64()),
            (Some("alice"), Some(3))
        );
        assert_eq!(
            (json["days"][1]["date"].as_str(), json["days"][1]["paths_billed"].as_u64()),
            (Some("2026-12-03"), Some(100))
        );
    }

    #[test]
    fn the_table_names_each_distribution_and_an_empty_month_says_so() {
        let billing = billing();
        let table = as_table(&billing, &by_account(billing.total, Vec::new()));
        assert!(table.starts_with("2026-12: 1600 paths billed in 42 invalidations"), "{table}");
        assert!(table.contains("estimated cost $3.00") && table.lines().any(|l| l.starts_with("EBIG")), "{table}");
        assert!(table.lines().any(|l| l.starts_with("alice") && l.ends_with(" 100")), "{table}");
        let empty = MonthBilling { month: "2026-11".into(), ..MonthBilling::default() };
        let empty = as_table(&empty, &by_account(empty.total, Vec::new()));
        assert!(empty.contains("0 paths billed") && empty.contains("1000 left") && !empty.contains("distribution"));
        assert!(!table.contains("account "), "one account needs no account table: {table}");
    }

    #[test]
    fn a_distribution_reached_through_a_role_is_billed_to_the_roles_account_with_its_own_free_paths() {
        let billing = billing();
        let mut roles = Roles::default();
        let role = cf_invalidator::model::role::Role::parse("arn:aws:iam::222233334444:role/cf").unwrap();
        roles.assign(DistributionId::parse("ESMALL").unwrap(), role).unwrap();
        let other: Vec<String> = role_accounts(&roles, None).into_iter().collect();
        assert_eq!(other, ["222233334444"]);
        assert!(role_accounts(&roles, Some("222233334444")).is_empty(), "a role in the account the report runs in");
        // ESMALL's batches, as the workers counted them in its account's part.
        let part = vec![("222233334444".into(), billing.distributions[1].1)];
        let accounts = by_account(billing.total, at_least_listed(part, &billing, &roles));
        let json = as_json(&billing, &accounts);
        // EBIG's 1,500 in the own account (500 past its free tier), ESMALL's 100 free in the other.
        assert!((json["estimated_dollars"].as_f64().unwrap() - 2.5).abs() < 1e-9, "{json}");
        let rows = json["accounts"].as_array().unwrap();
        let row = |i: usize| {
            (rows[i]["account"].as_str(), rows[i]["paths_billed"].as_u64(), rows[i]["free_paths_left"].as_u64())
        };
        assert_eq!(row(0), (Some("own"), Some(1_500), Some(0)));
        assert_eq!(row(1), (Some("222233334444"), Some(100), Some(900)));
        let table = as_table(&billing, &accounts);
        assert!(table.lines().any(|l| l.starts_with("222233334444") && l.ends_with("$0.00")), "{table}");
        assert!(table.contains("estimated cost $2.50"), "{table}");
        let free = (json["free_paths_used"].as_u64(), json["free_paths_left"].as_u64());
        assert_eq!(free, (Some(1_100), Some(900)), "each account's free paths: {json}");
        assert!(table.contains("free paths: 1100 used, 900 left"), "{table}");

        // A month from before the workers counted accounts apart: what the role's listed distributions billed.
        let unparted = at_least_listed(vec![("222233334444".into(), Billing::default())], &billing, &roles);
        assert_eq!(by_account(billing.total, unparted), accounts);
    }

    #[test]
    fn accounts_are_billed_from_the_months_counters_not_from_the_distributions_listed() {
        // A month of more distributions than the ledger lists: only EBIG made the list.
        let mut billing = billing();
        billing.distributions.truncate(1);
        let json = as_json(&billing, &by_account(billing.total, Vec::new()));
        assert!((json["estimated_dollars"].as_f64().unwrap() - 3.0).abs() < 1e-9, "1,600 billed, not 1,500: {json}");
        assert_eq!(json["accounts"][0]["paths_billed"], 1_600, "{json}");
        let part = Billing { batches: 2, paths_billed: 100, paths_requested: 100, ..Billing::default() };
        let accounts = by_account(billing.total, vec![("222233334444".into(), part)]);
        assert_eq!((accounts[&None].paths_billed, accounts[&None].batches), (1_500, 40), "{accounts:?}");
        assert_eq!(accounts[&Some("222233334444".into())], part);
    }

    #[test]
    fn a_tenants_paths_show_under_its_tenant_and_in_its_distribution() {
        let mut billing = billing();
        let shop = Billing { batches: 3, messages: 5, paths_billed: 70, paths_requested: 80, ..Billing::default() };
        let tenant = TenantId::parse("dt_shop1").unwrap();
        billing.tenants = vec![(Target::tenant(DistributionId::parse("ESMALL").unwrap(), tenant), shop)];
        let accounts = by_account(billing.total, Vec::new());
        let json = as_json(&billing, &accounts);
        let row = &json["tenants"][0];
        assert_eq!(
            (row["distribution_id"].as_str(), row["tenant_id"].as_str(), row["paths_billed"].as_u64()),
            (Some("ESMALL"), Some("dt_shop1"), Some(70))
        );
        assert_eq!(json["total"]["paths_billed"], 1_600, "a tenant's paths are not billed twice");
        let table = as_table(&billing, &accounts);
        let line = table.lines().find(|l| l.starts_with("ESMALL/dt_shop1")).unwrap_or_else(|| panic!("{table}"));
        assert!(line.ends_with("        70         0"), "{line}");
        assert!(!as_table(&self::billing(), &accounts).contains("tenant"), "no tenants, no tenant table");
    }

    #[test]
    fn the_chart_goes_only_to_an_svg_file() {
        assert!(checked_plot(std::path::Path::new("out/report.svg")).is_ok());
        assert!(checked_plot(std::path::Path::new("REPORT.SVG")).is_ok());
        for other in ["report.png", "report", "svg"] {
            assert!(checked_plot(std::path::Path::new(other)).is_err(), "{other}");
        }
    }

    #[test]
    fn months_are_checked() {
        assert_eq!(checked_month("2026-12").unwrap(), "2026-12");
        for bad in ["2026-13", "2026-1", "26-12", "december"] {
            assert!(checked_month(bad).is_err(), "{bad}");
        }
    }
}
