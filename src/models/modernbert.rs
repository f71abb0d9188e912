//! ModernBERT's layers (`modeling_modernbert.py`): pre-norm layers (the first without its
//! attention norm), a fused `Wqkv` projection, rotary positions with one base for the global
//! layers and one for the sliding-window layers, the gated MLP (`Wi` → input, gate;
//! `Wo(act(input) · gate)`), and the final norm. Its embeddings are in `embeddings.rs`, its head
//! in `heads.rs`.

use super::attention::{
    attend, attend_each, merge_heads, sequence_windows, split_heads, window_bias, Pass, Rotary,
    Softmax,
};
use super::config::{Activation, ModelConfig, ModernBertConfig};
use super::dropout::dropout;
use super::encoder::{activate, Packing};
use super::init::{linear_trunc, Norm};
use super::Batch;
use crate::ops;
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

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

/// What a layer's attention masks out.
enum Masks<'a> {
    /// Each sequence's own, on the packed tokens (`attend_each`).
    Each(&'a Packing, Vec<Option<Tensor>>),
    /// In the [batch, seq] layout: [b or 1, 1, s or 1, s].
    Wide(Option<Tensor>),
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
        // The rotary's tables are per row of the token-wise layers (packed or all positions).
        let positions = positions.expand([rows, seq], false).reshape([-1]);
        let positions = match pass.packing {
            Some(p) => p.gather(&positions),
            None => positions,
        };
        let kind = states.kind();
        let any = |global: bool| self.layers.iter().any(|l| l.global == global);
        let rotary = |theta| Rotary::new(&positions, theta, self.head_dim, kind);
        let global = any(true).then(|| rotary(self.global_theta));
        // On the CPU, a padded batch's attention runs on each sequence's own tokens in float32;
        // in bfloat16 (autocast) the many small products cost more than the padding saves.
        let float = kind == Kind::Float && !ops::autocast_enabled(device);
        let each = pass.packing.filter(|_| device == Device::Cpu && float);
        let local = any(false).then(|| {
            let masks = match each {
                Some(packing) => Masks::Each(packing, sequence_windows(packing, self.window, kind)),
                None => Masks::Wide(Some(window_bias(
                    inputs.attention_mask,
                    seq,
                    self.window,
                    kind,
                    device,
                ))),
            };
            (rotary(self.local_theta), masks)
        });
        let global_masks = match each {
            Some(packing) => Masks::Each(packing, packing.lengths().iter().map(|_| None).collect()),
            None => Masks::Wide(pass.bias.map(Tensor::shallow_clone)),
        };
        let mut states = states;
        for layer in &self.layers {
            let (rotary, masks) = match (&global, &local, layer.global) {
                (Some(rotary), _, true) => (rotary, &global_masks),
                (_, Some((rotary, masks)), false) => (rotary, masks),
                _ => unreachable!("the rotary of each layer type present is computed"),
            };
            states = self.layer(layer, &states, rotary, masks, pass);
        }
        self.final_norm.forward(&states)
    }

    fn layer(
        &self,
        layer: &Layer,
        x: &Tensor,
        rotary: &Rotary,
        masks: &Masks,
        pass: &Pass,
    ) -> Tensor {
        let train = pass.train;
        let normed = match &layer.attn_norm {
            Some(norm) => norm.forward(x),
            None => x.shallow_clone(),
        };
        let qkv = layer.wqkv.forward(&normed);
        let (h, p) = (self.num_heads, self.attention_dropout);
        let merged = match masks {
            Masks::Each(packing, masks) => {
                // The packed tokens as one row of the [batch, seq] layout.
                let layout = (1, qkv.size()[0]);
                let flat = Pass { packing: None, bias: None, layout, ..*pass };
                let qkv = split_heads(&qkv, 3, h, layout, Some((rotary, 2)), &flat);
                let qkv = [&qkv[0], &qkv[1], &qkv[2]];
                attend_each(qkv, packing, masks, p, pass, Softmax::InFloat)
            }
            Masks::Wide(bias) => {
                let qkv = split_heads(&qkv, 3, h, pass.layout, Some((rotary, 2)), pass);
                let context =
                    attend(&qkv[0], &qkv[1], &qkv[2], bias.as_ref(), p, pass, Softmax::InFloat);
                merge_heads(context, pass)
            }
        };
        let attended = layer.wo.forward(&merged);
        let x = x + dropout(&attended, self.attention_dropout, train);
        let gated = layer.wi.forward(&layer.mlp_norm.forward(&x)).chunk(2, -1);
        let inner = activate(self.activation, &gated[0]) * &gated[1];
        x + layer.mlp_wo.forward(&dropout(&inner, self.mlp_dropout, train))
    }
}
