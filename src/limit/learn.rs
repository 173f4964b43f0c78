//! What the worker believes of one limit, learned from CloudFront's refusals, without I/O.
//!
//! CloudFront's quotas move (cache tags, faster completion, a per-account rate model), and nobody here can check a
//! live account, so a configured limit is only where belief starts: a refusal the worker's books cannot explain
//! cuts the belief by a fixed fraction, and each success probes back up by a fixed step (additive increase,
//! multiplicative decrease, as TCP does for the same reason). The step is a fraction of the belief the last cut
//! started from, so the climb back takes about `(1 − CUT) / PROBE_STEP` successes whatever the scale, and never
//! less than the floor. A refusal also marks where the limit was found: the climb stops a step below that mark (at
//! what the service accepted lately, when that is known and lower) for `HOLD` successes before it probes past it, so a belief that found the real limit is refused about once in
//! `HOLD` calls, not once a climb, and one that lost it (the limit rose) probes on after them.

/// A refusal leaves this fraction of the belief (or of what was refused, when that was less): gentle, as a limit
/// that is found stays found, and the average of a cycle is what throughput gets.
pub const CUT: f64 = 0.85;
/// A success raises the belief by this fraction of the belief the last cut started from (the configuration before
/// any), at least by the floor.
pub const PROBE_STEP: f64 = 0.01;
/// Successes the belief stays a step below where it was last refused before it probes past it.
pub const HOLD: u32 = 40;
/// Where the climb holds after a refusal when nothing accepted is known: this fraction of what was refused. A rate
/// is refused a little above its real value (calls that come late find a fuller bucket), so a hold a mere step
/// below the refusal still met the limit whenever calls bunched: a refusal every climb, not every `HOLD` calls.
pub const HOLD_BELOW: f64 = 0.96;
/// A limit found by a refusal is cut by this much until CloudFront first accepts what it allows: all it knows is
/// that one batch was too much, so it searches down fast.
pub const SEARCH_CUT: f64 = 0.5;

/// One limit: configured, and believed now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Learned {
    configured: f64,
    /// Never believed lower: one path, one wildcard, one call.
    floor: f64,
    believed: f64,
    /// What each success adds, fixed at each cut.
    step: f64,
    /// Where the last refusal found the limit, and the successes left before the belief probes past it.
    refused_at: f64,
    hold: u32,
    /// Found by a refusal and never accepted since.
    searching: bool,
}

impl Learned {
    /// Believing what was configured. `floor` is at most `configured`.
    pub fn new(configured: f64, floor: f64) -> Self {
        let floor = floor.min(configured);
        let step = (configured * PROBE_STEP).max(floor);
        Self { configured, floor, believed: configured, step, refused_at: f64::INFINITY, hold: 0, searching: false }
    }

    /// A limit the worker was not told of, found by a refusal: believing `believed` (at least `floor`), with no
    /// ceiling to probe up to, cut by `SEARCH_CUT` until a success.
    pub fn unconfigured(believed: f64, floor: f64) -> Self {
        let believed = believed.max(floor);
        Self { configured: f64::INFINITY, believed, searching: true, ..Self::new(believed, floor) }
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
        self.refused_at(f64::INFINITY, self.floor)
    }

    /// As `refused`, when CloudFront refused at `level` (what would have been in use with the call, which may be
    /// less than the belief): the limit is below it. Believes a cut of the lower of the two, but at least `proven`
    /// (what the service accepted lately), within the configuration.
    pub fn refused_at(&mut self, level: f64, proven: f64) -> bool {
        let refused = self.believed.min(level.max(self.floor));
        self.step = (refused * PROBE_STEP).max(self.floor);
        // Held at what was accepted lately when that is known: the limit lies between it and what was refused.
        let proven_below = proven > self.floor && proven < refused;
        (self.refused_at, self.hold) = (if proven_below { proven + self.step } else { refused * HOLD_BELOW }, HOLD);
        let cut = if self.searching { SEARCH_CUT } else { CUT };
        // At least a step down: near the floor a cut of a fraction would creep down over several refusals.
        let cut = (refused * cut).min(refused - self.step);
        self.set(cut.max(self.floor).max(proven.min(self.believed)))
    }

    /// CloudFront accepted: believe a step more, up to the configuration, and up to a step below where it was
    /// last refused until `HOLD` successes have passed there. Answers whether the belief changed.
    pub fn accepted(&mut self) -> bool {
        self.searching = false;
        let mut next = self.believed + self.step;
        let below_refusal = self.refused_at - self.step;
        if self.hold > 0 && next > below_refusal {
            self.hold -= 1;
            next = self.believed.max(below_refusal);
        }
        self.set(next.min(self.configured))
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
    fn a_refusal_cuts_gently_then_the_belief_climbs_to_below_it_holds_and_probes_on() {
        let mut paths = Learned::new(3_000.0, 1.0);
        assert!(paths.refused());
        assert_eq!(paths.believed(), 2_550.0);
        assert!(paths.accepted());
        assert_eq!(paths.believed(), 2_580.0, "a step of 1 % of where the cut started");
        let near = |believed: f64, expected: f64| (believed - expected).abs() < 1e-6;
        for _ in 0..9 {
            paths.accepted();
        }
        assert!(near(paths.believed(), 2_850.0), "a step below 96 % of the refusal: {}", paths.believed());
        for _ in 0..HOLD {
            paths.accepted();
        }
        assert!(near(paths.believed(), 2_850.0), "held there for HOLD successes: {}", paths.believed());
        for _ in 0..5 {
            assert!(paths.accepted());
        }
        assert_eq!(paths.believed(), 3_000.0, "then probing on, never above what was configured");
        assert!(!paths.accepted());
    }

    #[test]
    fn a_refusal_below_the_belief_cuts_from_what_was_refused_but_not_below_what_was_accepted() {
        let mut paths = Learned::new(2_900.0, 1.0);
        assert!(paths.refused_at(2_000.0, 1_000.0));
        assert_eq!(paths.believed(), 1_700.0, "a cut of the 2,000 refused, not of the 2,900 believed");
        assert!(paths.refused_at(1_100.0, 1_000.0));
        assert_eq!(paths.believed(), 1_000.0, "never below what CloudFront accepted lately");
        assert!(!paths.accepted(), "and held there, where the limit was found, rather than a step below 1,100");
        assert!(!paths.refused_at(5_000.0, 0.0) || paths.believed() == 850.0);
    }

    #[test]
    fn a_limit_found_by_a_refusal_is_searched_down_fast_then_learned_gently_with_no_ceiling() {
        let mut rate = Learned::unconfigured(1_000.0, 1.0);
        assert!(rate.refused() && rate.refused());
        assert_eq!(rate.believed(), 250.0, "halved until a success");
        assert!(rate.accepted());
        assert!(rate.refused());
        assert_eq!(rate.believed(), 255.0 * CUT, "then cut gently");
        let rate_before = rate.believed();
        for _ in 0..1_000 {
            rate.accepted();
        }
        assert!(rate.believed() > rate_before + 900.0 * 2.5, "steps of 1 % of 255, past the refusal");
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
            answers in proptest::collection::vec((any::<bool>(), 0.0_f64..20_000.0, 0.0_f64..20_000.0), 0..500),
        ) {
            let mut learned = Learned::new(configured, 1.0);
            for (refused, level, proven) in answers {
                if refused { learned.refused_at(level, proven); } else { learned.accepted(); }
                prop_assert!((1.0..=configured).contains(&learned.believed()), "{}", learned.believed());
            }
        }

        /// After the service's limit changes (to anything from one path to above the configuration), the belief
        /// comes within reach of it and stays there: never more than one step above it, never below a cut of it
        /// (less a step), with at most one refusal per climb back and `HOLD` successes.
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
            let cycle = ((1.0 - CUT) * target / step).floor() - 1.0 + f64::from(HOLD);
            prop_assert!(refusals as f64 <= beliefs.len() as f64 / cycle + 1.0, "{refusals} refusals");
        }
    }
}
