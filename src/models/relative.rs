//! DeBERTa's attention scores with their relative terms, in one pass forward and backward.
//!
//! `deberta::relative_by_tensors` adds the c2p and p2c terms to the scores by tensors: a strided
//! view of each term at the pairs' offsets, a division of each by the scale, their sum (one of
//! them read transposed), its sum with the scores and the mask, each writing a tensor, and
//! backward the mask again, the divisions and the views' zero-filled gradients. Here one
//! autograd function (`csrc/ops.cpp` `RelativeScores`) runs the kernels below over the [seq,
//! seq] block of each batch row and head: forward, one pass writes the result; backward, one
//! pass writes the three gradients.
//!
//! The results are the tensor formula's bit for bit: each step rounds to the scores' dtype as
//! libtorch rounds it (a term divided by the scale in float32, the two terms summed in float32,
//! that sum added to the score in float32, each rounded once).

use super::attention::min_value;
use super::probs::{round, Bf16, Elem};
use crate::ops;
use crate::simd::{Kernel, Target};
use std::ffi::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use tch::Tensor;

/// What `csrc/ops.cpp` passes to the kernels (the same layout as its `RelativeArgs`).
#[repr(C)]
pub struct RelativeArgs {
    /// Forward: the scores [batch, heads, seq, seq]; backward: the result's gradient.
    input: *const c_void,
    /// The terms [heads, batch, seq, width] (NULL: absent); pair (i, j) reads c2p[i][j − i +
    /// seq − 1] and p2c[j][i − j + seq − 1]. Forward: read; backward: their gradients,
    /// written whole (zeros at the offsets no pair reads).
    c2p: *mut c_void,
    p2c: *mut c_void,
    /// One byte per pair [batch, seq, seq], nonzero where masked (NULL: no mask).
    masked: *const u8,
    /// Forward: the result; backward: the scores' gradient (NULL: not wanted).
    out: *mut c_void,
    batch: i64,
    heads: i64,
    seq: i64,
    width: i64,
    /// The divisor, a value of the scores' dtype.
    scale: f32,
    /// Whether the tensors are bfloat16 (else float32).
    bf16: i32,
}

// SAFETY: the kernels' threads read the arguments and write disjoint [seq, seq] blocks and the
// terms' rows of their own blocks.
unsafe impl Sync for RelativeArgs {}

/// The kernels over `RelativeArgs` for tensors of type T.
struct Blocks<'a, T> {
    args: &'a RelativeArgs,
    _type: std::marker::PhantomData<T>,
}

/// A pointer's `n` elements of T from element `at`, or None for NULL.
///
/// SAFETY: a non-null `base` holds at least at + n elements of T, which no thread writes.
unsafe fn part<'b, T>(base: *const c_void, at: usize, n: usize) -> Option<&'b [T]> {
    (!base.is_null()).then(|| std::slice::from_raw_parts(base.cast::<T>().add(at), n))
}

/// As `part`, to write.
///
/// SAFETY: a non-null `base` holds at least at + n elements of T, which no other thread uses.
unsafe fn part_mut<'b, T>(base: *mut c_void, at: usize, n: usize) -> Option<&'b mut [T]> {
    (!base.is_null()).then(|| std::slice::from_raw_parts_mut(base.cast::<T>().add(at), n))
}

impl<T: Elem> Blocks<'_, T> {
    /// The result for the blocks `range` (batch row · heads + head), `work` a row of scratch.
    ///
    /// SAFETY: the pointers of `args` hold what `RelativeArgs` says.
    #[inline(always)]
    unsafe fn forward(&self, range: std::ops::Range<usize>, work: &mut [f32]) {
        let a = self.args;
        let (heads, batch) = (a.heads as usize, a.batch as usize);
        let (s, w, scale) = (a.seq as usize, a.width as usize, a.scale);
        let lowest = T::store(min_value(T::KIND) as f32);
        for block in range {
            let (b, h) = (block / heads, block % heads);
            let terms = (h * batch + b) * s * w;
            let c2p = part::<T>(a.c2p.cast_const(), terms, s * w);
            let p2c = part::<T>(a.p2c.cast_const(), terms, s * w);
            for i in 0..s {
                let row = (block * s + i) * s;
                let scores = part::<T>(a.input, row, s).expect("the scores");
                let out = part_mut::<T>(a.out, row, s).expect("the result");
                let masked = part::<u8>(a.masked.cast(), (b * s + i) * s, s);
                // Key j's p2c term of this query: p2c[j][i − j + s − 1].
                let work = &mut work[..s];
                if let Some(p2c) = &p2c {
                    for (j, v) in work.iter_mut().enumerate() {
                        *v = round::<T>(p2c[j * w + i + s - 1 - j].load() / scale);
                    }
                }
                // This query's c2p terms of keys 0..s: c2p[i][s − 1 − i ..].
                let c2p = c2p.as_ref().map(|c2p| &c2p[i * w + s - 1 - i..][..s]);
                match c2p {
                    Some(c2p) if p2c.is_some() => {
                        for (v, &c) in work.iter_mut().zip(c2p) {
                            *v = round::<T>(round::<T>(c.load() / scale) + *v);
                        }
                    }
                    Some(c2p) => {
                        for (v, &c) in work.iter_mut().zip(c2p) {
                            *v = round::<T>(c.load() / scale);
                        }
                    }
                    None => {}
                }
                for ((o, &x), &v) in out.iter_mut().zip(scores).zip(&*work) {
                    *o = T::store(x.load() + v);
                }
                if let Some(masked) = masked {
                    for (o, &m) in out.iter_mut().zip(masked) {
                        if m != 0 {
                            *o = lowest;
                        }
                    }
                }
            }
        }
    }

    /// The gradients for the blocks `range`: the scores' is the result's with zeros at the
    /// masked pairs; each term's is that divided by the scale at each pair's offset.
    ///
    /// SAFETY: as `forward`.
    #[inline(always)]
    unsafe fn backward(&self, range: std::ops::Range<usize>, work: &mut [f32]) {
        let a = self.args;
        let (heads, batch) = (a.heads as usize, a.batch as usize);
        let (s, w, scale) = (a.seq as usize, a.width as usize, a.scale);
        let zero = T::store(0.0);
        for block in range {
            let (b, h) = (block / heads, block % heads);
            let terms = (h * batch + b) * s * w;
            let grad = part::<T>(a.input, block * s * s, s * s).expect("the gradient");
            let masked = part::<u8>(a.masked.cast(), b * s * s, s * s);
            let work = &mut work[..s];
            // The result's gradient of row (or column) `n`, zeros at the masked pairs.
            let gathered = |work: &mut [f32], n: usize, column: bool| {
                let at = |k: usize| if column { k * s + n } else { n * s + k };
                match &masked {
                    Some(m) => {
                        for (k, v) in work.iter_mut().enumerate() {
                            *v = if m[at(k)] != 0 { 0.0 } else { grad[at(k)].load() };
                        }
                    }
                    None => {
                        for (k, v) in work.iter_mut().enumerate() {
                            *v = grad[at(k)].load();
                        }
                    }
                }
            };
            // Row n of a term's gradient: the gradient of its pairs at offsets s − 1 − n ...
            let term_row = |row: &mut [T], values: &[f32], n: usize| {
                let (before, rest) = row.split_at_mut(s - 1 - n);
                let (written, after) = rest.split_at_mut(s);
                before.fill(zero);
                for (t, &v) in written.iter_mut().zip(values) {
                    *t = T::store(v / scale);
                }
                after.fill(zero);
            };
            let mut c2p = part_mut::<T>(a.c2p, terms, s * w);
            let out = part_mut::<T>(a.out, block * s * s, s * s);
            if c2p.is_some() || out.is_some() {
                let mut out = out;
                for i in 0..s {
                    gathered(work, i, false);
                    if let Some(out) = &mut out {
                        for (o, &v) in out[i * s..][..s].iter_mut().zip(&*work) {
                            *o = T::store(v);
                        }
                    }
                    if let Some(c2p) = &mut c2p {
                        term_row(&mut c2p[i * w..][..w], work, i);
                    }
                }
            }
            if let Some(p2c) = part_mut::<T>(a.p2c, terms, s * w) {
                // Key j's row: the gradient of the pairs (i, j) for every query i.
                for j in 0..s {
                    gathered(work, j, true);
                    term_row(&mut p2c[j * w..][..w], work, j);
                }
            }
        }
    }
}

/// Runs `body` over the [seq, seq] blocks on libtorch's threads, with a row of scratch.
fn over_blocks(args: &RelativeArgs, body: impl Fn(std::ops::Range<usize>, &mut [f32]) + Sync) {
    let blocks = (args.batch * args.heads) as usize;
    let seq = args.seq as usize;
    ops::parallel_for(blocks, 1, |range| body(range, &mut vec![0.0f32; seq]));
}

/// Defines the `extern "C"` kernel `$name` (an `ops::Kernel`, called by `csrc/ops.cpp` with its
/// `RelativeArgs`; nonzero when the kernel panicked), running `$call` (a use of `blocks:
/// &Blocks<T>` over `range` with scratch `work`) for the tensors' type, compiled for the CPU's
/// vector instructions (`simd`).
macro_rules! kernel {
    ($(#[$doc:meta])* $name:ident, |$blocks:ident, $range:ident, $work:ident| $call:expr) => {
        $(#[$doc])*
        extern "C" fn $name(args: *const c_void) -> c_int {
            // SAFETY: the C++ side passes a valid RelativeArgs for the duration of the call.
            let args = unsafe { &*args.cast::<RelativeArgs>() };
            struct Part<'a, 'b, T> {
                blocks: &'a Blocks<'b, T>,
                range: std::ops::Range<usize>,
                work: &'a mut [f32],
            }
            impl<T: Elem> Kernel for Part<'_, '_, T> {
                #[inline(always)]
                fn run(self) {
                    let Part { blocks: $blocks, range: $range, work: $work } = self;
                    // SAFETY: the arguments are the C++ side's (see RelativeArgs).
                    unsafe { $call }
                }
            }
            fn typed<T: Elem>(args: &RelativeArgs) {
                let blocks = Blocks::<T> { args, _type: std::marker::PhantomData };
                let target = Target::detect();
                over_blocks(args, |range, work| target.run(Part { blocks: &blocks, range, work }))
            }
            let run = catch_unwind(AssertUnwindSafe(|| match args.bf16 != 0 {
                true => typed::<Bf16>(args),
                false => typed::<f32>(args),
            }));
            c_int::from(run.is_err())
        }
    };
}

kernel!(
    /// The forward kernel: `Blocks::forward`.
    forward_kernel,
    |blocks, range, work| blocks.forward(range, work)
);

kernel!(
    /// The backward kernel: `Blocks::backward`.
    backward_kernel,
    |blocks, range, work| blocks.backward(range, work)
);

/// `scores + (c2p / scale + p2cᵀ / scale)` at each pair's offset, then the `masked` pairs set
/// to the dtype's lowest value, by one autograd function over the kernels above: scores
/// [batch, heads, seq, seq] float32 or bfloat16 on the CPU; c2p and p2c (at least one) [heads,
/// batch, seq, width ≥ 2 · seq − 1] of that dtype, pair (i, j) reading c2p[i][j − i + seq − 1]
/// and p2c[j][i − j + seq − 1]; `masked` bool [batch, 1, seq, seq]; `scale` the divisor, a
/// value of the dtype.
pub(crate) fn relative_scores(
    scores: &Tensor,
    c2p: Option<&Tensor>,
    p2c: Option<&Tensor>,
    masked: Option<&Tensor>,
    scale: f64,
) -> crate::Result<Tensor> {
    let kernels = (forward_kernel as ops::Kernel, backward_kernel as ops::Kernel);
    ops::relative_scores(scores, c2p, p2c, masked, scale, kernels)
}
