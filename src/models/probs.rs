//! The explicit attention's probabilities in one pass over the scores, forward and backward.
//!
//! `attention::attend` computes `dropout(softmax(scores · scale + bias))` by tensors: four
//! elementwise passes over the [batch, heads, seq, seq] scores and a dropout mask as wide as
//! them forward, three passes backward, each writing a new tensor. Here one autograd function
//! (`csrc/ops.cpp` `AttentionProbs`) runs the kernels below: forward, one pass per row writes
//! the probabilities (which the backward needs) and the dropped probabilities; backward, one
//! pass writes the scores' gradient. The dropout mask is one byte per element, drawn as
//! `dropout::dropout` draws it (the same elements are dropped for the same generator state).
//!
//! The results are the tensor formula's bit for bit, where it computes in float32 (float32
//! scores, or bfloat16 ones with the float32 mask of a padded batch under autocast): each step
//! rounds as libtorch's kernels round it (the scaled scores in the scores' dtype; the
//! exponential is libtorch's SLEEF one; sums run in the order of libtorch's vectors, 8 floats
//! for its AVX2 kernels and 16 for AVX-512, which is why only those two are taken).

use super::dropout;
use crate::ops;
use crate::simd::{Kernel, Target};
use std::ffi::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use tch::{Device, Kind, Tensor};

/// What `csrc/ops.cpp` passes to the kernels (the same layout as its `ProbsArgs`).
#[repr(C)]
pub struct ProbsArgs {
    /// Forward: the scores; backward: the gradient of the result, of its type.
    input: *const c_void,
    /// The float32 bias (NULL: none), [batch, heads, queries, n] with these element strides
    /// for the first three dimensions (0 where it is broadcast) and 1 for the last.
    bias: *const f32,
    bias_strides: [i64; 3],
    /// One byte per element, 0 where dropped (NULL: no dropout).
    keep: *const u8,
    /// The float32 probabilities. Forward: written; backward: read.
    probs: *mut f32,
    /// Forward: the dropped probabilities, of the result's type (NULL when they are `probs`:
    /// float32 without dropout); backward: the scores' gradient.
    out: *mut c_void,
    heads: i64,
    queries: i64,
    rows: i64,
    n: i64,
    scale: f64,
    /// The kept elements' factor, `1 / (1 - p)` in float32.
    kept: f64,
    /// Whether the scores are bfloat16 (else float32).
    scores_bf16: i32,
    /// Whether the result (the dropped probabilities) is bfloat16 (else float32).
    out_bf16: i32,
    /// The width of libtorch's float vectors (8 or 16), whose order of summation the kernels
    /// follow.
    lanes: i32,
}

// SAFETY: the kernels' threads read the arguments and write disjoint rows of `probs` and `out`.
unsafe impl Sync for ProbsArgs {}

/// The scores' element type, computed in float32.
pub(crate) trait Elem: Copy + Send + Sync + 'static {
    fn load(self) -> f32;
    fn store(x: f32) -> Self;
    /// The libtorch dtype of the same values.
    const KIND: Kind;
}

impl Elem for f32 {
    const KIND: Kind = Kind::Float;
    #[inline(always)]
    fn load(self) -> f32 {
        self
    }
    #[inline(always)]
    fn store(x: f32) -> f32 {
        x
    }
}

/// bfloat16: the upper half of a float32, rounded to nearest even as libtorch rounds it.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub(crate) struct Bf16(u16);

impl Elem for Bf16 {
    const KIND: Kind = Kind::BFloat16;
    #[inline(always)]
    fn load(self) -> f32 {
        f32::from_bits((self.0 as u32) << 16)
    }
    #[inline(always)]
    fn store(x: f32) -> Bf16 {
        let bits = x.to_bits();
        let rounded = (bits.wrapping_add(0x7FFF + ((bits >> 16) & 1)) >> 16) as u16;
        Bf16(if x.is_nan() { 0x7FC0 } else { rounded })
    }
}

/// `x` rounded to `T`'s precision.
#[inline(always)]
pub(crate) fn round<T: Elem>(x: f32) -> f32 {
    T::store(x).load()
}

/// e^x as libtorch's vectorized `exp` computes it (SLEEF's `expf_u10`, with fused
/// multiply-adds), bit for bit: q the nearest integer to x / ln 2, s = x - q ln 2 (ln 2 in two
/// parts), e^s by its degree-6 polynomial, times 2^q in two factors; 0 below -104. Branch-free,
/// so that loops over it vectorize.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23: adding and subtracting it rounds to even
    let d = x.clamp(-104.0, 100.0);
    let rounded = d * std::f32::consts::LOG2_E + ROUND;
    let q = rounded - ROUND;
    let s = q.mul_add(-0.693_145_75, d);
    let s = q.mul_add(-1.428_606_8e-6, s);
    let mut u = 1.985_276_2e-4_f32;
    for c in [1.393_043_6e-3, 8.333_361e-3, 4.166_648_5e-2, 1.666_666_7e-1, 0.5] {
        u = u.mul_add(s, c);
    }
    let u = 1.0 + (s * s).mul_add(u, s);
    // q as an integer (in [-151, 145]): the low bits of `rounded`, whose exponent is ROUND's
    // (no float-to-integer conversion, which does not vectorize; for NaN the result is NaN).
    let q = rounded.to_bits() as i32 - ROUND.to_bits() as i32;
    let pow2 = |e: i32| f32::from_bits(((e + 0x7f) as u32) << 23);
    let u = u * pow2(q >> 1) * pow2(q - (q >> 1));
    if x < -104.0 {
        0.0
    } else {
        u
    }
}

/// The sum of `a` (of `a[i] · b[i]` with `b`) in the order of libtorch's `vec::reduce_all`
/// (`map2_reduce_all`) over vectors of `L` floats: lane by lane over the vectors (the last one
/// partial), then the lanes pairwise, halves first; fewer than L elements one after another.
#[inline(always)]
fn sum_of<const L: usize>(a: &[f32], b: Option<&[f32]>) -> f32 {
    let term = |i: usize| match b {
        Some(b) => a[i] * b[i],
        None => a[i],
    };
    if a.len() < L {
        return (1..a.len()).fold(term(0), |sum, i| sum + term(i));
    }
    let mut lanes = [0.0f32; L];
    let full = a.len() / L * L;
    match b {
        Some(b) => {
            let b = &b[..a.len()];
            for (x, y) in a[..full].chunks_exact(L).zip(b[..full].chunks_exact(L)) {
                for ((lane, x), y) in lanes.iter_mut().zip(x).zip(y) {
                    *lane += x * y;
                }
            }
        }
        None => {
            for x in a[..full].chunks_exact(L) {
                for (lane, x) in lanes.iter_mut().zip(x) {
                    *lane += x;
                }
            }
        }
    }
    for (lane, i) in lanes.iter_mut().zip(full..a.len()) {
        *lane += term(i);
    }
    butterfly(lanes)
}

/// `sum_of` the first `n` elements of `a` (and `b`), which hold whole blocks: their padding
/// adds +0 to the lanes, which changes no sum of non-negative terms, nor any other but for the
/// sign of a zero.
#[inline(always)]
fn sum_of_padded<const L: usize>(a: &[f32], b: Option<&[f32]>, n: usize) -> f32 {
    if n < L {
        return sum_of::<L>(&a[..n], b.map(|b| &b[..n]));
    }
    let mut lanes = [0.0f32; L];
    match b {
        Some(b) => {
            for (x, y) in a.chunks_exact(L).zip(b.chunks_exact(L)) {
                for ((lane, x), y) in lanes.iter_mut().zip(x).zip(y) {
                    *lane += x * y;
                }
            }
        }
        None => {
            for x in a.chunks_exact(L) {
                for (lane, x) in lanes.iter_mut().zip(x) {
                    *lane += x;
                }
            }
        }
    }
    butterfly(lanes)
}

/// libtorch's `vec_reduce_all` of a sum's lanes: each lane added to its partner at distance
/// L/2, L/4, ... 1, and lane 0 read (lane 0's sums; the upper half of each step is the lower
/// one's mirror).
#[inline(always)]
fn butterfly<const L: usize>(mut lanes: [f32; L]) -> f32 {
    let mut half = L / 2;
    while half > 0 {
        for i in 0..half {
            lanes[i] += lanes[i + half];
        }
        half /= 2;
    }
    lanes[0]
}

/// The scratch rows' padding: rows are computed in whole blocks of this many floats, so that
/// their loops vectorize without a remainder.
const BLOCK: usize = 16;

/// `f` on every element of `x` in place; `x` holds whole blocks.
#[inline(always)]
fn map_in_place(x: &mut [f32], f: impl Fn(f32) -> f32) {
    for block in x.chunks_exact_mut(BLOCK) {
        for v in block.iter_mut() {
            *v = f(*v);
        }
    }
}

/// The largest element of `x` (whole blocks), NaN if there is one (libtorch's `vec::maximum`,
/// whose NaN makes the softmax's row NaN); any order gives the same.
#[inline(always)]
fn max_of(x: &[f32]) -> f32 {
    const LANES: usize = BLOCK;
    let larger = |a: f32, b: f32| if b > a || b.is_nan() { b } else { a };
    let mut lanes = [f32::NEG_INFINITY; LANES];
    for block in x.chunks_exact(LANES) {
        for (lane, &v) in lanes.iter_mut().zip(block) {
            *lane = larger(*lane, v);
        }
    }
    let mut half = LANES / 2;
    while half > 0 {
        for i in 0..half {
            lanes[i] = larger(lanes[i], lanes[i + half]);
        }
        half /= 2;
    }
    lanes[0]
}

/// The kernels over `ProbsArgs`, scores of type S, the result of type O, libtorch's vectors of
/// L floats.
struct Rows<'a, S, O, const L: usize> {
    args: &'a ProbsArgs,
    _types: std::marker::PhantomData<(S, O)>,
}

impl<S: Elem, O: Elem, const L: usize> Rows<'_, S, O, L> {
    fn n(&self) -> usize {
        self.args.n as usize
    }

    /// Row `row` of the [rows, n] tensor at `base`.
    ///
    /// SAFETY: `base` holds rows × n elements of T.
    unsafe fn row<'b, T>(&self, base: *const T, row: usize) -> &'b [T] {
        std::slice::from_raw_parts(base.add(row * self.n()), self.n())
    }

    /// SAFETY: as `row`, and no other thread uses this row.
    #[allow(clippy::mut_from_ref)]
    unsafe fn row_mut<'b, T>(&self, base: *mut T, row: usize) -> &'b mut [T] {
        std::slice::from_raw_parts_mut(base.add(row * self.n()), self.n())
    }

    /// The bias of each row of `range`, if there is one: (batch, head, query) counted along,
    /// no divisions per row.
    ///
    /// SAFETY: `args.bias` is NULL or covers the strides given for every row.
    unsafe fn biases<'b>(
        &self,
        range: std::ops::Range<usize>,
    ) -> impl Iterator<Item = Option<&'b [f32]>> + use<'b, '_, S, O, L> {
        let a = self.args;
        let (heads, queries) = (a.heads as usize, a.queries as usize);
        let [sb, sh, sq] = a.bias_strides.map(|s| s as usize);
        let start = range.start;
        let mut at = (start / (heads * queries), start / queries % heads, start % queries);
        range.map(move |_| {
            let (b, h, q) = at;
            at = match (q + 1 == queries, h + 1 == heads) {
                (false, _) => (b, h, q + 1),
                (true, false) => (b, h + 1, 0),
                (true, true) => (b + 1, 0, 0),
            };
            (!a.bias.is_null()).then(|| {
                let offset = b * sb + h * sh + q * sq;
                std::slice::from_raw_parts(a.bias.add(offset), self.n())
            })
        })
    }

    /// `softmax(scores · scale + bias)` and its dropout, row by row: the scaled scores rounded
    /// to S, the sum with the bias and everything after in float32, as the tensor formula
    /// computes them (libtorch's `_vec_softmax_lastdim`: max, exp(x - max), the sum, times its
    /// reciprocal; dropout `probs * noise`). Each row is computed in `work`, padded to whole
    /// blocks with -inf (which changes neither the max nor, as exp's +0, the sum).
    ///
    /// SAFETY: the pointers of `args` hold what `ProbsArgs` says for every row in `range`;
    /// `work`, as `over_rows` gives it.
    #[inline(always)]
    unsafe fn forward(&self, range: std::ops::Range<usize>, work: &mut [f32]) {
        let a = self.args;
        let (scale, kept) = (a.scale as f32, a.kept as f32);
        let n = self.n();
        let half = work.len() / 2;
        let work = &mut work[..half];
        for (row, bias) in range.clone().zip(self.biases(range)) {
            let scores: &[S] = self.row(a.input.cast(), row);
            let (values, padding) = work.split_at_mut(n);
            match bias {
                Some(bias) => {
                    for ((v, &s), &b) in values.iter_mut().zip(scores).zip(bias) {
                        *v = round::<S>(s.load() * scale) + b;
                    }
                }
                None => {
                    for (v, &s) in values.iter_mut().zip(scores) {
                        *v = round::<S>(s.load() * scale);
                    }
                }
            }
            padding.fill(f32::NEG_INFINITY);
            let max = max_of(work);
            map_in_place(work, |v| exp(v - max));
            let inverse = 1.0 / sum_of_padded::<L>(work, None, n);
            let probs = self.row_mut(a.probs, row);
            if a.out.is_null() {
                for (p, &v) in probs.iter_mut().zip(&*work) {
                    *p = v * inverse;
                }
            } else if a.keep.is_null() {
                let out: &mut [O] = self.row_mut(a.out.cast(), row);
                for ((p, o), &v) in probs.iter_mut().zip(out).zip(&*work) {
                    *p = v * inverse;
                    *o = O::store(*p);
                }
            } else {
                let keep = self.row(a.keep, row);
                let out: &mut [O] = self.row_mut(a.out.cast(), row);
                for (((p, o), &v), &k) in probs.iter_mut().zip(out).zip(&*work).zip(keep) {
                    *p = v * inverse;
                    *o = O::store(if k != 0 { *p * kept } else { 0.0 });
                }
            }
        }
    }

    /// The scores' gradient, row by row, as autograd computes it through the tensor formula:
    /// the dropout's `grad * noise`, libtorch's softmax backward (`_vec_host_softmax_backward_
    /// lastdim`: `(grad - Σ grad · probs) · probs`), the cast back to S, times the scale in S.
    ///
    /// The row's gradient and probabilities are copied into the two halves of `work`, whose
    /// padding stays +0 (adding its products to the lanes changes no sum).
    ///
    /// SAFETY: as `forward`.
    #[inline(always)]
    unsafe fn backward(&self, range: std::ops::Range<usize>, work: &mut [f32]) {
        let a = self.args;
        let (scale, kept) = (a.scale as f32, a.kept as f32);
        let n = self.n();
        let (grads, probs) = work.split_at_mut(work.len() / 2);
        for row in range {
            let grad: &[O] = self.row(a.input.cast(), row);
            if a.keep.is_null() {
                for (w, &g) in grads.iter_mut().zip(grad) {
                    *w = g.load();
                }
            } else {
                let keep = self.row(a.keep, row);
                for ((w, &g), &k) in grads.iter_mut().zip(grad).zip(keep) {
                    *w = if k != 0 { g.load() * kept } else { 0.0 };
                }
            }
            probs[..n].copy_from_slice(self.row(a.probs, row));
            let sum = sum_of_padded::<L>(grads, Some(probs), n);
            let out: &mut [S] = self.row_mut(a.out.cast(), row);
            for ((o, &g), &p) in out.iter_mut().zip(&*grads).zip(&*probs) {
                *o = S::store(round::<S>((g - sum) * p) * scale);
            }
        }
    }
}

/// Runs `body` over the rows on libtorch's threads, with scratch space per range: two rows of
/// n floats, each rounded up to whole blocks, zeros.
fn over_rows(args: &ProbsArgs, body: impl Fn(std::ops::Range<usize>, &mut [f32]) + Sync) {
    let n = args.n as usize;
    let grain = (16_384 / n.max(1)).max(1);
    let padded = n.div_ceil(BLOCK) * BLOCK;
    ops::parallel_for(args.rows as usize, grain, |range| {
        body(range, &mut vec![0.0f32; 2 * padded])
    });
}

/// Defines the `extern "C"` kernel `$name` (an `ops::Kernel`, called by `csrc/ops.cpp`
/// with its `ProbsArgs`; nonzero when the kernel panicked). It runs `$call` (a use of
/// `rows: &Rows<S, O, L>` over `range` with scratch `work`) for the scores' and the result's
/// types and libtorch's vector width, compiled for the CPU's vector instructions (`simd`): the
/// kernels are written once, in portable code that those targets vectorize.
macro_rules! kernel {
    ($(#[$doc:meta])* $name:ident, |$rows:ident, $range:ident, $work:ident| $call:expr) => {
        $(#[$doc])*
        extern "C" fn $name(args: *const c_void) -> c_int {
            // SAFETY: the C++ side passes a valid ProbsArgs for the duration of the call.
            let args = unsafe { &*args.cast::<ProbsArgs>() };
            struct Part<'a, 'b, S, O, const L: usize> {
                rows: &'a Rows<'b, S, O, L>,
                range: std::ops::Range<usize>,
                work: &'a mut [f32],
            }
            impl<S: Elem, O: Elem, const L: usize> Kernel for Part<'_, '_, S, O, L> {
                #[inline(always)]
                fn run(self) {
                    let Part { rows: $rows, range: $range, work: $work } = self;
                    // SAFETY: the arguments are the C++ side's (see ProbsArgs).
                    unsafe { $call }
                }
            }
            fn typed<S: Elem, O: Elem, const L: usize>(args: &ProbsArgs) {
                let rows = Rows::<S, O, L> { args, _types: std::marker::PhantomData };
                let target = Target::detect();
                over_rows(args, |range, work| target.run(Part { rows: &rows, range, work }))
            }
            let run = catch_unwind(AssertUnwindSafe(|| {
                match (args.scores_bf16 != 0, args.out_bf16 != 0, args.lanes) {
                    (false, false, 8) => typed::<f32, f32, 8>(args),
                    (false, false, 16) => typed::<f32, f32, 16>(args),
                    (false, true, 8) => typed::<f32, Bf16, 8>(args),
                    (false, true, 16) => typed::<f32, Bf16, 16>(args),
                    (true, false, 8) => typed::<Bf16, f32, 8>(args),
                    (true, false, 16) => typed::<Bf16, f32, 16>(args),
                    (true, true, 8) => typed::<Bf16, Bf16, 8>(args),
                    (true, true, 16) => typed::<Bf16, Bf16, 16>(args),
                    (_, _, lanes) => panic!("libtorch vectors of {lanes} floats"),
                }
            }));
            c_int::from(run.is_err())
        }
    };
}

kernel!(
    /// The forward kernel: `Rows::forward`.
    forward_kernel,
    |rows, range, work| rows.forward(range, work)
);

kernel!(
    /// The backward kernel: `Rows::backward`.
    backward_kernel,
    |rows, range, work| rows.backward(range, work)
);

/// The width of libtorch's float vectors where the kernels follow its order of summation
/// (AVX2 or AVX-512 kernels, on a CPU with AVX2 and FMA), else None.
pub(crate) fn torch_lanes() -> Option<i32> {
    static LANES: std::sync::OnceLock<Option<i32>> = std::sync::OnceLock::new();
    *LANES.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return match ops::cpu_capability().as_deref() {
                Ok("AVX2") => Some(8),
                Ok("AVX512") => Some(16),
                _ => None,
            };
        }
        None
    })
}

/// Whether `attention_probs` computes these scores and bias exactly as the tensor formula:
/// float32 or bfloat16 scores on the CPU and a float32 bias [1 or batch, 1 or heads, 1 or
/// seq, seq] without a gradient (none with float32 scores), where libtorch runs its AVX2 or
/// AVX-512 kernels (elsewhere the tensor formula runs).
pub(crate) fn applies(scores: &Tensor, bias: Option<&Tensor>) -> bool {
    let bias_fits = match bias {
        None => scores.kind() == Kind::Float,
        Some(b) => {
            let (s, z) = (scores.size(), b.size());
            b.kind() == Kind::Float
                && b.device() == Device::Cpu
                && !b.requires_grad()
                && z.len() == 4
                && (z[0] == 1 || z[0] == s[0])
                && (z[1] == 1 || z[1] == s[1])
                && (z[2] == 1 || z[2] == s[2])
                && z[3] == s[3]
        }
    };
    scores.device() == Device::Cpu
        && scores.dim() == 4
        && matches!(scores.kind(), Kind::Float | Kind::BFloat16)
        && bias_fits
        && torch_lanes().is_some()
}

/// `dropout(softmax(scores · scale + bias, dim=-1), p)` computed in float32, as
/// `attention::attend` computes it by tensors, differentiable in the scores; the result in
/// `result`, float32 or bfloat16 (as the float32 one cast). The scores and bias must pass
/// `applies`.
pub(crate) fn attention_probs(
    scores: &Tensor,
    bias: Option<&Tensor>,
    scale: f64,
    p: f64,
    train: bool,
    result: Kind,
) -> Tensor {
    assert!(matches!(result, Kind::Float | Kind::BFloat16), "a {result:?} result");
    let lanes = torch_lanes().expect("checked by applies");
    let keep = (train && p > 0.0).then(|| dropout::keep_mask(&scores.size(), p));
    let kept = keep.as_ref().map_or(1.0, |_| dropout::kept_value(Kind::Float, p));
    let kernels = (forward_kernel as ops::Kernel, backward_kernel as ops::Kernel);
    let bf16 = result == Kind::BFloat16;
    ops::attention_probs(scores, bias, keep.as_ref(), scale, kept, lanes, bf16, kernels)
        .expect("the attention probabilities")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tensor formula `attend` uses besides this kernel.
    fn by_tensors(scores: &Tensor, bias: Option<&Tensor>, scale: f64, p: f64) -> Tensor {
        let scores = scores * scale;
        let scores = match bias {
            Some(b) => scores + b,
            None => scores,
        };
        dropout::dropout(&scores.softmax(-1, scores.kind()), p, p > 0.0)
    }

    #[test]
    fn exp_is_within_an_ulp() {
        for i in 0..=2_000_000 {
            let x = -110.0 + i as f32 * 5.75e-5;
            let (mine, exact) = (exp(x), (x as f64).exp());
            if x < -104.0 {
                assert_eq!(mine, 0.0, "{x}");
            } else if exact >= f32::MIN_POSITIVE as f64 {
                let ulp = f32::EPSILON as f64 * exact;
                assert!((mine as f64 - exact).abs() <= ulp, "exp({x}) = {mine}, {exact}");
            }
        }
        assert_eq!(exp(f32::MIN), 0.0);
    }

    #[test]
    fn probabilities_are_the_tensor_formulas_bit_for_bit() {
        if torch_lanes().is_none() {
            return;
        }
        let _generator = ops::lock_default_generator();
        // scores, bias shape, dropout, row length (shorter than, a multiple of and between
        // libtorch's vector widths).
        let cases = [
            (Kind::Float, Some([3, 1, 1, 37]), 0.1, 37),
            (Kind::Float, Some([3, 1, 5, 37]), 0.0, 37),
            (Kind::Float, Some([1, 1, 5, 37]), 0.1, 37),
            (Kind::Float, Some([3, 4, 5, 5]), 0.1, 5),
            (Kind::Float, Some([3, 1, 1, 32]), 0.1, 32),
            (Kind::Float, None, 0.3, 19),
            (Kind::BFloat16, Some([3, 1, 1, 37]), 0.1, 37),
            (Kind::BFloat16, Some([3, 4, 5, 74]), 0.0, 74),
        ];
        for (kind, bias_shape, p, n) in cases {
            tch::manual_seed(11);
            let opts = (Kind::Float, Device::Cpu);
            let scores = (Tensor::randn([3, 4, 5, n], opts) * 4.0).to_kind(kind);
            let bias = bias_shape.map(|shape| {
                let masked = Tensor::rand(shape, opts).gt(0.7);
                masked.to_kind(Kind::Float) * f32::MIN as f64
            });
            let grad = Tensor::randn([3, 4, 5, n], opts);
            // The result in float32, and in bfloat16 as the float32 one cast.
            for result in [Kind::Float, Kind::BFloat16] {
                let run = |fused: bool| {
                    let s = scores.detach().set_requires_grad(true);
                    tch::manual_seed(5);
                    let out = if fused {
                        assert!(applies(&s, bias.as_ref()));
                        attention_probs(&s, bias.as_ref(), 0.125, p, true, result)
                    } else {
                        by_tensors(&s, bias.as_ref(), 0.125, p).to_kind(result)
                    };
                    (&out * grad.to_kind(result)).sum(Kind::Float).backward();
                    (out.detach(), s.grad())
                };
                let ((fused, fused_grad), (expected, expected_grad)) = (run(true), run(false));
                let what = format!("{kind:?} {bias_shape:?} {p} {n} {result:?}");
                assert_eq!(fused.kind(), result, "{what}");
                assert_eq!(fused_grad.kind(), kind, "{what}");
                assert!(fused.equal(&expected), "{what}");
                assert!(fused_grad.equal(&expected_grad), "{what}");
            }
        }
        // A NaN or an infinite score makes its row NaN, as in libtorch.
        let mut scores = Tensor::randn([1, 2, 3, 21], (Kind::Float, Device::Cpu));
        let _ = scores.get(0).get(0).get(1).get(20).fill_(f64::NAN);
        let _ = scores.get(0).get(1).get(2).get(3).fill_(f64::INFINITY);
        let _ = scores.get(0).get(1).get(0).get(0).fill_(f64::NEG_INFINITY);
        scores = scores.set_requires_grad(true);
        let fused = attention_probs(&scores, None, 1.0, 0.0, true, Kind::Float);
        let expected = by_tensors(&scores, None, 1.0, 0.0);
        assert!(fused.isnan().equal(&expected.isnan()));
        assert_eq!(fused.isnan().sum(Kind::Int64).int64_value(&[]), 2 * 21);
        let finite = expected.isnan().logical_not();
        assert!(fused.masked_select(&finite).equal(&expected.masked_select(&finite)));

        // Not taken: a bfloat16 result, a gradient for the bias.
        let scores = Tensor::zeros([1, 1, 2, 2], (Kind::BFloat16, Device::Cpu));
        assert!(!applies(&scores, None));
        let bias = Tensor::zeros([1, 1, 1, 2], (Kind::Float, Device::Cpu));
        assert!(!applies(&scores, Some(&bias.set_requires_grad(true))));
    }
}
