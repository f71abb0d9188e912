//! AdamW's update of the weights that a bfloat16 step uses only in bfloat16
//! (`optim::HalfWeight`). It updates the float32 weights and moments exactly as libtorch's fused
//! AdamW kernel updates them from float32 gradients (`_fused_adamw_`,
//! aten/src/ATen/native/cpu/FusedAdamKernel.cpp, on its AVX2 and AVX-512 paths), bit for bit,
//! but reads the bfloat16 gradients the step left, scaled by the clipping coefficient as
//! `clip_grad_norm_` scales float32 ones, and writes the weights' bfloat16 copy for the next
//! step: one pass where a step under autocast made four (the weight's cast in the forward, its
//! gradient's cast back, clipping's multiply, the update).

use crate::error::{Error, Result};
use crate::models::probs::{Bf16, Elem};
use crate::ops::{self, AdamW};
use tch::{Device, Kind, Tensor};

/// The update's constants, rounded to float32 where libtorch's kernel rounds them (it computes
/// them in double from the step count, as the non-fused AdamW does).
#[derive(Debug, Clone, Copy)]
struct Constants {
    /// 1 - lr · weight_decay, the weights' decay; None without weight decay.
    decay: Option<f32>,
    /// `exp_avg.lerp_(grad, 1 - beta1)` as the kernel computes it: `fma(lerp, grad - exp_avg,
    /// base)` with base the old moment when 1 - beta1 is below 0.5 (lerp = 1 - beta1), the
    /// gradient otherwise (lerp = -beta1).
    lerp: f32,
    lerp_from_moment: bool,
    beta2: f32,
    /// 1 - beta2.
    sq_weight: f32,
    /// sqrt(1 - beta2^step).
    correction2: f32,
    eps: f32,
    /// -lr / (1 - beta1^step).
    neg_step_size: f32,
    /// The clipping coefficient the gradients are multiplied by first.
    clip: f32,
}

impl Constants {
    fn new(hp: AdamW, step: f64, clip: f32) -> Constants {
        let correction1 = 1.0 - hp.beta1.powf(step);
        let correction2 = 1.0 - hp.beta2.powf(step);
        let weight = (1.0 - hp.beta1) as f32;
        let lerp_from_moment = weight.abs() < 0.5;
        Constants {
            decay: (hp.weight_decay != 0.0).then_some((1.0 - hp.lr * hp.weight_decay) as f32),
            lerp: if lerp_from_moment { weight } else { weight - 1.0 },
            lerp_from_moment,
            beta2: hp.beta2 as f32,
            sq_weight: (1.0 - hp.beta2) as f32,
            correction2: correction2.sqrt() as f32,
            eps: hp.eps as f32,
            neg_step_size: (-(hp.lr / correction1)) as f32,
            clip,
        }
    }

    /// One element's new (weight, exp_avg, exp_avg_sq). `vector`: where libtorch's kernel
    /// computes it with vectors (see `vector_end`), which the compiler that built libtorch
    /// contracted differently from its scalar code (found by comparing with `_fused_adamw_`).
    #[inline(always)]
    fn element(&self, p: f32, m: f32, v: f32, g: f32, vector: bool) -> (f32, f32, f32) {
        let g = g * self.clip;
        let p = match self.decay {
            Some(decay) => p * decay,
            None => p,
        };
        let base = if self.lerp_from_moment { m } else { g };
        let m = self.lerp.mul_add(g - m, base);
        let v = if vector {
            (self.sq_weight * g).mul_add(g, v * self.beta2)
        } else {
            v.mul_add(self.beta2, self.sq_weight * g * g)
        };
        let denom = v.sqrt() / self.correction2 + self.eps;
        (p + self.neg_step_size * m / denom, m, v)
    }
}

/// One parameter's part of `update`.
pub(crate) struct Update<'a> {
    /// The float32 weight, its moments and its step count (already counting this step).
    pub param: &'a Tensor,
    pub exp_avg: &'a Tensor,
    pub exp_avg_sq: &'a Tensor,
    pub step: f64,
    /// The bfloat16 gradient, read; the bfloat16 copy of the weight, written.
    pub grad: &'a Tensor,
    pub weight: &'a Tensor,
}

/// One parameter's data, for the kernel's threads.
struct Slices {
    param: *mut f32,
    exp_avg: *mut f32,
    exp_avg_sq: *mut f32,
    grad: *const Bf16,
    weight: *mut Bf16,
    len: usize,
    /// Where the kernel's scalar loop starts.
    vector_end: usize,
    constants: Constants,
}

// SAFETY: the threads of `update` touch disjoint ranges of each parameter's buffers.
unsafe impl Sync for Slices {}

/// The elements one thread updates at a time: whole vectors of either width.
const CHUNK: usize = 16 * 1024;

/// AdamW's step (hyperparameters `hp`) for each of `updates`, their gradients first multiplied
/// by `clip`, on libtorch's threads; `lanes` is libtorch's float vector width (8 or 16).
pub(crate) fn update(updates: &[Update], hp: AdamW, clip: f32, lanes: usize) -> Result<()> {
    let mut slices = Vec::with_capacity(updates.len());
    for u in updates {
        let len = u.param.numel();
        let roles = [
            ("weight", u.param, Kind::Float),
            ("exp_avg", u.exp_avg, Kind::Float),
            ("exp_avg_sq", u.exp_avg_sq, Kind::Float),
            ("gradient", u.grad, Kind::BFloat16),
            ("copy", u.weight, Kind::BFloat16),
        ];
        for (role, t, kind) in roles {
            if t.kind() != kind
                || t.device() != Device::Cpu
                || !t.is_contiguous()
                || t.numel() != len
            {
                return Err(Error::Other(format!(
                    "the bfloat16 AdamW update needs a contiguous {kind:?} CPU {role} of {len} \
                     elements, not {:?} {:?} of shape {:?} and strides {:?}",
                    t.kind(),
                    t.device(),
                    t.size(),
                    t.stride()
                )));
            }
        }
        slices.push(Slices {
            param: u.param.data_ptr().cast(),
            exp_avg: u.exp_avg.data_ptr().cast(),
            exp_avg_sq: u.exp_avg_sq.data_ptr().cast(),
            grad: u.grad.data_ptr().cast_const().cast(),
            weight: u.weight.data_ptr().cast(),
            len,
            vector_end: vector_end(len, lanes),
            constants: Constants::new(hp, u.step, clip),
        });
    }
    let units: Vec<(usize, usize)> = slices
        .iter()
        .enumerate()
        .flat_map(|(i, s)| (0..s.len).step_by(CHUNK).map(move |start| (i, start)))
        .collect();
    #[cfg(target_arch = "x86_64")]
    let wide = std::arch::is_x86_feature_detected!("avx512f");
    ops::parallel_for(units.len(), 1, |range| {
        for &(i, start) in &units[range] {
            let s = &slices[i];
            let end = s.len.min(start + CHUNK);
            #[cfg(target_arch = "x86_64")]
            {
                // SAFETY: `optim` updates this way only where libtorch runs its AVX2 or
                // AVX-512 kernels, so the CPU has AVX2 and FMA, and AVX-512F for `wide`.
                if wide {
                    unsafe { range_wide(s, start, end) }
                } else {
                    unsafe { range_narrow(s, start, end) }
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            update_range(s, start, end);
        }
    });
    Ok(())
}

/// Where libtorch's kernel leaves the vector form of `Constants::element` for the scalar one,
/// in a tensor of `len` elements: its vector loop covers whole vectors of `lanes` floats, and
/// in its AVX-512 build the compiler vectorized the scalar loop over the rest 8 floats at a
/// time, with the vector loop's arithmetic (found by comparing with `_fused_adamw_`, torch 2.11
/// to 2.15).
fn vector_end(len: usize, lanes: usize) -> usize {
    let tail = len % lanes;
    len - tail + if lanes == 16 { tail / 8 * 8 } else { 0 }
}

/// Elements `start..end` of one parameter.
#[inline(always)]
fn update_range(s: &Slices, start: usize, end: usize) {
    let n = end - start;
    // SAFETY: `update` checked that each buffer holds `len` elements of its type, and this
    // range is no other thread's.
    let (p, m, v, g, w) = unsafe {
        (
            std::slice::from_raw_parts_mut(s.param.add(start), n),
            std::slice::from_raw_parts_mut(s.exp_avg.add(start), n),
            std::slice::from_raw_parts_mut(s.exp_avg_sq.add(start), n),
            std::slice::from_raw_parts(s.grad.add(start), n),
            std::slice::from_raw_parts_mut(s.weight.add(start), n),
        )
    };
    let split = s.vector_end.clamp(start, end) - start;
    let c = &s.constants;
    let step = |vector: bool, p: &mut f32, m: &mut f32, v: &mut f32, g: &Bf16, w: &mut Bf16| {
        let (np, nm, nv) = c.element(*p, *m, *v, g.load(), vector);
        (*p, *m, *v, *w) = (np, nm, nv, Bf16::store(np));
    };
    let (p, p_tail) = p.split_at_mut(split);
    let (m, m_tail) = m.split_at_mut(split);
    let (v, v_tail) = v.split_at_mut(split);
    let (g, g_tail) = g.split_at(split);
    let (w, w_tail) = w.split_at_mut(split);
    for ((((p, m), v), g), w) in p.iter_mut().zip(m).zip(v).zip(g).zip(w) {
        step(true, p, m, v, g, w);
    }
    for ((((p, m), v), g), w) in p_tail.iter_mut().zip(m_tail).zip(v_tail).zip(g_tail).zip(w_tail) {
        step(false, p, m, v, g, w);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn range_wide(s: &Slices, start: usize, end: usize) {
    update_range(s, start, end)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn range_narrow(s: &Slices, start: usize, end: usize) {
    update_range(s, start, end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::probs::torch_lanes;

    /// The update against libtorch's `_fused_adamw_` on the float32 gradients (the bfloat16
    /// ones, cast, then scaled by the coefficient), over several steps: every weight, moment
    /// and copy bit for bit, for sizes with and without a scalar tail, with and without weight
    /// decay, both forms of the first moment's lerp, and with and without clipping.
    #[test]
    fn matches_torch_fused_adamw_bit_for_bit() {
        let Some(lanes) = torch_lanes() else { return };
        tch::manual_seed(0);
        let cpu = (Kind::Float, Device::Cpu);
        for len in [5i64, 40, 16 * 3 + 13, 16 * 1000 + 7, 8 * 50 + 3, CHUNK as i64 * 2 + 16] {
            for (beta1, weight_decay, clip) in
                [(0.9, 0.01, 1.0f32), (0.9, 0.0, 0.37), (0.3, 0.1, 0.9)]
            {
                let hp = AdamW { lr: 1e-3, beta1, beta2: 0.999, eps: 1e-8, weight_decay };
                let start = Tensor::randn([len], cpu);
                let (p, m, v) = (start.copy(), start.zeros_like(), start.zeros_like());
                let (tp, tm, tv) = (start.copy(), start.zeros_like(), start.zeros_like());
                let theirs_step = Tensor::zeros([], cpu);
                let weight = start.to_kind(Kind::BFloat16);
                for step in 1..=4 {
                    let scale = [1e-4, 1e-2, 1.0, 3e-3][step - 1];
                    let grad = (Tensor::randn([len], cpu) * scale).to_kind(Kind::BFloat16);
                    let u = Update {
                        param: &p,
                        exp_avg: &m,
                        exp_avg_sq: &v,
                        step: step as f64,
                        grad: &grad,
                        weight: &weight,
                    };
                    update(&[u], hp, clip, lanes as usize).unwrap();
                    let g32 = grad.to_kind(Kind::Float) * Tensor::from(clip);
                    let s = theirs_step.shallow_clone();
                    tch::no_grad(|| {
                        ops::fused_adamw(
                            &[tp.shallow_clone()],
                            &[g32],
                            &[tm.shallow_clone()],
                            &[tv.shallow_clone()],
                            &[s],
                            hp,
                        )
                    })
                    .unwrap();
                    let case = format!(
                        "len {len}, beta1 {beta1}, decay {weight_decay}, clip {clip}, step {step}"
                    );
                    assert!(p.equal(&tp), "weights differ: {case}");
                    assert!(m.equal(&tm), "exp_avg differs: {case}");
                    assert!(v.equal(&tv), "exp_avg_sq differs: {case}");
                    assert!(weight.equal(&tp.to_kind(Kind::BFloat16)), "the copy differs: {case}");
                }
            }
        }
    }

    #[test]
    fn tensors_of_other_kinds_are_refused() {
        let t = Tensor::zeros([4], (Kind::Float, Device::Cpu));
        let hp = AdamW { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 };
        let u = Update { param: &t, exp_avg: &t, exp_avg_sq: &t, step: 1.0, grad: &t, weight: &t };
        let err = update(&[u], hp, 1.0, 16).unwrap_err().to_string();
        assert!(err.contains("BFloat16 CPU gradient of 4 elements, not Float"), "{err}");
    }
}
