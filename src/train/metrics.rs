//! Classification metrics equal to scikit-learn's: accuracy, precision, recall and F1 (binary,
//! micro, macro, weighted averages), Matthews correlation and the confusion matrix
//! (`sklearn/metrics/_classification.py`). Labels are the sorted union of those in the
//! references and the predictions; a zero denominator gives 0.0, as sklearn's default
//! `zero_division="warn"` returns.

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Average {
    /// The scores of `pos_label` only; both inputs must hold at most two labels.
    Binary {
        pos_label: i64,
    },
    Micro,
    Macro,
    Weighted,
}

impl Average {
    pub fn parse(name: Option<&str>, pos_label: i64) -> Result<Average> {
        match name {
            Some("binary") => Ok(Average::Binary { pos_label }),
            Some("micro") => Ok(Average::Micro),
            Some("macro") => Ok(Average::Macro),
            Some("weighted") => Ok(Average::Weighted),
            other => Err(Error::value(format!(
                "average must be one of 'binary', 'micro', 'macro', 'weighted', got {other:?}"
            ))),
        }
    }
}

/// The confusion matrix over `labels` (sorted): row = reference, column = prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct Confusion {
    pub labels: Vec<i64>,
    pub counts: Vec<Vec<u64>>,
}

fn check_lengths(predictions: &[i64], references: &[i64]) -> Result<()> {
    if predictions.len() != references.len() {
        return Err(Error::value(format!(
            "predictions and references have different lengths: {} and {}",
            predictions.len(),
            references.len()
        )));
    }
    if predictions.is_empty() {
        return Err(Error::value("predictions and references are empty"));
    }
    Ok(())
}

impl Confusion {
    pub fn new(predictions: &[i64], references: &[i64]) -> Result<Confusion> {
        check_lengths(predictions, references)?;
        let mut labels: Vec<i64> = predictions.iter().chain(references).copied().collect();
        labels.sort_unstable();
        labels.dedup();
        let index = |label: i64| labels.binary_search(&label).expect("label in the union");
        let mut counts = vec![vec![0u64; labels.len()]; labels.len()];
        for (&p, &r) in predictions.iter().zip(references) {
            counts[index(r)][index(p)] += 1;
        }
        Ok(Confusion { labels, counts })
    }

    fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    fn true_positives(&self, i: usize) -> u64 {
        self.counts[i][i]
    }

    fn predicted(&self, i: usize) -> u64 {
        self.counts.iter().map(|row| row[i]).sum()
    }

    fn actual(&self, i: usize) -> u64 {
        self.counts[i].iter().sum()
    }
}

pub fn accuracy(predictions: &[i64], references: &[i64]) -> Result<f64> {
    check_lengths(predictions, references)?;
    let correct = predictions.iter().zip(references).filter(|(p, r)| p == r).count();
    Ok(correct as f64 / predictions.len() as f64)
}

fn ratio(numerator: u64, denominator: u64) -> f64 {
    if denominator == 0 {
        0.0
    } else {
        numerator as f64 / denominator as f64
    }
}

fn f_score(precision: f64, recall: f64) -> f64 {
    if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    }
}

/// (precision, recall, f1) with the given average.
pub fn precision_recall_f1(
    predictions: &[i64],
    references: &[i64],
    average: Average,
) -> Result<(f64, f64, f64)> {
    let c = Confusion::new(predictions, references)?;
    let per_label = |i: usize| {
        let tp = c.true_positives(i);
        let (p, r) = (ratio(tp, c.predicted(i)), ratio(tp, c.actual(i)));
        (p, r, f_score(p, r))
    };
    Ok(match average {
        Average::Binary { pos_label } => {
            if c.labels.len() > 2 {
                return Err(Error::value(
                    "Target is multiclass but average='binary'. Please choose another average \
                     setting, one of [None, 'micro', 'macro', 'weighted'].",
                ));
            }
            match c.labels.binary_search(&pos_label) {
                Ok(i) => per_label(i),
                // sklearn: a pos_label absent from both inputs scores zero (when labels <= 2).
                Err(_) if c.labels.len() < 2 => (0.0, 0.0, 0.0),
                Err(_) => {
                    return Err(Error::value(format!(
                        "pos_label={pos_label} is not a valid label. It should be one of {:?}",
                        c.labels
                    )))
                }
            }
        }
        Average::Micro => {
            let tp: u64 = (0..c.labels.len()).map(|i| c.true_positives(i)).sum();
            let p = ratio(tp, c.total());
            let r = ratio(tp, c.total());
            (p, r, f_score(p, r))
        }
        Average::Macro | Average::Weighted => {
            let n = c.labels.len();
            let weights: Vec<f64> = (0..n)
                .map(|i| if average == Average::Macro { 1.0 } else { c.actual(i) as f64 })
                .collect();
            let weight_sum: f64 = weights.iter().sum();
            if weight_sum == 0.0 {
                return Ok((0.0, 0.0, 0.0));
            }
            let mut sums = (0.0, 0.0, 0.0);
            for (i, w) in weights.iter().enumerate() {
                let (p, r, f) = per_label(i);
                sums = (sums.0 + w * p, sums.1 + w * r, sums.2 + w * f);
            }
            (sums.0 / weight_sum, sums.1 / weight_sum, sums.2 / weight_sum)
        }
    })
}

/// Matthews correlation coefficient, multiclass (sklearn's `matthews_corrcoef`).
pub fn matthews_correlation(predictions: &[i64], references: &[i64]) -> Result<f64> {
    let c = Confusion::new(predictions, references)?;
    let n = c.labels.len();
    let t: Vec<f64> = (0..n).map(|i| c.actual(i) as f64).collect();
    let p: Vec<f64> = (0..n).map(|i| c.predicted(i) as f64).collect();
    let correct: f64 = (0..n).map(|i| c.true_positives(i) as f64).sum();
    let samples = c.total() as f64;
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let cov_ytyp = correct * samples - dot(&t, &p);
    let cov_ypyp = samples * samples - dot(&p, &p);
    let cov_ytyt = samples * samples - dot(&t, &t);
    if cov_ypyp * cov_ytyt == 0.0 {
        return Ok(0.0);
    }
    Ok(cov_ytyp / (cov_ytyt * cov_ypyp).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values worked out by hand below; tests/test_metrics.py checks against sklearn.
    const PRED: [i64; 8] = [0, 1, 2, 2, 1, 0, 1, 2];
    const REF: [i64; 8] = [0, 2, 2, 1, 1, 0, 1, 0];

    #[test]
    fn accuracy_counts_matches() {
        assert_eq!(accuracy(&PRED, &REF).unwrap(), 5.0 / 8.0);
    }

    #[test]
    fn averages_by_hand() {
        // per label (p, r): 0: (1, 2/3), 1: (2/3, 2/3), 2: (1/3, 1/2)
        let (p, r, f) = precision_recall_f1(&PRED, &REF, Average::Macro).unwrap();
        assert!((p - (1.0 + 2.0 / 3.0 + 1.0 / 3.0) / 3.0).abs() < 1e-12);
        assert!((r - (2.0 / 3.0 + 2.0 / 3.0 + 0.5) / 3.0).abs() < 1e-12);
        let f_each = [0.8, 2.0 / 3.0, 0.4];
        assert!((f - f_each.iter().sum::<f64>() / 3.0).abs() < 1e-12);
        let (_, _, fw) = precision_recall_f1(&PRED, &REF, Average::Weighted).unwrap();
        assert!((fw - (3.0 * 0.8 + 3.0 * 2.0 / 3.0 + 2.0 * 0.4) / 8.0).abs() < 1e-12);
        let (pm, rm, fm) = precision_recall_f1(&PRED, &REF, Average::Micro).unwrap();
        assert_eq!((pm, rm, fm), (5.0 / 8.0, 5.0 / 8.0, 5.0 / 8.0));
    }

    #[test]
    fn binary_and_its_errors() {
        let (p, r, f) =
            precision_recall_f1(&[1, 1, 0, 0], &[1, 0, 0, 1], Average::Binary { pos_label: 1 })
                .unwrap();
        assert_eq!((p, r, f), (0.5, 0.5, 0.5));
        let err = precision_recall_f1(&PRED, &REF, Average::Binary { pos_label: 1 }).unwrap_err();
        assert!(err.to_string().starts_with("Target is multiclass"));
        // No positive predicted: zero_division gives 0.
        assert_eq!(
            precision_recall_f1(&[0, 0], &[1, 0], Average::Binary { pos_label: 1 }).unwrap().0,
            0.0
        );
    }

    #[test]
    fn matthews_by_hand() {
        // t = [3, 3, 2], p = [2, 3, 3], correct 5, n 8
        let cov_ytyp: f64 = 5.0 * 8.0 - (3.0 * 2.0 + 3.0 * 3.0 + 2.0 * 3.0);
        let cov_ypyp: f64 = 64.0 - (4.0 + 9.0 + 9.0);
        let cov_ytyt: f64 = 64.0 - (9.0 + 9.0 + 4.0);
        let want = cov_ytyp / (cov_ytyt * cov_ypyp).sqrt();
        assert!((matthews_correlation(&PRED, &REF).unwrap() - want).abs() < 1e-12);
        assert_eq!(matthews_correlation(&[1, 1], &[0, 1]).unwrap(), 0.0);
    }

    #[test]
    fn confusion_rows_are_references() {
        let c = Confusion::new(&PRED, &REF).unwrap();
        assert_eq!(c.labels, vec![0, 1, 2]);
        assert_eq!(c.counts, vec![vec![2, 0, 1], vec![0, 2, 1], vec![0, 1, 1]]);
    }

    #[test]
    fn lengths_must_agree() {
        assert!(accuracy(&[1], &[1, 2])
            .unwrap_err()
            .to_string()
            .contains("different lengths: 1 and 2"));
    }
}
