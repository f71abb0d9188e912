//! Self-attention (`BertSelfAttention`, DistilBERT's `MultiHeadSelfAttention` without its
//! output projection), explicit or fused.

use super::config::ModelConfig;
use super::dropout::dropout;
use super::encoder::{Groups, Packing};
use super::init::{apply, linear};
use super::probs;
use crate::ops::{self, RowMap};
use tch::nn;
use tch::{Device, Kind, Tensor};

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
        match seq >= self.fused_from(device, kind, train, dropout) {
            true => AttentionImpl::Fused,
            false => AttentionImpl::Explicit,
        }
    }

    /// The sequence length from which attention is fused (i64::MAX: never).
    fn fused_from(self, device: tch::Device, kind: Kind, train: bool, dropout: f64) -> i64 {
        let float = kind == Kind::Float;
        match self {
            AttentionImpl::Explicit => i64::MAX,
            AttentionImpl::Fused => 0,
            AttentionImpl::Auto if device.is_cuda() => 0,
            AttentionImpl::Auto if float && !train => 64,
            AttentionImpl::Auto if float && dropout == 0.0 => 128,
            AttentionImpl::Auto => i64::MAX,
        }
    }
}

pub(crate) struct SelfAttention {
    query: nn::Linear,
    key: nn::Linear,
    value: nn::Linear,
    num_heads: i64,
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
            dropout: config.attention_dropout,
        }
    }

    /// Attention over the [batch, seq] layout, or over the groups of `pass` when it has them;
    /// `x` and the result are packed when `packing` is.
    pub(crate) fn forward(&self, x: &Tensor, pass: &Pass) -> Tensor {
        let h = self.num_heads;
        if let Some(groups) = pass.groups {
            let qkv = [&self.query, &self.key, &self.value].map(|l| apply(l, x));
            return attend_groups(qkv, h, groups, self.dropout, pass);
        }
        let heads = |t: Tensor| split_heads(&t, 1, h, pass.layout, None, pass).swap_remove(0);
        let q = heads(apply(&self.query, x));
        let k = heads(apply(&self.key, x));
        let v = heads(apply(&self.value, x));
        let context = attend(&q, &k, &v, pass.bias, self.dropout, pass, Softmax::InScores);
        merge_heads(context, pass)
    }
}

/// The rotary embedding of one layer type (`ModernBertRotaryEmbedding.forward`, cast to the
/// hidden states' dtype as there): cos and sin for each row of the token-wise layers, float32
/// [tokens, head_dim / 2] (each frequency serves both halves of a head).
pub(crate) struct Rotary {
    cos: Tensor,
    sin: Tensor,
}

impl Rotary {
    /// The tables of `positions` [tokens] with base `theta`, their values those of `kind`.
    pub(crate) fn new(positions: &Tensor, theta: f64, head_dim: i64, kind: Kind) -> Rotary {
        let device = positions.device();
        let exponents = Tensor::arange_start_step(0, head_dim, 2, (Kind::Float, device)) / head_dim;
        let inv_freq = Tensor::pow_scalar(theta, &exponents).reciprocal();
        let freqs = positions.unsqueeze(-1).to_kind(Kind::Float) * inv_freq;
        let round = |t: Tensor| t.to_kind(kind).to_kind(Kind::Float);
        Rotary { cos: round(freqs.cos()), sin: round(freqs.sin()) }
    }

    /// `apply_rotary_pos_emb` (`x * cos + rotate_half(x) * sin`, in float32) on rows
    /// [tokens, parts, heads, head_dim]. `rotate_half` (the halves swapped, the first negated)
    /// is the swap of the halves with the sign in the sine: the same products, bit for bit.
    /// The CPU's split_heads does it in its pass.
    fn turn(&self, x: &Tensor) -> Tensor {
        let float = x.to_kind(Kind::Float);
        let head_dim = *float.size().last().expect("heads have a dimension");
        let halves = float.unflatten(-1, [2, head_dim / 2]);
        let tables = |t: &Tensor| t.unsqueeze(1).unsqueeze(1).unsqueeze(1);
        let signed_sin = Tensor::cat(&[-tables(&self.sin), tables(&self.sin)], 3);
        let rotated = &halves * tables(&self.cos) + halves.flip([-2]) * signed_sin;
        rotated.flatten(-2, -1).to_kind(x.kind())
    }
}

/// Rows [tokens, parts · heads · head_dim] of the token-wise layers (packed when `pass` packs)
/// → `parts` tensors [batch, heads, seq, head_dim] (q, k, v), zeros at the padding, the first
/// `rotated` parts turned by the rotary. On the CPU in one parallel pass, forward and backward
/// (`ops::split_heads`), where unpacking, rotating, concatenating and splitting would each write
/// the whole tensor again.
pub(crate) fn split_heads(
    rows: &Tensor,
    parts: i64,
    heads: i64,
    (batch, seq): (i64, i64),
    rotary: Option<(&Rotary, i64)>,
    pass: &Pass,
) -> Vec<Tensor> {
    if rows.device() != Device::Cpu || (pass.packing.is_none() && rotary.is_none()) {
        return split_heads_by_tensors(rows, parts, heads, (batch, seq), rotary, pass);
    }
    let width = *rows.size().last().expect("rows have columns");
    let rows = rows.reshape([-1, width]);
    let identity;
    let map = match pass.packing {
        Some(p) => p.map(),
        None => {
            identity = Tensor::arange(batch * seq, (Kind::Int64, Device::Cpu));
            RowMap { source: &identity, index: &identity, blocks: &[[batch, seq]] }
        }
    };
    let rotary = rotary.map(|(r, n)| (&r.cos, &r.sin, n));
    ops::split_heads(&rows, &map, parts, heads, rotary).expect("splitting the heads")
}

/// split_heads by tensor operations (other devices; without packing or rotary, views only).
fn split_heads_by_tensors(
    rows: &Tensor,
    parts: i64,
    heads: i64,
    (batch, seq): (i64, i64),
    rotary: Option<(&Rotary, i64)>,
    pass: &Pass,
) -> Vec<Tensor> {
    let d = rows.size().last().expect("rows are 2-D or 3-D") / (parts * heads);
    let mut x = rows.reshape([-1, parts, heads, d]);
    if let Some((rotary, n)) = rotary {
        let split = x.split_with_sizes([n, parts - n], 1);
        x = Tensor::cat(&[rotary.turn(&split[0]), split[1].shallow_clone()], 1);
    }
    let x = x.view([-1, parts * heads * d]);
    let x = match pass.packing {
        Some(p) => p.unpack(&x),
        None => x,
    };
    let x = x.view([batch, seq, parts, heads, d]);
    x.unbind(2).into_iter().map(|t| t.transpose(1, 2)).collect()
}

/// The dtype the attention probabilities are computed in, as each model's eager attention does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Softmax {
    /// In the scores' dtype (BERT and its relatives).
    InScores,
    /// In float32, then cast back (`softmax(..., dtype=torch.float32).to(query.dtype)`).
    InFloat,
}

/// The eager attention's `dropout(softmax(scores · scale + bias, dim=-1), p)`, the softmax in
/// the dtype `softmax` says, for its product with the values: in one pass by
/// `probs::attention_probs` where it gives the same bits (it computes in float32, so a float
/// softmax of bfloat16 scores only when no dropout follows its cast back), else by tensors.
/// The kernel writes them in bfloat16 under autocast to bfloat16, as the product casts them.
pub(crate) fn probabilities(
    scores: &Tensor,
    bias: Option<&Tensor>,
    scale: f64,
    p: f64,
    train: bool,
    softmax: Softmax,
) -> Tensor {
    let kind = scores.kind();
    let dropped = train && p > 0.0;
    let float = softmax == Softmax::InScores || kind == Kind::Float || !dropped;
    if float && probs::applies(scores, bias) {
        let natural = match softmax {
            Softmax::InScores => Kind::Float,
            Softmax::InFloat => kind,
        };
        let autocast = ops::autocast_kind(scores.device());
        let result = match autocast == Some(Kind::BFloat16) {
            true => Kind::BFloat16,
            false => natural,
        };
        return probs::attention_probs(scores, bias, scale, p, train, result);
    }
    let scaled = match scale == 1.0 {
        true => scores.shallow_clone(),
        false => scores * scale,
    };
    let biased = match bias {
        Some(bias) => scaled + bias,
        None => scaled,
    };
    let probs = match softmax {
        Softmax::InScores => biased.softmax(-1, kind),
        Softmax::InFloat => biased.softmax(-1, Kind::Float).to_kind(kind),
    };
    dropout(&probs, p, train)
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
            let scores = q.matmul(&k.transpose(2, 3));
            probabilities(&scores, bias, scale, p, train, softmax).matmul(v)
        }
        AttentionImpl::Fused => {
            Tensor::scaled_dot_product_attention(q, k, v, bias, p, false, scale, false)
        }
    }
}

/// `attend` over each block of `groups`: q, k, v and the context are packed rows [tokens, heads ·
/// head_dim] (on the CPU).
fn attend_groups(
    qkv: [Tensor; 3],
    heads: i64,
    groups: &Groups,
    dropout_p: f64,
    pass: &Pass,
) -> Tensor {
    let map = groups.map();
    let [q, k, v] = qkv.map(|t| ops::split_heads(&t, &map, 1, heads, None).expect("the heads"));
    let contexts: Vec<Tensor> = (0..groups.biases.len())
        .map(|g| {
            let bias = Some(&groups.biases[g]);
            attend(&q[g], &k[g], &v[g], bias, dropout_p, pass, Softmax::InScores)
        })
        .collect();
    let contexts: Vec<&Tensor> = contexts.iter().collect();
    ops::merge_heads(&contexts, &map, heads).expect("merging the heads")
}

/// Attention of each sequence on its own tokens: q, k, v [1, heads, tokens, head_dim] hold the
/// packed tokens of `packing`, sequence after sequence; `masks` has each sequence's additive
/// mask, if it has one ([1, 1, length, length]). The context is packed, [tokens, heads · head_dim].
/// Unlike the [batch, seq] layout, the padding costs no scores, products or softmax here; each
/// sequence is computed as `attend` computes it (explicit or fused by its own length). On the
/// CPU without dropout, by one autograd function (`ops::attend_each`).
pub(crate) fn attend_each(
    qkv: [&Tensor; 3],
    packing: &Packing,
    masks: &[Option<Tensor>],
    dropout_p: f64,
    pass: &Pass,
    softmax: Softmax,
) -> Tensor {
    let (_, heads, tokens, d) = qkv[0].size4().expect("packed heads are 4-D");
    let (device, kind) = (qkv[0].device(), qkv[0].kind());
    let p = if pass.train { dropout_p } else { 0.0 };
    if device == Device::Cpu && p == 0.0 {
        let fused_from = pass.attention.fused_from(device, kind, pass.train, p);
        let scale = (d as f64).powf(-0.5);
        let float = softmax == Softmax::InFloat;
        let context = ops::attend_each(qkv, packing.lengths(), masks, scale, float, fused_from)
            .expect("attention of each sequence");
        return context.squeeze_dim(0).transpose(0, 1).contiguous().view([tokens, heads * d]);
    }
    attend_each_by_tensors(qkv, packing, masks, dropout_p, pass, softmax)
}

/// attend_each by tensor operations, one `attend` per sequence (other devices, and dropout).
fn attend_each_by_tensors(
    qkv: [&Tensor; 3],
    packing: &Packing,
    masks: &[Option<Tensor>],
    dropout_p: f64,
    pass: &Pass,
    softmax: Softmax,
) -> Tensor {
    let (_, heads, tokens, d) = qkv[0].size4().expect("packed heads are 4-D");
    let [q, k, v] = qkv.map(|t| t.split_with_sizes(packing.lengths(), 2));
    let contexts: Vec<Tensor> = (0..q.len())
        .map(|i| {
            let mask = masks[i].as_ref();
            let context = attend(&q[i], &k[i], &v[i], mask, dropout_p, pass, softmax);
            context.squeeze_dim(0).transpose(0, 1)
        })
        .collect();
    Tensor::cat(&contexts, 0).view([tokens, heads * d])
}

/// [batch, heads, seq, head_dim] → [batch, seq, hidden], packed when `pass` packs (on the CPU
/// in one parallel pass, forward and backward).
pub(crate) fn merge_heads(context: Tensor, pass: &Pass) -> Tensor {
    let (b, h, s, d) = context.size4().expect("attention context is 4-D");
    if let (Some(p), Device::Cpu) = (pass.packing, context.device()) {
        return ops::merge_heads(&[&context], &p.map(), h).expect("merging the heads");
    }
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
    /// The packed sequences in groups of similar length, where the attention takes them.
    pub groups: Option<&'a Groups>,
    /// [b, 1, 1, s]: 0 where attended, the dtype's minimum where masked.
    pub bias: Option<&'a Tensor>,
    pub train: bool,
    pub attention: AttentionImpl,
    /// [batch, seq] of the attention's layout.
    pub layout: (i64, i64),
}

/// transformers' bidirectional mask in the computation dtype `kind`: 0 where attended, the
/// dtype's minimum where masked, [b, 1, 1, s].
pub(crate) fn mask_bias(attention_mask: &Tensor, kind: Kind) -> Tensor {
    masked(&attention_mask.ne(0).unsqueeze(1).unsqueeze(1), kind)
}

/// The additive mask of `keep` (true where attended) in `kind`: 0 or the dtype's minimum.
fn masked(keep: &Tensor, kind: Kind) -> Tensor {
    let keep = keep.to_kind(kind);
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
    masked(&keep, kind)
}

/// The sliding window of each sequence of `packing` (as `window_bias`, on the columns of its
/// attended tokens) for `attend_each`: None where all its tokens are within `window` of each
/// other, the case of every sequence no longer than the window.
pub(crate) fn sequence_windows(packing: &Packing, window: i64, kind: Kind) -> Vec<Option<Tensor>> {
    let columns = packing.columns();
    let mut start = 0;
    let lengths = packing.lengths().iter().zip(packing.last_columns());
    lengths
        .map(|(&length, &last)| {
            let c = columns.narrow(0, start, length);
            start += length;
            (last > window).then(|| {
                let keep = (c.unsqueeze(1) - c.unsqueeze(0)).abs().le(window);
                masked(&keep, kind).view([1, 1, length, length])
            })
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::encoder::Packing;

    fn pass(packing: Option<&Packing>, layout: (i64, i64)) -> Pass<'_> {
        let attention = AttentionImpl::Explicit;
        Pass { packing, groups: None, bias: None, train: true, attention, layout }
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max().double_value(&[])
    }

    /// The heads of `rows` the way the tensor formula makes them: rotated, padded, split.
    fn reference(rows: &Tensor, mask: &Tensor, rotary: &Rotary, heads: i64) -> Vec<Tensor> {
        let (b, s) = mask.size2().unwrap();
        let d = rows.size()[1] / (3 * heads);
        let x = rows.view([-1, 3, heads, d]);
        let split = x.split_with_sizes([2, 1], 1);
        let x = Tensor::cat(&[rotary.turn(&split[0]), split[1].shallow_clone()], 1);
        let index = mask.view([-1]).nonzero().squeeze_dim(1);
        let padded = Tensor::zeros([b * s, 3 * heads * d], (rows.kind(), Device::Cpu));
        let padded = padded.index_copy(0, &index, &x.view([-1, 3 * heads * d]));
        let parts = padded.view([b, s, 3, heads, d]).unbind(2);
        parts.into_iter().map(|t| t.transpose(1, 2)).collect()
    }

    #[test]
    fn attention_over_groups_is_the_one_block_attention_forward_and_backward() {
        let _generator = crate::ops::lock_default_generator();
        tch::manual_seed(1);
        let (heads, d) = (2, 4);
        let lengths = [5i64, 2, 9, 9, 3, 1];
        let columns = Tensor::arange(9, (Kind::Int64, Device::Cpu)).unsqueeze(0);
        let mask =
            columns.lt_tensor(&Tensor::from_slice(&lengths).unsqueeze(1)).to_kind(Kind::Int64);
        let packing = Packing::of(&mask).expect("padded");
        let pass = pass(Some(&packing), (6, 9));
        for (kind, tolerance) in [(Kind::Float, 1e-6), (Kind::BFloat16, 1e-2)] {
            // Without a cost per block, one block per length; with a large one, the one block.
            let one = Groups::costing(&packing, kind, 1 << 40);
            assert_eq!(one.blocks, [[6, 9]]);
            let groups = Groups::costing(&packing, kind, 0);
            assert_eq!(groups.blocks, [[1, 1], [1, 2], [1, 3], [1, 5], [2, 9]]);
            let rows = Tensor::randn([3, 29, heads * d], (kind, Device::Cpu));
            let weights = Tensor::randn([29, heads * d], (kind, Device::Cpu));
            let run = |groups: Option<&Groups>| {
                let qkv = rows.detach().set_requires_grad(true);
                let [q, k, v] = [0, 1, 2].map(|i| qkv.get(i));
                let out = match groups {
                    Some(groups) => attend_groups([q, k, v], heads, groups, 0.0, &pass),
                    None => {
                        let split = |t: &Tensor| {
                            split_heads(t, 1, heads, (6, 9), None, &pass).swap_remove(0)
                        };
                        let bias = mask_bias(&mask, kind);
                        let (q, k, v) = (split(&q), split(&k), split(&v));
                        let context =
                            attend(&q, &k, &v, Some(&bias), 0.0, &pass, Softmax::InScores);
                        merge_heads(context, &pass)
                    }
                };
                (&out * &weights).sum(Kind::Float).backward();
                (out, qkv.grad())
            };
            let (expected, expected_grad) = run(None);
            for groups in [&one, &groups] {
                let (got, grad) = run(Some(groups));
                assert!(max_diff(&got, &expected) <= tolerance, "{kind:?} {:?}", groups.blocks);
                assert!(max_diff(&grad, &expected_grad) <= tolerance, "{kind:?} gradients");
            }
        }
    }

    #[test]
    fn split_and_merge_heads_are_the_tensor_formula_forward_and_backward() {
        let _generator = crate::ops::lock_default_generator();
        tch::manual_seed(0);
        let (heads, d) = (3, 8);
        let padded = Tensor::from_slice2(&[[1i64, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 1, 0]]);
        let full = Tensor::ones([2, 4], (Kind::Int64, Device::Cpu));
        for kind in [Kind::Float, Kind::BFloat16] {
            for mask in [&padded, &full] {
                let packing = Packing::of(mask);
                let layout = mask.size2().unwrap();
                let pass = pass(packing.as_ref(), layout);
                let tokens = mask.sum(Kind::Int64).int64_value(&[]);
                let flat = Tensor::arange(layout.0 * layout.1, (Kind::Int64, Device::Cpu));
                let positions = flat
                    .remainder(layout.1)
                    .index_select(0, &mask.view([-1]).nonzero().squeeze_dim(1));
                let rotary = Rotary::new(&positions, 160.0, d, kind);
                let rows = Tensor::randn([tokens, 3 * heads * d], (kind, Device::Cpu));
                let fused_rows = rows.detach().set_requires_grad(true);
                let fused = split_heads(&fused_rows, 3, heads, layout, Some((&rotary, 2)), &pass);
                let ref_rows = rows.detach().set_requires_grad(true);
                let expected = reference(&ref_rows, mask, &rotary, heads);
                // The other devices' way, here on the CPU.
                let rotated = Some((&rotary, 2));
                let by_tensors = split_heads_by_tensors(&rows, 3, heads, layout, rotated, &pass);
                for ((f, e), t) in fused.iter().zip(&expected).zip(&by_tensors) {
                    assert_eq!(f.size(), e.size());
                    assert_eq!(max_diff(f, e), 0.0, "{kind:?} forward");
                    assert_eq!(max_diff(t, e), 0.0, "{kind:?} forward by tensors");
                }
                // k's output unused: its rows' gradient is zero.
                let grads: Vec<Tensor> = fused.iter().map(Tensor::randn_like).collect();
                let loss = |out: &[Tensor]| {
                    (&out[0] * &grads[0]).sum(Kind::Float) + (&out[2] * &grads[2]).sum(Kind::Float)
                };
                loss(&fused).backward();
                loss(&expected).backward();
                assert_eq!(
                    max_diff(&fused_rows.grad(), &ref_rows.grad()),
                    0.0,
                    "{kind:?} backward"
                );

                let context = Tensor::randn([layout.0, heads, layout.1, d], (kind, Device::Cpu));
                let (fused_context, ref_context) = (
                    context.detach().set_requires_grad(true),
                    context.detach().set_requires_grad(true),
                );
                let merged = merge_heads(fused_context.shallow_clone(), &pass);
                let dense =
                    ref_context.transpose(1, 2).contiguous().view([layout.0 * layout.1, -1]);
                let index = mask.view([-1]).nonzero().squeeze_dim(1);
                let expected = dense.index_select(0, &index);
                assert_eq!(max_diff(&merged.view([tokens, -1]), &expected), 0.0, "{kind:?} merge");
                let g = merged.randn_like();
                (&merged * &g).sum(Kind::Float).backward();
                (expected * g.view([tokens, -1])).sum(Kind::Float).backward();
                let diff = max_diff(&fused_context.grad(), &ref_context.grad());
                assert_eq!(diff, 0.0, "{kind:?} merge backward");
            }
        }
    }

    #[test]
    fn attention_of_each_sequence_is_the_padded_attention_with_its_mask() {
        let _generator = crate::ops::lock_default_generator();
        tch::manual_seed(0);
        let (heads, d, window) = (2, 8, 2);
        // Lengths 7, 2 and 4; the last row has a hole (column 2), so its window spans 5.
        let mask = Tensor::from_slice2(&[
            [1i64, 1, 1, 1, 1, 1, 1],
            [1, 1, 0, 0, 0, 0, 0],
            [1, 1, 0, 1, 1, 0, 0],
        ]);
        let packing = Packing::of(&mask).expect("the mask has padding");
        let (b, s) = mask.size2().unwrap();
        let tokens = packing.lengths().iter().sum::<i64>();
        for kind in [Kind::Float, Kind::BFloat16] {
            for attention in [AttentionImpl::Explicit, AttentionImpl::Fused] {
                for windowed in [false, true] {
                    let what = format!("{kind:?} {attention:?} window {windowed}");
                    let mut pass = pass(Some(&packing), (b, s));
                    pass.attention = attention;
                    pass.train = windowed; // the gradient is the same in either mode
                    let rows = Tensor::randn([tokens, 3 * heads * d], (kind, Device::Cpu));
                    let (each_rows, wide_rows) = (
                        rows.detach().set_requires_grad(true),
                        rows.detach().set_requires_grad(true),
                    );
                    let flat = Pass { packing: None, layout: (1, tokens), ..pass };
                    let qkv = split_heads(&each_rows, 3, heads, (1, tokens), None, &flat);
                    let windows = sequence_windows(&packing, window, kind);
                    assert_eq!(
                        windows.iter().map(Option::is_some).collect::<Vec<_>>(),
                        [true, false, true],
                        "only the rows wider than the window are masked"
                    );
                    let masks = match windowed {
                        true => windows,
                        false => windows.iter().map(|_| None).collect(),
                    };
                    let qkv = [&qkv[0], &qkv[1], &qkv[2]];
                    let softmax = Softmax::InFloat;
                    let got = attend_each(qkv, &packing, &masks, 0.0, &pass, softmax);
                    let by_tensors =
                        attend_each_by_tensors(qkv, &packing, &masks, 0.0, &pass, softmax);

                    let bias = match windowed {
                        true => window_bias(Some(&mask), s, window, kind, Device::Cpu),
                        false => mask_bias(&mask, kind),
                    };
                    let qkv = split_heads(&wide_rows, 3, heads, (b, s), None, &pass);
                    let context = attend(
                        &qkv[0],
                        &qkv[1],
                        &qkv[2],
                        Some(&bias),
                        0.0,
                        &pass,
                        Softmax::InFloat,
                    );
                    let expected = merge_heads(context, &pass);
                    let tolerance = if kind == Kind::Float { 1e-6 } else { 1e-2 };
                    assert!(max_diff(&got, &expected) < tolerance, "{what}: forward");
                    let diff = max_diff(&by_tensors, &expected);
                    assert!(diff < tolerance, "{what}: forward by tensors");
                    let g = got.randn_like();
                    let grad = |out: &Tensor| {
                        let rows = &each_rows;
                        let rows_grad = Tensor::run_backward(
                            &[(out * &g).sum(Kind::Float)],
                            &[rows],
                            false,
                            false,
                        );
                        rows_grad[0].shallow_clone()
                    };
                    let (each_grad, tensors_grad) = (grad(&got), grad(&by_tensors));
                    (&expected * &g).sum(Kind::Float).backward();
                    for (name, got) in [("", each_grad), (" by tensors", tensors_grad)] {
                        let diff = max_diff(&got, &wide_rows.grad());
                        assert!(diff < tolerance, "{what}: backward{name} {diff}");
                        assert!(got.abs().sum(Kind::Float).double_value(&[]) > 0.0);
                    }
                }
            }
        }
    }
}
