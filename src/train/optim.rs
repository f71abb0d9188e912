//! AdamW as the transformers Trainer builds it (`Trainer.create_optimizer`): two parameter
//! groups, weight decay for all but biases and LayerNorm weights, and torch's fused AdamW
//! kernel for the update. Its state is laid out as `torch.optim.AdamW.state_dict()` so that a
//! checkpoint's optimizer.pt reads in torch too.

use super::{adamw, clip};
use crate::error::{Error, Result};
use crate::models::probs::torch_lanes;
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
    /// Its bfloat16 data, where bfloat16 steps use it only in bfloat16.
    half: Option<HalfWeight>,
}

/// A parameter that a bfloat16 step reaches only through its cast to bfloat16 (autocast's, at a
/// linear layer). During the step's forward and backward its data is this bfloat16 copy, so
/// that autocast has nothing to cast and its gradient stays the cast's bfloat16 one; the update
/// (`adamw`) reads that gradient and writes the copy anew. transformers' numbers stay: the
/// copy is the cast of the current weight, the gradient's cast to float32 is exact, its norm
/// is computed in float32, and the update is libtorch's bit for bit.
struct HalfWeight {
    /// The float32 data, which the parameter holds outside the step's forward and backward.
    master: Tensor,
    /// The bfloat16 copy of the current weight; None until made, and after an update that did
    /// not write it.
    copy: Option<Tensor>,
    /// The gradient of the step's backward, until zero_grad.
    grad: Option<Tensor>,
}

/// Whether and where the steps use `HalfWeight`s.
#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum HalfWeights {
    #[default]
    Off,
    /// To be found at the next step's loss, with libtorch's float vector width.
    Searching { lanes: usize },
    /// Found (perhaps none), with libtorch's float vector width.
    Found { lanes: usize },
}

impl Param {
    /// Its weight and moments, for `adamw::LazyRows`.
    fn table(&self) -> adamw::Table<'_> {
        adamw::Table { param: &self.tensor, exp_avg: &self.exp_avg, exp_avg_sq: &self.exp_avg_sq }
    }

    /// Its gradient, if it has one: the half weights' in bfloat16 after a step.
    fn grad(&self) -> Option<Tensor> {
        let grad = self.tensor.grad();
        if grad.defined() {
            return Some(grad);
        }
        self.half.as_ref().and_then(|h| h.grad.as_ref()).map(Tensor::shallow_clone)
    }
}

/// The rows a step wrote into the kept word buffer (`Written::Rows`), each once, sorted.
fn sorted_rows(rows: &[Tensor]) -> Result<Vec<i64>> {
    Ok(Vec::<i64>::try_from(&Tensor::f_cat(rows, 0)?.f_internal_unique(true, false)?.0)?)
}

/// Counts a step taken outside `_fused_adamw_` in `step`, a float32 count as
/// `_foreach_add_(steps, 1)` adds it; returns the new count.
fn count_step(step: &Tensor) -> Result<f64> {
    let next = step.double_value(&[]) as f32 + 1.0;
    let _ = step.shallow_clone().f_fill_(f64::from(next))?;
    Ok(f64::from(next))
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
    half_weights: HalfWeights,
    /// The clipping coefficient of the step's gradients, which the update of the half
    /// weights multiplies their gradients by.
    clip: f32,
    /// Where the steps update only the word table's rows that have a gradient.
    lazy: Option<LazyWords>,
}

/// The word table updated row by row (`adamw::LazyRows`): where a step's gradient is the kept
/// buffer, non-zero only at the rows it wrote, only those rows take the step; the others take
/// it when a forward reads them (`catch_up_words`) or when the table must be whole (`settle`:
/// before an evaluation or a checkpoint, and at the end of the run). Over MiniLM's 30522 rows,
/// a step reaches about 300.
struct LazyWords {
    /// libtorch's float vector width.
    lanes: usize,
    /// The table's place, (group, parameter), once a step has updated it row by row.
    at: Option<(usize, usize)>,
    rows: adamw::LazyRows,
}

/// The word table's place among the parameters, (group, index), and the rows of it a step
/// reaches (`Optimizer::reached_words`).
struct Reached {
    at: (usize, usize),
    rows: Vec<i64>,
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
            let param = Param { name, tensor, exp_avg, exp_avg_sq, step, half: None };
            groups[group].params.push(param);
        }
        Optimizer {
            groups,
            beta1,
            beta2,
            eps,
            word_buffer: None,
            written: Written::Nothing,
            half_weights: HalfWeights::Off,
            clip: 1.0,
            lazy: None,
        }
    }

    /// Whether the next steps update only the word table's rows that have a gradient (see
    /// `LazyWords`): on the CPU where libtorch runs its AVX2 or AVX-512 kernels, whose AdamW
    /// `adamw` follows, and where nothing reads the weights between the steps but the steps
    /// themselves and the callers of `settle`.
    pub fn use_lazy_words(&mut self, on: bool) -> Result<()> {
        self.settle()?;
        self.lazy = torch_lanes().filter(|_| on).map(|lanes| LazyWords {
            lanes: lanes as usize,
            at: None,
            rows: Default::default(),
        });
        Ok(())
    }

    /// Before a forward that looks up `ids` in the word table: their rows take the steps they
    /// missed.
    pub fn catch_up_words(&mut self, ids: &Tensor) -> Result<()> {
        let Some(LazyWords { lanes, at: Some((g, i)), rows }) = &mut self.lazy else {
            return Ok(());
        };
        if rows.is_whole() {
            return Ok(());
        }
        let (ids, _) = ids.f_reshape([-1])?.f_internal_unique(false, false)?;
        let ids = Vec::<i64>::try_from(&ids)?;
        rows.catch_up(&self.groups[*g].params[*i].table(), &ids, *lanes)
    }

    /// Every row of the word table takes the steps it missed: the weights and moments are
    /// those of updates over the whole table.
    pub fn settle(&mut self) -> Result<()> {
        let Some(LazyWords { lanes, at: Some((g, i)), rows }) = &mut self.lazy else {
            return Ok(());
        };
        rows.settle(&self.groups[*g].params[*i].table(), *lanes)
    }

    /// Whether the next steps give bfloat16 data to the parameters they use only in bfloat16
    /// (see `HalfWeight`): for bfloat16 autocast on the CPU where libtorch runs its AVX2 or
    /// AVX-512 kernels, whose AdamW `adamw` follows, each step's gradients the backward's alone
    /// (no accumulation over micro-batches, which adds in float32, nor averaging over
    /// processes). The parameters are found at the next step's loss (`find_half_weights`);
    /// those found before are forgotten, and with them copies the caller may have outdated.
    pub fn use_half_weights(&mut self, on: bool) {
        self.half_weights = match torch_lanes().filter(|_| on) {
            Some(lanes) => HalfWeights::Searching { lanes: lanes as usize },
            None => HalfWeights::Off,
        };
        for group in &mut self.groups {
            for p in &mut group.params {
                p.half = None;
            }
        }
    }

    /// At the loss of the first step after `use_half_weights(true)`, before its backward:
    /// finds the parameters that the loss reaches only through a cast to bfloat16, which the
    /// next steps give bfloat16 data.
    pub fn find_half_weights(&mut self, loss: &Tensor) -> Result<()> {
        let HalfWeights::Searching { lanes } = self.half_weights else { return Ok(()) };
        let tensors: Vec<Tensor> = self.params().map(|p| p.tensor.shallow_clone()).collect();
        let found = ops::cast_only(loss, &tensors)?;
        let params = self.groups.iter_mut().flat_map(|g| g.params.iter_mut());
        for (p, found) in params.zip(found) {
            if found {
                let master = p.tensor.detach();
                p.half = Some(HalfWeight { master, copy: None, grad: None });
            }
        }
        self.half_weights = HalfWeights::Found { lanes };
        Ok(())
    }

    /// Before a step's forward: the half weights take their bfloat16 data (`leave_half`
    /// gives them back their float32 data).
    pub fn enter_half(&mut self) {
        for p in self.groups.iter_mut().flat_map(|g| g.params.iter_mut()) {
            if let Some(half) = &mut p.half {
                let copy = half
                    .copy
                    .get_or_insert_with(|| tch::no_grad(|| half.master.to_kind(Kind::BFloat16)));
                p.tensor.shallow_clone().set_data(copy);
            }
        }
    }

    /// After the step's backward, or after it failed: the half weights' gradients move aside,
    /// for the update, and their float32 data returns.
    pub fn leave_half(&mut self) -> Result<()> {
        for p in self.groups.iter_mut().flat_map(|g| g.params.iter_mut()) {
            // Those found during this step still hold their float32 data and gradient.
            if let Some(half) = p.half.as_mut().filter(|_| p.tensor.kind() == Kind::BFloat16) {
                let grad = p.tensor.grad();
                p.tensor.shallow_clone().set_data(&half.master);
                if grad.defined() {
                    ops::set_grad(&p.tensor, None)?;
                    half.grad = Some(grad);
                }
            }
        }
        Ok(())
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
    pub fn load_state(&mut self, saved: &[(String, Tensor, Tensor, Tensor)]) -> Result<()> {
        self.settle()?;
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

    /// The defined gradients of all parameters (for clipping): the half weights' are
    /// bfloat16.
    pub fn grads(&self) -> Vec<Tensor> {
        self.params().filter_map(Param::grad).collect()
    }

    /// `grads()`, to be overwritten by their average over the processes: the kept word
    /// buffer's rows then hold the other processes' gradients too, and zero_grad clears it whole.
    pub fn grads_to_average(&mut self) -> Vec<Tensor> {
        self.written = Written::All;
        self.grads()
    }

    /// clip_grad_norm_ of `grads` (this optimizer's, as `grads()` returned them). In CPU
    /// memory `clip::Grads` reads the kept word buffer only at the rows the step wrote (it holds
    /// zeros elsewhere): over the whole table they took a tenth of what a MiniLM step spends
    /// outside its matrix products (bench/README.md). A norm that is not finite scales every
    /// gradient by NaN or 0, also the kept word buffer's rows that the step did not write (NaN
    /// fills them), which zero_grad then clears whole.
    pub fn clip_grad_norm(&mut self, grads: &[Tensor], max_norm: f64) -> Result<f64> {
        // Which of them clipping scales: all but the half weights', which the update scales.
        let scaled: Vec<bool> = self
            .params()
            .filter(|p| p.grad().is_some())
            .map(|p| p.tensor.grad().defined())
            .collect();
        let words = match (&self.written, &self.word_buffer) {
            (Written::Rows(rows), Some(buffer)) if !rows.is_empty() => {
                Some((buffer, sorted_rows(rows)?))
            }
            _ => None,
        };
        let words = words.as_ref().map(|(buffer, rows)| (*buffer, &rows[..]));
        let clipped = match clip::Grads::new(grads, &scaled, words)? {
            Some(grads) => grads.clip(max_norm),
            None => ops::clip_grad_norm(grads, &scaled, max_norm)?,
        };
        if clipped.coefficient.is_nan() {
            if let Some(buffer) = &self.word_buffer {
                let _ = tch::no_grad(|| buffer.shallow_clone().f_fill_(f64::NAN))?;
            }
        }
        self.clip = clipped.coefficient as f32;
        if !clipped.norm.is_finite() {
            self.written = Written::All;
        }
        Ok(clipped.norm)
    }

    /// One AdamW update at learning rate `lr`; parameters without a gradient are left alone.
    pub fn step(&mut self, lr: f64) -> Result<()> {
        // The word table and the rows that take this step, where only they do.
        let reached = self.reached_words()?;
        if reached.is_none() {
            self.settle()?;
        }
        let (beta1, beta2, eps, clip) = (self.beta1, self.beta2, self.eps, self.clip);
        for (g, group) in self.groups.iter_mut().enumerate() {
            let hp = AdamW { lr, beta1, beta2, eps, weight_decay: group.weight_decay };
            let table = reached.as_ref().filter(|r| r.at.0 == g).map(|r| (r.at.1, &r.rows));
            let with_grad: Vec<&Param> = (group.params.iter().enumerate())
                .filter(|&(i, p)| p.tensor.grad().defined() && table.is_none_or(|t| t.0 != i))
                .map(|(_, p)| p)
                .collect();
            let list = |f: fn(&Param) -> Tensor| with_grad.iter().map(|p| f(p)).collect::<Vec<_>>();
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
            if let (Some((i, rows)), Some(lazy)) = (table, &mut self.lazy) {
                let p = &group.params[i];
                let step = count_step(&p.step)?;
                lazy.at = Some((g, i));
                lazy.rows.step(&p.table(), hp, step, &p.tensor.grad(), rows, lazy.lanes)?;
            }
            let HalfWeights::Found { lanes } = self.half_weights else { continue };
            let mut updates = Vec::new();
            for p in &mut group.params {
                let Some(half) = &mut p.half else { continue };
                if p.tensor.grad().defined() {
                    half.copy = None; // updated from a float32 gradient: copied anew
                    continue;
                }
                let Some(grad) = &half.grad else { continue };
                let step = count_step(&p.step)?;
                let weight = half.copy.get_or_insert_with(|| {
                    Tensor::empty(p.tensor.size(), (Kind::BFloat16, p.tensor.device()))
                });
                updates.push(adamw::Update {
                    state: adamw::Table {
                        param: &half.master,
                        exp_avg: &p.exp_avg,
                        exp_avg_sq: &p.exp_avg_sq,
                    },
                    step,
                    grad,
                    weight,
                });
            }
            adamw::update(&updates, hp, clip, lanes)?;
        }
        Ok(())
    }

    /// Where only some rows of the word table take this step: the table's place (group,
    /// parameter) and the rows the step reaches (sorted). The table's gradient is then the kept
    /// buffer, non-zero only at the rows the step wrote.
    fn reached_words(&self) -> Result<Option<Reached>> {
        let (Some(_), Written::Rows(rows), Some(buffer)) =
            (&self.lazy, &self.written, &self.word_buffer)
        else {
            return Ok(None);
        };
        let at = self.groups.iter().enumerate().find_map(|(g, group)| {
            let i = group.params.iter().position(|p| {
                let grad = p.tensor.grad();
                grad.defined() && grad.is_set_to(buffer)
            })?;
            Some((g, i))
        });
        let (Some(at), false) = (at, rows.is_empty()) else { return Ok(None) };
        Ok(Some(Reached { at, rows: sorted_rows(rows)? }))
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
        for p in self.groups.iter_mut().flat_map(|g| g.params.iter_mut()) {
            if p.tensor.grad().defined() {
                ops::set_grad(&p.tensor, None)?;
            }
            if let Some(half) = &mut p.half {
                half.grad = None;
            }
        }
        self.clip = 1.0;
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

    /// A small network under bfloat16 autocast, trained four steps with clipping, with and
    /// without half weights: the same norms and parameters bit for bit, and the half weights
    /// are the linear layers' (not the LayerNorm's, which runs in float32, nor a weight also
    /// used outside autocast).
    #[test]
    fn half_weights_train_as_autocast_does_bit_for_bit() {
        use crate::ops::{Autocast, Half};
        use tch::nn::{self, Module};
        if torch_lanes().is_none() {
            return;
        }
        let train = |half: bool| {
            let vs = nn::VarStore::new(Device::Cpu);
            let root = vs.root();
            let first = nn::linear(&root / "first", 16, 40, Default::default());
            let norm = nn::layer_norm(&root / "norm", vec![40], Default::default());
            let second = nn::linear(&root / "second", 40, 3, Default::default());
            let shared = nn::linear(&root / "shared", 16, 16, Default::default());
            let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
            named.sort_by(|a, b| a.0.cmp(&b.0));
            // Values of their own: torch's generator is shared with the tests running beside.
            let pattern = |size: &[i64], seed: f64| {
                let n: i64 = size.iter().product();
                (Tensor::arange(n, (Kind::Float, Device::Cpu)) * 0.7 + seed).sin().view(size)
            };
            for (i, (_, t)) in named.iter().enumerate() {
                let value = pattern(&t.size(), i as f64) * 0.3;
                tch::no_grad(|| t.shallow_clone().copy_(&value));
            }
            let shared_named = named.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
            let mut opt = Optimizer::new(shared_named, 0.01, 0.9, 0.999, 1e-8);
            opt.use_half_weights(half);
            let x = pattern(&[8, 16], 0.5);
            let labels = Tensor::from_slice(&[0i64, 1, 2, 0, 1, 2, 0, 1]);
            let mut norms = Vec::new();
            for _ in 0..4 {
                opt.enter_half();
                let loss = {
                    let _autocast = Autocast::enter(Device::Cpu, Half::BFloat16).unwrap();
                    // `shared`'s weight is used in float32 too.
                    let h = shared.forward(&x) + shared.ws.sum(Kind::Float);
                    let h = norm.forward(&first.forward(&h)).gelu("none");
                    second.forward(&h).cross_entropy_for_logits(&labels)
                };
                opt.find_half_weights(&loss).unwrap();
                loss.backward();
                opt.leave_half().unwrap();
                let grads = opt.grads();
                norms.push(opt.clip_grad_norm(&grads, 0.05).unwrap());
                opt.step(1e-2).unwrap();
                opt.zero_grad().unwrap();
            }
            let mut halves: Vec<String> =
                opt.params().filter(|p| p.half.is_some()).map(|p| p.name.clone()).collect();
            halves.sort();
            let params: Vec<Tensor> = named.iter().map(|(_, t)| t.copy()).collect();
            (norms, params, halves)
        };
        let (norms, params, none) = train(false);
        let (half_norms, half_params, halves) = train(true);
        assert!(none.is_empty());
        assert_eq!(
            halves,
            ["first.bias", "first.weight", "second.bias", "second.weight", "shared.bias"]
        );
        assert!(norms.iter().all(|&n| n > 0.05), "clipped: {norms:?}");
        assert_eq!(norms, half_norms);
        for (a, b) in params.iter().zip(&half_params) {
            assert_eq!(b.kind(), Kind::Float);
            assert!(a.equal(b));
        }
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
