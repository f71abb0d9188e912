//! ModernBERT's layers (`modeling_modernbert.py`): pre-norm layers (the first without its
//! attention norm), a fused `Wqkv` projection, rotary positions with one base for the global
//! layers and one for the sliding-window layers, the gated MLP (`Wi` → input, gate;
//! `Wo(act(input) · gate)`), and the final norm. Its embeddings are in `embeddings.rs`, its head
//! in `heads.rs`.

use super::attention::{attend, merge_heads, window_bias, Pass, Softmax};
use super::config::{Activation, ModelConfig, ModernBertConfig};
use super::dropout::dropout;
use super::encoder::activate;
use super::init::{linear_trunc, Norm};
use super::Batch;
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// The standard deviations of `_init_weights`: projections into the layer ("in") and out of it.
pub(crate) struct Stds {
    pub input: f64,
    pub output: f64,
    pub cutoff: f64,
}

impl Stds {
    pub(crate) fn of(config: &ModelConfig, modern: &ModernBertConfig) -> Stds {
        Stds {
            input: config.initializer_range,
            output: config.initializer_range / (2.0 * config.num_layers as f64).sqrt(),
            cutoff: modern.initializer_cutoff_factor,
        }
    }
}

/// One `ModernBertEncoderLayer`.
struct Layer {
    /// None for the first layer (`nn.Identity`).
    attn_norm: Option<Norm>,
    wqkv: nn::Linear,
    wo: nn::Linear,
    mlp_norm: Norm,
    wi: nn::Linear,
    mlp_wo: nn::Linear,
    /// Full attention; else the sliding window.
    global: bool,
}

/// The rotary embedding of one layer type, in the hidden states' dtype
/// (`ModernBertRotaryEmbedding.forward`), by halves: its cos and sin repeat each frequency in
/// both halves of a head, [rows, seq, half] (or [tokens, half] for packed tokens).
struct Rotary {
    cos: Tensor,
    /// -sin and sin, [rows, seq, 2, half] (or [tokens, 2, half]): `rotate_half`'s sign.
    signed_sin: Tensor,
}

impl Rotary {
    fn new(positions: &Tensor, theta: f64, head_dim: i64, kind: Kind) -> Rotary {
        let device = positions.device();
        let exponents = Tensor::arange_start_step(0, head_dim, 2, (Kind::Float, device)) / head_dim;
        let inv_freq = Tensor::pow_scalar(theta, &exponents).reciprocal();
        let freqs = positions.unsqueeze(-1).to_kind(Kind::Float) * inv_freq;
        let sin = freqs.sin().to_kind(kind);
        Rotary { cos: freqs.cos().to_kind(kind), signed_sin: Tensor::stack(&[-&sin, sin], -2) }
    }

    /// `apply_rotary_pos_emb` (`x * cos + rotate_half(x) * sin`, in float32) on
    /// [batch, heads, seq, head_dim] or on packed [tokens, .., heads, head_dim]. `rotate_half`
    /// (the halves swapped, the first negated) is the swap of the halves with the sign in the
    /// sine: the same products, bit for bit, without its `cat` and `neg` and their backward
    /// (6.1 → 4.2 ms for q and k of 518 tokens, forward and backward).
    fn apply(&self, x: &Tensor) -> Tensor {
        let float = x.to_kind(Kind::Float);
        let head_dim = *float.size().last().expect("heads have a dimension");
        let halves = float.unflatten(-1, [2, head_dim / 2]);
        // cos and sin get the dimensions between their first and their positions'.
        let (mut cos, mut sin) = (self.cos.unsqueeze(-2), self.signed_sin.shallow_clone());
        for _ in cos.dim()..halves.dim() {
            cos = cos.unsqueeze(1);
            sin = sin.unsqueeze(1);
        }
        let rotated = &halves * cos + halves.flip([-2]) * sin;
        rotated.flatten(-2, -1).to_kind(x.kind())
    }
}

/// ModernBERT's layers and final norm, under the model's `model` prefix.
pub(crate) struct Stack {
    layers: Vec<Layer>,
    final_norm: Norm,
    num_heads: i64,
    head_dim: i64,
    activation: Activation,
    attention_dropout: f64,
    mlp_dropout: f64,
    window: i64,
    global_theta: f64,
    local_theta: f64,
}

impl Stack {
    pub(crate) fn new(p: &nn::Path, config: &ModelConfig, modern: &ModernBertConfig) -> Stack {
        let (h, i) = (config.hidden_size, config.intermediate_size);
        let std = Stds::of(config, modern);
        let norm = |path: nn::Path| Norm::new(path, h, modern.norm_bias, config.layer_norm_eps);
        let layers = modern
            .global_layers
            .iter()
            .enumerate()
            .map(|(index, &global)| {
                let l = p / "layers" / index;
                let (a, m) = (&l / "attn", &l / "mlp");
                let (ab, mb) = (modern.attention_bias, modern.mlp_bias);
                Layer {
                    attn_norm: (index > 0).then(|| norm(&l / "attn_norm")),
                    wqkv: linear_trunc(&a / "Wqkv", h, 3 * h, ab, std.input, std.cutoff),
                    wo: linear_trunc(&a / "Wo", h, h, ab, std.output, std.cutoff),
                    mlp_norm: norm(&l / "mlp_norm"),
                    wi: linear_trunc(&m / "Wi", h, 2 * i, mb, std.input, std.cutoff),
                    mlp_wo: linear_trunc(&m / "Wo", i, h, mb, std.output, std.cutoff),
                    global,
                }
            })
            .collect();
        Stack {
            layers,
            final_norm: norm(p / "final_norm"),
            num_heads: config.num_heads,
            head_dim: config.head_dim(),
            activation: config.activation,
            attention_dropout: config.attention_dropout,
            mlp_dropout: modern.mlp_dropout,
            window: modern.sliding_window,
            global_theta: modern.global_rope_theta,
            local_theta: modern.local_rope_theta,
        }
    }

    /// The final hidden states of `states` (the embeddings, packed when `pass` packs).
    pub(crate) fn forward(&self, states: Tensor, inputs: &Batch, pass: &Pass) -> Tensor {
        let (rows, seq) = inputs.input_ids.size2().expect("input_ids is 2-D (checked)");
        let device = states.device();
        let positions = match inputs.position_ids {
            Some(ids) => ids.shallow_clone(),
            None => Tensor::arange(seq, (Kind::Int64, device)).unsqueeze(0),
        };
        // Packed tokens are rotated before they are padded for attention: their positions.
        let positions = match pass.packing {
            Some(p) => p.gather(&positions.expand([rows, seq], false)),
            None => positions,
        };
        let kind = states.kind();
        let any = |global: bool| self.layers.iter().any(|l| l.global == global);
        let rotary = |theta| Rotary::new(&positions, theta, self.head_dim, kind);
        let global = any(true).then(|| rotary(self.global_theta));
        let local = any(false).then(|| {
            let bias = window_bias(inputs.attention_mask, seq, self.window, kind, device);
            (rotary(self.local_theta), bias)
        });
        let mut states = states;
        for layer in &self.layers {
            let (rotary, bias) = match (&global, &local, layer.global) {
                (Some(rotary), _, true) => (rotary, pass.bias),
                (_, Some((rotary, bias)), false) => (rotary, Some(bias)),
                _ => unreachable!("the rotary of each layer type present is computed"),
            };
            states = self.layer(layer, &states, rows, seq, rotary, bias, pass);
        }
        self.final_norm.forward(&states)
    }

    #[allow(clippy::too_many_arguments)]
    fn layer(
        &self,
        layer: &Layer,
        x: &Tensor,
        rows: i64,
        seq: i64,
        rotary: &Rotary,
        bias: Option<&Tensor>,
        pass: &Pass,
    ) -> Tensor {
        let train = pass.train;
        let normed = match &layer.attn_norm {
            Some(norm) => norm.forward(x),
            None => x.shallow_clone(),
        };
        let (heads, d) = (self.num_heads, self.head_dim);
        let qkv = layer.wqkv.forward(&normed);
        // [batch, seq, 3 · hidden] → q, k, v as [batch, heads, seq, head_dim].
        // `unbind`, whose backward writes the three gradients once (`select`'s zero-fills
        // the whole input for each).
        let split = |qkv: &Tensor| {
            let parts = qkv.view([rows, seq, 3, heads, d]).unbind(2);
            let part = |i: usize| parts[i].transpose(1, 2);
            (part(0), part(1), part(2))
        };
        let (q, k, v) = match pass.packing {
            // Rotated on the real tokens only, then padded together.
            Some(p) => {
                let parts = qkv.view([-1, 3, heads, d]).split_with_sizes([2, 1], 1);
                let rotated = Tensor::cat(&[rotary.apply(&parts[0]), parts[1].shallow_clone()], 1);
                split(&p.unpack(&rotated.view([-1, 3 * heads * d])))
            }
            None => {
                let (q, k, v) = split(&qkv);
                (rotary.apply(&q), rotary.apply(&k), v)
            }
        };
        let context = attend(&q, &k, &v, bias, self.attention_dropout, pass, Softmax::InFloat);
        let attended = layer.wo.forward(&merge_heads(context, pass));
        let x = x + dropout(&attended, self.attention_dropout, train);
        let gated = layer.wi.forward(&layer.mlp_norm.forward(&x)).chunk(2, -1);
        let inner = activate(self.activation, &gated[0]) * &gated[1];
        x + layer.mlp_wo.forward(&dropout(&inner, self.mlp_dropout, train))
    }
}
