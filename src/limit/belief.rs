//! What the worker believes of a distribution's in-progress quotas: configured, then learned from refusals its
//! books cannot explain (`learn`). Every change is a metric (`cfi_limit_effective{limit,distribution}`), a log
//! line and a row of the worker's [`LimitBoard`] (the status page), and every cut is shared with the other workers
//! through the ledger (`share_beliefs`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use metrics::gauge;
use tracing::{debug, info, warn};

use super::learn::Learned;
use crate::clock::WallClock;
use crate::ports::budget::{Allowance, BELIEF_LASTS, SharedBelief, UNLIMITED};

/// Why a belief changed: a refusal nothing explains.
pub const REFUSED: &str = "refused";
/// Why a belief changed: a success probed it up.
pub const ACCEPTED: &str = "accepted";
/// Why a belief changed: the ledger holds what another worker learned.
pub const SHARED: &str = "shared";

/// Limits learned per distribution, as the metric names them.
pub const IN_PROGRESS_PATHS: &str = "in_progress_paths";
pub const IN_PROGRESS_WILDCARDS: &str = "in_progress_wildcards";

/// The belief in one distribution's two in-progress quotas; a quota turned off is not learned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InProgressBelief {
    paths: Option<Learned>,
    wildcards: Option<Learned>,
}

/// Whether a capacity stands for a quota turned off (`UNLIMITED`, less a reserve).
fn is_on(capacity: u32) -> bool {
    capacity < UNLIMITED / 2
}

impl InProgressBelief {
    /// Believing `capacity`, what the worker was told it may use.
    pub fn new(capacity: Allowance) -> Self {
        let learned = |capacity: u32| is_on(capacity).then(|| Learned::new(f64::from(capacity), 1.0));
        Self { paths: learned(capacity.paths), wildcards: learned(capacity.wildcards) }
    }

    /// What the worker lets every worker use now, `configured` for a quota not learned.
    pub fn capacity(&self, configured: Allowance) -> Allowance {
        let believed = |learned: Option<Learned>, configured: u32| learned.map_or(configured, |l| l.believed() as u32);
        Allowance {
            paths: believed(self.paths, configured.paths),
            wildcards: believed(self.wildcards, configured.wildcards),
        }
    }

    /// CloudFront refused a batch needing `need`, which would have taken what is in progress to `level`, that the
    /// books had room for: believe less of the quotas it used (a cut of `level` where that is below the belief),
    /// never less than `accepted` (what CloudFront accepted in progress lately). Answers whether the belief changed.
    pub fn refused(&mut self, need: Allowance, level: Allowance, accepted: Allowance) -> bool {
        let cut = |learned: &mut Option<Learned>, need: u32, level: u32, accepted: u32| {
            need > 0
                && learned.as_mut().is_some_and(|learned| learned.refused_at(f64::from(level), f64::from(accepted)))
        };
        let paths = cut(&mut self.paths, need.paths, level.paths, accepted.paths);
        let wildcards = cut(&mut self.wildcards, need.wildcards, level.wildcards, accepted.wildcards);
        paths || wildcards
    }

    /// CloudFront accepted a batch needing `need`: probe up the quotas it used.
    pub fn accepted(&mut self, need: Allowance) -> bool {
        let paths = need.paths > 0 && self.paths.as_mut().is_some_and(Learned::accepted);
        let wildcards = need.wildcards > 0 && self.wildcards.as_mut().is_some_and(Learned::accepted);
        paths || wildcards
    }

    /// Believing `believed` of `limit` (one of this module's names), as another worker learned it.
    pub fn adopt(&mut self, limit: &str, believed: f64) -> bool {
        let learned = match limit {
            IN_PROGRESS_PATHS => &mut self.paths,
            IN_PROGRESS_WILDCARDS => &mut self.wildcards,
            _ => return false,
        };
        let Some(learned) = learned else { return false };
        let shared = learned.starting_at(believed);
        std::mem::replace(learned, shared) != shared
    }

    /// Publishes the belief in `distribution`'s quotas on `board`; `why` names what changed it.
    pub fn show(&self, board: &LimitBoard, distribution: &str, configured: Allowance, why: &'static str) {
        let capacity = self.capacity(configured);
        for (limit, believed, learned) in [
            (IN_PROGRESS_PATHS, capacity.paths, self.paths),
            (IN_PROGRESS_WILDCARDS, capacity.wildcards, self.wildcards),
        ] {
            if let Some(learned) = learned {
                board.show(limit, distribution, f64::from(believed), learned.configured(), why);
            }
        }
    }
}

/// One limit as a worker believes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Believed {
    pub believed: f64,
    pub configured: f64,
}

/// What this worker believes of every limit it learned, for the status page; and its cuts to share with the other
/// workers, and theirs to adopt (`share_beliefs`). Bounded over a year of tenants and distributions coming and
/// going: it keeps the limits believed below their configuration (one back at it is as good as never learned) that
/// moved within `BELIEF_LASTS` (a limit in use moves at least once every `HOLD` calls, as it probes; one that has
/// not is of a distribution or tenant no longer served), and the cuts of that long (the ledger forgets older ones,
/// so none can come back to adopt).
#[derive(Debug)]
pub struct LimitBoard {
    clock: WallClock,
    state: Mutex<BoardState>,
}

#[derive(Debug, Default)]
struct BoardState {
    /// Below their configuration only, with when each last moved.
    believed: BTreeMap<(&'static str, String), (Believed, SystemTime)>,
    /// The latest cut known of each limit, this worker's or another's.
    cuts: HashMap<(String, String), SystemTime>,
    /// This worker's cuts, not shared yet.
    to_share: Vec<SharedBelief>,
}

impl Default for LimitBoard {
    fn default() -> Self {
        Self::new(WallClock::System)
    }
}

impl LimitBoard {
    pub fn new(clock: WallClock) -> Self {
        Self { clock, state: Mutex::default() }
    }

    /// Publishes a belief in `limit` of `scope` (a distribution, or `account`): the gauge, a log line saying why it
    /// moved, the board; a cut of this worker's is queued to be shared.
    pub fn show(&self, limit: &'static str, scope: &str, believed: f64, configured: f64, why: &'static str) {
        gauge!("cfi_limit_effective", "limit" => limit, "distribution" => crate::telemetry::distribution_label(scope))
            .set(believed);
        if why == REFUSED {
            warn!(
                limit,
                distribution = scope,
                believed,
                configured,
                "CloudFront refused what this limit allowed and nothing in progress explains it: believing less"
            );
        } else if believed >= configured {
            info!(limit, distribution = scope, believed, why, "the believed limit is back at its configured value");
        } else if why == SHARED {
            info!(limit, distribution = scope, believed, configured, "believing what another worker learned");
        } else {
            debug!(limit, distribution = scope, believed, configured, why, "the believed limit moved");
        }
        let mut state = self.state.lock().unwrap();
        if believed < configured {
            let moved = self.clock.now();
            state.believed.insert((limit, scope.to_owned()), (Believed { believed, configured }, moved));
        } else {
            state.believed.remove(&(limit, scope.to_owned()));
        }
        if why == REFUSED {
            let cut = self.clock.now();
            state.cuts.insert((limit.to_owned(), scope.to_owned()), cut);
            let belief = SharedBelief { limit: limit.to_owned(), scope: scope.to_owned(), believed, cut };
            state.to_share.retain(|queued| (&queued.limit, &queued.scope) != (&belief.limit, &belief.scope));
            state.to_share.push(belief);
        }
    }

    /// Every limit believed below its configuration, by name and scope.
    pub fn believed(&self) -> Vec<(&'static str, String, Believed)> {
        let state = self.state.lock().unwrap();
        state.believed.iter().map(|((limit, scope), (believed, _))| (*limit, scope.clone(), *believed)).collect()
    }

    /// This worker's cuts since the last call, to share.
    pub fn to_share(&self) -> Vec<SharedBelief> {
        std::mem::take(&mut self.state.lock().unwrap().to_share)
    }

    /// Of `shared`, the cuts later than any this worker knows of its limit, now known.
    pub fn to_adopt(&self, shared: Vec<SharedBelief>) -> Vec<SharedBelief> {
        let mut state = self.state.lock().unwrap();
        let forgotten = self.clock.now().checked_sub(BELIEF_LASTS).unwrap_or(UNIX_EPOCH);
        state.cuts.retain(|_, cut| *cut >= forgotten);
        state.believed.retain(|_, (_, moved)| *moved >= forgotten);
        shared
            .into_iter()
            // Read just before, a cut at the edge of what the ledger keeps may be one whose record was just
            // forgotten here: none is news that old.
            .filter(|belief| belief.cut >= forgotten)
            .filter(|belief| {
                let known = state.cuts.entry((belief.limit.clone(), belief.scope.clone())).or_insert(UNIX_EPOCH);
                let later = belief.cut > *known;
                *known = (*known).max(belief.cut);
                later
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_quotas_a_refused_batch_used_are_cut_and_off_quotas_are_not_learned() {
        let configured = Allowance { paths: 2_900, wildcards: 13 };
        let mut belief = InProgressBelief::new(configured);
        let ten = Allowance { paths: 10, wildcards: 0 };
        assert!(belief.refused(ten, Allowance { paths: 2_910, wildcards: 0 }, Allowance::default()));
        assert_eq!(belief.capacity(configured), Allowance { paths: 2_465, wildcards: 13 });
        assert!(belief.refused(
            ten,
            Allowance { paths: 2_500, wildcards: 0 },
            Allowance { paths: 2_200, wildcards: 0 }
        ));
        assert_eq!(belief.capacity(configured).paths, 2_200, "never below what CloudFront accepted lately");
        assert!(belief.refused(ten, Allowance { paths: 1_000, wildcards: 0 }, Allowance::default()));
        assert_eq!(belief.capacity(configured).paths, 850, "a cut of what was refused, below the belief");
        let off = Allowance::quota(0, 15) - Allowance { paths: 100, wildcards: 2 };
        let mut belief = InProgressBelief::new(off);
        let need = Allowance { paths: 10, wildcards: 1 };
        assert!(belief.refused(need, Allowance { paths: 10, wildcards: 14 }, Allowance::default()));
        assert_eq!(belief.capacity(off), Allowance { paths: off.paths, wildcards: 11 });
        assert!(belief.adopt(IN_PROGRESS_WILDCARDS, 400.0) && !belief.adopt(IN_PROGRESS_PATHS, 5.0));
        assert_eq!(belief.capacity(off).wildcards, 13, "what another worker believes, within this one's configuration");
    }

    #[test]
    fn cuts_are_shared_once_and_only_later_cuts_are_adopted() {
        let board = LimitBoard::default();
        board.show(IN_PROGRESS_PATHS, "EAAA", 2_320.0, 2_900.0, REFUSED);
        board.show(IN_PROGRESS_PATHS, "EAAA", 2_335.0, 2_900.0, ACCEPTED);
        let shared = board.to_share();
        assert_eq!(shared.len(), 1);
        assert_eq!(shared[0].believed, 2_320.0);
        assert!(board.to_share().is_empty());
        assert!(board.to_adopt(shared.clone()).is_empty(), "its own cut comes back, and is no news");
        let later = SharedBelief {
            believed: 1_000.0,
            cut: shared[0].cut + std::time::Duration::from_secs(1),
            ..shared[0].clone()
        };
        assert_eq!(board.to_adopt(vec![later.clone(), shared[0].clone()]), [later]);
        assert_eq!(board.believed()[0].2, Believed { believed: 2_335.0, configured: 2_900.0 });
    }

    #[tokio::test(start_paused = true)]
    async fn the_board_forgets_limits_back_at_their_configuration_or_still_for_a_day_and_cuts_the_ledger_forgot() {
        let board = LimitBoard::new(WallClock::following_tokio());
        for scope in ["EAAA", "EAAA/dt_gone", "EBBB"] {
            board.show(IN_PROGRESS_PATHS, scope, 2_000.0, 2_900.0, REFUSED);
        }
        board.show(IN_PROGRESS_PATHS, "EAAA/dt_gone", 2_900.0, 2_900.0, ACCEPTED);
        let scopes: Vec<String> = board.believed().into_iter().map(|(_, scope, _)| scope).collect();
        assert_eq!(scopes, ["EAAA", "EBBB"], "back at its configuration, as if never learned");
        assert_eq!(board.state.lock().unwrap().cuts.len(), 3);

        let first_cut = board.to_share().remove(0);

        tokio::time::advance(BELIEF_LASTS + std::time::Duration::from_secs(1)).await;
        board.show(IN_PROGRESS_PATHS, "EBBB", 1_500.0, 2_900.0, REFUSED);
        assert!(board.to_adopt(vec![first_cut]).is_empty(), "a cut as old as the ledger keeps is no news");
        let cuts: Vec<String> = board.state.lock().unwrap().cuts.keys().map(|(_, scope)| scope.clone()).collect();
        assert_eq!(cuts, ["EBBB"], "only the cut of the last day");
        let scopes: Vec<String> = board.believed().into_iter().map(|(_, scope, _)| scope).collect();
        assert_eq!(scopes, ["EBBB"], "a belief that has not moved in a day is of a scope no longer served");
    }
}
