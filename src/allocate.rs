//! Bit allocation: choose a quantization width for every singular triplet of one
//! weight delta so that the reconstruction error is minimal within a bit budget.
//!
//! # Place in the pipeline
//!
//! The caller first computes the SVD `ΔW = U Σ Vᵀ` and then a [`CostTable`]. The
//! table stores, for every kept triplet `i` and candidate width `b`, the error
//! `c[i, b]` of storing `(u_i, σ_i, v_i)` at `b` bits, with `c[i, 0] = σ_i²` for a
//! dropped triplet. It also stores the cost `cost(b)` in bits, codes and overhead
//! included. [`allocate`] picks the widths, and the quantization of `V` and `U`
//! then follows that choice.
//!
//! # Formulation
//!
//! This is a multiple-choice knapsack, written as a 0/1 integer linear program with
//! variables `x[i, b] ∈ {0, 1}`:
//!
//! ```text
//! minimise    Σ_i Σ_b c[i, b] · x[i, b]
//! subject to  Σ_b x[i, b] = 1                  for every triplet i
//!             Σ_i Σ_b cost(b) · x[i, b] ≤ budget
//!             (optional) at most f_max distinct non-zero widths are used
//! ```
//!
//! Width 0 costs nothing, so dropping every triplet is always feasible.
//!
//! # Solution method
//!
//! 1. **Dominated choices are dropped.** A choice `(cost, error)` of one triplet is
//!    dominated when another choice of the same triplet costs no more and has no
//!    larger error. Swapping it for the dominating choice never raises the error and
//!    never breaks the budget, so some optimum avoids it. Choices that cost more than
//!    the whole budget are dropped too. Each triplet keeps a list sorted by ascending
//!    cost and strictly descending error.
//! 2. **LP relaxation.** The LP relaxation of a multiple-choice knapsack only ever
//!    uses the points of each list that lie on its lower convex hull in the
//!    (cost, error) plane, because a point above the hull is beaten by a mix of two
//!    hull points of equal cost. The hull is written as a chain of increments with
//!    decreasing error saved per bit (the rate). Each increment becomes one LP
//!    variable in `[0, 1]`, so the LP has a single budget row. `minilp` solves it
//!    over a window of increments around the point where the budget runs out, and a
//!    KKT check proves the window solution optimal for the whole LP. The rate of the
//!    fractional increment is the dual price `λ` of one bit.
//! 3. **Incumbent.** The LP solution is rounded down and the leftover bits are filled
//!    greedily with the next increments that still fit.
//! 4. **Reduced-cost fixing.** For any `λ ≥ 0` and any feasible integer solution `x`,
//!    `error(x) = L(λ) + Σ_i r_i(x_i) + λ · (budget − bits(x))`, where
//!    `L(λ) = Σ_i min_b (c[i, b] + λ · cost(b)) − λ · budget` is the Lagrangian
//!    bound and `r_i(b) ≥ 0` is the reduced cost of choice `b`. A choice whose
//!    reduced cost alone reaches the gap between the incumbent and `L(λ)` cannot be
//!    part of a better solution and is removed. This step is exact for any `λ`, so it
//!    does not depend on the precision of the LP solver.
//! 5. **Branch and bound.** The search branches on one remaining triplet per level,
//!    with one child per surviving choice (on the hull or not), and keeps all open
//!    nodes of a level in a list sorted by cost. A node is pruned when its error plus
//!    the LP relaxation of the undecided triplets cannot beat the incumbent. That LP
//!    is solved exactly by the greedy rule for the continuous multiple-choice
//!    knapsack: take hull increments by descending rate until the budget runs out.
//!    A node is also pruned when another node of the same level costs no more and
//!    has no larger error, because the undecided triplets then have at least as many
//!    bits left under the other node. This dominance rule keeps the search short.
//!    The LP bound alone cannot see that the leftover bits are too few for any
//!    further step. A depth-first search that branched on the fractional triplet
//!    evaluated more than 2 000 000 nodes on a synthetic rank-1000 table without
//!    finishing.
//!    The search stops with [`AllocateError::SearchNodeLimit`] rather than return a
//!    solution it could not prove optimal.
//!
//! With `max_distinct_widths = Some(f_max)`, every set of `min(f_max, k)` non-zero
//! widths (of the `k` candidates) is solved on its own and the best result is kept.
//! A larger set never does worse than its subsets, so this covers every set of at
//! most `f_max` widths.

use std::fmt;

use minilp::{ComparisonOp, OptimizationDirection, Problem};

/// Maximum number of branch-and-bound nodes that [`allocate`] keeps for one set of
/// allowed widths before it returns [`AllocateError::SearchNodeLimit`].
///
/// Each node takes 24 bytes, so the limit caps the search at about 100 MB. The
/// largest search measured on synthetic tables shaped like real ones (rank up to
/// 4000, several matrix shapes and budgets) kept about 300 000 nodes.
pub const MAX_SEARCH_NODES: u64 = 4_000_000;

/// Relative tolerance below which an improvement over the incumbent is ignored,
/// so that floating-point rounding in the bounds does not prolong the search.
const RELATIVE_TOLERANCE: f64 = 1e-12;

/// Per-matrix cost table: rows are singular triplets `i = 0..rank` (sorted by
/// descending σ), columns are candidate widths.
#[derive(Debug, Clone, PartialEq)]
pub struct CostTable {
    /// Candidate widths in bits, strictly ascending, starting with 0 (triplet
    /// dropped), for example `[0, 1, 2, 3, 4, 5, 6, 8]`.
    pub widths: Vec<u8>,
    /// Storage cost in bits of one triplet at each width, the same for every
    /// triplet. `cost_bits[0]` must be 0.
    pub cost_bits: Vec<u64>,
    /// Reconstruction error of each triplet at each width, row-major with shape
    /// `[rank, widths.len()]`: `error[i * widths.len() + j]`. Entries must be finite
    /// and non-negative.
    pub error: Vec<f64>,
}

/// Width chosen for each triplet, with the totals it achieves.
#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    /// Chosen width in bits for each triplet `i`, where 0 means the triplet is dropped.
    pub width_of: Vec<u8>,
    /// Sum of the chosen error entries.
    pub error: f64,
    /// Sum of the chosen storage costs in bits, never above the budget.
    pub bits: u64,
}

/// Reason why [`allocate`] returned no allocation.
#[derive(Debug, Clone, PartialEq)]
pub enum AllocateError {
    /// The table has no candidate widths.
    EmptyWidths,
    /// The first candidate width is not 0.
    FirstWidthNotZero {
        /// First width found in the table.
        found: u8,
    },
    /// The candidate widths are not strictly ascending.
    WidthsNotAscending {
        /// Position of the first width that is not above its predecessor.
        index: usize,
        /// Width at `index - 1`.
        previous: u8,
        /// Width at `index`.
        found: u8,
    },
    /// `cost_bits` and `widths` have different lengths.
    CostLengthMismatch {
        /// Number of candidate widths.
        widths: usize,
        /// Number of cost entries.
        costs: usize,
    },
    /// `cost_bits[0]` is not 0, although width 0 stores nothing.
    FirstCostNotZero {
        /// Cost found for width 0.
        found: u64,
    },
    /// The length of `error` is not a multiple of the number of widths.
    ErrorLengthMismatch {
        /// Number of error entries.
        len: usize,
        /// Number of candidate widths.
        widths: usize,
    },
    /// An error entry is NaN, infinite or negative.
    InvalidError {
        /// Triplet (row) of the entry.
        triplet: usize,
        /// Candidate width (column) of the entry.
        width: u8,
        /// Value found.
        value: f64,
    },
    /// `minilp` failed on the LP relaxation, which is always feasible and bounded.
    LpFailed {
        /// Message of the `minilp` error.
        message: String,
    },
    /// The branch-and-bound search reached [`MAX_SEARCH_NODES`] before it proved
    /// an allocation optimal.
    SearchNodeLimit {
        /// Node limit that was reached.
        limit: u64,
    },
}

impl fmt::Display for AllocateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllocateError::EmptyWidths => {
                write!(f, "invalid cost table: the list of candidate widths is empty, but it must start with width 0")
            }
            AllocateError::FirstWidthNotZero { found } => write!(
                f,
                "invalid cost table: the first candidate width is {found}, but it must be 0 (triplet dropped)"
            ),
            AllocateError::WidthsNotAscending { index, previous, found } => write!(
                f,
                "invalid cost table: candidate widths must be strictly ascending, but width {found} at index {index} follows {previous}"
            ),
            AllocateError::CostLengthMismatch { widths, costs } => write!(
                f,
                "invalid cost table: {costs} cost entries for {widths} candidate widths, expected one cost per width"
            ),
            AllocateError::FirstCostNotZero { found } => write!(
                f,
                "invalid cost table: width 0 costs {found} bits, but a dropped triplet must cost 0 bits"
            ),
            AllocateError::ErrorLengthMismatch { len, widths } => write!(
                f,
                "invalid cost table: {len} error entries is not a multiple of the {widths} candidate widths"
            ),
            AllocateError::InvalidError { triplet, width, value } => write!(
                f,
                "invalid cost table: error of triplet {triplet} at width {width} is {value}, but it must be finite and non-negative"
            ),
            AllocateError::LpFailed { message } => {
                write!(f, "the LP relaxation solver minilp returned an error: {message}")
            }
            AllocateError::SearchNodeLimit { limit } => write!(
                f,
                "branch and bound reached its limit of {limit} nodes before it proved an allocation optimal (MAX_SEARCH_NODES in the allocate module sets the limit)"
            ),
        }
    }
}

impl std::error::Error for AllocateError {}

/// Chooses one width per triplet that minimises the summed error within `budget_bits`.
///
/// With `max_distinct_widths = Some(f_max)`, at most `f_max` distinct non-zero widths
/// are used. The result is the integer optimum up to floating-point rounding in the
/// summed errors, because the search ignores improvements smaller than 1e-12 of the
/// error. Ties between equally good allocations are broken arbitrarily.
///
/// # Errors
///
/// Returns an [`AllocateError`] when the table is invalid (see the variants), or when
/// the search reaches [`MAX_SEARCH_NODES`] before proving an allocation optimal.
pub fn allocate(
    table: &CostTable,
    budget_bits: u64,
    max_distinct_widths: Option<usize>,
) -> Result<Allocation, AllocateError> {
    let rank = validate(table)?;
    let nonzero_width_count = table.widths.len() - 1;
    let subset_size = max_distinct_widths
        .unwrap_or(nonzero_width_count)
        .min(nonzero_width_count);

    let mut best: Option<(Vec<usize>, f64)> = None;
    for subset in subsets_of_size(nonzero_width_count, subset_size) {
        // Width index 0 (the dropped triplet) is always allowed.
        let allowed: Vec<usize> = std::iter::once(0)
            .chain(subset.iter().map(|&k| k + 1))
            .collect();
        let (choice, error) =
            solve_restricted(table, rank, &allowed, budget_bits, MAX_SEARCH_NODES)?;
        let improves = match &best {
            None => true,
            Some((_, best_error)) => error < *best_error,
        };
        if improves {
            best = Some((choice, error));
        }
    }

    // `subsets_of_size` always yields at least the empty subset.
    let choice = best
        .map(|(choice, _)| choice)
        .unwrap_or_else(|| vec![0; rank]);
    Ok(build_allocation(table, &choice))
}

/// Checks the table and returns its rank.
fn validate(table: &CostTable) -> Result<usize, AllocateError> {
    let widths = &table.widths;
    if widths.is_empty() {
        return Err(AllocateError::EmptyWidths);
    }
    if widths[0] != 0 {
        return Err(AllocateError::FirstWidthNotZero { found: widths[0] });
    }
    for index in 1..widths.len() {
        if widths[index] <= widths[index - 1] {
            return Err(AllocateError::WidthsNotAscending {
                index,
                previous: widths[index - 1],
                found: widths[index],
            });
        }
    }
    if table.cost_bits.len() != widths.len() {
        return Err(AllocateError::CostLengthMismatch {
            widths: widths.len(),
            costs: table.cost_bits.len(),
        });
    }
    if table.cost_bits[0] != 0 {
        return Err(AllocateError::FirstCostNotZero {
            found: table.cost_bits[0],
        });
    }
    if !table.error.len().is_multiple_of(widths.len()) {
        return Err(AllocateError::ErrorLengthMismatch {
            len: table.error.len(),
            widths: widths.len(),
        });
    }
    for (position, &value) in table.error.iter().enumerate() {
        if !value.is_finite() || value < 0.0 {
            return Err(AllocateError::InvalidError {
                triplet: position / widths.len(),
                width: widths[position % widths.len()],
                value,
            });
        }
    }
    Ok(table.error.len() / widths.len())
}

/// Returns every subset of `0..n` with exactly `size` elements, in lexicographic order.
fn subsets_of_size(n: usize, size: usize) -> Vec<Vec<usize>> {
    let mut subsets = Vec::new();
    let mut current: Vec<usize> = (0..size).collect();
    loop {
        subsets.push(current.clone());
        // Advance the rightmost element that still has room to move.
        let Some(position) = (0..size).rev().find(|&p| current[p] < n - size + p) else {
            return subsets;
        };
        current[position] += 1;
        for next in position + 1..size {
            current[next] = current[next - 1] + 1;
        }
    }
}

/// Builds the public result from one width index per triplet.
fn build_allocation(table: &CostTable, choice: &[usize]) -> Allocation {
    let width_count = table.widths.len();
    let mut error = 0.0;
    let mut bits = 0u64;
    for (i, &j) in choice.iter().enumerate() {
        error += table.error[i * width_count + j];
        bits += table.cost_bits[j];
    }
    Allocation {
        width_of: choice.iter().map(|&j| table.widths[j]).collect(),
        error,
        bits,
    }
}

/// One non-dominated choice of a triplet.
#[derive(Debug, Clone, Copy)]
struct Choice {
    cost: u64,
    error: f64,
    width_index: usize,
}

/// Step between two consecutive points of the lower convex hull of a triplet's
/// choices, from position `from` to position `to` in its choice list.
#[derive(Debug, Clone, Copy)]
struct Increment {
    /// Error saved per bit, strictly decreasing along one hull.
    rate: f64,
    extra_cost: u64,
    error_saved: f64,
    group: usize,
    from: usize,
    to: usize,
}

/// Orders increments by descending rate, so the LP greedy rule takes them first to
/// last. Ties are broken by group and position, which keeps each hull in order.
fn by_descending_rate(a: &Increment, b: &Increment) -> std::cmp::Ordering {
    b.rate
        .total_cmp(&a.rate)
        .then(a.group.cmp(&b.group))
        .then(a.from.cmp(&b.from))
}

/// Returns the non-dominated choices of triplet `i` among the `allowed` width
/// indices, sorted by ascending cost and strictly descending error. Choices that
/// cost more than `budget` are left out. The first choice always costs 0.
fn frontier(table: &CostTable, i: usize, allowed: &[usize], budget: u64) -> Vec<Choice> {
    let width_count = table.widths.len();
    let mut candidates: Vec<Choice> = allowed
        .iter()
        .filter(|&&j| table.cost_bits[j] <= budget)
        .map(|&j| Choice {
            cost: table.cost_bits[j],
            error: table.error[i * width_count + j],
            width_index: j,
        })
        .collect();
    candidates.sort_by(|a, b| {
        a.cost
            .cmp(&b.cost)
            .then(a.error.total_cmp(&b.error))
            .then(a.width_index.cmp(&b.width_index))
    });

    let mut nondominated: Vec<Choice> = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        // A candidate is kept only when it is strictly better than every cheaper one.
        let improves = nondominated
            .last()
            .is_none_or(|last| candidate.error < last.error);
        if improves {
            nondominated.push(candidate);
        }
    }
    nondominated
}

/// Appends the increments along the lower convex hull of `choices` to `out`.
fn push_hull_increments(choices: &[Choice], group: usize, out: &mut Vec<Increment>) {
    let rate = |a: usize, b: usize| {
        (choices[a].error - choices[b].error) / (choices[b].cost - choices[a].cost) as f64
    };

    let mut hull: Vec<usize> = vec![0];
    for k in 1..choices.len() {
        // The middle point leaves the hull unless the rate drops strictly after it.
        while hull.len() >= 2 {
            let a = hull[hull.len() - 2];
            let b = hull[hull.len() - 1];
            if rate(a, b) <= rate(b, k) {
                hull.pop();
            } else {
                break;
            }
        }
        hull.push(k);
    }

    for pair in hull.windows(2) {
        let (from, to) = (pair[0], pair[1]);
        out.push(Increment {
            rate: rate(from, to),
            extra_cost: choices[to].cost - choices[from].cost,
            error_saved: choices[from].error - choices[to].error,
            group,
            from,
            to,
        });
    }
}

/// Solves the allocation with only the `allowed` width indices (which contain 0) and
/// returns the width index of each triplet with the total error.
fn solve_restricted(
    table: &CostTable,
    rank: usize,
    allowed: &[usize],
    budget: u64,
    node_limit: u64,
) -> Result<(Vec<usize>, f64), AllocateError> {
    let frontiers: Vec<Vec<Choice>> = (0..rank)
        .map(|i| frontier(table, i, allowed, budget))
        .collect();

    let mut increments = Vec::new();
    for (group, choices) in frontiers.iter().enumerate() {
        push_hull_increments(choices, group, &mut increments);
    }
    increments.sort_by(by_descending_rate);

    let bit_price = solve_lp_bit_price(&increments, budget)?;
    let incumbent = greedy_rounding(&frontiers, &increments, budget);
    let incumbent_error: f64 = incumbent
        .iter()
        .zip(&frontiers)
        .map(|(&position, choices)| choices[position].error)
        .sum();

    let lagrangian_bound = lagrangian_bound(&frontiers, bit_price, budget);
    let tolerance = RELATIVE_TOLERANCE * incumbent_error.abs();
    let gap = incumbent_error - lagrangian_bound;

    let incumbent_widths = |positions: &[usize]| -> Vec<usize> {
        positions
            .iter()
            .zip(&frontiers)
            .map(|(&position, choices)| choices[position].width_index)
            .collect()
    };
    if gap <= tolerance {
        return Ok((incumbent_widths(&incumbent), incumbent_error));
    }

    let search = Search::new(&frontiers, bit_price, gap + tolerance, budget);
    match search.run(incumbent_error, tolerance, node_limit)? {
        Some((widths, error)) => Ok((widths, error)),
        None => Ok((incumbent_widths(&incumbent), incumbent_error)),
    }
}

/// Number of increments on each side of the greedy break point in the first LP that
/// `minilp` solves.
///
/// The increments are sorted by rate, so any window around the break point passes
/// the KKT check unless rates tie across its edge. With 256 on each side, the
/// allocation stage took 100 of the 570 ms of a budget explorer's solve of the demo
/// pair at 1/8 (native, one thread). With 16 it takes 37 ms, with the same allocations.
const INITIAL_LP_WINDOW: usize = 16;

/// Solves the LP relaxation with `minilp` and returns the dual price `λ` of one bit.
///
/// Each hull increment is a variable in `[0, 1]`, and the only row is the budget.
/// `increments` must be in LP order. On the whole LP of a rank-4000 table (28 000
/// variables), `minilp` 0.2.2 took about 5.5 s in a release build on a 2-core AMD
/// EPYC machine. So `minilp` solves the LP over a window of increments around the
/// point where the budget runs out in LP order. Increments ranked before the window
/// are fixed at 1 and those after it at 0. The window solution is optimal for the
/// whole LP when every fixed increment has a rate on the correct side of `λ` (the
/// KKT conditions). When that check fails the window doubles, up to the whole LP.
fn solve_lp_bit_price(increments: &[Increment], budget: u64) -> Result<f64, AllocateError> {
    let mut spent = 0u128;
    let break_index = increments
        .iter()
        .position(|inc| {
            spent += u128::from(inc.extra_cost);
            spent > u128::from(budget)
        })
        .unwrap_or(increments.len());

    let mut half_width = INITIAL_LP_WINDOW;
    loop {
        let start = break_index.saturating_sub(half_width);
        let end = (break_index + half_width).min(increments.len());
        let whole = start == 0 && end == increments.len();

        let fixed_cost: u64 = increments[..start].iter().map(|inc| inc.extra_cost).sum();
        let price = solve_lp_window(&increments[start..end], budget - fixed_cost)?;

        // The last increment fixed at 1 must save at least λ per bit, and the first
        // one fixed at 0 at most λ.
        let above_ok = start == 0 || increments[start - 1].rate >= price;
        let below_ok = end == increments.len() || increments[end].rate <= price;
        if whole || (above_ok && below_ok) {
            return Ok(price);
        }
        half_width *= 2;
    }
}

/// Solves `minimise −Σ saved · y` subject to `Σ extra_cost · y ≤ budget` and
/// `0 ≤ y ≤ 1` with `minilp`, and returns the dual price of the budget row.
///
/// The price is the rate of the fractional increment. Without one, it is the
/// highest rate left out, or 0 when every increment fits.
fn solve_lp_window(increments: &[Increment], budget: u64) -> Result<f64, AllocateError> {
    if increments.is_empty() {
        return Ok(0.0);
    }

    // Scaling both sides to order 1 keeps minilp's absolute tolerances meaningful
    // when errors are tiny and costs are millions of bits.
    let max_saved = increments
        .iter()
        .map(|inc| inc.error_saved)
        .fold(0.0, f64::max);
    let error_scale = if max_saved > 0.0 {
        1.0 / max_saved
    } else {
        1.0
    };
    let cost_scale = 1.0 / budget.max(1) as f64;

    let mut problem = Problem::new(OptimizationDirection::Minimize);
    let variables: Vec<_> = increments
        .iter()
        .map(|inc| problem.add_var(-inc.error_saved * error_scale, (0.0, 1.0)))
        .collect();
    problem.add_constraint(
        variables
            .iter()
            .zip(increments)
            .map(|(&variable, inc)| (variable, inc.extra_cost as f64 * cost_scale)),
        ComparisonOp::Le,
        budget as f64 * cost_scale,
    );
    let solution = problem.solve().map_err(|error| AllocateError::LpFailed {
        message: error.to_string(),
    })?;

    const INTEGRALITY: f64 = 1e-7;
    let mut highest_left_out: Option<f64> = None;
    for (&variable, inc) in variables.iter().zip(increments) {
        let value = solution[variable];
        if value > INTEGRALITY && value < 1.0 - INTEGRALITY {
            return Ok(inc.rate);
        }
        if value <= INTEGRALITY {
            highest_left_out = Some(highest_left_out.map_or(inc.rate, |r: f64| r.max(inc.rate)));
        }
    }
    Ok(highest_left_out.unwrap_or(0.0))
}

/// Returns `L(λ) = Σ_i min_b (error + λ · cost) − λ · budget`, a lower bound on the
/// error of every feasible allocation for any `λ ≥ 0`.
fn lagrangian_bound(frontiers: &[Vec<Choice>], bit_price: f64, budget: u64) -> f64 {
    let mut bound = -bit_price * budget as f64;
    for choices in frontiers {
        bound += choices
            .iter()
            .map(|c| c.error + bit_price * c.cost as f64)
            .fold(f64::INFINITY, f64::min);
    }
    bound
}

/// Returns a feasible allocation as one position per triplet in its choice list.
///
/// It takes increments in the LP order while they fit, which rounds the LP solution
/// down, then keeps scanning and takes every later increment that still fits and
/// continues its own triplet's hull.
fn greedy_rounding(frontiers: &[Vec<Choice>], increments: &[Increment], budget: u64) -> Vec<usize> {
    let mut position = vec![0usize; frontiers.len()];
    let mut left = budget;
    for inc in increments {
        if position[inc.group] == inc.from && inc.extra_cost <= left {
            position[inc.group] = inc.to;
            left -= inc.extra_cost;
        }
    }
    position
}

/// Branch-and-bound search over the choices that survive reduced-cost fixing.
///
/// Level `k` decides the `k`-th triplet with more than one surviving choice, in
/// triplet order. Its nodes are pruned by the LP bound and by dominance within the
/// level, as the module documentation describes.
struct Search {
    /// Surviving choices of each triplet that still has more than one.
    groups: Vec<Vec<Choice>>,
    /// Triplet index of each entry in `groups`.
    group_triplet: Vec<usize>,
    /// Surviving choice of each triplet with a single one, by triplet index.
    fixed: Vec<Option<Choice>>,
    fixed_error: f64,
    /// Costs are summed in `u128` because the fixed choices alone may exceed the
    /// budget, and their sum may then overflow `u64`.
    fixed_cost: u128,
    budget: u64,
}

/// Search node. `cost` sums the decided triplets and is measured against the budget
/// left after the fixed triplets, while `error` includes the fixed triplets.
#[derive(Debug, Clone, Copy)]
struct PartialSolution {
    cost: u64,
    error: f64,
    /// Index of the parent in the previous level.
    parent: u32,
    /// Position of the chosen option in this level's choice list.
    choice: u32,
}

/// LP relaxation of the free triplets from one level on, as a function of the budget
/// left for them.
struct RemainingRelaxation {
    /// Cost and error of every remaining triplet at its cheapest choice.
    base_cost: u128,
    base_error: f64,
    /// Remaining hull increments in LP order, with running totals of cost and saved
    /// error over the increments before each one.
    increments: Vec<Increment>,
    cost_before: Vec<u128>,
    saved_before: Vec<f64>,
}

impl RemainingRelaxation {
    /// Builds the relaxation of the groups from `first` on, given all increments in
    /// LP order.
    fn new(groups: &[Vec<Choice>], first: usize, all_increments: &[Increment]) -> Self {
        let remaining = &groups[first..];
        let base_cost = remaining
            .iter()
            .map(|choices| u128::from(choices[0].cost))
            .sum();
        let base_error = remaining.iter().map(|choices| choices[0].error).sum();
        let increments: Vec<Increment> = all_increments
            .iter()
            .filter(|inc| inc.group >= first)
            .copied()
            .collect();

        let mut cost_before = Vec::with_capacity(increments.len() + 1);
        let mut saved_before = Vec::with_capacity(increments.len() + 1);
        let (mut cost, mut saved) = (0u128, 0.0);
        for inc in &increments {
            cost_before.push(cost);
            saved_before.push(saved);
            cost += u128::from(inc.extra_cost);
            saved += inc.error_saved;
        }
        cost_before.push(cost);
        saved_before.push(saved);

        RemainingRelaxation {
            base_cost,
            base_error,
            increments,
            cost_before,
            saved_before,
        }
    }

    /// Returns the LP minimum of the remaining error with `left` bits, or `None` when
    /// even the cheapest choices do not fit.
    fn lower_bound(&self, left: u64) -> Option<f64> {
        let left = u128::from(left).checked_sub(self.base_cost)?;
        // Increments before `whole` fit completely, and the next one fits in part.
        let whole = self.cost_before.partition_point(|&cost| cost <= left) - 1;
        let mut error = self.base_error - self.saved_before[whole];
        if let Some(next) = self.increments.get(whole) {
            let fraction = (left - self.cost_before[whole]) as f64 / next.extra_cost as f64;
            error -= fraction * next.error_saved;
        }
        Some(error)
    }
}

impl Search {
    /// Sets up the search over the choices whose reduced cost at `bit_price` is at
    /// most `max_reduced_cost`. Triplets left with one choice are fixed.
    fn new(frontiers: &[Vec<Choice>], bit_price: f64, max_reduced_cost: f64, budget: u64) -> Self {
        let mut groups = Vec::new();
        let mut group_triplet = Vec::new();
        let mut fixed = vec![None; frontiers.len()];
        let mut fixed_error = 0.0;
        let mut fixed_cost = 0u128;

        for (triplet, choices) in frontiers.iter().enumerate() {
            let priced = |c: &Choice| c.error + bit_price * c.cost as f64;
            let min_priced = choices.iter().map(priced).fold(f64::INFINITY, f64::min);
            let surviving: Vec<Choice> = choices
                .iter()
                .filter(|c| priced(c) - min_priced <= max_reduced_cost)
                .copied()
                .collect();
            if surviving.len() == 1 {
                fixed_error += surviving[0].error;
                fixed_cost += u128::from(surviving[0].cost);
                fixed[triplet] = Some(surviving[0]);
            } else {
                groups.push(surviving);
                group_triplet.push(triplet);
            }
        }

        Search {
            groups,
            group_triplet,
            fixed,
            fixed_error,
            fixed_cost,
            budget,
        }
    }

    /// Runs the search and returns a solution with an error below
    /// `incumbent_error - tolerance`, or `None` when there is none.
    ///
    /// # Errors
    ///
    /// Returns [`AllocateError::SearchNodeLimit`] once `node_limit` nodes are kept.
    fn run(
        &self,
        incumbent_error: f64,
        tolerance: f64,
        node_limit: u64,
    ) -> Result<Option<(Vec<usize>, f64)>, AllocateError> {
        let Some(budget) = u128::from(self.budget)
            .checked_sub(self.fixed_cost)
            .map(|left| left as u64)
        else {
            return Ok(None);
        };
        let threshold = incumbent_error - tolerance;

        let mut all_increments = Vec::new();
        for (group, choices) in self.groups.iter().enumerate() {
            push_hull_increments(choices, group, &mut all_increments);
        }
        all_increments.sort_by(by_descending_rate);

        let root = PartialSolution {
            cost: 0,
            error: self.fixed_error,
            parent: 0,
            choice: 0,
        };
        let mut levels: Vec<Vec<PartialSolution>> = vec![vec![root]];
        let mut stored = 1u64;

        for (group, choices) in self.groups.iter().enumerate() {
            let remaining = RemainingRelaxation::new(&self.groups, group + 1, &all_increments);
            let previous = levels.last().map_or(&[][..], Vec::as_slice);

            let mut next = Vec::new();
            for (parent, partial) in previous.iter().enumerate() {
                for (choice, option) in choices.iter().enumerate() {
                    let Some(cost) = partial
                        .cost
                        .checked_add(option.cost)
                        .filter(|&c| c <= budget)
                    else {
                        continue;
                    };
                    let error = partial.error + option.error;
                    let Some(rest) = remaining.lower_bound(budget - cost) else {
                        continue;
                    };
                    if error + rest >= threshold {
                        continue;
                    }
                    // Nodes are counted before the dominance rule removes any, which
                    // also caps the memory of this level.
                    if stored + next.len() as u64 >= node_limit {
                        return Err(AllocateError::SearchNodeLimit { limit: node_limit });
                    }
                    next.push(PartialSolution {
                        cost,
                        error,
                        parent: parent as u32,
                        choice: choice as u32,
                    });
                }
            }

            keep_pareto_front(&mut next);
            stored += next.len() as u64;
            if next.is_empty() {
                return Ok(None);
            }
            levels.push(next);
        }

        // The last level is sorted by cost with falling error, so its last entry is best.
        let Some(best) = levels.last().and_then(|level| level.last()).copied() else {
            return Ok(None);
        };
        if best.error >= threshold {
            return Ok(None);
        }
        Ok(Some((self.trace_back(&levels), best.error)))
    }

    /// Follows the parent links from the best complete solution and returns one
    /// width index per triplet.
    fn trace_back(&self, levels: &[Vec<PartialSolution>]) -> Vec<usize> {
        let mut widths: Vec<usize> = self
            .fixed
            .iter()
            .map(|choice| choice.map_or(0, |c| c.width_index))
            .collect();
        let mut index = levels
            .last()
            .map_or(0, |level| level.len().saturating_sub(1));
        for group in (0..self.groups.len()).rev() {
            let partial = levels[group + 1][index];
            widths[self.group_triplet[group]] =
                self.groups[group][partial.choice as usize].width_index;
            index = partial.parent as usize;
        }
        widths
    }
}

/// Sorts nodes by cost and removes each dominated one, that is, each node for which
/// another costs no more and has no larger error.
fn keep_pareto_front(partials: &mut Vec<PartialSolution>) {
    partials.sort_unstable_by(|a, b| a.cost.cmp(&b.cost).then(a.error.total_cmp(&b.error)));
    let mut best_error = f64::INFINITY;
    partials.retain(|partial| {
        let keep = partial.error < best_error;
        if keep {
            best_error = partial.error;
        }
        keep
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    /// Returns the minimum error over every allocation within `budget` that uses at
    /// most `max_distinct` distinct non-zero widths, by exhaustive enumeration.
    fn brute_force(table: &CostTable, budget: u64, max_distinct: Option<usize>) -> f64 {
        let width_count = table.widths.len();
        let rank = table.error.len() / width_count;
        let mut choice = vec![0usize; rank];
        let mut best = f64::INFINITY;
        loop {
            let bits: u64 = choice.iter().map(|&j| table.cost_bits[j]).sum();
            let mut used: Vec<usize> = choice.iter().copied().filter(|&j| j != 0).collect();
            used.sort_unstable();
            used.dedup();
            let distinct_ok = max_distinct.is_none_or(|limit| used.len() <= limit);
            if bits <= budget && distinct_ok {
                let error: f64 = choice
                    .iter()
                    .enumerate()
                    .map(|(i, &j)| table.error[i * width_count + j])
                    .sum();
                best = best.min(error);
            }

            // Advance the mixed-radix counter over all width combinations.
            let mut digit = 0;
            loop {
                if digit == rank {
                    return best;
                }
                choice[digit] += 1;
                if choice[digit] < width_count {
                    break;
                }
                choice[digit] = 0;
                digit += 1;
            }
        }
    }

    /// Returns the minimum error within `budget` by dynamic programming over the
    /// budget, after dividing every cost by `unit`.
    fn dynamic_programming(table: &CostTable, budget: u64, unit: u64) -> f64 {
        let width_count = table.widths.len();
        let rank = table.error.len() / width_count;
        let capacity = (budget / unit) as usize;
        let costs: Vec<usize> = table
            .cost_bits
            .iter()
            .map(|&c| {
                assert_eq!(c % unit, 0, "cost {c} is not a multiple of unit {unit}");
                (c / unit) as usize
            })
            .collect();
        // best[c] is the minimum error of the triplets so far within c units.
        let mut best = vec![0.0f64; capacity + 1];
        let mut next = vec![0.0f64; capacity + 1];
        for i in 0..rank {
            for c in 0..=capacity {
                let mut value = f64::INFINITY;
                for j in 0..width_count {
                    if costs[j] <= c {
                        value = value.min(best[c - costs[j]] + table.error[i * width_count + j]);
                    }
                }
                next[c] = value;
            }
            std::mem::swap(&mut best, &mut next);
        }
        best[capacity]
    }

    fn random_table(rng: &mut SmallRng, rank: usize, width_count: usize) -> CostTable {
        let mut widths: Vec<u8> = (1..=8).collect();
        while widths.len() > width_count - 1 {
            let drop = rng.random_range(0..widths.len());
            widths.remove(drop);
        }
        widths.insert(0, 0);

        let mut cost_bits = vec![0u64];
        for _ in 1..width_count {
            cost_bits.push(rng.random_range(0..=30));
        }

        // Small integers give many ties, uniform floats give none, and the
        // decreasing profile resembles real tables.
        let style = rng.random_range(0..3);
        let mut error = Vec::with_capacity(rank * width_count);
        for _ in 0..rank {
            let scale: f64 = rng.random_range(0.1..10.0);
            for j in 0..width_count {
                let value = match style {
                    0 => f64::from(rng.random_range(0..=5u8)),
                    1 => rng.random_range(0.0..10.0),
                    _ => scale * 0.25f64.powi(j as i32) * rng.random_range(0.9..1.1),
                };
                error.push(value);
            }
        }
        CostTable {
            widths,
            cost_bits,
            error,
        }
    }

    fn assert_consistent(table: &CostTable, allocation: &Allocation, budget: u64, context: &str) {
        let width_count = table.widths.len();
        let rank = table.error.len() / width_count;
        assert_eq!(
            allocation.width_of.len(),
            rank,
            "{context}: width_of length"
        );
        let mut bits = 0u64;
        let mut error = 0.0;
        for (i, &width) in allocation.width_of.iter().enumerate() {
            let j = table.widths.iter().position(|&w| w == width);
            assert!(
                j.is_some(),
                "{context}: triplet {i} got width {width}, not a candidate"
            );
            let j = j.unwrap();
            bits += table.cost_bits[j];
            error += table.error[i * width_count + j];
        }
        assert_eq!(
            allocation.bits, bits,
            "{context}: reported bits vs sum of chosen costs"
        );
        assert!(
            (allocation.error - error).abs() <= 1e-12 * error.abs().max(1.0),
            "{context}: reported error {} vs sum of chosen errors {error}",
            allocation.error
        );
        assert!(
            allocation.bits <= budget,
            "{context}: {} bits exceed the budget of {budget}",
            allocation.bits
        );
    }

    fn assert_optimal(found: f64, expected: f64, context: &str) {
        assert!(
            (found - expected).abs() <= 1e-9 * expected.abs().max(1e-300),
            "{context}: allocate found error {found}, exhaustive optimum is {expected}"
        );
    }

    #[test]
    fn allocate_matches_brute_force() {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut cases = 0;
        for rank in 1..=6 {
            for width_count in 3..=8 {
                let repeats = if (width_count as u64).pow(rank as u32) > 40_000 {
                    3
                } else {
                    12
                };
                for repeat in 0..repeats {
                    let table = random_table(&mut rng, rank, width_count);
                    let max_cost = *table.cost_bits.iter().max().unwrap();
                    let full = rank as u64 * max_cost;
                    let budgets = [
                        0,
                        full,
                        rng.random_range(0..=full),
                        rng.random_range(0..=full / 2),
                    ];
                    for budget in budgets {
                        let context = format!("rank {rank}, {width_count} widths, repeat {repeat}, budget {budget}, table {table:?}");
                        let allocation = allocate(&table, budget, None).unwrap();
                        assert_consistent(&table, &allocation, budget, &context);
                        assert_optimal(
                            allocation.error,
                            brute_force(&table, budget, None),
                            &context,
                        );
                        cases += 1;
                    }
                }
            }
        }
        assert!(cases > 500, "only {cases} cases ran");
    }

    #[test]
    fn max_distinct_widths_matches_brute_force() {
        let mut rng = SmallRng::seed_from_u64(11);
        for rank in 1..=5 {
            for width_count in 3..=6 {
                for repeat in 0..4 {
                    let table = random_table(&mut rng, rank, width_count);
                    let max_cost = *table.cost_bits.iter().max().unwrap();
                    let budget = rng.random_range(0..=rank as u64 * max_cost);
                    for limit in 0..=width_count {
                        let context = format!("rank {rank}, {width_count} widths, repeat {repeat}, budget {budget}, f_max {limit}, table {table:?}");
                        let allocation = allocate(&table, budget, Some(limit)).unwrap();
                        assert_consistent(&table, &allocation, budget, &context);
                        let mut used: Vec<u8> = allocation
                            .width_of
                            .iter()
                            .copied()
                            .filter(|&w| w != 0)
                            .collect();
                        used.sort_unstable();
                        used.dedup();
                        assert!(used.len() <= limit, "{context}: used widths {used:?}");
                        assert_optimal(
                            allocation.error,
                            brute_force(&table, budget, Some(limit)),
                            &context,
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn allocate_zero_budget_drops_all() {
        let table = CostTable {
            widths: vec![0, 2, 4],
            cost_bits: vec![0, 10, 20],
            error: vec![5.0, 1.0, 0.5, 3.0, 1.0, 0.1],
        };
        let allocation = allocate(&table, 0, None).unwrap();
        assert_eq!(allocation.width_of, vec![0, 0], "widths at budget 0");
        assert_eq!(allocation.bits, 0, "bits at budget 0");
        assert_eq!(allocation.error, 8.0, "error at budget 0");
    }

    #[test]
    fn allocate_full_budget_takes_best() {
        let table = CostTable {
            widths: vec![0, 2, 4],
            cost_bits: vec![0, 10, 20],
            error: vec![5.0, 1.0, 0.5, 3.0, 1.0, 0.1],
        };
        let allocation = allocate(&table, 40, None).unwrap();
        assert_eq!(allocation.width_of, vec![4, 4], "widths at full budget");
        assert_eq!(allocation.bits, 40, "bits at full budget");
    }

    #[test]
    fn allocate_empty_rank() {
        let table = CostTable {
            widths: vec![0, 1],
            cost_bits: vec![0, 3],
            error: vec![],
        };
        let allocation = allocate(&table, 100, Some(1)).unwrap();
        assert!(
            allocation.width_of.is_empty(),
            "width_of: {:?}",
            allocation.width_of
        );
        assert_eq!(allocation.bits, 0, "bits of an empty table");
        assert_eq!(allocation.error, 0.0, "error of an empty table");
    }

    /// Builds a synthetic table shaped like a real one: `error[i, b] = s_i² · e_b` with
    /// `s_i = (i + 1)^-0.7`, `e_b ≈ 4^-b` with ±5 % jitter, and costs that include
    /// per-group scales and σ for an `m × n` matrix with groups of 128.
    fn realistic_table(rng: &mut SmallRng, rank: usize, m: u64, n: u64) -> CostTable {
        let widths: Vec<u8> = vec![0, 1, 2, 3, 4, 5, 6, 8];
        let overhead = 32 * (m.div_ceil(128) + n.div_ceil(128)) + 32;
        let cost_bits: Vec<u64> = widths
            .iter()
            .map(|&b| {
                if b == 0 {
                    0
                } else {
                    u64::from(b) * (m + n) + overhead
                }
            })
            .collect();
        let mut error = Vec::with_capacity(rank * widths.len());
        for i in 0..rank {
            let sigma = ((i + 1) as f64).powf(-0.7);
            for &b in &widths {
                let relative = if b == 0 {
                    1.0
                } else {
                    0.25f64.powi(i32::from(b)) * rng.random_range(0.95..1.05)
                };
                error.push(sigma * sigma * relative);
            }
        }
        CostTable {
            widths,
            cost_bits,
            error,
        }
    }

    #[test]
    fn allocate_matches_dp_realistic() {
        let mut rng = SmallRng::seed_from_u64(3);
        let (m, n) = (512u64, 512u64);
        let budget = m * n;
        for rank in [20, 60, 120, 199] {
            for repeat in 0..3 {
                let table = realistic_table(&mut rng, rank, m, n);
                let context = format!("rank {rank}, repeat {repeat}, budget {budget}");
                let allocation = allocate(&table, budget, None).unwrap();
                assert_consistent(&table, &allocation, budget, &context);
                assert_optimal(
                    allocation.error,
                    dynamic_programming(&table, budget, 32),
                    &context,
                );
            }
        }
    }

    #[test]
    fn allocate_matches_dp_small_costs() {
        let mut rng = SmallRng::seed_from_u64(5);
        for repeat in 0..40 {
            let rank = rng.random_range(10..=40);
            let width_count = rng.random_range(3..=8);
            let table = random_table(&mut rng, rank, width_count);
            let budget = rng.random_range(0..=rank as u64 * 15);
            let context =
                format!("rank {rank}, {width_count} widths, repeat {repeat}, budget {budget}");
            let allocation = allocate(&table, budget, None).unwrap();
            assert_consistent(&table, &allocation, budget, &context);
            assert_optimal(
                allocation.error,
                dynamic_programming(&table, budget, 1),
                &context,
            );
        }
    }

    /// Returns all hull increments of `table` in LP order.
    fn sorted_increments(table: &CostTable, budget: u64) -> Vec<Increment> {
        let rank = table.error.len() / table.widths.len();
        let allowed: Vec<usize> = (0..table.widths.len()).collect();
        let mut increments = Vec::new();
        for i in 0..rank {
            push_hull_increments(&frontier(table, i, &allowed, budget), i, &mut increments);
        }
        increments.sort_by(by_descending_rate);
        increments
    }

    #[test]
    fn lp_price_matches_greedy() {
        let mut rng = SmallRng::seed_from_u64(13);
        let (m, n) = (4096u64, 4096u64);
        for rank in [10, 150, 1000] {
            let table = realistic_table(&mut rng, rank, m, n);
            for budget in [0, 20_000, m * n / 4, m * n, 100 * m * n] {
                let increments = sorted_increments(&table, budget);
                let price = solve_lp_bit_price(&increments, budget).unwrap();

                // The greedy rule takes increments in order until one no longer fits,
                // and any price between its rate and the one before is optimal.
                let mut spent = 0u64;
                let break_index = increments.iter().position(|inc| {
                    spent += inc.extra_cost;
                    spent > budget
                });
                let context = format!("rank {rank}, budget {budget}, price {price:e}");
                match break_index {
                    None => assert_eq!(price, 0.0, "{context}: every increment fits"),
                    Some(index) => {
                        let low = increments[index].rate;
                        assert!(
                            price >= low * (1.0 - 1e-12),
                            "{context}: below break rate {low:e}"
                        );
                        if index > 0 {
                            let high = increments[index - 1].rate;
                            assert!(
                                price <= high * (1.0 + 1e-12),
                                "{context}: above rate {high:e}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn search_stops_at_node_limit() {
        let mut rng = SmallRng::seed_from_u64(17);
        let (m, n) = (4096u64, 4096u64);
        let table = realistic_table(&mut rng, 1000, m, n);
        let allowed: Vec<usize> = (0..table.widths.len()).collect();
        let result = solve_restricted(&table, 1000, &allowed, m * n, 5);
        assert_eq!(
            result.err(),
            Some(AllocateError::SearchNodeLimit { limit: 5 }),
            "search with a limit of 5 nodes"
        );
    }

    fn valid_table() -> CostTable {
        CostTable {
            widths: vec![0, 1, 2],
            cost_bits: vec![0, 4, 8],
            error: vec![1.0, 0.5, 0.25, 2.0, 1.0, 0.5],
        }
    }

    #[test]
    fn allocate_rejects_bad_tables() {
        let mut empty = valid_table();
        empty.widths.clear();
        assert_eq!(
            allocate(&empty, 10, None),
            Err(AllocateError::EmptyWidths),
            "empty widths"
        );

        let mut first_width = valid_table();
        first_width.widths[0] = 1;
        first_width.widths[1] = 2;
        first_width.widths[2] = 3;
        assert_eq!(
            allocate(&first_width, 10, None),
            Err(AllocateError::FirstWidthNotZero { found: 1 }),
            "first width not 0"
        );

        let mut unordered = valid_table();
        unordered.widths = vec![0, 2, 2];
        assert_eq!(
            allocate(&unordered, 10, None),
            Err(AllocateError::WidthsNotAscending {
                index: 2,
                previous: 2,
                found: 2
            }),
            "repeated width"
        );

        let mut cost_length = valid_table();
        cost_length.cost_bits.pop();
        assert_eq!(
            allocate(&cost_length, 10, None),
            Err(AllocateError::CostLengthMismatch {
                widths: 3,
                costs: 2
            }),
            "cost length"
        );

        let mut first_cost = valid_table();
        first_cost.cost_bits[0] = 1;
        assert_eq!(
            allocate(&first_cost, 10, None),
            Err(AllocateError::FirstCostNotZero { found: 1 }),
            "first cost not 0"
        );

        let mut error_length = valid_table();
        error_length.error.pop();
        assert_eq!(
            allocate(&error_length, 10, None),
            Err(AllocateError::ErrorLengthMismatch { len: 5, widths: 3 }),
            "error length"
        );

        let mut negative = valid_table();
        negative.error[4] = -1.0;
        assert_eq!(
            allocate(&negative, 10, None),
            Err(AllocateError::InvalidError {
                triplet: 1,
                width: 1,
                value: -1.0
            }),
            "negative error"
        );

        let mut infinite = valid_table();
        infinite.error[0] = f64::INFINITY;
        assert_eq!(
            allocate(&infinite, 10, None),
            Err(AllocateError::InvalidError {
                triplet: 0,
                width: 0,
                value: f64::INFINITY
            }),
            "infinite error"
        );

        let mut nan = valid_table();
        nan.error[2] = f64::NAN;
        let result = allocate(&nan, 10, None);
        assert!(
            matches!(result, Err(AllocateError::InvalidError { triplet: 0, width: 2, value }) if value.is_nan()),
            "NaN error gave {result:?}"
        );
    }

    #[test]
    fn error_messages_name_values() {
        let message = AllocateError::InvalidError {
            triplet: 3,
            width: 4,
            value: -2.5,
        }
        .to_string();
        assert!(message.contains("triplet 3"), "message: {message}");
        assert!(message.contains("width 4"), "message: {message}");
        assert!(message.contains("-2.5"), "message: {message}");
        let message = AllocateError::SearchNodeLimit { limit: 9 }.to_string();
        assert!(message.contains("9 nodes"), "message: {message}");
    }

    /// Prints the time of `allocate` on realistic 4096 × 4096 tables. Run with
    /// `cargo test --release -- --ignored --nocapture allocate_timing`.
    #[test]
    #[ignore]
    fn allocate_timing() {
        let mut rng = SmallRng::seed_from_u64(1);
        let (m, n) = (4096u64, 4096u64);
        let budget = 16 * m * n / 16;
        for rank in [150, 1000, 4000] {
            for repeat in 0..3 {
                let table = realistic_table(&mut rng, rank, m, n);
                time_allocation(&table, budget, &format!("rank {rank} repeat {repeat}"));
                if rank == 150 {
                    let allocation = allocate(&table, budget, None).unwrap();
                    let expected = dynamic_programming(&table, budget, 32);
                    assert_optimal(allocation.error, expected, "rank 150 against DP");
                }
            }
        }

        // A flat spectrum leaves every triplet with close reduced costs, which is the
        // slowest case measured for the search.
        let mut table = realistic_table(&mut rng, 4000, m, n);
        let width_count = table.widths.len();
        for i in 0..4000 {
            let undo_spectrum = ((i + 1) as f64).powf(1.4);
            for j in 0..width_count {
                table.error[i * width_count + j] *= undo_spectrum;
            }
        }
        time_allocation(&table, budget, "rank 4000 flat spectrum");
    }

    fn time_allocation(table: &CostTable, budget: u64, label: &str) {
        let start = std::time::Instant::now();
        let allocation = allocate(table, budget, None).unwrap();
        let elapsed = start.elapsed();
        assert_consistent(table, &allocation, budget, label);
        let kept_triplets = allocation.width_of.iter().filter(|&&w| w != 0).count();
        println!(
            "{label}: {:.3} s, error {:.6e}, {} of {budget} bits, {kept_triplets} triplets kept",
            elapsed.as_secs_f64(),
            allocation.error,
            allocation.bits
        );
    }
}
