//! Dropout with a fast mask on the CPU.
//!
//! libtorch's CPU dropout draws each element with `bernoulli_`, a large part of a training step
//! (bench/README.md, "Measurements behind the code"). The same dropout is computed here as torch computes it
//! (`_dropout_impl`: a noise tensor in the input's dtype holding 0 or `1 / (1 - p)`, then
//! `input * noise`), but the noise is written straight into the tensor's memory from a
//! SplitMix64 stream per block, seeded by one draw from torch's default generator, so runs stay
//! reproducible under `torch.manual_seed` (though not bit-equal to torch's own masks). On other
//! devices libtorch's dropout is used as it is.

use crate::parallel;
use crate::simd::{Kernel, Target};
use tch::{Device, Kind, Tensor};

/// Elements per independently seeded block (the unit of parallel work).
const BLOCK: usize = 1 << 14;

/// SplitMix64's step: its `i`-th output (from 1) from `seed` is `mix(seed + i · GAMMA)`.
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function.
#[inline(always)]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `out` with `kept` where an element is kept (probability 1 - p) and `dropped` elsewhere,
/// drawn from `seed`: each block of elements from its own SplitMix64 stream, two elements per
/// 64-bit output. The outputs are computed from their index, not one after another, so that
/// the loop vectorizes.
fn fill_mask<T: Copy + Send + Sync>(out: &mut [T], p: f64, seed: u64, kept: T, dropped: T) {
    // Kept when a uniform 32-bit draw is at least p · 2³².
    let threshold = (p * 4_294_967_296.0).round().min(u32::MAX as f64) as u32;
    // AVX-512's 64-bit multiplies vectorize the streams.
    let target = Target::detect();
    parallel::for_each_chunk_mut(out, BLOCK, |b, block| {
        let state = seed ^ (b as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
        target.run(Block { block, state, threshold, kept, dropped })
    });
}

/// One block of `fill_mask`, from its stream's `state`.
struct Block<'a, T> {
    block: &'a mut [T],
    state: u64,
    threshold: u32,
    kept: T,
    dropped: T,
}

impl<T: Copy> Kernel for Block<'_, T> {
    #[inline(always)]
    fn run(self) {
        let Block { block, state, threshold, kept, dropped } = self;
        fill_block(block, state, threshold, kept, dropped)
    }
}

#[inline(always)]
fn fill_block<T: Copy>(block: &mut [T], state: u64, threshold: u32, kept: T, dropped: T) {
    let pick = |draw: u64| if draw as u32 >= threshold { kept } else { dropped };
    let output = |i: usize| mix(state.wrapping_add((i as u64 + 1).wrapping_mul(GAMMA)));
    let whole = block.len() / 2;
    let mut pairs = block.chunks_exact_mut(2);
    for (i, pair) in (&mut pairs).enumerate() {
        let r = output(i);
        pair[0] = pick(r);
        pair[1] = pick(r >> 32);
    }
    if let [last] = pairs.into_remainder() {
        *last = pick(output(whole));
    }
}

/// A tensor shaped like `x` holding 0 or `1 / (1 - p)` in x's dtype, as torch's noise tensor
/// (`bernoulli_(1 - p)` then `div_(1 - p)`, both in that dtype).
fn noise(x: &Tensor, p: f64, seed: u64) -> Tensor {
    let noise = Tensor::empty(x.size(), (x.kind(), Device::Cpu));
    let kept = kept_tensor(x.kind(), p);
    let n = x.numel();
    fn fill<T: Copy + Send + Sync>(noise: &Tensor, kept: &Tensor, n: usize, p: f64, seed: u64) {
        let mut value = [0u8; 8];
        let width = std::mem::size_of::<T>();
        kept.copy_data_u8(&mut value[..width], 1);
        // SAFETY: T has the dtype's width, `value` holds one element of it, and `noise` is a
        // fresh contiguous CPU tensor of n elements that nothing else references yet.
        unsafe {
            let kept = std::ptr::read_unaligned(value.as_ptr().cast::<T>());
            let dropped = std::mem::zeroed::<T>();
            let out = std::slice::from_raw_parts_mut(noise.data_ptr().cast::<T>(), n);
            fill_mask(out, p, seed, kept, dropped);
        }
    }
    match x.kind().elt_size_in_bytes() {
        2 => fill::<u16>(&noise, &kept, n, p, seed),
        4 => fill::<u32>(&noise, &kept, n, p, seed),
        _ => fill::<u64>(&noise, &kept, n, p, seed),
    }
    noise
}

/// `torch.nn.functional.dropout(x, p, train)`.
pub fn dropout(x: &Tensor, p: f64, train: bool) -> Tensor {
    if !train || p == 0.0 {
        return x.shallow_clone();
    }
    let floating = matches!(x.kind(), Kind::Float | Kind::Double | Kind::BFloat16 | Kind::Half);
    if p >= 1.0 || x.device() != Device::Cpu || !floating || x.numel() == 0 {
        return x.dropout(p, train);
    }
    x * noise(x, p, seed())
}

/// One draw from torch's default generator: the seed of one dropout mask.
fn seed() -> u64 {
    Tensor::empty([], (Kind::Int64, Device::Cpu)).random_().int64_value(&[]) as u64
}

/// The mask that `dropout` would draw now for a CPU tensor of `size` at 0 < p < 1, as bytes
/// (1 where kept, 0 where dropped), for kernels that apply dropout themselves.
pub(crate) fn keep_mask(size: &[i64], p: f64) -> Tensor {
    let mask = Tensor::empty(size, (Kind::Uint8, Device::Cpu));
    let n = mask.numel();
    // SAFETY: `mask` is a fresh contiguous CPU tensor of n bytes that nothing else references.
    let out = unsafe { std::slice::from_raw_parts_mut(mask.data_ptr().cast::<u8>(), n) };
    fill_mask(out, p, seed(), 1, 0);
    mask
}

/// The kept elements' factor `1 / (1 - p)`, [1] in `kind`, rounded as torch's `div_(1 - p)`
/// rounds it there.
fn kept_tensor(kind: Kind, p: f64) -> Tensor {
    Tensor::ones([1], (kind, Device::Cpu)) / (1.0 - p)
}

/// `kept_tensor`'s value.
pub(crate) fn kept_value(kind: Kind, p: f64) -> f64 {
    kept_tensor(kind, p).double_value(&[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64 as it is usually written, one output after another.
    fn splitmix64(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    #[test]
    fn masks_are_splitmix64_streams_per_block() {
        let (p, seed) = (0.3, 0x1234_5678_9ABC_DEF0u64);
        let threshold = (p * 4_294_967_296.0f64).round() as u32;
        // Two blocks and an odd tail: the last element takes the low half of a new output.
        let n = BLOCK + 1001;
        let mut mask = vec![7u8; n];
        fill_mask(&mut mask, p, seed, 1, 0);
        for (b, block) in mask.chunks(BLOCK).enumerate() {
            let mut state = seed ^ (b as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
            // The portable loop too, where fill_mask ran the AVX-512 one.
            let mut portable = vec![7u8; block.len()];
            fill_block(&mut portable, state, threshold, 1, 0);
            assert_eq!(portable, block);
            for pair in block.chunks(2) {
                let r = splitmix64(&mut state);
                for (&m, draw) in pair.iter().zip([r as u32, (r >> 32) as u32]) {
                    assert_eq!(m, u8::from(draw >= threshold));
                }
            }
        }
    }

    #[test]
    fn keeps_one_minus_p_and_scales() {
        let _generator = crate::ops::lock_default_generator();
        tch::manual_seed(0);
        let x = Tensor::ones([400, 500], (Kind::Float, Device::Cpu));
        let y = dropout(&x, 0.1, true);
        let kept = y.ne(0).to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
        assert!((kept - 0.9).abs() < 0.003, "{kept}");
        let scale = y.max().double_value(&[]);
        assert!((scale - 1.0 / 0.9).abs() < 1e-6);
        // The mean is preserved in expectation.
        assert!((y.mean(Kind::Double).double_value(&[]) - 1.0).abs() < 0.005);
        assert!(dropout(&x, 0.1, false).equal(&x));
    }

    #[test]
    fn kept_values_are_torchs_in_every_dtype() {
        let _generator = crate::ops::lock_default_generator();
        // torch: noise = ones.bernoulli_(1 - p).div_(1 - p), in the input's dtype; input * noise.
        for kind in [Kind::Float, Kind::Double, Kind::BFloat16, Kind::Half] {
            tch::manual_seed(3);
            let x = Tensor::ones([3, 7000], (Kind::Float, Device::Cpu)).to_kind(kind);
            let y = dropout(&x, 0.1, true);
            assert_eq!(y.kind(), kind);
            let expected = Tensor::ones([1], (kind, Device::Cpu)) / 0.9;
            let kept = y.masked_select(&y.ne(0));
            assert!(kept.eq_tensor(&expected).all().int64_value(&[]) == 1, "{kind:?}");
            let fraction = kept.numel() as f64 / x.numel() as f64;
            assert!((fraction - 0.9).abs() < 0.01, "{kind:?}: {fraction}");
        }
    }

    #[test]
    fn seeded_by_torch_and_independent_between_calls() {
        let _generator = crate::ops::lock_default_generator();
        let x = Tensor::ones([1000], (Kind::Float, Device::Cpu));
        tch::manual_seed(7);
        let a = dropout(&x, 0.5, true);
        let b = dropout(&x, 0.5, true);
        tch::manual_seed(7);
        assert!(dropout(&x, 0.5, true).equal(&a));
        assert!(!a.equal(&b));
    }

    #[test]
    fn gradients_flow_through_the_kept_elements_only() {
        let _generator = crate::ops::lock_default_generator();
        tch::manual_seed(1);
        let x = Tensor::ones([64], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let y = dropout(&x, 0.25, true);
        y.sum(Kind::Float).backward();
        assert!(x.grad().equal(&y.detach()));
    }
}
