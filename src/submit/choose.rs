//! What a batch does next on its way to a reservation, chosen from what is known of every limit at once, without
//! I/O: the month's path budget, what the worker believes one call may carry (the distribution's in-progress
//! quota and the account's buckets), the room the distribution's budget had at the last ask, and its backlog.
//! The submitter (`reserve`) gathers what it knows, performs the choice (a reservation, a split, a coalescing, a
//! wait) and chooses again with what it learned, until the batch's room is reserved.

use std::time::Duration;

use crate::batch::Batch;
use crate::clock::WallClock;
use crate::plan::{self, MonthFit, Plan, Room};
use crate::ports::budget::Allowance;

use super::shape::{split_to_fit, split_worth_a_call};

/// What is known of the limits when a batch chooses.
#[derive(Debug, Clone, Copy)]
pub(super) struct Known {
    /// Whether the batch may still change: nothing of it is recorded (a resumed batch, or one whose intent may
    /// have been written by a call whose answer was lost, is sent as it is).
    pub reshapable: bool,
    /// The most the worker believes one call may carry now.
    pub fit: Allowance,
    /// The room the distribution's budget had when this batch last asked and found too little; `None` when it has
    /// not asked since room may have changed.
    pub room: Option<Allowance>,
    /// The room the batch was last weighed against for reshaping: the same room gives the same answer.
    pub weighed: Option<Allowance>,
    /// The monthly path budget's paths left, when there is a budget.
    pub month_left: Option<u64>,
    /// The wildcards the distribution had room for at the last look, for coalescing to fit the month.
    pub wildcard_room: u32,
    /// How long the distribution's backlog would take to clear, when that is over the maximum delay and
    /// `--coalesce auto` is on.
    pub overloaded: Option<Duration>,
}

/// Why a batch waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wait {
    /// The distribution's budget has too little room, and no part of the batch is worth a call now.
    Room,
    /// The month's path budget is spent, for this batch even coalesced.
    Month,
}

/// Why a batch's paths are replaced by wildcards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Coalescing {
    Month,
    /// The backlog would take this long to clear.
    Overload(Duration),
}

/// What a batch does next.
#[derive(Debug)]
pub(super) enum Choice {
    /// Ask for room for the batch as it is, recording its intent in the same write.
    Reserve,
    /// Go in parts: the last fits and goes now, the others go back to the schedule.
    InParts(Vec<Batch>),
    /// Replace the batch's paths as the plan says, then choose again.
    Coalesce(Plan, Coalescing),
    Wait(Wait),
}

/// The month first (nothing else matters while it is spent), then what one call may carry, then the room.
pub(super) fn choose(batch: &Batch, known: &Known, clock: WallClock) -> Choice {
    if !known.reshapable {
        return if known.room.is_some() { Choice::Wait(Wait::Room) } else { Choice::Reserve };
    }
    if let Some(left) = known.month_left {
        match plan::fit_month_budget(&batch.content.paths, left, known.wildcard_room as usize) {
            MonthFit::AsIs => {}
            MonthFit::Coalesced(plan) => return Choice::Coalesce(plan, Coalescing::Month),
            MonthFit::Hold => return Choice::Wait(Wait::Month),
        }
    }
    let need = Allowance::of(&batch.content.paths);
    if !need.fits_in(known.fit)
        && let Some(parts) = split_to_fit(batch, known.fit, clock)
    {
        return Choice::InParts(parts);
    }
    let Some(room) = known.room.filter(|&room| !need.fits_in(room)) else {
        return Choice::Reserve;
    };
    if known.weighed != Some(room) {
        if let Some(parts) = split_worth_a_call(batch, room, known.fit, clock) {
            return Choice::InParts(parts);
        }
        if let Some(clears_in) = known.overloaded
            && let Some(plan) = plan::coalesce(
                &batch.content.paths,
                Room { paths: room.paths as usize, wildcards: room.wildcards as usize },
            )
        {
            return Choice::Coalesce(plan, Coalescing::Overload(clears_in));
        }
    }
    Choice::Wait(Wait::Room)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::batch::window::{SealReason, SealedBatch};
    use crate::model::message::{BatchMember, Delivery};
    use crate::model::path::InvalidationPath;
    use crate::model::{DistributionId, MessageId};
    use crate::ports::budget::QUOTA;

    /// A batch of one message per entry, each asking for its paths.
    fn batch(messages: &[Vec<String>]) -> Batch {
        let members = messages
            .iter()
            .enumerate()
            .map(|(n, paths)| {
                BatchMember::whole_of(
                    Delivery { message_id: MessageId(format!("m{n}")), number: 1 },
                    paths.iter().map(|p| InvalidationPath::parse(p).unwrap()).collect(),
                )
            })
            .collect();
        let target = DistributionId::parse("EDFDVBD6EXAMPLE").unwrap().into();
        Batch::seal(SealedBatch::from_members(target, members, SealReason::WindowElapsed), WallClock::default())
    }

    /// `n` messages of one plain path each.
    fn plain(n: usize) -> Batch {
        batch(&(0..n).map(|i| vec![format!("/p/{i}.html")]).collect::<Vec<_>>())
    }

    fn known() -> Known {
        Known {
            reshapable: true,
            fit: QUOTA,
            room: None,
            weighed: None,
            month_left: None,
            wildcard_room: QUOTA.wildcards,
            overloaded: None,
        }
    }

    fn paths(paths: u32) -> Allowance {
        Allowance { paths, wildcards: 15 }
    }

    fn choice(batch: &Batch, known: Known) -> Choice {
        choose(batch, &known, WallClock::default())
    }

    #[test]
    fn a_batch_that_fits_asks_for_room() {
        assert!(matches!(choice(&plain(10), known()), Choice::Reserve));
    }

    #[test]
    fn a_spent_month_holds_the_batch_before_anything_else() {
        let spent = Known { month_left: Some(0), fit: paths(1), room: Some(paths(0)), ..known() };
        assert!(matches!(choice(&plain(10), spent), Choice::Wait(Wait::Month)));
    }

    #[test]
    fn a_month_nearly_spent_coalesces_the_batch() {
        let low = Known { month_left: Some(4), ..known() };
        match choice(&plain(10), low) {
            Choice::Coalesce(plan, Coalescing::Month) => assert!(plan.paths.len() <= 4, "{:?}", plan.paths),
            other => panic!("expected coalescing for the month, got {other:?}"),
        }
    }

    #[test]
    fn a_batch_over_what_one_call_may_carry_goes_in_parts_the_first_fitting() {
        let Choice::InParts(parts) = choice(&plain(10), Known { fit: paths(4), ..known() }) else {
            panic!("expected parts");
        };
        assert_eq!(parts.last().unwrap().content.paths.len(), 4);
        assert_eq!(parts.iter().map(|p| p.content.members.len()).sum::<usize>(), 10);
    }

    #[test]
    fn too_little_room_sends_the_part_that_fits_unless_it_is_a_sliver() {
        let worth = Known { room: Some(paths(5)), ..known() };
        let Choice::InParts(parts) = choice(&plain(10), worth) else { panic!("expected parts") };
        assert_eq!(parts.last().unwrap().content.paths.len(), 5);
        let sliver = Known { room: Some(paths(1)), ..known() };
        assert!(matches!(choice(&plain(10), sliver), Choice::Wait(Wait::Room)));
    }

    #[test]
    fn the_same_room_is_weighed_once() {
        let weighed = Known { room: Some(paths(5)), weighed: Some(paths(5)), ..known() };
        assert!(matches!(choice(&plain(10), weighed), Choice::Wait(Wait::Room)));
    }

    #[test]
    fn an_overloaded_distribution_coalesces_into_the_room_left() {
        let files: Vec<Vec<String>> = (0..40).map(|i| vec![format!("/blog/{i}.html")]).collect();
        let overloaded = Known { room: Some(paths(1)), overloaded: Some(Duration::from_secs(600)), ..known() };
        match choice(&batch(&files), overloaded) {
            Choice::Coalesce(plan, Coalescing::Overload(_)) => assert_eq!(plan.paths, ["/blog/*"]),
            other => panic!("expected coalescing, got {other:?}"),
        }
    }

    #[test]
    fn a_recorded_batch_is_never_reshaped() {
        let recorded = Known { reshapable: false, fit: paths(1), month_left: Some(0), ..known() };
        assert!(matches!(choice(&plain(10), recorded), Choice::Reserve));
        let no_room = Known { room: Some(paths(5)), ..recorded };
        assert!(matches!(choice(&plain(10), no_room), Choice::Wait(Wait::Room)));
    }

    fn allowance() -> impl Strategy<Value = Allowance> {
        (0u32..12, 0u32..3).prop_map(|(paths, wildcards)| Allowance { paths, wildcards })
    }

    proptest! {
        /// Whatever is known: parts hold the batch's messages exactly once, the one that goes now fits what one
        /// call may carry and the room; coalescing fits the room; a batch that may not change only asks or waits.
        #[test]
        fn choices_keep_every_message_and_the_limits(
            messages in proptest::collection::vec(proptest::collection::vec(0usize..6, 1..4), 1..8),
            fit in allowance(),
            room in proptest::option::of(allowance()),
            weighed in proptest::option::of(allowance()),
            month_left in proptest::option::of(0u64..20),
            overloaded in any::<bool>(),
            reshapable in any::<bool>(),
        ) {
            let messages: Vec<Vec<String>> = messages
                .iter()
                .map(|paths| paths.iter().map(|p| if *p == 0 { "/d/*".to_owned() } else { format!("/d/{p}") }).collect())
                .collect();
            let batch = batch(&messages);
            let overloaded = overloaded.then_some(Duration::from_secs(600));
            let known = Known { reshapable, fit, room, weighed, month_left, overloaded, ..known() };
            match choice(&batch, known) {
                Choice::InParts(parts) => {
                    prop_assert!(reshapable);
                    let mut ids: Vec<String> = parts
                        .iter()
                        .flat_map(|p| p.content.members.iter().map(|m| m.delivery.message_id.0.clone()))
                        .collect();
                    ids.sort();
                    ids.dedup();
                    prop_assert_eq!(ids.len(), messages.len());
                    let now = Allowance::of(&parts.last().unwrap().content.paths);
                    prop_assert!(now.fits_in(fit) || now.fits_in(room.unwrap_or(fit)), "{now:?}");
                    if Allowance::of(&batch.content.paths).fits_in(fit) {
                        prop_assert!(now.fits_in(room.unwrap()));
                    }
                }
                Choice::Coalesce(plan, Coalescing::Overload(_)) => {
                    prop_assert!(reshapable);
                    prop_assert!(Allowance::of(&plan.paths).fits_in(room.unwrap()));
                }
                Choice::Coalesce(plan, Coalescing::Month) => {
                    prop_assert!(reshapable);
                    prop_assert!(plan.paths.len() as u64 <= month_left.unwrap());
                }
                Choice::Wait(Wait::Month) => prop_assert!(reshapable && month_left.is_some()),
                Choice::Wait(Wait::Room) | Choice::Reserve => {}
            }
        }
    }
}
