//! Self-attention (`BertSelfAttention`, DistilBERT's `MultiHeadSelfAttention` without its
//! output projection), explicit or fused.

use super::config::ModelConfig;
use super::dropout::dropout;
use super::encoder::Packing;
use super::init::linear;
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// How attention probabilities are computed; all give transformers' results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionImpl {
    /// matmul, additive mask, softmax, dropout, matmul (`eager_attention_forward`).
    Explicit,
    /// libtorch's fused scaled_dot_product_attention.
    Fused,
    /// Per call, the faster of the two as measured by bench/attention.py: fused on CUDA, for
    /// float32 inference on 64 tokens or more, and for float32 training on 128 tokens or more
    /// without attention dropout (the CPU's flash kernel); explicit otherwise, where the CPU's
    /// fused backward is slower (bench/README.md, "Measurements behind the code").
    Auto,
}

impl AttentionImpl {
    /// ferrotune's names, and transformers' `attn_implementation` "eager" (explicit) and "sdpa"
    /// (fused); the others (flash-attn, flex attention, hub kernels) are not available here.
    pub fn parse(name: &str) -> crate::Result<AttentionImpl> {
        match name {
            "auto" => Ok(AttentionImpl::Auto),
            "explicit" | "eager" => Ok(AttentionImpl::Explicit),
            "fused" | "sdpa" => Ok(AttentionImpl::Fused),
            other => Err(crate::Error::value(format!(
                "attention implementation {other:?} is not available in ferrotune; use \"auto\" \
                 (the default), \"explicit\" (transformers' \"eager\") or \"fused\" \
                 (\"sdpa\"), which all give the same results"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AttentionImpl::Auto => "auto",
            AttentionImpl::Explicit => "explicit",
            AttentionImpl::Fused => "fused",
        }
    }

    fn resolve(
        self,
        device: tch::Device,
        kind: Kind,
        train: bool,
        seq: i64,
        dropout: f64,
    ) -> AttentionImpl {
        let float = kind == Kind::Float;
        let fused = device.is_cuda()
            || (!train && float && seq >= 64)
            || (train && float && seq >= 128 && dropout == 0.0);
        match self {
            AttentionImpl::Auto if fused => AttentionImpl::Fused,
            AttentionImpl::Auto => AttentionImpl::Explicit,
            chosen => chosen,
        }
    }
}

pub(crate) struct SelfAttention {
    query: nn::Linear,
    key: nn::Linear,
    value: nn::Linear,
    num_heads: i64,
    head_dim: i64,
    dropout: f64,
}

impl SelfAttention {
    /// The projections under `p` with transformers' names for them.
    pub(crate) fn new(p: nn::Path, names: [&str; 3], config: &ModelConfig) -> SelfAttention {
        let h = config.hidden_size;
        let [q, k, v] = names;
        SelfAttention {
            query: linear(&p / q, h, h, config),
            key: linear(&p / k, h, h, config),
            value: linear(&p / v, h, h, config),
            num_heads: config.num_heads,
            head_dim: config.head_dim(),
            dropout: config.attention_dropout,
        }
    }

    /// Attention over the [batch, seq] layout; `x` and the result are packed when `packing` is.
    pub(crate) fn forward(&self, x: &Tensor, pass: &Pass) -> Tensor {
        let (h, d) = (self.num_heads, self.head_dim);
        let padded = |t: Tensor| match pass.packing {
            Some(p) => p.unpack(&t),
            None => t,
        };
        let q = padded(self.query.forward(x));
        let (b, s, _) = q.size3().expect("hidden states are 3-D");
        let heads = |t: Tensor| t.view([b, s, h, d]).transpose(1, 2);
        let q = heads(q);
        let k = heads(padded(self.key.forward(x)));
        let v = heads(padded(self.value.forward(x)));
        let context = attend(&q, &k, &v, pass.bias, self.dropout, pass, Softmax::InScores);
        merge_heads(context, pass)
    }
}

/// The dtype the attention probabilities are computed in, as each model's eager attention does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Softmax {
    /// In the scores' dtype (BERT and its relatives).
    InScores,
    /// In float32, then cast back (`softmax(..., dtype=torch.float32).to(query.dtype)`).
    InFloat,
}

/// Attention of q, k, v [batch, heads, seq, head_dim] with the additive `bias`, explicit or
/// fused as `pass` says; the context in the same layout.
pub(crate) fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: Option<&Tensor>,
    dropout_p: f64,
    pass: &Pass,
    softmax: Softmax,
) -> Tensor {
    let scale = (q.size()[3] as f64).powf(-0.5);
    let train = pass.train;
    let p = if train { dropout_p } else { 0.0 };
    match pass.attention.resolve(q.device(), q.kind(), train, q.size()[2], p) {
        AttentionImpl::Explicit | AttentionImpl::Auto => {
            let scores = q.matmul(&k.transpose(2, 3)) * scale;
            let scores = match bias {
                Some(bias) => scores + bias,
                None => scores,
            };
            let probs = match softmax {
                Softmax::InScores => scores.softmax(-1, scores.kind()),
                Softmax::InFloat => scores.softmax(-1, Kind::Float).to_kind(q.kind()),
            };
            dropout(&probs, p, train).matmul(v)
        }
        AttentionImpl::Fused => {
            Tensor::scaled_dot_product_attention(q, k, v, bias, p, false, scale, false)
        }
    }
}

/// [batch, heads, seq, head_dim] → [batch, seq, hidden], packed when `pass` packs.
pub(crate) fn merge_heads(context: Tensor, pass: &Pass) -> Tensor {
    let (b, h, s, d) = context.size4().expect("attention context is 4-D");
    let context = context.transpose(1, 2).contiguous().view([b, s, h * d]);
    match pass.packing {
        Some(p) => p.pack(&context),
        None => context,
    }
}

/// What each layer's forward needs besides its input: the padding, as packing and as the
/// additive mask, and the mode.
pub(crate) struct Pass<'a> {
    pub packing: Option<&'a Packing>,
    /// [b, 1, 1, s]: 0 where attended, the dtype's minimum where masked.
    pub bias: Option<&'a Tensor>,
    pub train: bool,
    pub attention: AttentionImpl,
}

/// transformers' bidirectional mask in the computation dtype `kind`: 0 where attended, the
/// dtype's minimum where masked, [b, 1, 1, s].
pub(crate) fn mask_bias(attention_mask: &Tensor, kind: Kind) -> Tensor {
    let keep = attention_mask.to_kind(kind).unsqueeze(1).unsqueeze(1);
    (keep.ones_like() - keep) * min_value(kind)
}

/// ModernBERT's sliding-window mask (`create_bidirectional_sliding_window_mask`): a token sees
/// the attended tokens at most `window` positions away, [b or 1, 1, s, s], 0 or the minimum.
pub(crate) fn window_bias(
    attention_mask: Option<&Tensor>,
    seq: i64,
    window: i64,
    kind: Kind,
    device: tch::Device,
) -> Tensor {
    let index = Tensor::arange(seq, (Kind::Int64, device));
    let distance = (index.unsqueeze(1) - index.unsqueeze(0)).abs();
    let mut keep = distance.le(window).unsqueeze(0).unsqueeze(0);
    if let Some(mask) = attention_mask {
        keep = keep.logical_and(&mask.ne(0).unsqueeze(1).unsqueeze(1));
    }
    let keep = keep.to_kind(kind);
    (keep.ones_like() - keep) * min_value(kind)
}

/// `torch.finfo(dtype).min`: the score of a masked position.
pub(crate) fn min_value(kind: Kind) -> f64 {
    match kind {
        Kind::Half => -65504.0,
        Kind::BFloat16 => -3.3895313892515355e38,
        Kind::Double => f64::MIN,
        _ => f32::MIN as f64,
    }
}
