//! Agreement figures between expected and proposed labels: accuracy, a confusion table, per-label
//! precision/recall/F1 and their macro average, and latency percentiles. Pure functions over
//! labels, shared by `deskpilot eval` and any later report that compares proposals with what
//! people chose.

use std::collections::BTreeSet;

use serde::Serialize;

/// How often the proposal equals the expectation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Accuracy {
    /// Pairs that agree.
    pub correct: usize,
    /// Pairs counted.
    pub total: usize,
    /// `correct / total`, 0 when nothing was counted.
    pub accuracy: f64,
}

impl Accuracy {
    /// Accuracy of `correct` out of `total`.
    pub fn new(correct: usize, total: usize) -> Self {
        let accuracy = if total == 0 { 0.0 } else { correct as f64 / total as f64 };
        Self { correct, total, accuracy }
    }

    /// Accuracy over `(expected, proposed)` pairs.
    pub fn of<'a, T: PartialEq + 'a>(pairs: impl IntoIterator<Item = (&'a T, &'a T)>) -> Self {
        let (mut correct, mut total) = (0, 0);
        for (expected, proposed) in pairs {
            total += 1;
            correct += usize::from(expected == proposed);
        }
        Self::new(correct, total)
    }
}

/// Counts of (expected, proposed) label pairs. `labels` is sorted and holds every label seen on
/// either side; `counts[i][j]` is how many times `labels[i]` was expected and `labels[j]` proposed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Confusion {
    /// Every label seen, sorted.
    pub labels: Vec<String>,
    /// Rows: expected; columns: proposed.
    pub counts: Vec<Vec<usize>>,
}

/// Precision, recall and F1 of one label.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelScore {
    /// The label.
    pub label: String,
    /// Of the times it was proposed, the share it was expected (0 when never proposed).
    pub precision: f64,
    /// Of the times it was expected, the share it was proposed (0 when never expected).
    pub recall: f64,
    /// Harmonic mean of precision and recall (0 when both are 0).
    pub f1: f64,
    /// Times it was expected.
    pub support: usize,
}

impl Confusion {
    /// The table of `(expected, proposed)` pairs, labels sorted.
    pub fn of<S: AsRef<str>>(pairs: impl IntoIterator<Item = (S, S)>) -> Self {
        Self::ordered(&[], pairs)
    }

    /// As [`Confusion::of`], but the labels of `order` that occur come first, in that order (a
    /// scale such as LOW, NORMAL, HIGH reads better than sorted), then the others sorted.
    pub fn ordered<S: AsRef<str>>(order: &[&str], pairs: impl IntoIterator<Item = (S, S)>) -> Self {
        let pairs: Vec<(S, S)> = pairs.into_iter().collect();
        let seen: BTreeSet<&str> = pairs.iter().flat_map(|(e, p)| [e.as_ref(), p.as_ref()]).collect();
        let labels: Vec<String> = order
            .iter()
            .copied()
            .filter(|l| seen.contains(l))
            .chain(seen.iter().copied().filter(|l| !order.contains(l)))
            .map(str::to_owned)
            .collect();
        let index = |l: &str| labels.iter().position(|x| x == l).expect("every label is listed");
        let mut counts = vec![vec![0; labels.len()]; labels.len()];
        for (e, p) in &pairs {
            counts[index(e.as_ref())][index(p.as_ref())] += 1;
        }
        Self { labels, counts }
    }

    /// Pairs counted.
    pub fn total(&self) -> usize {
        self.counts.iter().flatten().sum()
    }

    /// Pairs that agree (the diagonal).
    pub fn correct(&self) -> usize {
        (0..self.labels.len()).map(|i| self.counts[i][i]).sum()
    }

    /// Precision, recall and F1 of every label, in label order.
    pub fn scores(&self) -> Vec<LabelScore> {
        let n = self.labels.len();
        (0..n)
            .map(|i| {
                let hit = self.counts[i][i] as f64;
                let expected: usize = self.counts[i].iter().sum();
                let proposed: usize = (0..n).map(|r| self.counts[r][i]).sum();
                let ratio = |part: f64, whole: usize| if whole == 0 { 0.0 } else { part / whole as f64 };
                let (precision, recall) = (ratio(hit, proposed), ratio(hit, expected));
                let f1 = if precision + recall == 0.0 {
                    0.0
                } else {
                    2.0 * precision * recall / (precision + recall)
                };
                LabelScore { label: self.labels[i].clone(), precision, recall, f1, support: expected }
            })
            .collect()
    }

    /// The unweighted mean of every label's F1: each label counts the same however often it
    /// occurs, so a rare label done badly shows. Labels are those seen on either side (a label
    /// only ever proposed scores 0), as scikit-learn's `f1_score(average="macro")` does; 0 for an
    /// empty table.
    pub fn macro_f1(&self) -> f64 {
        let scores = self.scores();
        if scores.is_empty() {
            return 0.0;
        }
        scores.iter().map(|s| s.f1).sum::<f64>() / scores.len() as f64
    }
}

/// The nearest-rank percentile of `values`: the smallest value such that at least `p` percent
/// of them are at or below it (`p` in 0..=100; p0 is the minimum, p100 the maximum). `None` when
/// there are no values.
pub fn percentile(values: &[u64], p: f64) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = ((p.clamp(0.0, 100.0) / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.saturating_sub(1).min(sorted.len() - 1)])
}

/// p50, p90, p99 and the maximum of a set of latencies in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Slowest.
    pub max: u64,
}

impl Percentiles {
    /// The percentiles of `values` (all 0 when there are none).
    pub fn of(values: &[u64]) -> Self {
        let at = |p| percentile(values, p).unwrap_or(0);
        Self { p50: at(50.0), p90: at(90.0), p99: at(99.0), max: at(100.0) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn accuracy_counts_agreeing_pairs() {
        let expected = ["a", "b", "b", "c"];
        let proposed = ["a", "b", "c", "c"];
        let acc = Accuracy::of(expected.iter().zip(proposed.iter()));
        assert_eq!((acc.correct, acc.total), (3, 4));
        assert!(close(acc.accuracy, 0.75));
        assert_eq!(Accuracy::new(0, 0).accuracy, 0.0);
    }

    #[test]
    fn confusion_rows_are_expected_and_columns_proposed() {
        let c = Confusion::of([("b", "a"), ("a", "a"), ("b", "b"), ("a", "c")]);
        assert_eq!(c.labels, ["a", "b", "c"]);
        assert_eq!(c.counts, [[1, 0, 1], [1, 1, 0], [0, 0, 0]]);
        assert_eq!((c.correct(), c.total()), (2, 4));
        let c = Confusion::ordered(&["z", "b", "q"], [("b", "a"), ("a", "a"), ("b", "z")]);
        assert_eq!(c.labels, ["z", "b", "a"]);
        assert_eq!(c.counts, [[0, 0, 0], [1, 0, 1], [0, 0, 1]]);
    }

    #[test]
    fn macro_f1_matches_a_hand_computed_example() {
        // Expected: a a a b b c; proposed: a a b b c c.
        //   a: precision 2/2, recall 2/3 → F1 = 2·1·(2/3) / (1 + 2/3) = 0.8
        //   b: precision 1/2, recall 1/2 → F1 = 0.5
        //   c: precision 1/2, recall 1/1 → F1 = 2·0.5·1 / 1.5 = 2/3
        //   macro = (0.8 + 0.5 + 2/3) / 3 = 0.65555…
        let c = Confusion::of([("a", "a"), ("a", "a"), ("a", "b"), ("b", "b"), ("b", "c"), ("c", "c")]);
        let s = c.scores();
        assert!(close(s[0].precision, 1.0) && close(s[0].recall, 2.0 / 3.0) && close(s[0].f1, 0.8));
        assert!(close(s[1].f1, 0.5));
        assert!(close(s[2].precision, 0.5) && close(s[2].recall, 1.0) && close(s[2].f1, 2.0 / 3.0));
        assert_eq!(s.iter().map(|s| s.support).collect::<Vec<_>>(), [3, 2, 1]);
        assert!(close(c.macro_f1(), (0.8 + 0.5 + 2.0 / 3.0) / 3.0), "{}", c.macro_f1());
    }

    #[test]
    fn a_label_only_ever_proposed_scores_zero_and_counts_in_the_mean() {
        // a: P 1/1, R 1/2 → 2/3; z (never expected): 0 → macro = 1/3.
        let c = Confusion::of([("a", "a"), ("a", "z")]);
        assert_eq!(c.labels, ["a", "z"]);
        assert!(close(c.scores()[0].f1, 2.0 / 3.0));
        assert_eq!(c.scores()[1].f1, 0.0);
        assert!(close(c.macro_f1(), 1.0 / 3.0));
        assert_eq!(Confusion::of(Vec::<(&str, &str)>::new()).macro_f1(), 0.0);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        // 1..=10: p50 is the 5th value, p90 the 9th, p99 the 10th (ceil(9.9)).
        let ten: Vec<u64> = (1..=10).collect();
        assert_eq!(Percentiles::of(&ten), Percentiles { p50: 5, p90: 9, p99: 10, max: 10 });
        // Unsorted input with a slow outlier: sorted 3 7 8 12 20 40 41 45 50 900 …
        let latencies = [40, 3, 900, 12, 8, 45, 7, 50, 41, 20];
        assert_eq!(Percentiles::of(&latencies), Percentiles { p50: 20, p90: 50, p99: 900, max: 900 });
        // 200 values 1..=200: p99 is the 198th.
        let many: Vec<u64> = (1..=200).collect();
        assert_eq!(percentile(&many, 99.0), Some(198));
        assert_eq!(percentile(&many, 0.0), Some(1));
        assert_eq!(percentile(&[7], 50.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(Percentiles::of(&[]), Percentiles::default());
    }
}
