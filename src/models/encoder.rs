//! The post-LayerNorm transformer encoder shared by BERT, RoBERTa, XLM-RoBERTa and DistilBERT.
//!
//! The four differ only in names and in a few details, each noted where it is handled:
//! RoBERTa's position ids (`modeling_roberta.py`, `create_position_ids_from_input_ids`),
//! DistilBERT's missing token types and missing dropout after the attention projection
//! (`modeling_distilbert.py`, `TransformerBlock`). Variables are created under the same paths as
//! the transformers state dict (`bert.encoder.layer.3.attention.self.query.weight`), so
//! checkpoints load without a renaming table.

use super::config::{Activation, Arch, ModelConfig};
use super::dropout::dropout;
use crate::error::{Error, Result};
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// How attention probabilities are computed; all give transformers' results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionImpl {
    /// matmul, additive mask, softmax, dropout, matmul (`eager_attention_forward`).
    Explicit,
    /// libtorch's fused scaled_dot_product_attention.
    Fused,
    /// Per call, the faster of the two as measured by bench/attention.py: fused on CUDA and
    /// for float32 inference on 64 tokens or more; explicit otherwise (on this CPU the fused
    /// backward took up to 1.8x longer in bf16 and 1.14x in fp32).
    Auto,
}

impl AttentionImpl {
    fn resolve(self, device: tch::Device, kind: Kind, train: bool, seq: i64) -> AttentionImpl {
        match self {
            AttentionImpl::Auto
                if device.is_cuda() || (!train && kind == Kind::Float && seq >= 64) =>
            {
                AttentionImpl::Fused
            }
            AttentionImpl::Auto => AttentionImpl::Explicit,
            chosen => chosen,
        }
    }
}

pub(crate) fn normal_init(config: &ModelConfig) -> nn::Init {
    nn::Init::Randn { mean: 0., stdev: config.initializer_range }
}

/// transformers' `_init_weights` for nn.Linear: normal(0, initializer_range), zero bias.
pub(crate) fn linear(p: nn::Path, input: i64, output: i64, config: &ModelConfig) -> nn::Linear {
    let cfg = nn::LinearConfig {
        ws_init: normal_init(config),
        bs_init: Some(nn::Init::Const(0.)),
        bias: true,
    };
    nn::linear(p, input, output, cfg)
}

fn layer_norm(p: nn::Path, config: &ModelConfig) -> nn::LayerNorm {
    let cfg = nn::LayerNormConfig { eps: config.layer_norm_eps, ..Default::default() };
    nn::layer_norm(p, vec![config.hidden_size], cfg)
}

/// nn.Embedding as transformers initializes it: normal, with the padding row zeroed; the padding
/// row also receives no gradient.
fn embedding(
    p: nn::Path,
    num: i64,
    dim: i64,
    padding_idx: Option<i64>,
    config: &ModelConfig,
) -> nn::Embedding {
    let cfg = nn::EmbeddingConfig {
        ws_init: normal_init(config),
        padding_idx: padding_idx.unwrap_or(-1),
        ..Default::default()
    };
    let emb = nn::embedding(p, num, dim, cfg);
    if let Some(pad) = padding_idx {
        tch::no_grad(|| {
            let _ = emb.ws.get(pad).zero_();
        });
    }
    emb
}

/// DistilBERT's fixed sin/cos position table (`create_sinusoidal_embeddings`).
fn sinusoidal_table(positions: i64, dim: i64) -> Tensor {
    let pos = Tensor::arange(positions, (Kind::Double, tch::Device::Cpu)).unsqueeze(1);
    let j = Tensor::arange(dim, (Kind::Double, tch::Device::Cpu));
    let exponent = (&j - j.remainder(2)) / dim as f64;
    let angles = pos / Tensor::from(10000f64).pow(&exponent).unsqueeze(0);
    let table = Tensor::zeros([positions, dim], (Kind::Double, tch::Device::Cpu));
    let even = Tensor::arange_start_step(0, dim, 2, (Kind::Int64, tch::Device::Cpu));
    let odd = Tensor::arange_start_step(1, dim, 2, (Kind::Int64, tch::Device::Cpu));
    let table = table.index_copy(1, &even, &angles.index_select(1, &even).sin());
    table.index_copy(1, &odd, &angles.index_select(1, &odd).cos()).to_kind(Kind::Float)
}

pub struct Embeddings {
    word: nn::Embedding,
    position: nn::Embedding,
    token_type: Option<nn::Embedding>,
    layer_norm: nn::LayerNorm,
    dropout: f64,
    /// RoBERTa: positions count from padding_idx + 1 and pads keep padding_idx.
    roberta_padding_idx: Option<i64>,
    /// The word table's padding row, which receives no gradient.
    word_padding_idx: Option<i64>,
}

impl Embeddings {
    fn new(p: nn::Path, config: &ModelConfig) -> Embeddings {
        let roberta_padding_idx = match config.arch {
            Arch::Roberta | Arch::XlmRoberta => config.pad_token_id,
            Arch::Bert | Arch::DistilBert => None,
        };
        let h = config.hidden_size;
        let word =
            embedding(&p / "word_embeddings", config.vocab_size, h, config.pad_token_id, config);
        let mut position = embedding(
            &p / "position_embeddings",
            config.max_position_embeddings,
            h,
            roberta_padding_idx,
            config,
        );
        if config.sinusoidal_positions {
            tch::no_grad(|| {
                let table = sinusoidal_table(config.max_position_embeddings, h);
                position.ws.copy_(&table);
            });
            // transformers freezes the sinusoidal table (requires_grad = False)
            let _ = position.ws.set_requires_grad(false);
        }
        let token_type = (config.type_vocab_size > 0).then(|| {
            embedding(&p / "token_type_embeddings", config.type_vocab_size, h, None, config)
        });
        let layer_norm = layer_norm(&p / "LayerNorm", config);
        Embeddings {
            word,
            position,
            token_type,
            layer_norm,
            dropout: config.hidden_dropout,
            roberta_padding_idx,
            word_padding_idx: config.pad_token_id,
        }
    }

    /// The embedded inputs; with `defer_word_gradient`, also the word lookup whose gradient the
    /// caller accumulates (see `WordLookup`).
    fn forward(
        &self,
        input_ids: &Tensor,
        token_type_ids: Option<&Tensor>,
        position_ids: Option<&Tensor>,
        train: bool,
        defer_word_gradient: bool,
    ) -> (Tensor, Option<WordLookup>) {
        let (batch, seq) = input_ids.size2().expect("input_ids is 2-D (checked by the caller)");
        let device = input_ids.device();
        let position_ids = match (position_ids, self.roberta_padding_idx) {
            (Some(ids), _) => ids.shallow_clone(),
            (None, Some(pad)) => {
                let mask = input_ids.ne(pad).to_kind(Kind::Int);
                let incremental = mask.cumsum(1, Kind::Int) * &mask;
                incremental.to_kind(Kind::Int64) + pad
            }
            (None, None) => {
                Tensor::arange(seq, (Kind::Int64, device)).unsqueeze(0).expand([batch, seq], false)
            }
        };
        // Same order of additions as transformers: word + token type, then + position.
        let (embeddings, lookup) = match self.deferrable(defer_word_gradient) {
            true => {
                let looked = Tensor::embedding(&self.word.ws.detach(), input_ids, -1, false, false);
                let looked = looked.detach().set_requires_grad(true);
                let lookup = WordLookup {
                    ids: input_ids.shallow_clone(),
                    looked: looked.shallow_clone(),
                    padding_idx: self.word_padding_idx,
                };
                (looked, Some(lookup))
            }
            false => (self.word.forward(input_ids), None),
        };
        // Out of place (not +=): autograd needs the tensors as they were.
        let embeddings = match &self.token_type {
            Some(token_type) => {
                let ids = match token_type_ids {
                    Some(ids) => ids.shallow_clone(),
                    None => Tensor::zeros([batch, seq], (Kind::Int64, device)),
                };
                embeddings + token_type.forward(&ids)
            }
            None => embeddings,
        };
        let embeddings = embeddings + self.position.forward(&position_ids);
        (dropout(&self.layer_norm.forward(&embeddings), self.dropout, train), lookup)
    }

    /// Whether the word embeddings' gradient can be left to `WordLookup::accumulate`: a trained
    /// float32 table on the CPU. A half-precision table keeps libtorch's backward, which rounds
    /// the same sums differently; so does CUDA's, which also sums in another order and does not
    /// pay the CPU's cost of zeroing a fresh table-sized gradient.
    fn deferrable(&self, asked: bool) -> bool {
        let ws = &self.word.ws;
        asked && ws.requires_grad() && ws.kind() == Kind::Float && ws.device() == tch::Device::Cpu
    }
}

/// The word embeddings looked up outside autograd, for the training loop: libtorch's embedding
/// backward allocates and zeroes a gradient the size of the whole vocabulary table at every
/// step (47 MB for MiniLM, 14–17 ms of a 200 ms step here), while a batch touches a few hundred
/// rows. The loop instead adds the looked-up rows' gradients into one buffer it keeps.
pub struct WordLookup {
    ids: Tensor,
    /// The looked-up rows, a leaf that receives their gradient in backward.
    looked: Tensor,
    padding_idx: Option<i64>,
}

impl WordLookup {
    /// After backward: adds the rows' gradients into `table`'s gradient, as libtorch's
    /// `embedding_dense_backward` does (row by row in the order of the ids, padding_idx skipped,
    /// so the sums are bit-identical). When `table` has no gradient yet it becomes `buffer`,
    /// which must hold zeros.
    pub fn accumulate(self, table: &Tensor, buffer: &Tensor) -> Result<()> {
        let grad = self.looked.grad();
        if !grad.defined() {
            return Ok(());
        }
        let width = grad.size().last().copied().unwrap_or(0);
        let mut ids = self.ids.reshape([-1]);
        let mut rows = grad.reshape([-1, width]);
        if let Some(pad) = self.padding_idx {
            let keep = ids.ne(pad).nonzero().squeeze_dim(1);
            ids = ids.index_select(0, &keep);
            rows = rows.index_select(0, &keep);
        }
        let mut target = table.grad();
        if !target.defined() {
            crate::ops::set_grad(table, Some(buffer))?;
            target = buffer.shallow_clone();
        }
        let _ = tch::no_grad(|| target.f_index_add_(0, &ids, &rows))?;
        Ok(())
    }
}

struct Layer {
    query: nn::Linear,
    key: nn::Linear,
    value: nn::Linear,
    attention_output: nn::Linear,
    attention_norm: nn::LayerNorm,
    ffn_in: nn::Linear,
    ffn_out: nn::Linear,
    output_norm: nn::LayerNorm,
    /// BERT applies dropout after the attention output projection; DistilBERT does not.
    attention_output_dropout: bool,
}

impl Layer {
    fn new(p: nn::Path, config: &ModelConfig) -> Layer {
        let (h, i) = (config.hidden_size, config.intermediate_size);
        let lin = |path: nn::Path, input, output| linear(path, input, output, config);
        match config.arch {
            Arch::DistilBert => {
                let a = &p / "attention";
                Layer {
                    query: lin(&a / "q_lin", h, h),
                    key: lin(&a / "k_lin", h, h),
                    value: lin(&a / "v_lin", h, h),
                    attention_output: lin(&a / "out_lin", h, h),
                    attention_norm: layer_norm(&p / "sa_layer_norm", config),
                    ffn_in: lin(&p / "ffn" / "lin1", h, i),
                    ffn_out: lin(&p / "ffn" / "lin2", i, h),
                    output_norm: layer_norm(&p / "output_layer_norm", config),
                    attention_output_dropout: false,
                }
            }
            Arch::Bert | Arch::Roberta | Arch::XlmRoberta => {
                let s = &p / "attention" / "self";
                let o = &p / "attention" / "output";
                Layer {
                    query: lin(&s / "query", h, h),
                    key: lin(&s / "key", h, h),
                    value: lin(&s / "value", h, h),
                    attention_output: lin(&o / "dense", h, h),
                    attention_norm: layer_norm(&o / "LayerNorm", config),
                    ffn_in: lin(&p / "intermediate" / "dense", h, i),
                    ffn_out: lin(&p / "output" / "dense", i, h),
                    output_norm: layer_norm(&p / "output" / "LayerNorm", config),
                    attention_output_dropout: true,
                }
            }
        }
    }
}

pub struct Encoder {
    pub embeddings: Embeddings,
    layers: Vec<Layer>,
    num_heads: i64,
    head_dim: i64,
    activation: Activation,
    hidden_dropout: f64,
    attention_dropout: f64,
    max_positions: i64,
    vocab_size: i64,
    type_vocab_size: i64,
    pub attention: AttentionImpl,
}

impl Encoder {
    /// Creates the encoder's variables under `p` (the model's `base_model_prefix`).
    pub fn new(p: nn::Path, config: &ModelConfig) -> Encoder {
        let embeddings = Embeddings::new(&p / "embeddings", config);
        let stack = match config.arch {
            Arch::DistilBert => &p / "transformer" / "layer",
            _ => &p / "encoder" / "layer",
        };
        let layers = (0..config.num_layers).map(|i| Layer::new(&stack / i, config)).collect();
        Encoder {
            embeddings,
            layers,
            num_heads: config.num_heads,
            head_dim: config.head_dim(),
            activation: config.activation,
            hidden_dropout: config.hidden_dropout,
            attention_dropout: config.attention_dropout,
            max_positions: config.max_position_embeddings,
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
        match self.embeddings.roberta_padding_idx {
            Some(pad) => self.max_positions - pad - 1,
            None => self.max_positions,
        }
    }

    /// Checks the inputs, so that bad ids give an exception instead of a libtorch error.
    pub fn check_inputs(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        token_type_ids: Option<&Tensor>,
        position_ids: Option<&Tensor>,
    ) -> Result<()> {
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
        if let Some(t) = token_type_ids {
            if self.type_vocab_size == 0 {
                return Err(Error::value(
                    "this model has no token type embeddings; do not pass token_type_ids",
                ));
            }
            check_ids("token_type_ids", t, self.type_vocab_size)?;
        }
        if let Some(t) = position_ids {
            check_ids("position_ids", t, self.max_positions)?;
        }
        Ok(())
    }

    /// The last hidden states. Inputs must have passed `check_inputs`.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        token_type_ids: Option<&Tensor>,
        position_ids: Option<&Tensor>,
        train: bool,
        defer_word_gradient: bool,
    ) -> Hidden {
        let (embedded, word_lookup) = self.embeddings.forward(
            input_ids,
            token_type_ids,
            position_ids,
            train,
            defer_word_gradient,
        );
        let kind = embedded.kind();
        // [b, 1, 1, s]: 0 where attended, the dtype's minimum where masked (transformers'
        // bidirectional mask in the computation dtype).
        let bias = attention_mask.map(|m| {
            let keep = m.to_kind(kind).unsqueeze(1).unsqueeze(1);
            (keep.ones_like() - keep) * min_value(kind)
        });
        let packing = attention_mask.and_then(Packing::of);
        let mut states = match &packing {
            Some(p) => p.pack(&embedded),
            None => embedded,
        };
        for layer in &self.layers {
            states = self.layer_forward(layer, &states, packing.as_ref(), bias.as_ref(), train);
        }
        Hidden { states, packing, word_lookup }
    }

    fn layer_forward(
        &self,
        layer: &Layer,
        x: &Tensor,
        packing: Option<&Packing>,
        bias: Option<&Tensor>,
        train: bool,
    ) -> Tensor {
        let context = self.self_attention(layer, x, packing, bias, train);
        let mut attended = layer.attention_output.forward(&context);
        if layer.attention_output_dropout {
            attended = dropout(&attended, self.hidden_dropout, train);
        }
        let attended = layer.attention_norm.forward(&(attended + x));
        let inner = activate(self.activation, &layer.ffn_in.forward(&attended));
        let out = dropout(&layer.ffn_out.forward(&inner), self.hidden_dropout, train);
        layer.output_norm.forward(&(out + attended))
    }

    /// Attention over the [batch, seq] layout; `x` and the result are packed when `packing` is.
    fn self_attention(
        &self,
        layer: &Layer,
        x: &Tensor,
        packing: Option<&Packing>,
        bias: Option<&Tensor>,
        train: bool,
    ) -> Tensor {
        let (h, d) = (self.num_heads, self.head_dim);
        let padded = |t: Tensor| match packing {
            Some(p) => p.unpack(&t),
            None => t,
        };
        let q = padded(layer.query.forward(x));
        let (b, s, _) = q.size3().expect("hidden states are 3-D");
        let heads = |t: Tensor| t.view([b, s, h, d]).transpose(1, 2);
        let q = heads(q);
        let k = heads(padded(layer.key.forward(x)));
        let v = heads(padded(layer.value.forward(x)));
        let scale = (d as f64).powf(-0.5);
        let p = if train { self.attention_dropout } else { 0.0 };
        let context = match self.attention.resolve(q.device(), q.kind(), train, s) {
            AttentionImpl::Explicit | AttentionImpl::Auto => {
                let scores = q.matmul(&k.transpose(2, 3)) * scale;
                let scores = match bias {
                    Some(bias) => scores + bias,
                    None => scores,
                };
                dropout(&scores.softmax(-1, scores.kind()), p, train).matmul(&v)
            }
            AttentionImpl::Fused => {
                Tensor::scaled_dot_product_attention(&q, &k, &v, bias, p, false, scale, false)
            }
        };
        let context = context.transpose(1, 2).contiguous().view([b, s, h * d]);
        match packing {
            Some(p) => p.pack(&context),
            None => context,
        }
    }
}

/// The real (attended) tokens of a padded batch, so that the token-wise layers (all but
/// attention) skip the padding: the padded positions' outputs never reach the attended ones, so
/// the results are transformers' while the padding costs no matrix products.
pub struct Packing {
    /// Flat [batch × seq] positions of the attended tokens, row by row.
    index: Tensor,
    /// For each row, where its first token is in the packed layout.
    first: Tensor,
    batch: i64,
    seq: i64,
}

impl Packing {
    /// None when there is no padding, or when a row starts with padding (left padding: the
    /// heads read position 0, which transformers computes even when it is padding).
    fn of(mask: &Tensor) -> Option<Packing> {
        let (batch, seq) = mask.size2().ok()?;
        let keep = mask.ne(0);
        let lengths = keep.sum_dim_intlist(1, false, Kind::Int64);
        if lengths.sum(Kind::Int64).int64_value(&[]) == batch * seq
            || keep.select(1, 0).all().int64_value(&[]) == 0
        {
            return None;
        }
        let index = keep.view([-1]).nonzero().squeeze_dim(1);
        let first = lengths.cumsum(0, Kind::Int64) - &lengths;
        Some(Packing { index, first, batch, seq })
    }

    /// [batch, seq, hidden] → [tokens, hidden].
    fn pack(&self, x: &Tensor) -> Tensor {
        x.reshape([self.batch * self.seq, -1]).index_select(0, &self.index)
    }

    /// [tokens, hidden] → [batch, seq, hidden], zeros at the padding.
    fn unpack(&self, x: &Tensor) -> Tensor {
        let width = x.size()[1];
        Tensor::zeros([self.batch * self.seq, width], (x.kind(), x.device()))
            .index_copy(0, &self.index, x)
            .view([self.batch, self.seq, width])
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
            Some(p) => self.states.index_select(0, &p.first),
            None => self.states.select(1, 0),
        }
    }
}

pub(crate) fn activate(activation: Activation, x: &Tensor) -> Tensor {
    match activation {
        Activation::Gelu => x.gelu("none"),
        Activation::GeluTanh => x.gelu("tanh"),
        Activation::Relu => x.relu(),
        Activation::Silu => x.silu(),
    }
}

fn min_value(kind: Kind) -> f64 {
    match kind {
        Kind::Half => -65504.0,
        Kind::BFloat16 => -3.3895313892515355e38,
        Kind::Double => f64::MIN,
        _ => f32::MIN as f64,
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
