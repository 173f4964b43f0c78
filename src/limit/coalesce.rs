//! Placeholder for the coalescing planner (being written on branch `plan`).

pub struct Room {
    pub paths: usize,
    pub wildcards: usize,
}

pub struct Replacement {
    pub wildcard: String,
    pub replaced: usize,
}

pub struct Plan {
    pub paths: Vec<String>,
    pub replacements: Vec<Replacement>,
}

pub fn coalesce(paths: &[String], room: Room) -> Option<Plan> {
    let wildcards = paths.iter().filter(|p| p.ends_with('*')).count();
    (paths.len() - wildcards <= room.paths && wildcards <= room.wildcards)
        .then(|| Plan { paths: paths.to_vec(), replacements: Vec::new() })
}

pub struct Cost {
    pub paths_billed: usize,
    pub dollars: f64,
}

pub fn cost(paths: &[String], _already_billed_this_month: u64) -> Cost {
    Cost { paths_billed: paths.len(), dollars: paths.len() as f64 * 0.005 }
}
