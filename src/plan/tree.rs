//! The directory tree a coalescing plan chooses its wildcards from, and how well each directory serves what is
//! needed to fit the room.

use std::cmp::Reverse;

use super::{Groupable, Load, Room};

pub(super) const ROOT: usize = 0;

/// Every directory holding a path, with its ancestors: the candidates for a wildcard.
pub(super) struct DirTree<'a> {
    /// In preorder, which is sorted order of `dir`, so a subtree is the range `i..nodes[i].end`.
    pub(super) nodes: Vec<Node<'a>>,
}

#[derive(Debug)]
pub(super) struct Node<'a> {
    /// Ends with `/`.
    pub(super) dir: &'a str,
    parent: Option<usize>,
    end: usize,
    depth: usize,
    /// Paths in this subtree.
    held: Load,
    /// Of those, the ones not replaced yet; a chosen directory counts as one wildcard.
    pub(super) left: Load,
    pub(super) chosen: bool,
}

impl<'a> Node<'a> {
    fn new(dir: &'a str, parent: Option<usize>, depth: usize) -> Self {
        let none = Load { paths: 0, wildcards: 0 };
        Self { dir, parent, end: 0, depth, held: none, left: none, chosen: false }
    }

    /// Whether its wildcard would stand in for anything: otherwise it only widens.
    fn worth_a_wildcard(&self) -> bool {
        self.held.paths > 0 || self.held.wildcards > 1
    }
}

impl<'a> DirTree<'a> {
    pub(super) fn build(groupable: &[Groupable<'a>]) -> Self {
        let mut by_dir: Vec<Groupable> = groupable.to_vec();
        by_dir.sort_unstable_by_key(|item| item.dir());
        let mut tree = Self { nodes: vec![Node::new("/", None, 0)] };
        // The previous directory's ancestors below the root, outermost first.
        let mut open: Vec<usize> = Vec::new();
        for item in by_dir {
            let node = tree.node_for(&mut open, item.dir());
            let held = &mut tree.nodes[node].held;
            if item.wildcard {
                held.wildcards += 1;
            } else {
                held.paths += 1;
            }
        }
        tree.sum_subtrees();
        tree
    }

    /// Directories arrive sorted, so the ones missing for `dir` come after every node so far: preorder holds.
    fn node_for(&mut self, open: &mut Vec<usize>, dir: &'a str) -> usize {
        while open.last().is_some_and(|&node| !dir.starts_with(self.nodes[node].dir)) {
            open.pop();
        }
        let mut leaf = open.last().copied().unwrap_or(ROOT);
        let known = self.nodes[leaf].dir.len();
        for (offset, _) in dir[known..].match_indices('/') {
            let depth = self.nodes[leaf].depth + 1;
            self.nodes.push(Node::new(&dir[..=known + offset], Some(leaf), depth));
            leaf = self.nodes.len() - 1;
            open.push(leaf);
        }
        leaf
    }

    /// Totals each subtree, with nothing replaced yet.
    fn sum_subtrees(&mut self) {
        for i in (0..self.nodes.len()).rev() {
            let node = &mut self.nodes[i];
            node.end = node.end.max(i + 1);
            node.left = node.held;
            let (end, held) = (node.end, node.held);
            if let Some(parent) = node.parent {
                let parent = &mut self.nodes[parent];
                parent.end = parent.end.max(end);
                parent.held.paths += held.paths;
                parent.held.wildcards += held.wildcards;
            }
        }
    }

    /// The directories to replace by wildcards, sorted; `None` if no choice makes `load` fit.
    pub(super) fn choose(&mut self, mut load: Load, room: Room) -> Option<Vec<&'a str>> {
        while !load.fits(room) {
            let best = self.best(Need::of(load, room))?;
            load = self.replace(best, load);
        }
        let chosen: Vec<usize> = self.uncovered().filter(|&i| self.nodes[i].chosen).collect();
        Some(self.tighten(chosen, load, room).into_iter().map(|i| self.nodes[i].dir).collect())
    }

    /// Nodes not inside a chosen directory (a chosen one included), in sorted order.
    pub(super) fn uncovered(&self) -> impl Iterator<Item = usize> + '_ {
        let mut next = ROOT;
        std::iter::from_fn(move || {
            let i = next;
            let node = self.nodes.get(i)?;
            next = if node.chosen { node.end } else { i + 1 };
            Some(i)
        })
    }

    fn best(&self, need: Need) -> Option<usize> {
        self.uncovered()
            .filter(|&i| i != ROOT)
            // The first of equals, the smallest directory, wins: the choice never depends on input order.
            .filter_map(|i| need.rank(&self.nodes[i]).map(|rank| (rank, Reverse(i))))
            .max()
            .map(|(_, Reverse(i))| i)
            .or_else(|| need.rank(&self.nodes[ROOT]).map(|_| ROOT))
    }

    pub(super) fn replace(&mut self, i: usize, load: Load) -> Load {
        let Load { paths: removed, wildcards: absorbed } = self.nodes[i].left;
        let mut ancestor = self.nodes[i].parent;
        while let Some(a) = ancestor {
            let left = &mut self.nodes[a].left;
            left.paths -= removed;
            left.wildcards = left.wildcards - absorbed + 1;
            ancestor = self.nodes[a].parent;
        }
        let node = &mut self.nodes[i];
        (node.left, node.chosen) = (Load { paths: 0, wildcards: 1 }, true);
        Load { paths: load.paths - removed, wildcards: load.wildcards - absorbed + 1 }
    }

    /// A directory chosen early may be needed only in part, or not at all, once later ones removed more than was
    /// left to remove. So each chosen directory whose paths fit back in is dropped, and then each moves down to the
    /// subdirectory that removes the most while the plan, with the rest of the directory's paths back in, still fits.
    fn tighten(&self, chosen: Vec<usize>, mut load: Load, room: Room) -> Vec<usize> {
        let mut needed = Vec::with_capacity(chosen.len());
        for dir in chosen {
            let without = self.narrowed(load, dir, None);
            if without.fits(room) {
                load = without;
            } else {
                needed.push(dir);
            }
        }
        for dir in &mut needed {
            while let Some((sub, narrowed)) = self
                .subdirectories(*dir)
                .filter(|&sub| self.nodes[sub].worth_a_wildcard())
                .map(|sub| (sub, self.narrowed(load, *dir, Some(sub))))
                .filter(|(_, narrowed)| narrowed.fits(room))
                .max_by_key(|&(sub, _)| (self.nodes[sub].held.paths, Reverse(sub)))
            {
                (*dir, load) = (sub, narrowed);
            }
        }
        needed
    }

    fn subdirectories(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        let end = self.nodes[i].end;
        let mut next = i + 1;
        std::iter::from_fn(move || {
            let sub = next;
            next = self.nodes.get(sub).filter(|_| sub < end)?.end;
            Some(sub)
        })
    }

    /// `load` with the wildcard of `sub`, or none, instead of that of `dir`, which holds `sub`.
    fn narrowed(&self, load: Load, dir: usize, sub: Option<usize>) -> Load {
        let outer = self.nodes[dir].held;
        let inner = sub.map_or(Load { paths: 0, wildcards: 1 }, |sub| self.nodes[sub].held);
        Load {
            paths: load.paths + outer.paths - inner.paths,
            wildcards: load.wildcards + outer.wildcards - inner.wildcards,
        }
    }
}

/// How far a load is from fitting its room.
#[derive(Debug, Clone, Copy)]
struct Need {
    paths: usize,
    wildcards: usize,
    spare_wildcards: usize,
}

/// Compared lexicographically, greater is better.
type Rank = (usize, usize, usize);

impl Need {
    fn of(load: Load, room: Room) -> Self {
        Self {
            paths: load.paths.saturating_sub(room.paths),
            wildcards: load.wildcards.saturating_sub(room.wildcards),
            spare_wildcards: room.wildcards.saturating_sub(load.wildcards),
        }
    }

    /// How well replacing everything under `node` by its directory wildcard serves this need; `None` if it does not
    /// help or the wildcard does not fit. Amounts count only up to what is needed, so that a directory just big
    /// enough ties with a bigger one and the deeper one wins.
    fn rank(self, node: &Node) -> Option<Rank> {
        let removed = node.left.paths.min(self.paths);
        let freed = node.left.wildcards.saturating_sub(1);
        if self.wildcards > 0 {
            return (freed > 0).then_some((freed.min(self.wildcards), removed, node.depth));
        }
        let fits = node.left.wildcards > 0 || self.spare_wildcards > 0;
        // Merging wildcards without removing paths only helps by making room for a new wildcard.
        let helps = removed > 0 || (freed > 0 && self.spare_wildcards == 0);
        (fits && helps).then_some((removed, node.depth, node.left.wildcards))
    }
}
