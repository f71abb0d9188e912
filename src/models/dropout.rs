//! Dropout with a fast mask on the CPU.
//!
//! libtorch's CPU dropout draws each element with `bernoulli_`, which took about a sixth of a
//! bf16 training step of MiniLM here. The same dropout — each element kept with probability
//! 1 - p and scaled by 1 / (1 - p), as `torch.nn.functional.dropout` — is drawn here from a
//! SplitMix64 stream per block, seeded by one draw from torch's default generator, so runs stay
//! reproducible under `torch.manual_seed` (though not bit-equal to torch's own masks). On other
//! devices libtorch's dropout is used as it is.

use crate::parallel;
use tch::{Device, Kind, Tensor};

/// Elements per independently seeded block (the unit of parallel work).
const BLOCK: usize = 1 << 14;

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `kept` where an element is kept and `dropped` (zero) elsewhere, drawn from `seed`.
fn mask<T: Copy + Send + Sync>(n: usize, p: f64, seed: u64, kept: T, dropped: T) -> Vec<T> {
    // Kept when a uniform 32-bit draw is at least p · 2³².
    let threshold = (p * 4_294_967_296.0).round().min(u32::MAX as f64) as u32;
    let blocks: Vec<usize> = (0..n.div_ceil(BLOCK)).collect();
    let parts = parallel::map(&blocks, |&b| {
        let len = BLOCK.min(n - b * BLOCK);
        let mut state = seed ^ (b as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let r = splitmix64(&mut state);
            for half in [r as u32, (r >> 32) as u32] {
                if out.len() < len {
                    out.push(if half >= threshold { kept } else { dropped });
                }
            }
        }
        out
    });
    parts.concat()
}

/// `torch.nn.functional.dropout(x, p, train)`.
pub fn dropout(x: &Tensor, p: f64, train: bool) -> Tensor {
    if !train || p == 0.0 {
        return x.shallow_clone();
    }
    if p >= 1.0 || x.device() != Device::Cpu {
        return x.dropout(p, train);
    }
    let seed = Tensor::empty([], (Kind::Int64, Device::Cpu)).random_().int64_value(&[]) as u64;
    let (n, shape, scale) = (x.numel(), x.size(), 1.0 / (1.0 - p));
    match x.kind() {
        // The scale folded into the mask: x · (1/(1-p)) for kept elements, as torch computes it.
        Kind::Float => x * Tensor::from_slice(&mask(n, p, seed, scale as f32, 0.0)).view(shape.as_slice()),
        Kind::Double => x * Tensor::from_slice(&mask(n, p, seed, scale, 0.0)).view(shape.as_slice()),
        kind => {
            // Half precision: a 0/1 mask in x's dtype, then the scale (as torch: mul, then mul_).
            let ones = mask(n, p, seed, 1u8, 0u8);
            (x * Tensor::from_slice(&ones).view(shape.as_slice()).to_kind(kind)) * scale
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_one_minus_p_and_scales() {
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
    fn seeded_by_torch_and_independent_between_calls() {
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
        tch::manual_seed(1);
        let x = Tensor::ones([64], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let y = dropout(&x, 0.25, true);
        y.sum(Kind::Float).backward();
        assert!(x.grad().equal(&y.detach()));
    }
}
