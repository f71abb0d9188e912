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
    /// Per call, the faster of the two as measured by bench/attention.py: fused on CUDA and
    /// for float32 inference on 64 tokens or more; explicit otherwise, where the CPU's fused
    /// backward is slower (bench/README.md, "Measurements behind the code").
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
        let scale = (d as f64).powf(-0.5);
        let train = pass.train;
        let p = if train { self.dropout } else { 0.0 };
        let context = match pass.attention.resolve(q.device(), q.kind(), train, s) {
            AttentionImpl::Explicit | AttentionImpl::Auto => {
                let scores = q.matmul(&k.transpose(2, 3)) * scale;
                let scores = match pass.bias {
                    Some(bias) => scores + bias,
                    None => scores,
                };
                dropout(&scores.softmax(-1, scores.kind()), p, train).matmul(&v)
            }
            AttentionImpl::Fused => {
                Tensor::scaled_dot_product_attention(&q, &k, &v, pass.bias, p, false, scale, false)
            }
        };
        let context = context.transpose(1, 2).contiguous().view([b, s, h * d]);
        match pass.packing {
            Some(p) => p.pack(&context),
            None => context,
        }
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

fn min_value(kind: Kind) -> f64 {
    match kind {
        Kind::Half => -65504.0,
        Kind::BFloat16 => -3.3895313892515355e38,
        Kind::Double => f64::MIN,
        _ => f32::MIN as f64,
    }
}
