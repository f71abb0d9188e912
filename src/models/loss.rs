//! Problem types and their losses, as `BertForSequenceClassification.forward` computes them:
//! regression → MSE, single-label → cross-entropy (ignore_index -100), multi-label → BCE with
//! logits. Labels are checked first, so a bad label is an exception that names it.

use super::encoder::is_integer;
use crate::error::{Error, Result};
use tch::{Kind, Reduction, Tensor};

/// transformers' CrossEntropyLoss default: labels equal to this are ignored.
pub const IGNORE_INDEX: i64 = -100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemType {
    Regression,
    SingleLabel,
    MultiLabel,
}

impl ProblemType {
    /// Each problem type with its `config.problem_type` name.
    pub const ALL: [(&'static str, ProblemType); 3] = [
        ("regression", ProblemType::Regression),
        ("single_label_classification", ProblemType::SingleLabel),
        ("multi_label_classification", ProblemType::MultiLabel),
    ];

    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|(name, _)| *name).collect()
    }

    pub fn parse(name: &str) -> Result<ProblemType> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, kind)| *kind).ok_or_else(|| {
            let names: Vec<String> = Self::names().iter().map(|n| format!("{n:?}")).collect();
            Error::value(format!("problem_type {name:?} is not one of {}", names.join(", ")))
        })
    }

    pub fn as_str(self) -> &'static str {
        Self::ALL.iter().find(|(_, kind)| *kind == self).map(|(name, _)| *name).unwrap_or("")
    }

    /// transformers' inference: one label → regression; integer labels → single-label;
    /// otherwise multi-label.
    pub fn infer(num_labels: i64, labels: &Tensor) -> ProblemType {
        if num_labels == 1 {
            ProblemType::Regression
        } else if matches!(labels.kind(), Kind::Int64 | Kind::Int) {
            ProblemType::SingleLabel
        } else {
            ProblemType::MultiLabel
        }
    }
}

/// Checks `labels` against the logits [batch, num_labels] for `problem`.
pub fn check_labels(problem: ProblemType, logits_shape: &[i64], labels: &Tensor) -> Result<()> {
    let (batch, num_labels) = (logits_shape[0], logits_shape[1]);
    let shape = labels.size();
    match problem {
        ProblemType::SingleLabel => {
            if !is_integer(labels.kind()) {
                return Err(Error::type_error(format!(
                    "single-label classification needs integer labels, got {:?}",
                    labels.kind()
                )));
            }
            if labels.numel() as i64 != batch {
                return Err(Error::value(format!(
                    "expected one label per example ({batch}), got labels of shape {shape:?}"
                )));
            }
            let bad = labels
                .ne(IGNORE_INDEX)
                .logical_and(&labels.lt(0).logical_or(&labels.ge(num_labels)));
            if bad.any().int64_value(&[]) != 0 {
                let first = labels.masked_select(&bad).int64_value(&[0]);
                return Err(Error::value(format!(
                    "label {first} is outside [0, {num_labels}) (num_labels={num_labels})"
                )));
            }
        }
        ProblemType::Regression | ProblemType::MultiLabel => {
            if !labels.is_floating_point() {
                if problem == ProblemType::MultiLabel {
                    return Err(Error::type_error(format!(
                        "multi-label classification needs float labels (one 0/1 value per label), got {:?}",
                        labels.kind()
                    )));
                }
            } else if labels.isfinite().logical_not().any().int64_value(&[]) != 0 {
                return Err(Error::value("labels contain NaN or infinity"));
            }
            let expected = if problem == ProblemType::Regression && num_labels == 1 {
                labels.numel() as i64 == batch
            } else {
                shape == [batch, num_labels]
            };
            if !expected {
                return Err(Error::value(format!(
                    "labels of shape {shape:?} do not match the logits of shape [{batch}, {num_labels}]"
                )));
            }
        }
    }
    Ok(())
}

/// Checks per-token labels (token classification, masked LM) against input_ids of `shape`
/// [batch, seq]: integers, one per token, each IGNORE_INDEX or in [0, width) (`what`: the name
/// of the width, num_labels or vocab_size). Returns them flattened, as int64.
pub fn check_token_labels(
    labels: &Tensor,
    shape: &[i64],
    width: i64,
    what: &str,
) -> Result<Tensor> {
    if !is_integer(labels.kind()) {
        return Err(Error::type_error(format!(
            "token labels must be integers (class ids, -100 where ignored), got {:?}",
            labels.kind()
        )));
    }
    let tokens: i64 = shape.iter().product();
    if labels.numel() as i64 != tokens {
        return Err(Error::value(format!(
            "expected one label per token, labels of shape {shape:?}, got labels of shape {:?}",
            labels.size()
        )));
    }
    let flat = labels.reshape([-1]).to_kind(Kind::Int64);
    let bad = flat.ne(IGNORE_INDEX).logical_and(&flat.lt(0).logical_or(&flat.ge(width)));
    if bad.any().int64_value(&[]) != 0 {
        let at = bad.nonzero().int64_value(&[0, 0]);
        let seq = shape.last().copied().unwrap_or(1).max(1);
        return Err(Error::value(format!(
            "label {} at row {}, token {} is outside [0, {width}) ({what}={width}; -100 marks \
             tokens without a label)",
            flat.int64_value(&[at]),
            at / seq,
            at % seq
        )));
    }
    Ok(flat)
}

/// The mean loss of `logits` against checked `labels`.
pub fn loss(problem: ProblemType, logits: &Tensor, labels: &Tensor) -> Tensor {
    let num_labels = logits.size()[1];
    match problem {
        ProblemType::Regression => {
            let labels = labels.to_kind(logits.kind());
            if num_labels == 1 {
                logits.squeeze().mse_loss(&labels.squeeze(), Reduction::Mean)
            } else {
                logits.mse_loss(&labels, Reduction::Mean)
            }
        }
        ProblemType::SingleLabel => logits.view([-1, num_labels]).cross_entropy_loss::<Tensor>(
            &labels.view([-1]).to_kind(Kind::Int64),
            None,
            Reduction::Mean,
            IGNORE_INDEX,
            0.0,
        ),
        ProblemType::MultiLabel => logits.binary_cross_entropy_with_logits::<Tensor>(
            &labels.to_kind(logits.kind()),
            None,
            None,
            Reduction::Mean,
        ),
    }
}

/// `DebertaV2ForSequenceClassification`'s loss when `config.problem_type` is None, which it
/// computes without setting the problem type: one label → MSE; one label per example (shape
/// [batch] or [batch, 1], cast to integers) → cross-entropy over the examples whose label is
/// not negative (0 when there are none); otherwise soft labels [batch, num_labels] →
/// `-(log_softmax(logits) · labels).sum(-1).mean()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DebertaLoss {
    Regression,
    Labels,
    Soft,
}

impl DebertaLoss {
    pub fn infer(num_labels: i64, labels: &Tensor) -> DebertaLoss {
        let shape = labels.size();
        if num_labels == 1 {
            DebertaLoss::Regression
        } else if shape.len() == 1 || shape.last() == Some(&1) {
            DebertaLoss::Labels
        } else {
            DebertaLoss::Soft
        }
    }

    pub fn check(self, logits_shape: &[i64], labels: &Tensor) -> Result<()> {
        let (batch, num_labels) = (logits_shape[0], logits_shape[1]);
        let shape = labels.size();
        match self {
            DebertaLoss::Regression => {
                check_labels(ProblemType::Regression, logits_shape, labels)?;
                if !labels.is_floating_point() {
                    return Err(Error::type_error(format!(
                        "regression (num_labels=1) needs float labels, got {:?}",
                        labels.kind()
                    )));
                }
                Ok(())
            }
            DebertaLoss::Labels => {
                if labels.numel() as i64 != batch {
                    return Err(Error::value(format!(
                        "expected one label per example ({batch}), got labels of shape {shape:?}"
                    )));
                }
                if labels.is_floating_point()
                    && labels.isfinite().logical_not().any().int64_value(&[]) != 0
                {
                    return Err(Error::value("labels contain NaN or infinity"));
                }
                let ids = labels.to_kind(Kind::Int64);
                let bad = ids.ge(num_labels);
                if bad.any().int64_value(&[]) != 0 {
                    let first = ids.masked_select(&bad).int64_value(&[0]);
                    return Err(Error::value(format!(
                        "label {first} is outside [0, {num_labels}) (num_labels={num_labels})"
                    )));
                }
                Ok(())
            }
            DebertaLoss::Soft => {
                if shape != [batch, num_labels] {
                    return Err(Error::value(format!(
                        "labels of shape {shape:?} do not match the logits of shape [{batch}, {num_labels}]"
                    )));
                }
                if labels.is_floating_point()
                    && labels.isfinite().logical_not().any().int64_value(&[]) != 0
                {
                    return Err(Error::value("labels contain NaN or infinity"));
                }
                Ok(())
            }
        }
    }

    /// The loss of `logits` against checked `labels`.
    pub fn loss(self, logits: &Tensor, labels: &Tensor) -> Tensor {
        let num_labels = logits.size()[1];
        match self {
            DebertaLoss::Regression => logits
                .view([-1])
                .mse_loss(&labels.view([-1]).to_kind(logits.kind()), Reduction::Mean),
            DebertaLoss::Labels => {
                let ids = labels.view([-1]).to_kind(Kind::Int64);
                let kept = ids.ge(0).nonzero().squeeze_dim(1);
                if kept.numel() == 0 {
                    // transformers returns a constant 0; this one also takes a backward.
                    return (logits * 0.0).sum(logits.kind());
                }
                logits.index_select(0, &kept).to_kind(Kind::Float).cross_entropy_loss::<Tensor>(
                    &ids.index_select(0, &kept),
                    None,
                    Reduction::Mean,
                    IGNORE_INDEX,
                    0.0,
                )
            }
            DebertaLoss::Soft => {
                let log_probs = logits.log_softmax(-1, logits.kind());
                let labels = labels.view([-1, num_labels]).to_kind(logits.kind());
                -(log_probs * labels).sum_dim_intlist(-1, false, None).mean(None)
            }
        }
    }
}
