//! The encoder: embeddings, then the post-LayerNorm layers shared by BERT, RoBERTa, XLM-RoBERTa,
//! DistilBERT and ELECTRA (BERT's, after a projection of the embeddings when they are narrower),
//! or ModernBERT's pre-norm layers (`modernbert.rs`).
//!
//! The four differ only in names and in a few details, each noted where it is handled:
//! RoBERTa's position ids (`modeling_roberta.py`, `create_position_ids_from_input_ids`),
//! DistilBERT's missing token types and missing dropout after the attention projection
//! (`modeling_distilbert.py`, `TransformerBlock`). Variables are created under the same paths as
//! the transformers state dict (`bert.encoder.layer.3.attention.self.query.weight`), so
//! checkpoints load without a renaming table.

use super::attention::{mask_bias, AttentionImpl, Pass, SelfAttention};
use super::config::{Activation, Arch, ModelConfig};
use super::deberta;
use super::dropout::dropout;
use super::embeddings::{Embeddings, WordLookup};
use super::init::{apply, layer_norm, linear};
use super::modernbert;
use super::Batch;
use crate::error::{Error, Result};
use crate::ops::{self, RowMap};
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

/// One encoder layer (`BertLayer`, DistilBERT's `TransformerBlock`): attention, its output
/// projection and LayerNorm, the feed-forward block and its LayerNorm.
struct Layer {
    attention: SelfAttention,
    attention_output: nn::Linear,
    attention_norm: nn::LayerNorm,
    ffn_in: nn::Linear,
    ffn_out: nn::Linear,
    output_norm: nn::LayerNorm,
    activation: Activation,
    hidden_dropout: f64,
    /// BERT applies dropout after the attention output projection; DistilBERT does not.
    attention_output_dropout: bool,
}

impl Layer {
    fn new(p: nn::Path, config: &ModelConfig) -> Layer {
        let (h, i) = (config.hidden_size, config.intermediate_size);
        let lin = |path: nn::Path, input, output| linear(path, input, output, config);
        let common =
            |attention, attention_output, attention_norm, ffn_in, ffn_out, output_norm| Layer {
                attention,
                attention_output,
                attention_norm,
                ffn_in,
                ffn_out,
                output_norm,
                activation: config.activation,
                hidden_dropout: config.hidden_dropout,
                attention_output_dropout: config.arch != Arch::DistilBert,
            };
        match config.arch {
            Arch::DistilBert => {
                let a = &p / "attention";
                common(
                    SelfAttention::new(a.clone(), ["q_lin", "k_lin", "v_lin"], config),
                    lin(&a / "out_lin", h, h),
                    layer_norm(&p / "sa_layer_norm", config),
                    lin(&p / "ffn" / "lin1", h, i),
                    lin(&p / "ffn" / "lin2", i, h),
                    layer_norm(&p / "output_layer_norm", config),
                )
            }
            // BERT's layout (ModernBERT has its own layers).
            _ => {
                let o = &p / "attention" / "output";
                common(
                    SelfAttention::new(
                        &p / "attention" / "self",
                        ["query", "key", "value"],
                        config,
                    ),
                    lin(&o / "dense", h, h),
                    layer_norm(&o / "LayerNorm", config),
                    lin(&p / "intermediate" / "dense", h, i),
                    lin(&p / "output" / "dense", i, h),
                    layer_norm(&p / "output" / "LayerNorm", config),
                )
            }
        }
    }

    fn forward(&self, x: &Tensor, pass: &Pass) -> Tensor {
        let train = pass.train;
        let context = self.attention.forward(x, pass);
        let mut attended = apply(&self.attention_output, &context);
        if self.attention_output_dropout {
            attended = dropout(&attended, self.hidden_dropout, train);
        }
        let attended = self.attention_norm.forward(&(attended + x));
        let inner = activate(self.activation, &apply(&self.ffn_in, &attended));
        let out = dropout(&apply(&self.ffn_out, &inner), self.hidden_dropout, train);
        self.output_norm.forward(&(out + attended))
    }
}

/// How the encoder runs: training (dropout on) and, for the training loop, the word
/// embeddings' gradient left to `WordLookup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mode {
    pub train: bool,
    pub defer_word_gradient: bool,
    /// Skip the padding in the token-wise layers (see `Packing`); the padded positions' hidden
    /// states are then zeros instead of transformers' values, which only a head reading every
    /// position would see.
    pub pack: bool,
}

/// The layers after the embeddings.
enum Layers {
    Post(Vec<Layer>),
    ModernBert(modernbert::Stack),
    Deberta(Box<deberta::Stack>),
}

pub struct Encoder {
    pub embeddings: Embeddings,
    /// ELECTRA's `embeddings_project`, when `embedding_size` differs from `hidden_size`.
    project: Option<nn::Linear>,
    layers: Layers,
    max_positions: i64,
    /// Whether the inputs' length is bounded by the position embeddings (DeBERTa-v2 without
    /// `position_biased_input` has relative positions only, so no bound).
    bounded: bool,
    /// DeBERTa-v2 without token type embeddings takes `token_type_ids` and ignores them (its
    /// tokenizer makes them).
    ignores_token_types: bool,
    vocab_size: i64,
    type_vocab_size: i64,
    pub attention: AttentionImpl,
}

impl Encoder {
    /// Creates the encoder's variables under `p` (the model's `base_model_prefix`).
    pub fn new(p: nn::Path, config: &ModelConfig) -> Encoder {
        let embeddings = Embeddings::new(&p / "embeddings", config);
        let (e, h) = (config.embedding_size, config.hidden_size);
        // ELECTRA's projection after the embeddings (DeBERTa-v2's `embed_proj` is inside them).
        let project = (e != h && config.deberta.is_none())
            .then(|| linear(&p / "embeddings_project", e, h, config));
        let layers = match (&config.modernbert, &config.deberta, config.arch) {
            (Some(modern), _, _) => Layers::ModernBert(modernbert::Stack::new(&p, config, modern)),
            (None, Some(deberta), _) => {
                Layers::Deberta(Box::new(deberta::Stack::new(&p, config, deberta)))
            }
            (None, None, arch) => {
                let stack = match arch {
                    Arch::DistilBert => &p / "transformer" / "layer",
                    _ => &p / "encoder" / "layer",
                };
                Layers::Post(
                    (0..config.num_layers).map(|i| Layer::new(&stack / i, config)).collect(),
                )
            }
        };
        Encoder {
            embeddings,
            project,
            layers,
            max_positions: config.max_position_embeddings,
            bounded: config.deberta.as_ref().is_none_or(|d| d.position_biased_input),
            ignores_token_types: config.deberta.is_some() && config.type_vocab_size == 0,
            vocab_size: config.vocab_size,
            type_vocab_size: config.type_vocab_size,
            attention: AttentionImpl::Auto,
        }
    }

    pub fn word_embeddings(&self) -> &Tensor {
        &self.embeddings.word.ws
    }

    /// The longest input the position embeddings cover (RoBERTa's positions start after the
    /// padding index).
    pub fn max_sequence_length(&self) -> i64 {
        if !self.bounded {
            return i64::MAX;
        }
        match self.embeddings.roberta_padding_idx {
            Some(pad) => self.max_positions - pad - 1,
            None => self.max_positions,
        }
    }

    /// Checks the inputs, so that bad ids give an exception instead of a libtorch error.
    pub fn check_inputs(&self, inputs: &Batch) -> Result<()> {
        let Batch { input_ids, attention_mask, token_type_ids, position_ids, .. } = *inputs;
        let (batch, seq) = match input_ids.size()[..] {
            [b, s] => (b, s),
            ref other => {
                return Err(Error::value(format!(
                    "input_ids must have shape (batch_size, sequence_length), got {other:?}"
                )))
            }
        };
        if seq == 0 {
            return Err(Error::value(format!(
                "input_ids has shape [{batch}, 0]: every sequence needs at least one token (a \
                 tokenizer adds [CLS]/<s> even to an empty string)"
            )));
        }
        if !is_integer(input_ids.kind()) {
            return Err(Error::type_error(format!(
                "input_ids must hold integers, got {:?}",
                input_ids.kind()
            )));
        }
        if position_ids.is_none() && seq > self.max_sequence_length() {
            return Err(Error::value(format!(
                "the sequence length {seq} is longer than the model's maximum of {} positions \
                 (max_position_embeddings {}); truncate the inputs, e.g. tokenizer(..., truncation=True)",
                self.max_sequence_length(),
                self.max_positions
            )));
        }
        check_ids("input_ids", input_ids, self.vocab_size)?;
        for (name, tensor) in [
            ("attention_mask", attention_mask),
            ("token_type_ids", token_type_ids),
            ("position_ids", position_ids),
        ] {
            if let Some(t) = tensor {
                if t.size() != [batch, seq] {
                    return Err(Error::value(format!(
                        "{name} has shape {:?} but input_ids has shape [{batch}, {seq}]",
                        t.size()
                    )));
                }
            }
        }
        if let Some(t) = token_type_ids.filter(|_| !self.ignores_token_types) {
            if self.type_vocab_size == 0 {
                return Err(Error::value(
                    "this model has no token type embeddings; do not pass token_type_ids",
                ));
            }
            check_ids("token_type_ids", t, self.type_vocab_size)?;
        }
        if let (Some(t), true) = (position_ids, self.bounded) {
            check_ids("position_ids", t, self.max_positions)?;
        }
        Ok(())
    }

    /// The last hidden states. Inputs must have passed `check_inputs`.
    pub fn forward(&self, inputs: &Batch, mode: Mode) -> Hidden {
        let (embedded, word_lookup) = self.embeddings.forward(
            inputs.input_ids,
            inputs.token_type_ids,
            inputs.position_ids,
            inputs.attention_mask,
            mode.train,
            mode.defer_word_gradient,
        );
        let embedded = match &self.project {
            Some(project) => project.forward(&embedded),
            None => embedded,
        };
        let bias = inputs.attention_mask.map(|m| mask_bias(m, embedded.kind()));
        let packing = inputs.attention_mask.filter(|_| mode.pack).and_then(Packing::of);
        // The groups serve the layers whose attention is `SelfAttention`'s, on the CPU.
        let grouped = matches!(self.layers, Layers::Post(_)) && embedded.device() == Device::Cpu;
        let groups = packing.as_ref().filter(|_| grouped).map(|p| Groups::of(p, embedded.kind()));
        let pass = Pass {
            packing: packing.as_ref(),
            groups: groups.as_ref(),
            bias: bias.as_ref(),
            train: mode.train,
            attention: self.attention,
            layout: inputs.input_ids.size2().expect("input_ids is 2-D (checked)"),
        };
        let mut states = match &packing {
            Some(p) => p.pack(&embedded),
            None => embedded,
        };
        match &self.layers {
            Layers::Post(layers) => {
                for layer in layers {
                    states = layer.forward(&states, &pass);
                }
            }
            Layers::ModernBert(stack) => states = stack.forward(states, inputs, &pass),
            Layers::Deberta(stack) => states = stack.forward(states, inputs, &pass),
        }
        Hidden { states, packing, word_lookup }
    }
}

/// The real (attended) tokens of a padded batch, so that the token-wise layers (all but
/// attention) skip the padding: the padded positions' outputs never reach the attended ones, so
/// the results are transformers' while the padding costs no matrix products.
pub struct Packing {
    /// Flat [batch × seq] positions of the attended tokens, row by row.
    index: Tensor,
    /// Flat positions of the padding.
    padding: Tensor,
    /// For each flat position, its row in the packed layout, or -1 (padding).
    source: Tensor,
    /// On the host, for each row: its number of attended tokens, where its first token is in
    /// the packed layout, and its last attended column (the first is column 0).
    lengths: Vec<i64>,
    starts: Vec<i64>,
    last: Vec<i64>,
    /// The attention's layout, one block [batch, seq].
    layout: [[i64; 2]; 1],
}

impl Packing {
    /// None when there is no padding, or when a row starts with padding (left padding: the
    /// heads read position 0, which transformers computes even when it is padding).
    pub(crate) fn of(mask: &Tensor) -> Option<Packing> {
        let (batch, seq) = mask.size2().ok()?;
        let keep = mask.ne(0);
        let lengths = keep.sum_dim_intlist(1, false, Kind::Int64);
        if lengths.sum(Kind::Int64).int64_value(&[]) == batch * seq
            || keep.select(1, 0).all().int64_value(&[]) == 0
        {
            return None;
        }
        let index = keep.view([-1]).nonzero().squeeze_dim(1);
        let padding = keep.view([-1]).logical_not().nonzero().squeeze_dim(1);
        let device = index.device();
        let rows = Tensor::arange(index.size()[0], (Kind::Int64, device));
        let source =
            Tensor::full([batch * seq], -1, (Kind::Int64, device)).index_copy(0, &index, &rows);
        let columns = Tensor::arange(seq, (Kind::Int64, device));
        let last = (keep.to_kind(Kind::Int64) * columns).amax(1, false);
        let host = Vec::<i64>::try_from(Tensor::cat(&[&lengths, &last], 0).to_device(Device::Cpu))
            .expect("lengths are int64");
        let (lengths, last) = (host[..batch as usize].to_vec(), host[batch as usize..].to_vec());
        let starts: Vec<i64> = (lengths.iter())
            .scan(0, |sum, &length| {
                let start = *sum;
                *sum += length;
                Some(start)
            })
            .collect();
        let layout = [[batch, seq]];
        Some(Packing { index, padding, source, lengths, starts, last, layout })
    }

    /// Each row's number of attended tokens: the sizes of the sequences in the packed layout,
    /// one after another.
    pub(crate) fn lengths(&self) -> &[i64] {
        &self.lengths
    }

    /// Where each row's first token is in the packed layout.
    pub(crate) fn starts(&self) -> &[i64] {
        &self.starts
    }

    /// Each row's last attended column (its first is column 0).
    pub(crate) fn last_columns(&self) -> &[i64] {
        &self.last
    }

    /// The column of each packed token in its row, [tokens].
    pub(crate) fn columns(&self) -> Tensor {
        self.index.remainder(self.layout[0][1])
    }

    pub(crate) fn map(&self) -> RowMap<'_> {
        RowMap { source: &self.source, index: &self.index, blocks: &self.layout }
    }

    /// [batch, seq, hidden] → [tokens, hidden].
    pub(crate) fn pack(&self, x: &Tensor) -> Tensor {
        let [[batch, seq]] = self.layout;
        if x.device() == Device::Cpu {
            let x = x.reshape([batch, 1, seq, -1]);
            return ops::merge_heads(&[&x], &self.map(), 1).expect("packing the tokens");
        }
        x.reshape([batch * seq, -1]).index_select(0, &self.index)
    }

    /// The packed tokens' entries of a [batch, seq] tensor, [tokens].
    pub(crate) fn gather(&self, x: &Tensor) -> Tensor {
        x.reshape([-1]).index_select(0, &self.index)
    }

    /// [tokens, hidden] → [batch, seq, hidden], zeros at the padding. Each element is written
    /// once (zeros only where the padding is), in place of a fresh tensor: at long, padded
    /// inputs, zero-filling and copying the whole layout cost more than the attention. On the
    /// CPU in one parallel pass (libtorch's index_fill_ and index_copy_ take several times as
    /// long, and their backward too).
    pub(crate) fn unpack(&self, x: &Tensor) -> Tensor {
        if x.device() == Device::Cpu {
            let heads = ops::split_heads(x, &self.map(), 1, 1, None).expect("unpacking the tokens");
            return heads[0].squeeze_dim(1);
        }
        let width = x.size()[1];
        let [[batch, seq]] = self.layout;
        let mut out = Tensor::empty([batch * seq, width], (x.kind(), x.device()));
        let _ = out.index_fill_(0, &self.padding, 0.0);
        let _ = out.index_copy_(0, &self.index, x);
        out.view([batch, seq, width])
    }
}

/// The fixed cost of one more block in `Groups`, in attention scores (query-key pairs): a
/// block's own products, probabilities and autograd nodes besides its scores. Chosen by
/// measurement on MiniLM (2 threads, batches of 16 tweets, bench/README.md): of 1,024, 4,096,
/// 16,384 and one block, 16,384 ran float32 training fastest.
const BLOCK_COST: i64 = 16_384;

/// The packed sequences in groups of similar length, for attention: each group a block [rows,
/// seq] padded to its own longest sequence, where `Packing`'s one block pads every sequence to
/// the batch's longest (batches of 16 tweets: 2.5 times the scores of the sequences
/// themselves). The results are the one block's: a sequence attends to its own tokens either
/// way, the padding's keys masked, and the padding's queries reach no token.
pub(crate) struct Groups {
    source: Tensor,
    index: Tensor,
    pub(crate) blocks: Vec<[i64; 2]>,
    /// Each block's additive mask [rows, 1, 1, seq], 0 at its sequences' tokens and the
    /// dtype's minimum at the padding (also where there is none: the one-pass probabilities
    /// take bfloat16 scores with a float32 mask only).
    pub(crate) biases: Vec<Tensor>,
}

impl Groups {
    /// The groups of `packing`'s sequences that minimise the blocks' scores plus `BLOCK_COST`
    /// per block, with masks in `kind`.
    pub(crate) fn of(packing: &Packing, kind: Kind) -> Groups {
        Groups::costing(packing, kind, BLOCK_COST)
    }

    /// As `of`, with `block_cost` scores per block. The sequences sorted by length (stably),
    /// each group a run of them: the best partition of a sorted list is one of runs.
    pub(crate) fn costing(packing: &Packing, kind: Kind, block_cost: i64) -> Groups {
        let lengths = packing.lengths();
        let mut order: Vec<usize> = (0..lengths.len()).collect();
        order.sort_by_key(|&b| lengths[b]);
        let sorted: Vec<i64> = order.iter().map(|&b| lengths[b]).collect();
        // best[j]: the least cost of the first j sorted sequences, and where its last run starts.
        let mut best = vec![(0i64, 0usize); sorted.len() + 1];
        for j in 1..=sorted.len() {
            best[j] = (0..j)
                .map(|i| (best[i].0 + (j - i) as i64 * sorted[j - 1].pow(2) + block_cost, i))
                .min()
                .expect("a run ends at j");
        }
        let mut runs = Vec::new();
        let mut end = sorted.len();
        while end > 0 {
            runs.push(best[end].1..end);
            end = best[end].1;
        }
        runs.reverse();
        let first = packing.starts();
        let tokens: i64 = lengths.iter().sum();
        let (mut source, mut index) = (Vec::new(), vec![0i64; tokens as usize]);
        let (mut blocks, mut biases) = (Vec::new(), Vec::new());
        for run in runs {
            let seq = sorted[run.end - 1];
            for &b in &order[run.clone()] {
                for c in 0..seq {
                    let attended = c < lengths[b];
                    if attended {
                        index[(first[b] + c) as usize] = source.len() as i64;
                    }
                    source.push(if attended { first[b] + c } else { -1 });
                }
            }
            blocks.push([run.len() as i64, seq]);
            // The block's attention mask: its sequences' tokens come first in their rows.
            let columns = Tensor::arange(seq, (Kind::Int64, Device::Cpu)).unsqueeze(0);
            let keep = columns.lt_tensor(&Tensor::from_slice(&sorted[run]).unsqueeze(1));
            biases.push(mask_bias(&keep, kind));
        }
        Groups {
            source: Tensor::from_slice(&source),
            index: Tensor::from_slice(&index),
            blocks,
            biases,
        }
    }

    pub(crate) fn map(&self) -> RowMap<'_> {
        RowMap { source: &self.source, index: &self.index, blocks: &self.blocks }
    }
}

/// The encoder's last hidden states, packed (padding skipped) or [batch, seq, hidden].
pub struct Hidden {
    states: Tensor,
    packing: Option<Packing>,
    pub word_lookup: Option<WordLookup>,
}

impl Hidden {
    /// The hidden state of each row's first token ([CLS] / <s>), [batch, hidden].
    pub fn first_tokens(&self) -> Tensor {
        match &self.packing {
            Some(p) => {
                let first = Tensor::from_slice(p.starts()).to_device(self.states.device());
                self.states.index_select(0, &first)
            }
            None => self.states.select(1, 0),
        }
    }

    /// Every position's hidden state, [batch, seq, hidden] (zeros at the padding when packed).
    pub fn all_tokens(&self) -> Tensor {
        match &self.packing {
            Some(p) => p.unpack(&self.states),
            None => self.states.shallow_clone(),
        }
    }

    /// The hidden states at the flat [batch × seq] positions `flat`, [positions, hidden]; when
    /// packed, the positions must be attended ones.
    pub fn at_positions(&self, flat: &Tensor) -> Tensor {
        match &self.packing {
            Some(p) => self.states.index_select(0, &p.source.index_select(0, flat)),
            None => {
                self.states.reshape([-1, *self.states.size().last().unwrap()]).index_select(0, flat)
            }
        }
    }

    /// The mean of each row's attended hidden states, [batch, hidden] (ModernBERT's "mean"
    /// pooling: `(h * mask).sum(1) / mask.sum(1)`; padding is zeros in the unpacked states).
    pub fn mean(&self, attention_mask: Option<&Tensor>) -> Tensor {
        let states = match &self.packing {
            Some(p) => p.unpack(&self.states),
            None => self.states.shallow_clone(),
        };
        let mask = match attention_mask {
            Some(m) => m.shallow_clone(),
            None => states.ones_like().select(2, 0).to_kind(Kind::Bool),
        };
        let summed = (&states * mask.unsqueeze(-1)).sum_dim_intlist(1, false, None);
        summed / mask.sum_dim_intlist(1, true, None)
    }
}

pub(crate) fn activate(activation: Activation, x: &Tensor) -> Tensor {
    match activation {
        Activation::Gelu => x.gelu("none"),
        Activation::GeluTanh => x.gelu("tanh"),
        Activation::Relu => x.relu(),
        Activation::Silu => x.silu(),
        Activation::Tanh => x.tanh(),
    }
}

pub(crate) fn is_integer(kind: Kind) -> bool {
    matches!(kind, Kind::Int64 | Kind::Int | Kind::Int16 | Kind::Int8 | Kind::Uint8)
}

/// `name` must hold integers in [0, limit).
fn check_ids(name: &str, ids: &Tensor, limit: i64) -> Result<()> {
    if !is_integer(ids.kind()) {
        return Err(Error::type_error(format!("{name} must hold integers, got {:?}", ids.kind())));
    }
    if ids.numel() == 0 {
        return Ok(());
    }
    let (min, max) = (ids.min().int64_value(&[]), ids.max().int64_value(&[]));
    let bad = if min < 0 { min } else { max };
    if min < 0 || max >= limit {
        let what = match name {
            "input_ids" => format!("the vocabulary (vocab_size {limit})"),
            "token_type_ids" => format!("the token types (type_vocab_size {limit})"),
            _ => format!("the positions (max_position_embeddings {limit})"),
        };
        return Err(Error::index(format!("{name} contains {bad}, outside {what}")));
    }
    Ok(())
}
