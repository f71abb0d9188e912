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
use super::relative;
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

/// The [seq, seq] matrices of `scores` ([batch, heads, seq, width ≥ 2 · seq − 1], contiguous:
/// one score per row and query − key offset, offsets as `relative_offsets` orders them) read at
/// each pair's offset: entry (i, j) is row i's score at `j − i + seq − 1`. A strided view (each
/// row starts one column earlier), not a gather: [batch, heads, seq, seq].
fn skew(scores: &Tensor, seq: i64) -> Tensor {
    let (b, h, _, width) = scores.size4().expect("4-D");
    if seq == 1 {
        return scores.narrow(-1, 0, 1);
    }
    scores
        .view([b * h, seq * width])
        .narrow(-1, seq - 1, seq * (width - 1))
        .view([b * h, seq, width - 1])
        .narrow(-1, 0, seq)
        .view([b, h, seq, seq])
}

/// `scores` ([batch, heads, seq, seq]) with the relative terms added as transformers adds
/// them, `scores + (c2p / scale + p2c / scale)` (c2p, p2c: [heads, batch, seq, width], the
/// scores of each query or key row at each query − key offset, read at each pair's: c2p at
/// (query, key), p2c at (key, query)), then the `masked` pairs set to the dtype's lowest value.
/// On the CPU in one pass forward and backward (`relative::relative_scores`), bit for bit the
/// tensor formula, which runs elsewhere.
fn with_relative(
    scores: Tensor,
    c2p: Option<Tensor>,
    p2c: Option<Tensor>,
    masked: Option<&Tensor>,
    scale: f64,
) -> Tensor {
    let kind = scores.kind();
    let fused = scores.device() == tch::Device::Cpu
        && matches!(kind, Kind::Float | Kind::BFloat16)
        && [&c2p, &p2c].into_iter().flatten().all(|t| t.kind() == kind);
    if fused {
        return relative::relative_scores(&scores, c2p.as_ref(), p2c.as_ref(), masked, scale)
            .expect("DeBERTa's relative scores");
    }
    relative_by_tensors(scores, c2p, p2c, masked, scale)
}

/// `with_relative` by tensors, in transformers' order (the [batch, heads, seq, seq] terms summed
/// in place; none of these ops' backward reads its output).
fn relative_by_tensors(
    mut scores: Tensor,
    c2p: Option<Tensor>,
    p2c: Option<Tensor>,
    masked: Option<&Tensor>,
    scale: f64,
) -> Tensor {
    let seq = scores.size()[2];
    let at_offsets = |t: &Tensor| skew(&t.permute([1, 0, 2, 3]).contiguous(), seq) / scale;
    let relative = match (c2p, p2c) {
        (Some(c2p), Some(p2c)) => {
            let mut relative = at_offsets(&c2p);
            let _ = relative.g_add_(&at_offsets(&p2c).transpose(-1, -2));
            Some(relative)
        }
        (Some(c2p), None) => Some(at_offsets(&c2p)),
        (None, Some(p2c)) => Some(at_offsets(&p2c).transpose(-1, -2)),
        (None, None) => None,
    };
    if let Some(relative) = relative {
        let _ = scores.g_add_(&relative);
    }
    if let Some(masked) = masked {
        let _ = scores.masked_fill_(masked, min_value(scores.kind()));
    }
    scores
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
    /// ([2 · seq − 1], then the first row again up to a multiple of 16, which no pair reads:
    /// float32 products of such widths measured faster): c2p's keys at `relative + span`;
    /// p2c's queries at `span − relative`, the same rows in the reverse order (the buckets are
    /// symmetric).
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
        let offsets = 2 * seq - 1;
        let padding = Tensor::zeros([(offsets + 15) / 16 * 16 - offsets], (Kind::Int64, device));
        let padded = |rows: Tensor| Tensor::cat(&[rows, padding.shallow_clone()], 0);
        let shared = Shared {
            rel_embeddings: self.rel_embeddings.as_ref().map(|table| {
                let table = match &self.rel_norm {
                    Some(norm) => norm.forward(table),
                    None => table.shallow_clone(),
                };
                table.narrow(0, first, reached)
            }),
            p2c_rows: padded(c2p_rows.flip([0])),
            c2p_rows: padded(c2p_rows),
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

    /// [tokens or batch × seq, hidden] → [batch, seq, hidden], padded for attention.
    fn unpacked(&self, x: Tensor, pass: &Pass) -> Tensor {
        match pass.packing {
            Some(p) => p.unpack(&x),
            None => x,
        }
    }

    /// [batch, seq, hidden] → [batch, heads, seq, head_dim] (a view).
    fn heads(&self, x: &Tensor) -> Tensor {
        let (b, s, _) = x.size3().expect("hidden states are 3-D");
        x.view([b, s, self.num_heads, self.head_dim]).transpose(1, 2)
    }

    /// `scaled_size_sqrt`, sqrt(head_dim · scale_factor) in float32, as a value of `kind`:
    /// transformers divides by it cast to the queries' dtype (bfloat16 under autocast).
    fn scale(&self, kind: Kind) -> f64 {
        let scale = ((self.head_dim * self.settings.scale_factor()) as f32).sqrt();
        Tensor::from(scale).to_kind(kind).double_value(&[])
    }

    /// Each head of `x` (the queries or keys [batch, seq, hidden], before the split into
    /// heads) against the relative embeddings' `offsets` rows projected by `projection`:
    /// [heads, batch, seq, width], one product per head over all the batch's tokens (no copy
    /// of the projected rows per batch row, no sum of their gradient over the batch).
    fn position_scores(
        &self,
        x: &Tensor,
        projection: &nn::Linear,
        rel: &Tensor,
        offsets: &Tensor,
    ) -> Tensor {
        let (b, s, _) = x.size3().expect("hidden states are 3-D");
        let (h, d, width) = (self.num_heads, self.head_dim, offsets.size()[0]);
        let projected = projection.forward(&rel.index_select(0, offsets));
        let positions = projected.view([width, h, d]).permute([1, 2, 0]);
        // Both operands made contiguous first: the product of the strided views took 11 ms a
        // layer inside a bf16 training step of the deberta-v3-base shape, 4.5 ms after.
        let x = x.reshape([b * s, h, d]).transpose(0, 1).contiguous();
        x.bmm(&positions.contiguous()).view([h, b, s, width])
    }

    fn layer(&self, layer: &Layer, x: &Tensor, shared: &Shared, pass: &Pass) -> Tensor {
        let train = pass.train;
        let s = &self.settings;
        let query = self.unpacked(apply(&layer.query, x), pass);
        let key = self.unpacked(apply(&layer.key, x), pass);
        let (q, k) = (self.heads(&query), self.heads(&key));
        let v = self.heads(&self.unpacked(apply(&layer.value, x), pass));
        let scale = self.scale(q.kind());
        // transformers divides the keys, then multiplies.
        let mut scores = q.matmul(&(k.transpose(-1, -2) / scale));
        let (mut c2p, mut p2c) = (None, None);
        if let Some(rel) = &shared.rel_embeddings {
            let rel = dropout(rel, self.hidden_dropout, train);
            if s.c2p {
                // Each query against the positions as keys.
                let projection = layer.pos_key.as_ref().unwrap_or(&layer.key);
                c2p = Some(self.position_scores(&query, projection, &rel, &shared.c2p_rows));
            }
            if s.p2c {
                // Each key against the positions as queries.
                let projection = layer.pos_query.as_ref().unwrap_or(&layer.query);
                p2c = Some(self.position_scores(&key, projection, &rel, &shared.p2c_rows));
            }
        }
        let masked = shared.masked.as_ref();
        if c2p.is_some() || p2c.is_some() {
            scores = with_relative(scores, c2p, p2c, masked, scale);
        } else if let Some(masked) = masked {
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

    #[test]
    fn relative_scores_in_one_pass_are_the_tensor_formula_bit_for_bit() {
        let (batch, heads) = (2i64, 3i64);
        let terms = [(true, true), (true, false), (false, true)];
        for (kind, seq, width, mask, (c, p)) in
            [Kind::Float, Kind::BFloat16].into_iter().flat_map(|kind| {
                [(1i64, 16i64), (5, 9), (7, 16)].into_iter().flat_map(move |(seq, width)| {
                    [false, true].into_iter().flat_map(move |mask| {
                        terms.into_iter().map(move |terms| (kind, seq, width, mask, terms))
                    })
                })
            })
        {
            let case = format!("{kind:?} seq {seq} width {width} mask {mask} c2p {c} p2c {p}");
            // Values from sines, not torch's generator, which other tests seed and draw from
            // concurrently.
            let values = |shape: &[i64], phase: f64| {
                let n = shape.iter().product::<i64>();
                let x = Tensor::arange(n, (Kind::Float, tch::Device::Cpu)) * 0.618 + phase;
                (x.sin() * 4).view(shape).to_kind(kind)
            };
            let leaf = |shape: &[i64], phase| values(shape, phase).set_requires_grad(true);
            let scores = leaf(&[batch, heads, seq, seq], 0.0);
            let c2p = c.then(|| leaf(&[heads, batch, seq, width], 1.0));
            let p2c = p.then(|| leaf(&[heads, batch, seq, width], 2.0));
            // Padding at the end of the second row; its first row fully kept.
            let masked = mask.then(|| {
                let keep = Tensor::ones([batch, seq], (Kind::Int64, tch::Device::Cpu));
                let _ = keep.get(1).narrow(0, seq - seq / 2, seq / 2).fill_(0);
                let keys = keep.unsqueeze(1).unsqueeze(2);
                (&keys * keys.squeeze_dim(-2).unsqueeze(-1)).eq(0)
            });
            let scale = Tensor::from(4.899f32).to_kind(kind).double_value(&[]);
            let grad = values(&[batch, heads, seq, seq], 3.0);
            let run = |fused: bool| {
                let copy = |t: &Tensor| t.detach().copy().set_requires_grad(true);
                let (s, c, p) = (copy(&scores), c2p.as_ref().map(copy), p2c.as_ref().map(copy));
                let (c_in, p_in) =
                    (c.as_ref().map(Tensor::shallow_clone), p.as_ref().map(Tensor::shallow_clone));
                // The tensor formula sums in place: it takes a result of an op, as the layer's.
                let input = &s * 1;
                let out = match fused {
                    true => with_relative(input, c_in, p_in, masked.as_ref(), scale),
                    false => relative_by_tensors(input, c_in, p_in, masked.as_ref(), scale),
                };
                // The result's gradient is `grad`, exactly (times ones).
                (&out * &grad).sum(kind).backward();
                let grads = [Some(&s), c.as_ref(), p.as_ref()].map(|t| t.map(|t| t.grad()));
                (out.detach(), grads)
            };
            let (fused, fused_grads) = run(true);
            let (by_tensors, tensor_grads) = run(false);
            assert!(fused.equal(&by_tensors), "{case}: the scores");
            for (index, (a, b)) in fused_grads.iter().zip(&tensor_grads).enumerate() {
                match (a, b) {
                    (Some(a), Some(b)) => assert!(a.equal(b), "{case}: gradient {index}"),
                    (None, None) => {}
                    _ => panic!("{case}: gradient {index} on one side only"),
                }
            }
        }
    }
}
