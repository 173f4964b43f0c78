//! The in-progress budget's decisions, without I/O: how much room a distribution has left, whether a reservation
//! is granted, refused or must wait for a fresh read, what the budget looks like once it is written, and what a
//! resync counts. `budget.rs` reads and writes the store and asks CloudFront; everything it decides is here.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use crate::model::CallerReference;
use crate::ports::budget::{Allowance, BudgetState, MAX_DELETED_AT_ONCE, Reservation};

/// The room left for reservation `id`: the capacity minus other people's invalidations and every live
/// reservation but `id`'s own (a batch asking again, after TooManyInvalidationsInProgress, does not count twice).
pub fn room_for(
    id: &CallerReference,
    capacity: Allowance,
    unreserved: Allowance,
    reservations: &[Reservation],
    now: SystemTime,
) -> Allowance {
    let reserved: Allowance = reservations.iter().filter(|r| r.until > now && &r.id != id).map(|r| r.need).sum();
    capacity - unreserved - reserved
}

/// What is in progress on a distribution by the books, reservation `id` aside: other people's invalidations and
/// every other live reservation.
pub fn in_progress(
    id: &CallerReference,
    unreserved: Allowance,
    reservations: &[Reservation],
    now: SystemTime,
) -> Allowance {
    unreserved + reservations.iter().filter(|r| r.until > now && &r.id != id).map(|r| r.need).sum()
}

/// What CloudFront holds in progress on a distribution by the books, reservation `id` aside: other people's
/// invalidations and the live reservations it accepted; reserved batches not yet called are not there yet.
pub fn submitted(
    id: &CallerReference,
    unreserved: Allowance,
    reservations: &[Reservation],
    now: SystemTime,
) -> Allowance {
    let accepted = reservations.iter().filter(|r| r.until > now && &r.id != id && r.invalidation_id.is_some());
    unreserved + accepted.map(|r| r.need).sum()
}

/// Reservations whose lease ran out before `before`.
pub fn expired_before(reservations: &[Reservation], before: SystemTime) -> impl Iterator<Item = &Reservation> {
    reservations.iter().filter(move |r| r.until <= before)
}

/// Most reservations one distribution's budget item holds, live and expired together. An entry is at most about 260
/// bytes (a 40-byte CallerReference as its key, an owner of at most `MAX_WORKER_ID_BYTES`, three numbers and a
/// 14-character invalidation id, with DynamoDB's per-attribute overheads), so the item stays under 260 KB, well
/// inside DynamoDB's 400 KB. It binds only when a thousand of one distribution's invalidations are in progress at
/// once, which CloudFront's 3,000 paths allow only for batches of one or two paths: a batch that would add the
/// next one waits for room like any other.
pub const MAX_RESERVATIONS: usize = 1_000;

/// A worker id is recorded in every reservation and batch it owns: bounded so that those stay bounded.
pub const MAX_WORKER_ID_BYTES: usize = 128;

/// How long `backlog` paths take to get through a distribution whose `capacity` frees up once per `completion`.
pub fn time_to_clear(backlog: Allowance, capacity: Allowance, completion: Duration) -> Duration {
    let rounds = |need: u32, room: u32| match (need, room) {
        (0, _) => 0,
        (_, 0) => u32::MAX,
        _ => need.div_ceil(room),
    };
    let needed = rounds(backlog.paths, capacity.paths).max(rounds(backlog.wildcards, capacity.wildcards));
    completion.saturating_mul(needed)
}

/// A batch asking for room.
#[derive(Debug, Clone)]
pub struct Ask<'a> {
    pub id: &'a CallerReference,
    pub owner: &'a str,
    pub need: Allowance,
    pub now: SystemTime,
}

/// The budget's limits, as the decisions need them.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// What the worker believes every worker may use.
    pub capacity: Allowance,
    /// What it was told they may: a batch larger than the belief but within this goes when the distribution is
    /// otherwise free.
    pub configured: Allowance,
    pub lease: Duration,
    /// Expired reservations stay for this long, so every worker resyncs once before they are deleted.
    pub resync_every: Duration,
}

/// What to do with an ask, given the budget as read (`fresh`) or as this worker last knew it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Write this reservation, deleting `deletable`, if the budget's version is still the one read.
    Reserve { reservation: Reservation, deletable: Vec<CallerReference> },
    /// Not enough room, by what the store says.
    NoRoom(Allowance),
    /// Not enough room by this worker's copy, which may be stale: read the store before refusing.
    ReadAgain,
}

pub fn decide(state: &BudgetState, fresh: bool, unreserved: Allowance, ask: &Ask, limits: Limits) -> Decision {
    let room = room_for(ask.id, limits.capacity, unreserved, &state.reservations, ask.now);
    let others: Vec<&Reservation> = state.reservations.iter().filter(|r| &r.id != ask.id).collect();
    let deletable = deletable(&others, ask.now - limits.resync_every);
    let full = others.len() - deletable.len() >= MAX_RESERVATIONS;
    // A batch larger than the believed capacity (recorded before the worker learned to believe less) goes when
    // the distribution is otherwise free: it always goes eventually.
    let need = if ask.need.fits_in(limits.configured) { ask.need.min(limits.capacity) } else { ask.need };
    if full || !need.fits_in(room) {
        let room = if full { Allowance::default() } else { room };
        return if fresh { Decision::NoRoom(room) } else { Decision::ReadAgain };
    }
    let reservation = Reservation {
        id: ask.id.clone(),
        owner: ask.owner.to_owned(),
        need: ask.need,
        until: ask.now + limits.lease,
        invalidation_id: None,
    };
    Decision::Reserve { reservation, deletable }
}

/// The reservations a write may delete: expired before `before`, the longest expired first, at most
/// `MAX_DELETED_AT_ONCE`.
fn deletable(reservations: &[&Reservation], before: SystemTime) -> Vec<CallerReference> {
    let mut expired: Vec<&Reservation> = reservations.iter().copied().filter(|r| r.until <= before).collect();
    expired.sort_by_key(|r| r.until);
    expired.into_iter().take(MAX_DELETED_AT_ONCE).map(|r| r.id.clone()).collect()
}

/// The budget as it is once `reservation` is written over `state` and `deletable` deleted.
pub fn after_write(mut state: BudgetState, reservation: Reservation, deletable: &[CallerReference]) -> BudgetState {
    state.reservations.retain(|r| r.id != reservation.id && !deletable.contains(&r.id));
    state.reservations.push(reservation);
    state.version += 1;
    state
}

/// A resync's count of what is in progress without a reservation, before CloudFront is asked about the
/// invalidations it has not seen yet.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub usage: Allowance,
    /// The invalidations counted, by id: asked about once, not at every resync.
    pub counted: HashMap<String, Allowance>,
    /// In progress, not reserved and never seen: their paths are to be looked up, in this order.
    pub to_look_up: Vec<String>,
}

impl Tally {
    /// Counts the in-progress invalidations no live reservation names, using what earlier resyncs `known`.
    pub fn of(in_progress: Vec<String>, live: &[&Reservation], mut known: HashMap<String, Allowance>) -> Self {
        let mut tally = Self::default();
        for id in in_progress {
            if live.iter().any(|r| r.invalidation_id.as_deref() == Some(id.as_str())) {
                continue;
            }
            match known.remove(&id) {
                Some(need) => tally.count(id, need),
                None => tally.to_look_up.push(id),
            }
        }
        tally
    }

    /// Adds a looked-up invalidation, unless a live reservation holds its CallerReference (a batch accepted so
    /// recently that its reservation does not name the invalidation yet).
    pub fn looked_up(&mut self, id: String, caller_reference: &str, paths: &[String], live: &[&Reservation]) {
        if !live.iter().any(|r| r.id.as_str() == caller_reference) {
            self.count(id, Allowance::of(paths));
        }
    }

    fn count(&mut self, id: String, need: Allowance) {
        self.usage = self.usage + need;
        self.counted.insert(id, need);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const NOW: Duration = Duration::from_secs(1_000);

    fn at(offset_secs: i64) -> SystemTime {
        let now = SystemTime::UNIX_EPOCH + NOW;
        if offset_secs >= 0 {
            now + Duration::from_secs(offset_secs as u64)
        } else {
            now - Duration::from_secs(offset_secs.unsigned_abs())
        }
    }

    fn reference(id: &str) -> CallerReference {
        CallerReference::from_recorded(id.into())
    }

    fn reservation(id: &str, paths: u32, wildcards: u32, until: SystemTime) -> Reservation {
        Reservation {
            id: reference(id),
            owner: "w".into(),
            need: Allowance { paths, wildcards },
            until,
            invalidation_id: None,
        }
    }

    fn limits() -> Limits {
        Limits {
            capacity: Allowance { paths: 2_900, wildcards: 13 },
            configured: Allowance { paths: 2_900, wildcards: 13 },
            lease: Duration::from_secs(120),
            resync_every: Duration::from_secs(60),
        }
    }

    fn ask<'a>(id: &'a CallerReference, paths: u32) -> Ask<'a> {
        Ask { id, owner: "me", need: Allowance { paths, wildcards: 0 }, now: at(0) }
    }

    #[test]
    fn room_counts_live_reservations_but_not_expired_ones_nor_the_askers_own() {
        let reservations =
            [reservation("a", 1_000, 2, at(60)), reservation("b", 500, 0, at(0)), reservation("mine", 800, 5, at(60))];
        let capacity = Allowance { paths: 2_800, wildcards: 13 };
        let unreserved = Allowance { paths: 100, wildcards: 1 };
        let room = room_for(&reference("mine"), capacity, unreserved, &reservations, at(0));
        assert_eq!(room, Allowance { paths: 1_700, wildcards: 10 });
        let expired: Vec<&CallerReference> = expired_before(&reservations, at(0)).map(|r| &r.id).collect();
        assert_eq!(expired, [&reference("b")]);
    }

    #[test]
    fn cloudfront_holds_only_the_accepted_reservations_and_other_peoples_invalidations() {
        let accepted =
            |id, paths, until| Reservation { invalidation_id: Some("I1".into()), ..reservation(id, paths, 0, until) };
        let reservations = [
            accepted("a", 1_000, at(60)),
            reservation("waiting", 500, 0, at(60)),
            accepted("gone", 300, at(0)),
            accepted("mine", 800, at(60)),
        ];
        let unreserved = Allowance { paths: 100, wildcards: 1 };
        let held = submitted(&reference("mine"), unreserved, &reservations, at(0));
        assert_eq!(held, Allowance { paths: 1_100, wildcards: 1 });
    }

    #[test]
    fn room_never_goes_below_zero_when_people_used_more_than_the_reserve() {
        let room = room_for(
            &reference("x"),
            Allowance { paths: 2_800, wildcards: 13 },
            Allowance { paths: 2_900, wildcards: 15 },
            &[],
            SystemTime::UNIX_EPOCH,
        );
        assert_eq!(room, Allowance::default());
    }

    #[test]
    fn time_to_clear_counts_whole_rounds_of_the_tighter_allowance() {
        let capacity = Allowance { paths: 3_000, wildcards: 15 };
        let completion = Duration::from_secs(30);
        assert_eq!(time_to_clear(Allowance { paths: 6_001, wildcards: 0 }, capacity, completion), completion * 3);
        assert_eq!(time_to_clear(Allowance { paths: 10, wildcards: 31 }, capacity, completion), completion * 3);
        assert_eq!(time_to_clear(Allowance::default(), capacity, completion), Duration::ZERO);
    }

    #[test]
    fn a_fitting_ask_is_reserved_for_a_lease_and_deletes_only_reservations_expired_a_resync_ago() {
        let state = BudgetState {
            reservations: vec![
                reservation("long-gone", 100, 0, at(-61)),
                reservation("just-expired", 100, 0, at(-1)),
                reservation("live", 100, 0, at(30)),
            ],
            version: 7,
        };
        let id = reference("mine");
        let decision = decide(&state, true, Allowance::default(), &ask(&id, 500), limits());
        let Decision::Reserve { reservation, deletable } = decision else { panic!("{decision:?}") };
        assert_eq!(deletable, [reference("long-gone")]);
        assert_eq!((reservation.until, reservation.owner.as_str()), (at(120), "me"));
        let written = after_write(state, reservation, &deletable);
        let ids: Vec<&str> = written.reservations.iter().map(|r| r.id.as_str()).collect();
        assert_eq!((ids, written.version), (vec!["just-expired", "live", "mine"], 8));
    }

    #[test]
    fn a_write_deletes_at_most_a_bounded_number_of_expired_reservations_the_oldest_first() {
        // 233 reservations a SIGKILLed worker left: deleting them all in one REMOVE took 4,920 bytes of expression.
        let mut reservations: Vec<Reservation> =
            (0..233).map(|n| reservation(&format!("dead-{n:03}"), 1, 0, at(-61 - n))).collect();
        reservations.push(reservation("live", 1, 0, at(30)));
        let state = BudgetState { reservations, version: 9 };
        let id = reference("mine");
        let Decision::Reserve { deletable, .. } = decide(&state, true, Allowance::default(), &ask(&id, 1), limits())
        else {
            panic!("there is room");
        };
        assert_eq!(deletable.len(), MAX_DELETED_AT_ONCE);
        assert_eq!(deletable[0], reference("dead-232"), "the longest expired goes first");
        assert!(!deletable.contains(&reference("live")));
    }

    #[test]
    fn a_budget_item_holding_the_most_reservations_takes_no_more() {
        let live = |n: usize| reservation(&format!("r{n:04}"), 1, 0, at(30));
        let full = BudgetState { reservations: (0..MAX_RESERVATIONS).map(live).collect(), version: 1 };
        let id = reference("mine");
        let ask = ask(&id, 1);
        let roomy = Limits {
            capacity: Allowance { paths: 100_000, wildcards: 15 },
            configured: Allowance { paths: 100_000, wildcards: 15 },
            ..limits()
        };
        assert_eq!(decide(&full, true, Allowance::default(), &ask, roomy), Decision::NoRoom(Allowance::default()));
        assert_eq!(decide(&full, false, Allowance::default(), &ask, roomy), Decision::ReadAgain);
        // One of them long expired makes a place.
        let mut one_expired = full.clone();
        one_expired.reservations[0].until = at(-61);
        assert!(matches!(decide(&one_expired, true, Allowance::default(), &ask, roomy), Decision::Reserve { .. }));
    }

    #[test]
    fn no_room_is_final_only_on_what_the_store_says() {
        let state = BudgetState { reservations: vec![reservation("big", 2_800, 0, at(30))], version: 1 };
        let id = reference("mine");
        let ask = ask(&id, 200);
        assert_eq!(decide(&state, false, Allowance::default(), &ask, limits()), Decision::ReadAgain);
        assert_eq!(
            decide(&state, true, Allowance::default(), &ask, limits()),
            Decision::NoRoom(Allowance { paths: 100, wildcards: 13 })
        );
    }

    #[test]
    fn asking_again_does_not_count_the_askers_own_reservation() {
        let state = BudgetState { reservations: vec![reservation("mine", 2_900, 0, at(30))], version: 1 };
        let id = reference("mine");
        let Decision::Reserve { reservation, .. } =
            decide(&state, true, Allowance::default(), &ask(&id, 2_900), limits())
        else {
            panic!("the asker's own reservation must not block it");
        };
        let written = after_write(state, reservation, &[]);
        assert_eq!(written.reservations.len(), 1, "replaced, not added twice");
    }

    #[test]
    fn a_resync_counts_what_nobody_reserved_and_looks_up_only_what_it_never_saw() {
        let mut named = reservation("r1", 10, 0, at(30));
        named.invalidation_id = Some("I-RESERVED".into());
        let just_accepted = reservation("r2", 10, 0, at(30));
        let live = [&named, &just_accepted];
        let known = HashMap::from([("I-KNOWN".to_owned(), Allowance { paths: 3, wildcards: 1 })]);
        let in_progress = ["I-RESERVED", "I-KNOWN", "I-NEW", "I-MINE"].map(String::from).to_vec();
        let mut tally = Tally::of(in_progress, &live, known);
        assert_eq!(tally.to_look_up, ["I-NEW", "I-MINE"]);
        tally.looked_up("I-NEW".into(), "someone-else", &["/a".into(), "/b/*".into()], &live);
        tally.looked_up("I-MINE".into(), "r2", &["/c".into()], &live);
        assert_eq!(tally.usage, Allowance { paths: 4, wildcards: 2 });
        assert_eq!(tally.counted.keys().count(), 2, "the reserved ones are not remembered as someone else's");
    }

    fn arbitrary_reservations() -> impl Strategy<Value = Vec<Reservation>> {
        let one = (0u8..6, 0u32..1_500, 0u32..5, -200i64..200)
            .prop_map(|(id, paths, wildcards, until)| reservation(&format!("r{id}"), paths, wildcards, at(until)));
        prop::collection::vec(one, 0..8).prop_map(|mut all| {
            all.sort_by(|a, b| a.id.cmp(&b.id));
            all.dedup_by(|a, b| a.id == b.id);
            all
        })
    }

    #[test]
    fn a_recorded_batch_larger_than_the_belief_goes_when_the_distribution_is_otherwise_free() {
        let believed = Limits { capacity: Allowance { paths: 500, wildcards: 13 }, ..limits() };
        let id = reference("big");
        let ask = Ask { id: &id, owner: "me", need: Allowance { paths: 1_000, wildcards: 0 }, now: at(0) };
        let free = BudgetState::default();
        assert!(matches!(decide(&free, true, Allowance::default(), &ask, believed), Decision::Reserve { .. }));
        let busy = Allowance { paths: 1, wildcards: 0 };
        assert_eq!(
            decide(&free, true, busy, &ask, believed),
            Decision::NoRoom(Allowance { paths: 499, wildcards: 13 })
        );
        let beyond = Ask { need: Allowance { paths: 3_000, wildcards: 0 }, ..ask.clone() };
        assert!(matches!(decide(&free, true, Allowance::default(), &beyond, believed), Decision::NoRoom(_)));
    }

    proptest! {
        /// Whatever the budget holds, a granted reservation never takes live reservations past the capacity, and a
        /// refusal happens only when the ask does not fit.
        #[test]
        fn a_grant_never_overbooks_the_capacity(
            reservations in arbitrary_reservations(),
            unreserved_paths in 0u32..3_000,
            need_paths in 0u32..3_000,
            need_wildcards in 0u32..15,
            asker in 0u8..8,
        ) {
            let id = reference(&format!("r{asker}"));
            let unreserved = Allowance { paths: unreserved_paths, wildcards: 0 };
            let others: Allowance = reservations.iter().filter(|r| r.until > at(0) && r.id != id).map(|r| r.need).sum();
            prop_assume!((others + unreserved).fits_in(limits().capacity));
            let state = BudgetState { reservations, version: 3 };
            let ask = Ask { id: &id, owner: "me", need: Allowance { paths: need_paths, wildcards: need_wildcards }, now: at(0) };
            match decide(&state, true, unreserved, &ask, limits()) {
                Decision::Reserve { reservation, deletable } => {
                    let written = after_write(state, reservation, &deletable);
                    let live: Allowance =
                        written.reservations.iter().filter(|r| r.until > at(0)).map(|r| r.need).sum();
                    prop_assert!((live + unreserved).fits_in(limits().capacity), "{live:?} + {unreserved:?}");
                    prop_assert_eq!(written.version, 4);
                    prop_assert!(written.reservations.iter().all(|r| r.until > at(-60)), "only long-expired ones go");
                    prop_assert!(written.reservations.len() <= MAX_RESERVATIONS);
                }
                Decision::NoRoom(room) => prop_assert!(!ask.need.fits_in(room)),
                Decision::ReadAgain => prop_assert!(false, "a fresh read is never read again"),
            }
        }
    }
}
