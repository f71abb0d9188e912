//! AdamW as the transformers Trainer builds it (`Trainer.create_optimizer`): two parameter
//! groups, weight decay for all but biases and LayerNorm weights, and torch's fused AdamW
//! kernel for the update. Its state is laid out as `torch.optim.AdamW.state_dict()` so that a
//! checkpoint's optimizer.pt reads in torch too.

use crate::error::{Error, Result};
use crate::models::WordLookup;
use crate::ops::{self, AdamW};
use tch::{Kind, Tensor};

/// transformers' `get_decay_parameter_names`: no decay for the parameters of LayerNorm modules
/// (named `LayerNorm`, `*_layer_norm` or `*norm` in every supported model) and for names that
/// match its patterns `bias`, `layernorm`, `rmsnorm`, `(^|.)norm($|.)`, `_norm($|.)`.
pub fn decays(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let norm_part = lower.split('.').any(|part| part == "norm" || part.ends_with("_norm"));
    !(lower.contains("bias")
        || lower.contains("layernorm")
        || lower.contains("rmsnorm")
        || norm_part)
}

pub struct Param {
    pub name: String,
    pub tensor: Tensor,
    /// First and second moments and the step count, created at the first update as torch does.
    pub exp_avg: Tensor,
    pub exp_avg_sq: Tensor,
    pub step: Tensor,
}

pub struct Group {
    pub weight_decay: f64,
    pub params: Vec<Param>,
}

/// `Default`: no groups, what `take` leaves behind.
#[derive(Default)]
pub struct Optimizer {
    /// [with weight decay, without]: the order of transformers' optimizer_grouped_parameters.
    pub groups: Vec<Group>,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// The word embeddings' gradient, kept between steps (see `WordLookup`); zeros outside a
    /// step.
    word_buffer: Option<Tensor>,
    /// What a step wrote into `word_buffer`, which zero_grad clears.
    written: Written,
}

/// The part of the kept word-gradient buffer that is not zero.
#[derive(Default)]
enum Written {
    #[default]
    Nothing,
    /// Only these rows (the ids looked up since the last zero_grad): zeroing them is enough,
    /// where zeroing the whole table cost a few milliseconds a step (47 MB for MiniLM).
    Rows(Vec<Tensor>),
    /// Anything: the table also received a gradient from autograd (a tied output layer) in a
    /// step, which may have added into the buffer.
    All,
}

impl Optimizer {
    pub fn new(
        named: Vec<(String, Tensor)>,
        weight_decay: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
    ) -> Optimizer {
        let mut groups = vec![
            Group { weight_decay, params: Vec::new() },
            Group { weight_decay: 0.0, params: Vec::new() },
        ];
        for (name, tensor) in named {
            let group = if decays(&name) { 0 } else { 1 };
            let exp_avg = tensor.zeros_like().detach();
            let exp_avg_sq = tensor.zeros_like().detach();
            let step = Tensor::zeros([], (Kind::Float, tensor.device()));
            groups[group].params.push(Param { name, tensor, exp_avg, exp_avg_sq, step });
        }
        Optimizer { groups, beta1, beta2, eps, word_buffer: None, written: Written::Nothing }
    }

    /// Whether this optimizer's parameters are all among `state`'s variables (the same
    /// tensors under the same names): the optimizer a model's next run keeps, as transformers'
    /// Trainer keeps `self.optimizer` (moments, step counts, hyperparameters) from one `train()`
    /// to the next and creates a new one only for a new model (`model_init`).
    pub fn belongs_to(&self, state: &[(String, Tensor)]) -> bool {
        let by_name: std::collections::HashMap<&str, &Tensor> =
            state.iter().map(|(name, t)| (name.as_str(), t)).collect();
        !self.groups.is_empty()
            && self
                .params()
                .all(|p| by_name.get(p.name.as_str()).is_some_and(|t| t.is_set_to(&p.tensor)))
    }

    /// Moves this optimizer out, leaving one without parameters.
    pub fn take(&mut self) -> Optimizer {
        std::mem::take(self)
    }

    /// Copies saved moments and step counts (by parameter name: an optimizer.pt's
    /// `param_names`) into this optimizer.
    pub fn load_state(&self, saved: &[(String, Tensor, Tensor, Tensor)]) -> Result<()> {
        let by_name: std::collections::HashMap<&str, &Param> =
            self.params().map(|p| (p.name.as_str(), p)).collect();
        for (name, exp_avg, exp_avg_sq, step) in saved {
            let p = by_name.get(name.as_str()).ok_or_else(|| {
                Error::value(format!(
                    "the optimizer state names {name:?}, which the model does not have"
                ))
            })?;
            if exp_avg.size() != p.exp_avg.size() {
                return Err(Error::value(format!(
                    "the optimizer state of {name:?} has shape {:?} but the parameter has {:?}",
                    exp_avg.size(),
                    p.exp_avg.size()
                )));
            }
            tch::no_grad(|| -> std::result::Result<(), tch::TchError> {
                p.exp_avg.shallow_clone().f_copy_(exp_avg)?;
                p.exp_avg_sq.shallow_clone().f_copy_(exp_avg_sq)?;
                p.step.shallow_clone().f_copy_(step)?;
                Ok(())
            })?;
        }
        Ok(())
    }

    pub fn params(&self) -> impl Iterator<Item = &Param> {
        self.groups.iter().flat_map(|g| g.params.iter())
    }

    /// The defined gradients of all parameters (for clipping).
    pub fn grads(&self) -> Vec<Tensor> {
        self.params().map(|p| p.tensor.grad()).filter(Tensor::defined).collect()
    }

    /// `grads()`, to be overwritten by their average over the processes: the kept word
    /// buffer's rows then hold the other processes' gradients too, and zero_grad clears it whole.
    pub fn grads_to_average(&mut self) -> Vec<Tensor> {
        self.written = Written::All;
        self.grads()
    }

    /// `ops::clip_grad_norm` of `grads` (this optimizer's, as `grads()` returned them). The
    /// kept word buffer holds zeros outside the rows the step wrote, so its norm and its
    /// clipping are those rows' alone: over the whole table they took a tenth of what a MiniLM
    /// step spends outside its matrix products (bench/README.md). A norm that is not finite
    /// scales every gradient by NaN or 0, also the kept word buffer's rows that the step did not
    /// write (NaN fills them), which zero_grad then clears whole.
    pub fn clip_grad_norm(&mut self, grads: &[Tensor], max_norm: f64) -> Result<f64> {
        let written = match (&self.written, &self.word_buffer) {
            (Written::Rows(rows), Some(buffer)) if !rows.is_empty() => {
                // Sorted, so that the norm's sum runs in the same order in every run.
                let (rows, _) = Tensor::cat(rows, 0).f_internal_unique(true, false)?;
                let gathered = buffer.f_index_select(0, &rows)?;
                Some((buffer, rows, gathered))
            }
            _ => None,
        };
        let clipped = match &written {
            Some((buffer, rows, gathered)) => {
                let by_rows: Vec<Tensor> = grads
                    .iter()
                    .map(|g| if g.is_set_to(buffer) { gathered } else { g }.shallow_clone())
                    .collect();
                let clipped = ops::clip_grad_norm(&by_rows, max_norm)?;
                let mut buffer = buffer.shallow_clone();
                // The scaled rows go back, unless nothing was scaled (a coefficient of 1); a
                // NaN coefficient turns the other rows' zeros into NaN too.
                if clipped.coefficient.is_nan() {
                    let _ = tch::no_grad(|| buffer.f_fill_(f64::NAN))?;
                } else if clipped.coefficient != 1.0 {
                    let _ = tch::no_grad(|| buffer.f_index_copy_(0, rows, gathered))?;
                }
                clipped
            }
            None => ops::clip_grad_norm(grads, max_norm)?,
        };
        if !clipped.norm.is_finite() {
            self.written = Written::All;
        }
        Ok(clipped.norm)
    }

    /// One AdamW update at learning rate `lr`; parameters without a gradient are left alone.
    pub fn step(&mut self, lr: f64) -> Result<()> {
        let (beta1, beta2, eps) = (self.beta1, self.beta2, self.eps);
        for group in &self.groups {
            let with_grad: Vec<&Param> =
                group.params.iter().filter(|p| p.tensor.grad().defined()).collect();
            let list = |f: fn(&Param) -> Tensor| with_grad.iter().map(|p| f(p)).collect::<Vec<_>>();
            let hp = AdamW { lr, beta1, beta2, eps, weight_decay: group.weight_decay };
            tch::no_grad(|| {
                ops::fused_adamw(
                    &list(|p| p.tensor.shallow_clone()),
                    &list(|p| p.tensor.grad()),
                    &list(|p| p.exp_avg.shallow_clone()),
                    &list(|p| p.exp_avg_sq.shallow_clone()),
                    &list(|p| p.step.shallow_clone()),
                    hp,
                )
            })?;
        }
        Ok(())
    }

    /// Adds a micro-batch's word-embedding gradient into `table`'s gradient, which becomes the
    /// kept buffer when it has none.
    pub fn accumulate_words(&mut self, table: &Tensor, lookup: WordLookup) -> Result<()> {
        let fits = |b: &Tensor| {
            b.size() == table.size() && b.kind() == table.kind() && b.device() == table.device()
        };
        if !self.word_buffer.as_ref().is_some_and(fits) {
            self.word_buffer = Some(tch::no_grad(|| table.zeros_like()));
        }
        // A gradient before the step's first rows are added is autograd's: the table also
        // feeds a tied output layer, whose matrix product gives it a gradient (zeros at worst)
        // in every micro-batch, accumulated in place into whatever the table's gradient is
        // then. Such steps clear the whole buffer instead of tracking rows.
        let from_autograd = matches!(self.written, Written::Nothing) && table.grad().defined();
        let ids = lookup.accumulate(table, self.word_buffer.as_ref().expect("just set"))?;
        self.written = match (std::mem::take(&mut self.written), ids) {
            (Written::All, _) => Written::All,
            _ if from_autograd => Written::All,
            (Written::Rows(mut rows), Some(ids)) => {
                rows.push(ids);
                Written::Rows(rows)
            }
            (_, Some(ids)) => Written::Rows(vec![ids]),
            (written, None) => written,
        };
        Ok(())
    }

    /// `zero_grad(set_to_none=True)`, as transformers calls it: every gradient becomes None,
    /// so a parameter that gets none in the next step is not updated, as in torch.
    pub fn zero_grad(&mut self) -> Result<()> {
        for p in self.params() {
            if p.tensor.grad().defined() {
                ops::set_grad(&p.tensor, None)?;
            }
        }
        if let Some(buffer) = &mut self.word_buffer {
            match std::mem::take(&mut self.written) {
                Written::Nothing => {}
                Written::Rows(rows) => {
                    let _ = tch::no_grad(|| buffer.f_index_fill_(0, &Tensor::cat(&rows, 0), 0.0))?;
                }
                Written::All => {
                    let _ = buffer.zero_();
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn decay_groups_follow_transformers() {
        assert!(!decays("model.layers.1.attn_norm.weight"));
        assert!(!decays("model.embeddings.norm.weight"));
        assert!(!decays("model.final_norm.weight"));
        assert!(!decays("head.norm.weight"));
        assert!(decays("model.layers.1.attn.Wqkv.weight"));
        assert!(decays("model.normal.weight"), "only whole parts named norm");
        assert!(!decays("distilbert.transformer.layer.0.sa_layer_norm.weight"));
        assert!(decays("bert.encoder.layer.0.attention.self.query.weight"));
        assert!(decays("bert.embeddings.word_embeddings.weight"));
        assert!(!decays("bert.encoder.layer.0.attention.self.query.bias"));
        assert!(!decays("bert.embeddings.LayerNorm.weight"));
        assert!(!decays("distilbert.transformer.layer.1.sa_layer_norm.weight"));
        assert!(!decays("distilbert.transformer.layer.1.output_layer_norm.weight"));
    }

    #[test]
    fn only_parameters_with_gradients_move() {
        let w = Tensor::ones([2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let b = Tensor::ones([2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let mut opt = Optimizer::new(
            vec![("w".into(), w.shallow_clone()), ("b.bias".into(), b.shallow_clone())],
            0.1,
            0.9,
            0.999,
            1e-8,
        );
        (&w * 3.0).sum(Kind::Float).backward();
        opt.step(0.01).unwrap();
        assert!(w.double_value(&[0]) < 1.0);
        assert_eq!(b.double_value(&[0]), 1.0);
        assert_eq!(opt.groups[0].params[0].step.double_value(&[]), 1.0);
        assert_eq!(opt.groups[1].params[0].step.double_value(&[]), 0.0);
        opt.zero_grad().unwrap();
        assert!(!w.grad().defined());
        // A parameter without a gradient is skipped, as torch skips `grad is None`.
        let before = w.copy();
        opt.step(0.01).unwrap();
        assert!(w.equal(&before));
    }
}
