//! What the worker believes of one limit, learned from CloudFront's refusals, without I/O.
//!
//! CloudFront's quotas move (cache tags, faster completion, a per-account rate model), and nobody here can check a
//! live account, so a configured limit is only where belief starts: a refusal the worker's books cannot explain
//! cuts the belief by a fixed fraction, and each success probes back up by a small fixed step (additive increase,
//! multiplicative decrease, as TCP does for the same reason). The step is a fraction of the belief the last cut
//! started from, so the climb back to it takes about `(1 − CUT) / PROBE_STEP` successes whatever the scale (one
//! refusal in 40 calls at most, once the belief has found the real limit), and never less than the floor.

/// A refusal leaves this fraction of the belief.
pub const CUT: f64 = 0.8;
/// A success raises the belief by this fraction of the belief the last cut started from (the configuration before
/// any), at least by the floor.
pub const PROBE_STEP: f64 = 0.005;

/// One limit: configured, and believed now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Learned {
    configured: f64,
    /// Never believed lower: one path, one wildcard, one call.
    floor: f64,
    believed: f64,
    /// What each success adds, fixed at each cut.
    step: f64,
}

impl Learned {
    /// Believing what was configured. `floor` is at most `configured`.
    pub fn new(configured: f64, floor: f64) -> Self {
        let floor = floor.min(configured);
        Self { configured, floor, believed: configured, step: (configured * PROBE_STEP).max(floor) }
    }

    /// A limit the worker was not told of, found by a refusal: believing `believed` (at least `floor`), with no
    /// ceiling to probe up to.
    pub fn unconfigured(believed: f64, floor: f64) -> Self {
        let believed = believed.max(floor);
        Self { configured: f64::INFINITY, floor, believed, step: (believed * PROBE_STEP).max(floor) }
    }

    /// Believing `believed`, as another worker learned it, within the floor and the configuration.
    pub fn starting_at(self, believed: f64) -> Self {
        Self { believed: believed.clamp(self.floor, self.configured), ..self }
    }

    pub fn believed(&self) -> f64 {
        self.believed
    }

    pub fn configured(&self) -> f64 {
        self.configured
    }

    /// CloudFront refused what the belief allowed, and nothing else explains it: believe less. Answers whether
    /// the belief changed.
    pub fn refused(&mut self) -> bool {
        self.refused_to_at_least(self.floor)
    }

    /// As `refused`, but believing at least `proven` (what the service accepted lately), within the configuration.
    pub fn refused_to_at_least(&mut self, proven: f64) -> bool {
        self.step = (self.believed * PROBE_STEP).max(self.floor);
        self.set((self.believed * CUT).max(self.floor).max(proven.min(self.believed)))
    }

    /// CloudFront accepted: believe a little more, up to the configuration. Answers whether the belief changed.
    pub fn accepted(&mut self) -> bool {
        self.set((self.believed + self.step).min(self.configured))
    }

    fn set(&mut self, believed: f64) -> bool {
        let changed = believed != self.believed;
        self.believed = believed;
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_refusal_cuts_by_a_fifth_and_successes_climb_back_slowly() {
        let mut paths = Learned::new(3_000.0, 1.0);
        assert!(paths.refused());
        assert_eq!(paths.believed(), 2_400.0);
        assert!(paths.accepted());
        assert_eq!(paths.believed(), 2_415.0, "a step of 0.5 % of where the cut started");
        for _ in 0..1_000 {
            paths.accepted();
        }
        assert_eq!(paths.believed(), 3_000.0, "never above what was configured");
        assert!(!paths.accepted());
    }

    #[test]
    fn a_limit_found_by_a_refusal_starts_at_what_was_refused_and_has_no_ceiling() {
        let mut rate = Learned::unconfigured(1_000.0 * CUT, 1.0);
        assert_eq!(rate.believed(), 800.0);
        assert!(rate.refused());
        assert_eq!(rate.believed(), 640.0);
        for _ in 0..1_000 {
            rate.accepted();
        }
        assert_eq!(rate.believed(), 640.0 + 1_000.0 * 4.0, "steps of 0.5 % of 800");
    }

    #[test]
    fn never_below_the_floor_and_a_shared_belief_is_clamped() {
        let mut wildcards = Learned::new(15.0, 1.0);
        for _ in 0..100 {
            wildcards.refused();
        }
        assert_eq!(wildcards.believed(), 1.0);
        assert!(!wildcards.refused());
        assert_eq!(Learned::new(15.0, 1.0).starting_at(40.0).believed(), 15.0);
        assert_eq!(Learned::new(15.0, 1.0).starting_at(0.0).believed(), 1.0);
    }

    /// CloudFront's side: what it accepts is at most `limit` (paths in one go, or a rate).
    fn run(learned: &mut Learned, limit: f64, steps: usize) -> Vec<f64> {
        (0..steps)
            .map(|_| {
                if learned.believed() > limit {
                    learned.refused();
                } else {
                    learned.accepted();
                }
                learned.believed()
            })
            .collect()
    }

    proptest! {
        /// Whatever CloudFront does, the belief stays between the floor and the configuration.
        #[test]
        fn the_belief_stays_between_the_floor_and_the_configuration(
            configured in 1.0_f64..10_000.0,
            answers in proptest::collection::vec(any::<bool>(), 0..500),
        ) {
            let mut learned = Learned::new(configured, 1.0);
            for refused in answers {
                if refused { learned.refused(); } else { learned.accepted(); }
                prop_assert!((1.0..=configured).contains(&learned.believed()), "{}", learned.believed());
            }
        }

        /// After the service's limit changes (to anything from one path to above the configuration), the belief
        /// comes within reach of it and stays there: never more than one step above it, never below a cut of it
        /// (less a step), with at most one refusal in `(1 - CUT) / PROBE_STEP` calls or so.
        #[test]
        fn the_belief_converges_after_a_change_of_model(
            configured in 10.0_f64..5_000.0,
            before in 0.0_f64..1.5,
            after in 0.0_f64..1.5,
        ) {
            let mut learned = Learned::new(configured, 1.0);
            let (before, after) = ((configured * before).max(1.0), (configured * after).max(1.0));
            run(&mut learned, before, 2_000);
            // Climbing from one path to the configuration takes at most `configured` steps of one.
            run(&mut learned, after, configured as usize + 200);
            let beliefs = run(&mut learned, after, 2_000);
            let target = after.min(configured);
            // A cut starts at most a step above the target, so its step is at most that much larger.
            let step = (target * 1.01 * PROBE_STEP).max(1.0);
            for believed in &beliefs {
                prop_assert!(*believed <= target + step + 1e-9, "{believed} above {target}");
                prop_assert!(*believed >= (target * CUT - step).max(1.0) - 1e-9, "{believed} far below {target}");
            }
            let refusals = beliefs.windows(2).filter(|pair| pair[1] < pair[0]).count();
            let cycle = ((1.0 - CUT) * target / step).floor().max(1.0);
            prop_assert!(refusals as f64 <= beliefs.len() as f64 / cycle + 1.0, "{refusals} refusals");
        }
    }
}
