//! Inference: the Trainer's evaluation loop (transformers' `evaluation_loop`) and the
//! text-classification pipeline's forward passes, with no gradients and no dropout, on batches
//! of examples sorted by length.

use crate::error::{positive, Error, Result};
use crate::models::{Model, ProblemType, Task};
use crate::ops::{Autocast, Half};
use crate::rows::Rows;
use crate::train::data::{Collator, Examples, Labeling, PadSettings};
use std::sync::Mutex;
use tch::{Kind, Tensor};

/// How the forward passes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Settings {
    /// Autocast to bfloat16 or float16.
    pub half: Option<Half>,
    /// The loss (with labels); None: inferred from the labels.
    pub problem_type: Option<ProblemType>,
    /// Leave non-finite batch losses out of the mean (`logging_nan_inf_filter`).
    pub nan_inf_filter: bool,
    /// Keep only the loss (`prediction_loss_only`, and transformers' `evaluate` without
    /// `compute_metrics`): no logits or labels are gathered, which for a masked LM would be
    /// [examples, length, vocabulary] floats.
    pub loss_only: bool,
}

/// Logits, labels and the sample-weighted mean loss of an evaluation set.
pub struct Predictions {
    /// [examples, num_labels] or, per token, [examples, length, num_labels] (float32, on the
    /// CPU, in the data's order), or what `preprocess` made of them; empty ([0]) and no labels
    /// with `Settings::loss_only`.
    pub logits: Tensor,
    pub labels: Option<Tensor>,
    pub loss: Option<f64>,
}

/// How inference groups the examples (sorted by length, longest first) into batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batching {
    /// A fixed number of examples per batch.
    Examples(usize),
    /// As many examples as fit `tokens` padded tokens, at most `max_examples`.
    Tokens { tokens: usize, max_examples: usize },
}

impl Batching {
    /// The Trainer's evaluation (`per_device_eval_batch_size`): on the CPU the examples are
    /// grouped by a token budget instead (logits and loss do not depend on the grouping, and
    /// the budget's batches ran faster); on a GPU the batch size the user chose is kept.
    pub fn for_evaluation(batch_size: usize, cuda: bool) -> Result<Batching> {
        positive("per_device_eval_batch_size", batch_size)?;
        Ok(if cuda { Batching::Examples(batch_size) } else { Batching::automatic(false) })
    }

    /// The pipeline's: the `batch_size` the user passed, or the automatic grouping.
    pub fn for_pipeline(batch_size: Option<usize>, cuda: bool) -> Result<Batching> {
        match batch_size {
            Some(n) => positive("batch_size", n).map(|()| Batching::Examples(n)),
            None => Ok(Batching::automatic(cuda)),
        }
    }

    /// Padded tokens per batch when the batch size is free: inference results do not depend on
    /// how examples are grouped. On the CPU, batches of about 1,500 tokens were the fastest
    /// (the activations stay in cache; bench/README.md, "Measurements behind the code"). A GPU
    /// wants far larger batches.
    pub fn automatic(cuda: bool) -> Batching {
        if cuda {
            Batching::Tokens { tokens: 65_536, max_examples: 1024 }
        } else {
            Batching::Tokens { tokens: 1_536, max_examples: 64 }
        }
    }

    /// Splits `order` (longest first) into batches.
    pub(crate) fn split(self, order: &[usize], lengths: &[usize]) -> Vec<Vec<usize>> {
        match self {
            Batching::Examples(n) => order.chunks(n.max(1)).map(<[usize]>::to_vec).collect(),
            Batching::Tokens { tokens, max_examples } => {
                let mut out: Vec<Vec<usize>> = Vec::new();
                let mut current: Vec<usize> = Vec::new();
                for &i in order {
                    // Longest first: the batch's first example sets its width.
                    let width = current.first().map_or(lengths[i], |&f| lengths[f]);
                    if !current.is_empty()
                        && ((current.len() + 1) * width > tokens || current.len() == max_examples)
                    {
                        out.push(std::mem::take(&mut current));
                    }
                    current.push(i);
                }
                if !current.is_empty() {
                    out.push(current);
                }
                out
            }
        }
    }
}

/// What runs on each batch's logits (and labels) before they are kept:
/// `preprocess_logits_for_metrics`.
pub type Preprocess<'a> = &'a dyn Fn(Tensor, Option<&Tensor>) -> Result<Tensor>;

/// transformers' `evaluation_loop`. One prediction per sequence: batches are formed from
/// examples sorted by length (less padding; each example's logits do not depend on its batch)
/// and the results are put back in the data's order. Per-token predictions (token
/// classification, masked language modeling) and masks drawn by the collator depend on the
/// batch: the batches are then transformers' (the data's order, `batch_size` examples). Batches
/// of different widths are concatenated padded with -100, as `nested_concat`.
/// `interrupt` runs before each batch; its error stops the loop (Ctrl+C).
pub fn predict(
    model: &Mutex<Model>,
    data: &Examples,
    collator: &Collator,
    batching: Batching,
    settings: Settings,
    interrupt: &dyn Fn() -> Result<()>,
    preprocess: Option<Preprocess<'_>>,
) -> Result<Predictions> {
    if let Batching::Examples(n) = batching {
        positive("batch_size", n)?;
    }
    let lengths = data.lengths();
    let model = model.lock().unwrap_or_else(|p| p.into_inner());
    let in_order = model.task != Task::SequenceClassification || collator.makes_labels();
    let mut order: Vec<usize> = (0..data.len()).collect();
    if !in_order {
        order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    }
    let _no_grad = tch::no_grad_guard();
    let _autocast = settings.half.map(|half| Autocast::enter(model.device(), half)).transpose()?;
    // As a DataLoader iterator does at its start.
    let _ = Tensor::empty([], (Kind::Int64, tch::Device::Cpu)).random_();
    let threads = crate::parallel::Threads::enter();
    let mut logits = Vec::new();
    let mut labels = Vec::new();
    let mut losses: Vec<(f64, usize)> = Vec::new();
    let chunks = batching.split(&order, &lengths);
    if chunks.is_empty() {
        return Err(Error::value("there is nothing to predict (no examples)"));
    }
    for chunk in chunks {
        interrupt()?;
        threads.adapt();
        let batch = collator.collate(data, &chunk, model.device())?;
        let out = model.forward(&batch.view(), settings.problem_type, false)?;
        if let Some(loss) = out.loss {
            losses.push((loss.to_kind(Kind::Double).double_value(&[]), chunk.len()));
        }
        if settings.loss_only {
            continue;
        }
        let out_logits = match preprocess {
            Some(f) => f(out.logits, batch.labels.as_ref())?,
            None => out.logits,
        };
        let cpu = |t: Tensor| {
            match t.kind() {
                Kind::Half | Kind::BFloat16 | Kind::Double => t.to_kind(Kind::Float),
                _ => t,
            }
            .to_device(tch::Device::Cpu)
        };
        logits.push(cpu(out_logits));
        labels.extend(batch.labels.map(cpu));
    }
    let loss = (!losses.is_empty()).then(|| {
        let kept: Vec<&(f64, usize)> =
            if settings.nan_inf_filter && losses.iter().any(|(l, _)| l.is_finite()) {
                losses.iter().filter(|(l, _)| l.is_finite()).collect()
            } else {
                losses.iter().collect()
            };
        let n: usize = kept.iter().map(|(_, n)| n).sum();
        kept.iter().map(|(l, n)| l * *n as f64).sum::<f64>() / n as f64
    });
    if settings.loss_only {
        let none = Tensor::empty([0], (Kind::Float, tch::Device::Cpu));
        return Ok(Predictions { logits: none, labels: None, loss });
    }
    let position = Tensor::from_slice(&inverse(&order));
    let restore = |t: Tensor| if in_order { t } else { t.index_select(0, &position) };
    let logits = restore(concat_padded(&logits)?);
    let labels = (!labels.is_empty()).then(|| concat_padded(&labels)).transpose()?.map(restore);
    Ok(Predictions { logits, labels, loss })
}

/// Where each example went in `order`.
fn inverse(order: &[usize]) -> Vec<i64> {
    let mut inverse = vec![0i64; order.len()];
    for (pos, &i) in order.iter().enumerate() {
        inverse[i] = pos as i64;
    }
    inverse
}

/// The batches' tensors one after the other along the first dimension, the second dimension
/// padded with -100 to the widest (transformers' `torch_pad_and_concatenate`).
pub fn concat_padded(parts: &[Tensor]) -> Result<Tensor> {
    let first = parts.first().ok_or_else(|| Error::value("nothing to concatenate"))?;
    if first.dim() < 2 {
        return Ok(Tensor::f_cat(parts, 0)?);
    }
    let width = parts.iter().map(|t| t.size()[1]).max().unwrap_or(0);
    let padded: Vec<Tensor> = parts
        .iter()
        .map(|t| {
            let mut shape = t.size();
            if shape[1] == width {
                return Ok(t.shallow_clone());
            }
            shape[1] = width;
            let out = Tensor::f_full(shape.as_slice(), -100, (t.kind(), t.device()))?;
            out.narrow(1, 0, t.size()[1]).f_copy_(t)?;
            Ok(out)
        })
        .collect::<Result<_>>()?;
    Ok(Tensor::f_cat(&padded, 0)?)
}

/// The Trainer's evaluation of `data`: padded as `pad` says and labeled as `labeling` says, in
/// batches of `batch_size` (see `Batching::for_evaluation`).
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    model: &Mutex<Model>,
    data: &Examples,
    batch_size: usize,
    pad: PadSettings,
    labeling: Labeling,
    settings: Settings,
    interrupt: &dyn Fn() -> Result<()>,
    preprocess: Option<Preprocess<'_>>,
) -> Result<Predictions> {
    let (cuda, config_pad, per_sequence) = {
        let m = model.lock().unwrap_or_else(|p| p.into_inner());
        (m.device().is_cuda(), m.config.pad_token_id, m.task == Task::SequenceClassification)
    };
    let collator = Collator::new(pad, config_pad)?.with_labeling(labeling)?;
    let batching = if per_sequence && !collator.makes_labels() {
        Batching::for_evaluation(batch_size, cuda)?
    } else {
        positive("per_device_eval_batch_size", batch_size)?;
        Batching::Examples(batch_size)
    };
    predict(model, data, &collator, batching, settings, interrupt, preprocess)
}

/// The text-classification pipeline's logits for tokenized texts: `encoded` rows, with the
/// tokenizer's pad id and whether it makes token type ids.
pub fn classify(
    model: &Mutex<Model>,
    encoded: Rows,
    tokenizer: TokenizerInputs,
    batching: Option<usize>,
    bf16: bool,
    interrupt: &dyn Fn() -> Result<()>,
) -> Result<Tensor> {
    let (limit, cuda, has_types, config_pad) = {
        let m = model.lock().unwrap_or_else(|p| p.into_inner());
        (
            m.max_sequence_length(),
            m.device().is_cuda(),
            m.config.type_vocab_size > 0,
            m.config.pad_token_id,
        )
    };
    let batching = Batching::for_pipeline(batching, cuda)?;
    if let Some(row) = (0..encoded.len()).find(|&i| encoded.row(i).len() as i64 > limit) {
        return Err(Error::value(format!(
            "input {row} has {} tokens, more than the model's maximum of {limit}; pass \
             truncation=True to truncate long inputs",
            encoded.row(row).len()
        )));
    }
    let mut rows = encoded;
    if !(tokenizer.token_type_ids && has_types) {
        rows.token_type_ids = None;
    }
    let examples = Examples { rows, labels: None, special_tokens_mask: None };
    let pad = PadSettings { pad_token_id: tokenizer.pad_token_id, ..PadSettings::default() };
    let collator = Collator::new(pad, config_pad)?;
    let settings = Settings { half: bf16.then_some(Half::BFloat16), ..Settings::default() };
    Ok(predict(model, &examples, &collator, batching, settings, interrupt, None)?.logits)
}

/// What the pipeline needs to know of its tokenizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenizerInputs {
    pub pad_token_id: Option<i64>,
    /// Whether `token_type_ids` is among its model inputs.
    pub token_type_ids: bool,
}

#[cfg(test)]
mod tests {
    use super::Batching;

    #[test]
    fn token_budget_batches_grow_as_examples_shrink() {
        let lengths = [10, 2, 8, 2, 4, 2];
        let order = [0, 2, 4, 1, 3, 5]; // longest first
        let b = Batching::Tokens { tokens: 20, max_examples: 100 }.split(&order, &lengths);
        assert_eq!(b, vec![vec![0, 2], vec![4, 1, 3, 5]]);
        let b = Batching::Tokens { tokens: 100, max_examples: 4 }.split(&order, &lengths);
        assert_eq!(b, vec![vec![0, 2, 4, 1], vec![3, 5]]);
        assert_eq!(
            Batching::Examples(4).split(&order, &lengths),
            vec![vec![0, 2, 4, 1], vec![3, 5]]
        );
    }
}
