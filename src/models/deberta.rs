//! DeBERTa-v2's layers (`modeling_deberta_v2.py`, which DeBERTa-v3 checkpoints also use):
//! BERT's post-LayerNorm layers around disentangled self-attention. The attention scores are
//! content to content, plus content to position (c2p: each query against the relative
//! embeddings projected as keys) and position to content (p2c: each key against them projected
//! as queries), read at the (log-bucketed) relative position of each query and key pair. The
//! encoder's `rel_embeddings` (optionally through its LayerNorm) are shared by every layer; an
//! optional convolution (`ConvLayer`) follows the first layer. Its embeddings are in
//! `embeddings.rs`, its head (`ContextPooler`) in `heads.rs`.

use super::attention::{merge_heads, min_value, probabilities, Pass, Softmax};
use super::config::{Activation, ConvConfig, DebertaConfig, ModelConfig};
use super::dropout::dropout;
use super::encoder::activate;
use super::init::{apply, layer_norm, linear, normal_init};
use super::Batch;
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// `make_log_bucket_position` on the relative positions `relative` (int64): positions within
/// `bucket_size / 2` of zero keep their value, farther ones share log-spaced buckets up to
/// `max_position`. Computed in float32 as transformers does, so that the bucket edges agree.
fn log_buckets(relative: &Tensor, bucket_size: i64, max_position: i64) -> Tensor {
    let mid = bucket_size / 2;
    let sign = relative.sign();
    let near = relative.lt(mid).logical_and(&relative.gt(-mid));
    let abs_pos = relative.abs().where_self(&near.logical_not(), &Tensor::from(mid - 1));
    let abs_float = abs_pos.to_kind(Kind::Float);
    // torch.log(torch.tensor((max_position - 1) / mid)): the ratio rounded to float32 first.
    let ratio = Tensor::from(((max_position - 1) as f64 / mid as f64) as f32).log();
    let log_pos = ((abs_float / mid as f64).log() / ratio * (mid - 1) as f64).ceil() + mid as f64;
    let near_enough = abs_pos.le(mid);
    relative.to_kind(Kind::Float).where_self(&near_enough, &(log_pos * sign.to_kind(Kind::Float)))
}

/// `build_relative_position`'s value for each query − key offset of a sequence of `seq` tokens,
/// from `seq − 1` down to `1 − seq` ([2 · seq − 1] int64): the offset itself, bucketed when
/// `bucket_size` and `max_position` are positive. The relative position of query i and key j
/// is entry `j − i + seq − 1`.
pub(crate) fn relative_offsets(
    seq: i64,
    bucket_size: i64,
    max_position: i64,
    device: tch::Device,
) -> Tensor {
    let relative = Tensor::arange(2 * seq - 1, (Kind::Int64, device)).neg() + (seq - 1);
    if bucket_size > 0 && max_position > 0 {
        log_buckets(&relative, bucket_size, max_position).to_kind(Kind::Int64)
    } else {
        relative
    }
}

/// The [seq, seq] matrices of `scores` ([batch, heads, seq, 2 · seq − 1], contiguous: one
/// score per row and query − key offset, offsets as `relative_offsets` orders them) read at
/// each pair's offset: entry (i, j) is row i's score at `j − i + seq − 1`. A strided view (each
/// row starts one column earlier), not a gather: [batch, heads, seq, seq].
fn skew(scores: &Tensor, seq: i64) -> Tensor {
    let (b, h, _, width) = scores.size4().expect("4-D");
    if seq == 1 {
        return scores.shallow_clone();
    }
    scores
        .view([b * h, seq * width])
        .narrow(-1, seq - 1, seq * (width - 1))
        .view([b * h, seq, width - 1])
        .narrow(-1, 0, seq)
        .view([b, h, seq, seq])
}

/// One `DebertaV2Layer`.
struct Layer {
    query: nn::Linear,
    key: nn::Linear,
    value: nn::Linear,
    /// The position projections when `share_att_key` is false (c2p's keys, p2c's queries).
    pos_key: Option<nn::Linear>,
    pos_query: Option<nn::Linear>,
    attention_output: nn::Linear,
    attention_norm: nn::LayerNorm,
    ffn_in: nn::Linear,
    ffn_out: nn::Linear,
    output_norm: nn::LayerNorm,
}

impl Layer {
    fn new(p: nn::Path, config: &ModelConfig, deberta: &DebertaConfig) -> Layer {
        let (h, i) = (config.hidden_size, config.intermediate_size);
        let lin = |path: nn::Path, input, output| linear(path, input, output, config);
        let s = &p / "attention" / "self";
        let o = &p / "attention" / "output";
        let separate = deberta.relative_attention && !deberta.share_att_key;
        Layer {
            query: lin(&s / "query_proj", h, h),
            key: lin(&s / "key_proj", h, h),
            value: lin(&s / "value_proj", h, h),
            pos_key: (separate && deberta.c2p).then(|| lin(&s / "pos_key_proj", h, h)),
            pos_query: (separate && deberta.p2c).then(|| lin(&s / "pos_query_proj", h, h)),
            attention_output: lin(&o / "dense", h, h),
            attention_norm: layer_norm(&o / "LayerNorm", config),
            ffn_in: lin(&p / "intermediate" / "dense", h, i),
            ffn_out: lin(&p / "output" / "dense", i, h),
            output_norm: layer_norm(&p / "output" / "LayerNorm", config),
        }
    }
}

/// `ConvLayer`: a convolution over the embeddings, added to the first layer's output.
struct Conv {
    weight: Tensor,
    bias: Tensor,
    norm: nn::LayerNorm,
    settings: ConvConfig,
}

/// What every layer's attention reads, computed once per forward.
struct Shared {
    /// The rows of the relative embeddings (after the encoder's LayerNorm) that the sequence
    /// reaches, [reached, hidden]: every row of the [2 · span, hidden] table that some pair of
    /// tokens reads, so that shorter sequences project and score fewer rows. The scores of a
    /// row do not depend on the others, so the results are those of the whole table.
    rel_embeddings: Option<Tensor>,
    /// The row of those that each query − key offset reads, in `relative_offsets`' order
    /// ([2 · seq − 1]): c2p's keys at `relative + span`; p2c's queries at `span − relative`,
    /// the same rows in the reverse order (the buckets are symmetric).
    c2p_rows: Tensor,
    p2c_rows: Tensor,
    /// True where a query may not attend to a key, [batch, 1, seq, seq]: the complement of
    /// `get_attention_mask`'s outer product of the 2-D mask, so a padded query attends to
    /// nothing (its scores all the minimum, its probabilities uniform).
    masked: Option<Tensor>,
}

/// DeBERTa-v2's layers, relative embeddings and convolution, under the model's `deberta.encoder`.
pub(crate) struct Stack {
    layers: Vec<Layer>,
    rel_embeddings: Option<Tensor>,
    rel_norm: Option<nn::LayerNorm>,
    conv: Option<Conv>,
    settings: DebertaConfig,
    num_heads: i64,
    head_dim: i64,
    activation: Activation,
    hidden_dropout: f64,
    attention_dropout: f64,
}

impl Stack {
    /// The variables under `p` (the encoder prefix `deberta`).
    pub(crate) fn new(p: &nn::Path, config: &ModelConfig, deberta: &DebertaConfig) -> Stack {
        let e = p / "encoder";
        let h = config.hidden_size;
        let layers =
            (0..config.num_layers).map(|i| Layer::new(&e / "layer" / i, config, deberta)).collect();
        let rel_embeddings = deberta.relative_attention.then(|| {
            let rows = 2 * deberta.attention_span();
            (&e / "rel_embeddings").var("weight", &[rows, h], normal_init(config))
        });
        let rel_norm = deberta.norm_rel_embeddings.then(|| layer_norm(&e / "LayerNorm", config));
        let conv = deberta.conv.clone().map(|settings| {
            let c = &e / "conv";
            let kernel = [h, h / settings.groups, settings.kernel_size];
            Conv {
                weight: (&c / "conv").var("weight", &kernel, normal_init(config)),
                bias: (&c / "conv").var("bias", &[h], nn::Init::Const(0.)),
                norm: layer_norm(&c / "LayerNorm", config),
                settings,
            }
        });
        Stack {
            layers,
            rel_embeddings,
            rel_norm,
            conv,
            settings: deberta.clone(),
            num_heads: config.num_heads,
            head_dim: config.head_dim(),
            activation: config.activation,
            hidden_dropout: config.hidden_dropout,
            attention_dropout: config.attention_dropout,
        }
    }

    /// The final hidden states of `embedded` (the embeddings, packed when `pass` packs).
    pub(crate) fn forward(&self, embedded: Tensor, inputs: &Batch, pass: &Pass) -> Tensor {
        let (_, seq) = inputs.input_ids.size2().expect("input_ids is 2-D (checked)");
        let device = embedded.device();
        let s = &self.settings;
        let span = s.attention_span();
        let relative = relative_offsets(seq, s.position_buckets, s.max_relative_positions, device);
        let masked = inputs.attention_mask.map(|mask| {
            // [b, s] → [b, 1, 1, s] × [b, 1, s, 1].
            let keys = mask.unsqueeze(1).unsqueeze(2);
            let queries = keys.squeeze_dim(-2).unsqueeze(-1);
            (keys * queries).eq(0)
        });
        let c2p_rows = (&relative + span).clamp(0, 2 * span - 1);
        // The relative positions are symmetric: both cover the same rows.
        let first = c2p_rows.min().int64_value(&[]);
        let reached = c2p_rows.max().int64_value(&[]) - first + 1;
        let c2p_rows = c2p_rows - first;
        let shared = Shared {
            rel_embeddings: self.rel_embeddings.as_ref().map(|table| {
                let table = match &self.rel_norm {
                    Some(norm) => norm.forward(table),
                    None => table.shallow_clone(),
                };
                table.narrow(0, first, reached)
            }),
            p2c_rows: c2p_rows.flip([0]),
            c2p_rows,
            masked,
        };
        let mut states = embedded.shallow_clone();
        for (index, layer) in self.layers.iter().enumerate() {
            states = self.layer(layer, &states, &shared, pass);
            if index == 0 {
                if let Some(conv) = &self.conv {
                    states = self.convolve(conv, &embedded, &states, inputs.attention_mask, pass);
                }
            }
        }
        states
    }

    /// [tokens or batch × seq, hidden] → [batch, heads, seq, head_dim], padded for attention.
    fn heads(&self, x: Tensor, pass: &Pass) -> Tensor {
        let x = match pass.packing {
            Some(p) => p.unpack(&x),
            None => x,
        };
        let (b, s, _) = x.size3().expect("hidden states are 3-D");
        x.view([b, s, self.num_heads, self.head_dim]).transpose(1, 2)
    }

    /// The relative embeddings' `rows` projected per head and transposed for the scores,
    /// [heads, head_dim, rows].
    fn position_heads(&self, projection: &nn::Linear, rel: &Tensor, rows: &Tensor) -> Tensor {
        let n = rows.size()[0];
        let projected = projection.forward(&rel.index_select(0, rows));
        projected.view([n, self.num_heads, self.head_dim]).permute([1, 2, 0])
    }

    /// The relative scores of `x` (queries or keys, [batch, heads, seq, head_dim]) against the
    /// relative embeddings' `rows` projected by `projection`, at each pair's offset, divided by
    /// `scale`: [batch, heads, seq (x), seq]. The product covers the 2 · seq − 1 offsets, not
    /// the whole table, and needs no gather.
    fn relative_scores(
        &self,
        x: &Tensor,
        projection: &nn::Linear,
        rel: &Tensor,
        rows: &Tensor,
        scale: f64,
    ) -> Tensor {
        let seq = x.size()[2];
        let scores = x.matmul(&self.position_heads(projection, rel, rows).unsqueeze(0));
        skew(&scores.contiguous(), seq) / scale
    }

    fn layer(&self, layer: &Layer, x: &Tensor, shared: &Shared, pass: &Pass) -> Tensor {
        let train = pass.train;
        let s = &self.settings;
        let q = self.heads(apply(&layer.query, x), pass);
        let k = self.heads(apply(&layer.key, x), pass);
        let v = self.heads(apply(&layer.value, x), pass);
        // sqrt(head_dim · scale_factor), in float32 as `scaled_size_sqrt`.
        let scale = ((self.head_dim * s.scale_factor()) as f32).sqrt() as f64;
        // transformers divides the keys, then multiplies.
        let mut scores = q.matmul(&(k.transpose(-1, -2) / scale));
        // The [b, h, s, s] terms are summed in place, in transformers' order
        // (scores + (c2p / scale + p2c / scale)); none of these ops' backward reads its output.
        if let Some(rel) = &shared.rel_embeddings {
            let rel = dropout(rel, self.hidden_dropout, train);
            let mut relative: Option<Tensor> = None;
            if s.c2p {
                // Each query against the positions as keys, read at its offset to each key.
                let projection = layer.pos_key.as_ref().unwrap_or(&layer.key);
                relative =
                    Some(self.relative_scores(&q, projection, &rel, &shared.c2p_rows, scale));
            }
            if s.p2c {
                // Each key against the positions as queries, read at its offset to each query,
                // then transposed to [query, key].
                let projection = layer.pos_query.as_ref().unwrap_or(&layer.query);
                let p2c = self.relative_scores(&k, projection, &rel, &shared.p2c_rows, scale);
                let p2c = p2c.transpose(-1, -2);
                relative = Some(match relative {
                    Some(mut c2p) => {
                        let _ = c2p.g_add_(&p2c);
                        c2p
                    }
                    None => p2c,
                });
            }
            if let Some(relative) = relative {
                let _ = scores.g_add_(&relative);
            }
        }
        if let Some(masked) = &shared.masked {
            let _ = scores.masked_fill_(masked, min_value(scores.kind()));
        }
        let p = self.attention_dropout;
        let probs = probabilities(&scores, None, 1.0, p, train, Softmax::InScores);
        let context = probs.matmul(&v);
        let context = merge_heads(context, pass);
        let attended =
            dropout(&apply(&layer.attention_output, &context), self.hidden_dropout, train);
        let attended = layer.attention_norm.forward(&(attended + x));
        let inner = activate(self.activation, &apply(&layer.ffn_in, &attended));
        let out = dropout(&apply(&layer.ffn_out, &inner), self.hidden_dropout, train);
        layer.output_norm.forward(&(out + attended))
    }

    /// `ConvLayer.forward(embeddings, first layer's output, mask)`.
    fn convolve(
        &self,
        conv: &Conv,
        embedded: &Tensor,
        residual: &Tensor,
        attention_mask: Option<&Tensor>,
        pass: &Pass,
    ) -> Tensor {
        let train = pass.train;
        // The convolution runs over the [batch, seq] layout; packed embeddings are zeros at the
        // padding, as transformers' are after their mask multiply.
        let embedded = match pass.packing {
            Some(p) => p.unpack(embedded),
            None => embedded.shallow_clone(),
        };
        let k = conv.settings.kernel_size;
        let out = embedded.permute([0, 2, 1]).contiguous().conv1d(
            &conv.weight,
            Some(&conv.bias),
            [1],
            [(k - 1) / 2],
            [1],
            conv.settings.groups,
        );
        let mut out = out.permute([0, 2, 1]).contiguous();
        if let Some(mask) = attention_mask {
            out = out.masked_fill(&mask.eq(0).unsqueeze(-1), 0.0);
        }
        let out = match pass.packing {
            Some(p) => p.pack(&out),
            None => out,
        };
        let out = activate(conv.settings.activation, &dropout(&out, self.hidden_dropout, train));
        let output = conv.norm.forward(&(residual + out));
        match (attention_mask, pass.packing) {
            // Packed tokens are the attended ones: the mask multiply keeps them as they are.
            (Some(mask), None) => output * mask.unsqueeze(2).to_kind(residual.kind()),
            _ => output,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_positions_are_bucketed_as_transformers() {
        // transformers: build_relative_position(q, k, bucket_size=4, max_position=8) for 12
        // tokens, first row: [0, -1, -2, -3, -3, -4, -4, -4, -4, -4, -4, -4]... computed below
        // from make_log_bucket_position's formula.
        // Query 0 against keys 0..12: offsets 0, −1, ..., −11, the last 12 entries.
        let rel = relative_offsets(12, 4, 8, tch::Device::Cpu);
        let row: Vec<i64> = Vec::try_from(rel.narrow(0, 11, 12)).unwrap();
        let expected: Vec<i64> = (0..12i64)
            .map(|j| {
                let r = -j;
                let (mid, a) = (2i64, j);
                if a <= mid {
                    r
                } else {
                    let ratio = (((8 - 1) as f64 / 2.0) as f32).ln();
                    let log =
                        ((a as f32 / 2.0).ln() / ratio * (mid - 1) as f32).ceil() + mid as f32;
                    -(log as i64)
                }
            })
            .collect();
        assert_eq!(row, expected);
        let plain = relative_offsets(3, -1, 8, tch::Device::Cpu);
        assert_eq!(Vec::<i64>::try_from(plain).unwrap(), [2, 1, 0, -1, -2]);
    }

    #[test]
    fn the_skewed_view_reads_each_pair_at_its_offset() {
        for seq in [1i64, 2, 5] {
            let (batch, heads, width) = (3i64, 2i64, 2 * seq - 1);
            let scores =
                Tensor::arange(batch * heads * seq * width, (Kind::Float, tch::Device::Cpu))
                    .view([batch, heads, seq, width]);
            let skewed = skew(&scores, seq);
            assert_eq!(skewed.size(), [batch, heads, seq, seq]);
            for (i, j) in (0..seq).flat_map(|i| (0..seq).map(move |j| (i, j))) {
                let expected = scores.get(2).get(1).get(i).get(j - i + seq - 1);
                assert!(skewed.get(2).get(1).get(i).get(j).equal(&expected), "{seq} {i} {j}");
            }
        }
    }
}
