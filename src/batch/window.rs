//! Per-distribution time windows: the pure heart of the batching stage.
//!
//! A window opens with the first pending path of a distribution and is sealed when it has been open for the
//! configured time, or earlier when it holds as many paths (or wildcard paths) as one invalidation may carry.
//! A message whose paths do not fit in one batch spans several; it may be deleted only once every part is
//! accepted, so each member records how many batches it is part of.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use super::merge::PathSet;
use crate::model::message::{BatchMember, Delivery};
use crate::model::request::InvalidationRequest;
use crate::model::{DistributionId, Target, TenantId};

/// Most wildcard paths CloudFront lets one distribution have in progress; a batch with more is always refused.
pub const MAX_WILDCARDS_PER_BATCH: usize = 15;

/// Most paths CloudFront lets one distribution have in progress; no batch can be larger.
pub const MAX_PATHS_PER_BATCH: usize = 3_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub window: Duration,
    pub max_paths: usize,
    pub max_wildcards: usize,
}

impl BatchLimits {
    /// Moves the first of `from`'s messages into `into`, as many as keep it within these limits, and says how
    /// many moved. Both batches' paths are merged again from their messages.
    pub fn fill(&self, into: &mut SealedBatch, from: &mut SealedBatch) -> usize {
        let target = into.target();
        let with = |taken: usize| {
            let members = into.members.iter().chain(&from.members[..taken]).cloned().collect();
            SealedBatch::from_members(target.clone(), members, into.reason)
        };
        let fits =
            |batch: &SealedBatch| batch.paths.len() <= self.max_paths && batch.wildcard_count <= self.max_wildcards;
        // Paths grow with the messages taken (unless a wildcard covers earlier ones), so bisection finds a run that
        // fits, keeping `fitting` within the limits and `too_many` beyond them.
        let all = from.members.len();
        let (mut fitting, mut too_many) = (0, all);
        if fits(&with(all)) {
            fitting = all;
        }
        while too_many > fitting + 1 {
            let middle = (fitting + too_many) / 2;
            if fits(&with(middle)) { fitting = middle } else { too_many = middle }
        }
        if fitting > 0 {
            *into = with(fitting);
            let left = from.members.split_off(fitting);
            *from = SealedBatch::from_members(from.target(), left, from.reason);
        }
        fitting
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealReason {
    WindowElapsed,
    Full,
    Shutdown,
    /// Half of a batch CloudFront refused with `InvalidArgument`, to isolate the offending message.
    Split,
    /// A pending batch of a worker that stopped, taken over with its CallerReference.
    Resumed,
    /// The first messages of a batch too large for the room left in the distribution's in-progress budget.
    FitBudget,
    /// A message asked for `"priority": "urgent"`.
    Urgent,
}

impl SealReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WindowElapsed => "window_elapsed",
            Self::Full => "full",
            Self::Shutdown => "shutdown",
            Self::Split => "split",
            Self::Resumed => "resumed",
            Self::FitBudget => "fit_budget",
            Self::Urgent => "urgent",
        }
    }
}

/// A closed batch, ready for one CreateInvalidation call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedBatch {
    pub distribution_id: DistributionId,
    /// The tenant it invalidates instead of the whole distribution.
    pub tenant_id: Option<TenantId>,
    /// Minimal, sorted and encoded paths.
    pub paths: Vec<String>,
    pub wildcard_count: usize,
    pub members: Vec<BatchMember>,
    /// Paths as requested by the members, before deduplication.
    pub requested_paths: usize,
    pub reason: SealReason,
}

impl SealedBatch {
    pub fn target(&self) -> Target {
        Target::new(self.distribution_id.clone(), self.tenant_id.clone())
    }

    /// A batch holding exactly `members`, its paths merged again from theirs.
    pub fn from_members(target: Target, members: Vec<BatchMember>, reason: SealReason) -> Self {
        let mut paths = PathSet::default();
        let mut requested_paths = 0;
        for path in members.iter().flat_map(|m| &m.paths) {
            paths.add(path);
            requested_paths += 1;
        }
        OpenBatch { paths, members, requested_paths, deadline: Instant::now() }.seal(target, reason)
    }
}

#[derive(Debug)]
struct OpenBatch {
    paths: PathSet,
    members: Vec<BatchMember>,
    requested_paths: usize,
    deadline: Instant,
}

impl OpenBatch {
    fn seal(self, target: Target, reason: SealReason) -> SealedBatch {
        SealedBatch {
            distribution_id: target.distribution,
            tenant_id: target.tenant,
            wildcard_count: self.paths.wildcard_count(),
            paths: self.paths.into_paths(),
            members: self.members,
            requested_paths: self.requested_paths,
            reason,
        }
    }
}

#[derive(Debug)]
pub struct Batcher {
    limits: BatchLimits,
    open: HashMap<Target, OpenBatch>,
    deadlines: BTreeSet<(Instant, Target)>,
}

impl Batcher {
    pub fn new(limits: BatchLimits) -> Self {
        debug_assert!((1..=MAX_PATHS_PER_BATCH).contains(&limits.max_paths));
        debug_assert!((1..=MAX_WILDCARDS_PER_BATCH).contains(&limits.max_wildcards));
        Self { limits, open: HashMap::new(), deadlines: BTreeSet::new() }
    }

    /// Adds a message's paths to its distributions' windows (one request per distribution) and returns the
    /// batches that filled up, with the number of batches the message is now part of: the ones here plus
    /// `other_parts` (batches of a stopped worker it is resumed in), so it is deleted only when all are accepted.
    pub fn add(
        &mut self,
        now: Instant,
        delivery: Delivery,
        requests: Vec<InvalidationRequest>,
        other_parts: u32,
    ) -> (Vec<SealedBatch>, u32) {
        let mut sealed = Vec::new();
        let mut open_with_member = Vec::new();
        for request in requests {
            let target = request.target();
            if self.add_request(now, &delivery, request, &mut sealed) {
                open_with_member.push(target);
            }
        }
        let parts = (sealed.len() + open_with_member.len()) as u32 + other_parts;
        let set_parts = |members: &mut Vec<BatchMember>| {
            if let Some(member) = members.iter_mut().rev().find(|m| m.delivery == delivery) {
                member.parts = parts;
            }
        };
        sealed.iter_mut().for_each(|batch| set_parts(&mut batch.members));
        for target in &open_with_member {
            if let Some(batch) = self.open.get_mut(target) {
                set_parts(&mut batch.members);
            }
        }
        (sealed, parts)
    }

    /// Adds one distribution's paths; says whether the message is left in that distribution's open batch.
    /// The open batch is looked up once per batch the message joins, not once per path.
    fn add_request(
        &mut self,
        now: Instant,
        delivery: &Delivery,
        request: InvalidationRequest,
        sealed: &mut Vec<SealedBatch>,
    ) -> bool {
        let target = request.target();
        let mut requester = request.requester;
        let (urgent, max_delay) = (request.max_delay == Some(Duration::ZERO), request.max_delay);
        let (idempotency_key, awaited, sent_at) = (request.idempotency_key, request.awaited, request.sent_at);
        let BatchLimits { max_paths, max_wildcards, .. } = self.limits;
        let mut paths = request.paths.into_iter().peekable();
        let mut member_in_open_batch = false;
        while paths.peek().is_some() {
            let OpenBatch { paths: merged, members, requested_paths, .. } = self.open_batch(&target, now);
            let member_paths = Vec::with_capacity(paths.len());
            let member = BatchMember {
                delivery: delivery.clone(),
                requester,
                paths: member_paths,
                parts: 0,
                halvings: 0,
                urgent,
                idempotency_key: idempotency_key.clone(),
                awaited,
                sent_at,
            };
            members.push(member);
            let member = members.last_mut().expect("just pushed");
            let mut full = false;
            for path in paths.by_ref() {
                *requested_paths += 1;
                merged.add(&path);
                member.paths.push(path);
                if merged.len() >= max_paths || merged.wildcard_count() >= max_wildcards {
                    full = true;
                    break;
                }
            }
            if full {
                // What the full batch already covers stays with this part: carried into the next batch, the same
                // path would be paid for twice.
                let (covered, rest): (Vec<_>, Vec<_>) = paths.by_ref().partition(|path| merged.covers(path));
                *requested_paths += covered.len();
                member.paths.extend(covered);
                paths = rest.into_iter().peekable();
            }
            // Held until the batch is accepted: no spare room when the message was split.
            member.paths.shrink_to_fit();
            // Only a message larger than what is left of the batch needs its requester again, in the next one.
            requester = if full && paths.peek().is_some() { member.requester.clone() } else { None };
            member_in_open_batch = !full;
            if full {
                sealed.push(self.seal(&target, SealReason::Full));
            }
        }
        if member_in_open_batch && let Some(max_delay) = max_delay {
            if max_delay.is_zero() {
                // The urgent paths and whatever was pending for the distribution go now.
                sealed.push(self.seal(&target, SealReason::Urgent));
                return false;
            }
            self.close_by(&target, now + max_delay);
        }
        member_in_open_batch
    }

    /// Brings the distribution's window deadline forward to `deadline` if it is later.
    fn close_by(&mut self, target: &Target, deadline: Instant) {
        let batch = self.open.get_mut(target).expect("the message is in the open batch");
        if deadline < batch.deadline {
            self.deadlines.remove(&(batch.deadline, target.clone()));
            self.deadlines.insert((deadline, target.clone()));
            batch.deadline = deadline;
        }
    }

    /// Seals every window whose time is up.
    pub fn seal_due(&mut self, now: Instant) -> Vec<SealedBatch> {
        let mut sealed = Vec::new();
        while let Some((deadline, target)) = self.deadlines.first().cloned() {
            if deadline > now {
                break;
            }
            sealed.push(self.seal(&target, SealReason::WindowElapsed));
        }
        sealed
    }

    /// Seals every open window, for shutdown.
    pub fn seal_all(&mut self) -> Vec<SealedBatch> {
        let mut open: Vec<Target> = self.open.keys().cloned().collect();
        open.sort_unstable();
        open.iter().map(|target| self.seal(target, SealReason::Shutdown)).collect()
    }

    /// When the next window closes.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(deadline, _)| *deadline)
    }

    /// Windows open now: each becomes a batch when it closes.
    pub fn open_windows(&self) -> usize {
        self.open.len()
    }

    /// Paths held in open windows, after deduplication.
    pub fn pending_paths(&self) -> usize {
        self.open.values().map(|batch| batch.paths.len()).sum()
    }

    /// The distribution's open batch, opened if it has none; the id is copied only then.
    fn open_batch(&mut self, target: &Target, now: Instant) -> &mut OpenBatch {
        if !self.open.contains_key(target) {
            let deadline = now + self.limits.window;
            self.deadlines.insert((deadline, target.clone()));
            let batch = OpenBatch { paths: PathSet::default(), members: Vec::new(), requested_paths: 0, deadline };
            self.open.insert(target.clone(), batch);
        }
        self.open.get_mut(target).expect("opened above")
    }

    fn seal(&mut self, target: &Target, reason: SealReason) -> SealedBatch {
        let batch = self.open.remove(target).expect("sealing a window that is open");
        self.deadlines.remove(&(batch.deadline, target.clone()));
        batch.seal(target.clone(), reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MessageId;
    use crate::model::path::{InvalidationPath, is_covered_by};
    use proptest::prelude::*;
    use std::collections::HashSet;

    const WINDOW: Duration = Duration::from_secs(5);

    fn limits(max_paths: usize) -> BatchLimits {
        BatchLimits { window: WINDOW, max_paths, max_wildcards: MAX_WILDCARDS_PER_BATCH }
    }

    fn request(distribution: &str, paths: &[&str]) -> InvalidationRequest {
        InvalidationRequest {
            distribution_id: DistributionId::parse(distribution).unwrap(),
            tenant_id: None,
            paths: paths.iter().map(|p| InvalidationPath::parse(p).unwrap()).collect(),
            idempotency_key: None,
            requester: Some("tests".into()),
            max_delay: None,
            awaited: false,
            sent_at: None,
        }
    }

    fn id(n: u32) -> Delivery {
        Delivery { message_id: MessageId(format!("m{n}")), number: 1 }
    }

    fn member_ids(batch: &SealedBatch) -> Vec<&str> {
        batch.members.iter().map(|m| m.delivery.message_id.0.as_str()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn window_opens_with_the_first_path_and_closes_after_its_duration() {
        let mut batcher = Batcher::new(limits(1_000));
        let start = Instant::now();
        assert!(batcher.add(start, id(1), vec![request("E1", &["/a", "/b"])], 0).0.is_empty());
        assert!(batcher.add(start + Duration::from_secs(4), id(2), vec![request("E1", &["/b", "/c"])], 0).0.is_empty());
        assert_eq!(batcher.next_deadline(), Some(start + WINDOW));
        assert!(batcher.seal_due(start + Duration::from_millis(4_999)).is_empty());

        let sealed = batcher.seal_due(start + WINDOW);
        assert_eq!(sealed.len(), 1);
        assert_eq!(sealed[0].paths, ["/a", "/b", "/c"]);
        assert_eq!(sealed[0].requested_paths, 4);
        assert_eq!(member_ids(&sealed[0]), ["m1", "m2"]);
        assert_eq!(sealed[0].reason, SealReason::WindowElapsed);
        assert_eq!(batcher.next_deadline(), None);

        // The next path opens a new window.
        batcher.add(start + Duration::from_secs(6), id(3), vec![request("E1", &["/a"])], 0);
        assert_eq!(batcher.next_deadline(), Some(start + Duration::from_secs(11)));
    }

    #[tokio::test(start_paused = true)]
    async fn an_urgent_message_seals_its_distribution_s_window_with_what_was_pending() {
        let mut batcher = Batcher::new(limits(1_000));
        let start = Instant::now();
        batcher.add(start, id(1), vec![request("E1", &["/pending"])], 0);
        batcher.add(start, id(2), vec![request("E2", &["/other"])], 0);
        let urgent = InvalidationRequest { max_delay: Some(Duration::ZERO), ..request("E1", &["/now", "/pending"]) };
        let (sealed, parts) = batcher.add(start + Duration::from_secs(1), id(3), vec![urgent], 0);
        assert_eq!(sealed.len(), 1);
        assert_eq!((sealed[0].reason, parts), (SealReason::Urgent, 1));
        assert_eq!(sealed[0].paths, ["/now", "/pending"], "deduplicated with the pending paths");
        assert_eq!(member_ids(&sealed[0]), ["m1", "m3"]);
        assert!(sealed[0].members[1].urgent && !sealed[0].members[0].urgent);
        assert_eq!(batcher.next_deadline(), Some(start + WINDOW), "E2 keeps its window");
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_s_max_delay_brings_its_window_forward_never_back() {
        let mut batcher = Batcher::new(limits(1_000));
        let start = Instant::now();
        let within =
            |seconds| InvalidationRequest { max_delay: Some(Duration::from_secs(seconds)), ..request("E1", &["/a"]) };
        batcher.add(start, id(1), vec![within(2)], 0);
        assert_eq!(batcher.next_deadline(), Some(start + Duration::from_secs(2)));
        batcher.add(start + Duration::from_secs(1), id(2), vec![within(60)], 0);
        assert_eq!(batcher.next_deadline(), Some(start + Duration::from_secs(2)), "a later cap does not extend it");
        let sealed = batcher.seal_due(start + Duration::from_secs(2));
        assert_eq!(member_ids(&sealed[0]), ["m1", "m2"]);
    }

    #[tokio::test(start_paused = true)]
    async fn distributions_have_separate_windows() {
        let mut batcher = Batcher::new(limits(1_000));
        let start = Instant::now();
        batcher.add(start, id(1), vec![request("E1", &["/a"])], 0);
        batcher.add(start + Duration::from_secs(2), id(2), vec![request("E2", &["/a"])], 0);
        let first = batcher.seal_due(start + WINDOW);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].distribution_id.as_str(), "E1");
        let second = batcher.seal_due(start + Duration::from_secs(7));
        assert_eq!(second[0].distribution_id.as_str(), "E2");
    }

    #[tokio::test(start_paused = true)]
    async fn each_tenant_and_the_whole_distribution_have_their_own_batch() {
        let mut batcher = Batcher::new(limits(1_000));
        let start = Instant::now();
        let for_tenant = |tenant: &str, paths| InvalidationRequest {
            tenant_id: TenantId::parse(tenant).ok(),
            ..request("E1", paths)
        };
        batcher.add(start, id(1), vec![for_tenant("dt_a", &["/a"]), for_tenant("dt_b", &["/a"])], 0);
        batcher.add(start, id(2), vec![request("E1", &["/a"]), for_tenant("dt_a", &["/b"])], 0);
        let mut sealed = batcher.seal_due(start + WINDOW);
        sealed.sort_by_key(SealedBatch::target);
        let seen: Vec<(String, Vec<&str>, Vec<&str>)> = sealed
            .iter()
            .map(|b| (b.target().to_string(), b.paths.iter().map(String::as_str).collect(), member_ids(b)))
            .collect();
        assert_eq!(
            seen,
            [
                ("E1".into(), vec!["/a"], vec!["m2"]),
                ("E1/dt_a".into(), vec!["/a", "/b"], vec!["m1", "m2"]),
                ("E1/dt_b".into(), vec!["/a"], vec!["m1"]),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn full_batch_is_sealed_early_and_a_split_message_knows_its_parts() {
        let mut batcher = Batcher::new(limits(3));
        let now = Instant::now();
        assert!(batcher.add(now, id(1), vec![request("E1", &["/a"])], 0).0.is_empty());
        let sealed = batcher.add(now, id(2), vec![request("E1", &["/b", "/c", "/d", "/e", "/f", "/g"])], 0).0;
        assert_eq!(sealed.len(), 2);
        assert_eq!(sealed[0].paths, ["/a", "/b", "/c"]);
        assert_eq!(sealed[1].paths, ["/d", "/e", "/f"]);
        assert_eq!(sealed[0].reason, SealReason::Full);
        assert_eq!(sealed[0].members[0].parts, 1);
        assert_eq!(sealed[0].members[1].parts, 3);
        assert_eq!(sealed[1].members[0].parts, 3);
        let rest = batcher.seal_all();
        assert_eq!(rest[0].paths, ["/g"]);
        assert_eq!(rest[0].members[0].parts, 3);
        assert_eq!(rest[0].reason, SealReason::Shutdown);
    }

    #[tokio::test(start_paused = true)]
    async fn a_split_message_leaves_in_the_full_batch_what_that_batch_already_covers() {
        let mut batcher = Batcher::new(limits(3));
        let now = Instant::now();
        assert!(batcher.add(now, id(1), vec![request("E1", &["/a", "/img/*"])], 0).0.is_empty());
        // "/b" fills the batch; "/a" and "/img/x" are in it already, so only "/c" needs the next one.
        let sealed = batcher.add(now, id(2), vec![request("E1", &["/b", "/a", "/c", "/img/x"])], 0).0;
        assert_eq!(sealed.len(), 1);
        assert_eq!(sealed[0].paths, ["/a", "/b", "/img/*"]);
        let member: Vec<&str> = sealed[0].members[1].paths.iter().map(InvalidationPath::as_str).collect();
        assert_eq!(member, ["/b", "/a", "/img/x"]);
        let rest = batcher.seal_all();
        assert_eq!(rest[0].paths, ["/c"]);
        assert_eq!(rest[0].members[0].parts, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn wildcards_are_capped_per_batch() {
        let mut batcher = Batcher::new(limits(1_000));
        let paths: Vec<String> = (0..16).map(|i| format!("/d{i}/*")).collect();
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        let sealed = batcher.add(Instant::now(), id(1), vec![request("E1", &refs)], 0).0;
        assert_eq!(sealed.len(), 1);
        assert_eq!(sealed[0].wildcard_count, MAX_WILDCARDS_PER_BATCH);
        assert_eq!(batcher.pending_paths(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn message_fully_covered_by_a_wildcard_still_joins_the_batch() {
        let mut batcher = Batcher::new(limits(1_000));
        let now = Instant::now();
        batcher.add(now, id(1), vec![request("E1", &["/img/*"])], 0);
        batcher.add(now, id(2), vec![request("E1", &["/img/a.png", "/img/b.png"])], 0);
        let sealed = batcher.seal_all();
        assert_eq!(sealed[0].paths, ["/img/*"]);
        assert_eq!(member_ids(&sealed[0]), ["m1", "m2"]);
        assert_eq!(sealed[0].members[1].parts, 1);
    }

    fn workload() -> impl Strategy<Value = Vec<(u8, u64, Vec<String>)>> {
        let path = ("(/[abc]{1,2}){1,3}", prop::bool::weighted(0.1))
            .prop_map(|(base, wildcard)| if wildcard { format!("{base}*") } else { base });
        prop::collection::vec((0u8..3, 0u64..4_000, prop::collection::vec(path, 1..8)), 1..60)
    }

    proptest! {
        /// Whatever the timing, every requested path is covered by a batch holding the message, every message is
        /// in exactly `parts` batches, a later part never sends again what an earlier one sends, and no batch breaks
        /// the limits.
        #[test]
        fn batching_loses_nothing_and_respects_limits(messages in workload(), max_paths in 1usize..12) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
            let start = rt.block_on(async { Instant::now() });
            let mut batcher = Batcher::new(limits(max_paths));
            let mut sealed = Vec::new();
            let mut elapsed = 0;
            let mut requests = Vec::new();
            for (n, (distribution, gap_ms, paths)) in messages.into_iter().enumerate() {
                elapsed += gap_ms;
                let now = start + Duration::from_millis(elapsed);
                sealed.extend(batcher.seal_due(now));
                let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
                let req = request(&format!("E{distribution}"), &refs);
                requests.push((id(n as u32), req.clone()));
                sealed.extend(batcher.add(now, id(n as u32), vec![req], 0).0);
            }
            sealed.extend(batcher.seal_all());
            prop_assert_eq!(batcher.pending_paths(), 0);

            for batch in &sealed {
                prop_assert!(!batch.paths.is_empty() && batch.paths.len() <= max_paths);
                prop_assert!(batch.wildcard_count <= MAX_WILDCARDS_PER_BATCH);
                let unique: HashSet<_> = batch.paths.iter().collect();
                prop_assert_eq!(unique.len(), batch.paths.len());
            }
            for (message_id, req) in &requests {
                let carrying: Vec<&SealedBatch> = sealed
                    .iter()
                    .filter(|b| b.members.iter().any(|m| &m.delivery == message_id))
                    .collect();
                let parts = carrying[0].members.iter().find(|m| &m.delivery == message_id).unwrap().parts;
                prop_assert_eq!(carrying.len() as u32, parts);
                let submitted: Vec<String> = carrying.iter().flat_map(|b| b.paths.clone()).collect();
                // A part never carries a path that one of the message's earlier (sealed) batches sends already.
                for (n, later) in carrying.iter().enumerate() {
                    let part = later.members.iter().find(|m| &m.delivery == message_id).unwrap();
                    for path in &part.paths {
                        let earlier = carrying[..n].iter().find(|b| b.paths.iter().any(|p| p == path.as_str()));
                        prop_assert!(earlier.is_none(), "{} of {} sent again in a later part", path, message_id);
                    }
                }
                for path in &req.paths {
                    prop_assert!(carrying.iter().all(|b| b.distribution_id == req.distribution_id));
                    prop_assert!(is_covered_by(path.as_str(), &submitted), "{} of {} lost", path, message_id);

                }
            }
        }
    }
}
