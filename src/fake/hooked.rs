//! Wrappers that do something around every call of the ledger's ports: inject faults (the fake ledger), roll for
//! chaos (the simulation), count requests (the benchmarks). One macro writes the delegation for all of them, so
//! no wrapper repeats the ports' method lists.

/// Implements every port of the ledger (and `AuditLog`) for `$wrapper`, delegating to its field `$inner`, and
/// calling its inherent methods around each call: `async fn $before(&self, method: &'static str, parts: &[&'static
/// str]) -> Result<(), LedgerError>` first (an error is the call's answer, and the call is not made), and `fn
/// $after(&self, method: &'static str) -> Result<(), LedgerError>` once the call was made (an error is its answer
/// instead: a lost answer). `method` is the port method's name; `parts` names what the call writes or reads, by
/// the methods that do each part alone, so a fault injected in either part of a joint write
/// (`reserve_recording`: `write_reservation`, `record_intent`) fails the joint write too.
#[macro_export]
macro_rules! hooked_ledger {
    ($wrapper:ty, $inner:ident, $before:ident, $after:ident) => {
        $crate::hooked_ledger!(@impl $wrapper, $inner, $before, $after, $crate::ports::ledger::Batches {
            record_intent(record: &$crate::ports::BatchRecord) -> () ["record_intent"];
            record_intent_capped(record: &$crate::ports::BatchRecord, cap: &$crate::ports::ledger::MonthCap)
                -> $crate::ports::ledger::Intent ["record_intent"];
            record_outcome(record: &$crate::ports::BatchRecord) -> () ["record_outcome"];
            list(distribution: &$crate::model::DistributionId, since: std::time::SystemTime, limit: usize)
                -> Vec<$crate::ports::BatchRecord> ["list"];
            take_over(caller_reference: &$crate::model::CallerReference, owner: &str, now: std::time::SystemTime,
                lease_until: std::time::SystemTime) -> bool ["take_over"];
            renew_lease(caller_reference: &$crate::model::CallerReference, owner: &str,
                lease_until: std::time::SystemTime) -> bool ["renew_lease"];
            record_completion(completion: &$crate::ports::Completion) -> bool ["record_completion"];
            batch(caller_reference: &$crate::model::CallerReference) -> Option<$crate::ports::BatchRecord> ["batch"];
            record_verification(caller_reference: &$crate::model::CallerReference,
                verification: &$crate::ports::ledger::VerificationRecord) -> () ["record_verification"];
        });
        $crate::hooked_ledger!(@impl $wrapper, $inner, $before, $after, $crate::ports::ledger::Bills {
            month_billing(month: &str) -> $crate::ports::ledger::MonthBilling ["month_billing"];
            month_totals(month: &str) -> $crate::ports::ledger::MonthBilling ["month_totals"];
            account_totals(month: &str, account: &str) -> $crate::ports::ledger::MonthBilling ["account_totals"];
        });
        $crate::hooked_ledger!(@impl $wrapper, $inner, $before, $after, $crate::ports::ledger::DeadLetters {
            record_dead_letter(record: &$crate::ports::DeadLetterRecord) -> () ["record_dead_letter"];
            dead_letter(message: &$crate::model::MessageId) -> Option<$crate::ports::DeadLetterRecord> ["dead_letter"];
        });
        $crate::hooked_ledger!(@impl $wrapper, $inner, $before, $after, $crate::ports::ledger::Keys {
            claim_key(key: &$crate::ports::KeyUse, now: std::time::SystemTime, expires_at: std::time::SystemTime)
                -> $crate::ports::KeyClaim ["claim_key"];
        });
        $crate::hooked_ledger!(@impl $wrapper, $inner, $before, $after, $crate::ports::ledger::Outbox {
            in_progress(created_before: std::time::SystemTime,
                after: Option<&$crate::ports::ledger::InProgressCursor>, limit: usize)
                -> $crate::ports::ledger::InProgress ["in_progress"];
            give_up_tracking(owed: &$crate::ports::Owed, reason: &str) -> () ["give_up_tracking"];
            mark_published(caller_reference: &$crate::model::CallerReference,
                kind: $crate::ports::events::EventKind, settled: bool) -> () ["mark_published"];
            mark_dead_letter_published(message: &$crate::model::MessageId) -> () ["mark_published"];
        });
        $crate::hooked_ledger!(@impl $wrapper, $inner, $before, $after, $crate::ports::budget::Budgets {
            read_budget(budget: &impl $crate::ports::budget::BudgetItem) -> $crate::ports::BudgetState ["read_budget"];
            write_reservation(budget: &impl $crate::ports::budget::BudgetItem, version: u64,
                reservation: &$crate::ports::Reservation, expired: &[$crate::model::CallerReference])
                -> bool ["write_reservation"];
            renew_reservation(budget: &impl $crate::ports::budget::BudgetItem, id: &$crate::model::CallerReference,
                until: std::time::SystemTime, invalidation_id: Option<&str>) -> bool ["renew_reservation"];
            release_reservation(budget: &impl $crate::ports::budget::BudgetItem, id: &$crate::model::CallerReference)
                -> () ["release_reservation"];
        });
        $crate::hooked_ledger!(@impl $wrapper, $inner, $before, $after, $crate::ports::budget::JointWrites {
            reserve_recording(budget: &impl $crate::ports::budget::BudgetItem, version: u64,
                reservation: &$crate::ports::Reservation, expired: &[$crate::model::CallerReference],
                intent: &$crate::ports::BatchRecord, cap: Option<&$crate::ports::ledger::MonthCap>)
                -> $crate::ports::ReservationWrite ["write_reservation", "record_intent"];
            record_acceptance(budget: &impl $crate::ports::budget::BudgetItem, record: &$crate::ports::BatchRecord, until: std::time::SystemTime)
                -> () ["record_outcome"];
            release_completed(budget: &impl $crate::ports::budget::BudgetItem,
                completions: &[$crate::ports::Completion]) -> Vec<$crate::ports::Recorded>
                ["record_completion", "release_reservation"];
        });
        $crate::hooked_ledger!(@impl $wrapper, $inner, $before, $after, $crate::ports::budget::Roster {
            check_in(worker: &str, now: std::time::SystemTime, until: std::time::SystemTime)
                -> Vec<String> ["check_in"];
            check_out(worker: &str) -> () ["check_out"];
        });
        $crate::hooked_ledger!(@impl $wrapper, $inner, $before, $after, $crate::ports::budget::Beliefs {
            shared_beliefs(now: std::time::SystemTime) -> Vec<$crate::ports::budget::SharedBelief> ["shared_beliefs"];
            share_belief(belief: &$crate::ports::budget::SharedBelief) -> bool ["share_belief"];
        });
        $crate::hooked_ledger!(@impl $wrapper, $inner, $before, $after, $crate::ports::AuditLog {
            batch_by_invalidation(id: &str) -> Option<$crate::ports::BatchRecord> ["batch_by_invalidation"];
            batches_with_message(message: &$crate::model::MessageId,
                distribution: Option<&$crate::model::DistributionId>, since: std::time::SystemTime)
                -> Vec<$crate::ports::BatchRecord> ["batches_with_message"];
            latest_covering(distribution: &$crate::model::DistributionId, path: &str, since: std::time::SystemTime)
                -> Option<$crate::ports::BatchRecord> ["latest_covering"];
            key_claim(target: &$crate::model::Target, key: &str)
                -> Option<$crate::ports::KeyRecord> ["key_claim"];
            failures(since: std::time::SystemTime, limit: usize) -> Vec<$crate::ports::FailureRecord> ["failures"];
            budgets() -> Vec<($crate::model::DistributionId, $crate::ports::BudgetState)> ["budgets"];
            pending_batches(limit: usize) -> Vec<$crate::ports::BatchSummary> ["pending_batches"];
            recent_batches(limit: usize) -> Vec<$crate::ports::BatchSummary> ["recent_batches"];
        });
    };
    (@impl $wrapper:ty, $inner:ident, $before:ident, $after:ident, $port:path {
        $( $method:ident ( $( $arg:ident : $ty:ty ),* ) -> $answer:ty [ $( $operation:literal ),+ ]; )*
    }) => {
        impl $port for $wrapper {
            $(
                async fn $method(&self $(, $arg: $ty)*) -> Result<$answer, $crate::ports::LedgerError> {
                    self.$before(stringify!($method), &[$( $operation ),+]).await?;
                    let answer = self.$inner.$method($($arg),*).await?;
                    self.$after(stringify!($method))?;
                    Ok(answer)
                }
            )*
        }
    };
}
