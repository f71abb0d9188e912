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
use crate::simd::{Kernel, Target};
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
    /// The float32 weight and its moments, and its step count (already counting this step).
    pub state: Table<'a>,
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
        let len = u.state.param.numel();
        let roles = [
            ("weight", u.state.param, Kind::Float),
            ("exp_avg", u.state.exp_avg, Kind::Float),
            ("exp_avg_sq", u.state.exp_avg_sq, Kind::Float),
            ("gradient", u.grad, Kind::BFloat16),
            ("copy", u.weight, Kind::BFloat16),
        ];
        for (role, t, kind) in roles {
            check(t, kind, t.numel() == len, || {
                format!("the bfloat16 AdamW update needs a contiguous {kind:?} CPU {role} of {len} elements")
            })?;
        }
        slices.push(Slices {
            param: u.state.param.data_ptr().cast(),
            exp_avg: u.state.exp_avg.data_ptr().cast(),
            exp_avg_sq: u.state.exp_avg_sq.data_ptr().cast(),
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
    let target = Target::detect();
    ops::parallel_for(units.len(), 1, |range| {
        for &(i, start) in &units[range] {
            let s = &slices[i];
            target.run(Elements { s, start, end: s.len.min(start + CHUNK) });
        }
    });
    Ok(())
}

/// Checks an operand of an update: a contiguous CPU tensor of `kind` whose size `fits`; else
/// the error says what was needed (`needs`) and what `t` is.
fn check(t: &Tensor, kind: Kind, fits: bool, needs: impl FnOnce() -> String) -> Result<()> {
    if t.kind() == kind && t.device() == Device::Cpu && t.is_contiguous() && fits {
        return Ok(());
    }
    Err(Error::Other(format!(
        "{}, not {:?} {:?} of shape {:?} and strides {:?}",
        needs(),
        t.kind(),
        t.device(),
        t.size(),
        t.stride()
    )))
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
struct Elements<'a> {
    s: &'a Slices,
    start: usize,
    end: usize,
}

impl Kernel for Elements<'_> {
    #[inline(always)]
    fn run(self) {
        let Elements { s, start, end } = self;
        update_range(s, start, end)
    }
}

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

/// AdamW's steps for a float32 table whose rows mostly have a zero gradient (the word
/// embeddings, which a step's batch reaches at a few hundred of their tens of thousands of
/// rows): a step updates only the rows given a gradient, after the steps they missed; the other
/// rows wait until they are read (`catch_up`) or the table must be whole (`settle`). A missed
/// step is the dense update's arithmetic on a zero gradient, replayed while the row is in the
/// cache, so the weights and moments are `_fused_adamw_`'s over the whole table bit for bit;
/// a row whose moments are zero (never reached yet) only decays, its update being 0 / eps.
#[derive(Default)]
pub(crate) struct LazyRows {
    /// The constants of each step since the table was last whole.
    steps: Vec<Constants>,
    /// For each row, how many of `steps` it has taken.
    taken: Vec<u32>,
}

/// A float32 table's AdamW state: the weight and its moments, of the same shape [rows, width].
pub(crate) struct Table<'a> {
    pub param: &'a Tensor,
    pub exp_avg: &'a Tensor,
    pub exp_avg_sq: &'a Tensor,
}

/// The table's buffers, for the kernel's threads.
struct RowSlices {
    param: *mut f32,
    exp_avg: *mut f32,
    exp_avg_sq: *mut f32,
    /// The step's gradient, of the table's shape.
    grad: Option<*const f32>,
    /// A row of zeros: the missed steps' gradient.
    zeros: Vec<f32>,
    width: usize,
    vector_end: usize,
}

// SAFETY: the threads of `LazyRows::run` update disjoint rows.
unsafe impl Sync for RowSlices {}

impl LazyRows {
    /// Whether every row has taken every step (nothing is pending).
    pub fn is_whole(&self) -> bool {
        self.steps.is_empty()
    }

    /// One step (hyperparameters `hp`, step count `step`, counting this step) with `grad`,
    /// which is zero outside `rows`: those rows take the steps they missed, then this one; the
    /// others will take it later.
    pub fn step(
        &mut self,
        table: &Table,
        hp: AdamW,
        step: f64,
        grad: &Tensor,
        rows: &[i64],
        lanes: usize,
    ) -> Result<()> {
        let slices = self.slices(table, Some(grad), lanes)?;
        self.steps.push(Constants::new(hp, step, 1.0));
        self.run(&slices, rows)
    }

    /// `rows` take the steps they missed (ids outside the table are left to the lookup's own
    /// error).
    pub fn catch_up(&mut self, table: &Table, rows: &[i64], lanes: usize) -> Result<()> {
        if self.is_whole() {
            return Ok(());
        }
        let slices = self.slices(table, None, lanes)?;
        let count = self.taken.len() as i64;
        let rows: Vec<i64> = rows.iter().copied().filter(|r| (0..count).contains(r)).collect();
        self.run(&slices, &rows)
    }

    /// Every row takes the steps it missed: the table is whole.
    pub fn settle(&mut self, table: &Table, lanes: usize) -> Result<()> {
        if self.is_whole() {
            return Ok(());
        }
        let slices = self.slices(table, None, lanes)?;
        let rows: Vec<i64> = (0..self.taken.len() as i64).collect();
        self.run(&slices, &rows)?;
        self.steps.clear();
        self.taken.fill(0);
        Ok(())
    }

    fn slices(&mut self, table: &Table, grad: Option<&Tensor>, lanes: usize) -> Result<RowSlices> {
        let size = table.param.size();
        let [rows, width] = size[..] else {
            return Err(Error::Other(format!("a table has two dimensions, not {size:?}")));
        };
        let mut roles = vec![
            ("weight", table.param),
            ("exp_avg", table.exp_avg),
            ("exp_avg_sq", table.exp_avg_sq),
        ];
        roles.extend(grad.map(|g| ("gradient", g)));
        for (role, t) in roles {
            check(t, Kind::Float, t.size() == size, || {
                format!("the row-wise AdamW update needs a contiguous Float CPU {role} of shape {size:?}")
            })?;
        }
        if self.taken.len() != rows as usize {
            if !self.is_whole() {
                return Err(Error::Other(format!(
                    "the table has {rows} rows, where its pending steps were recorded for {}",
                    self.taken.len()
                )));
            }
            self.taken = vec![0; rows as usize];
        }
        let (rows, width) = (rows as usize, width as usize);
        Ok(RowSlices {
            param: table.param.data_ptr().cast(),
            exp_avg: table.exp_avg.data_ptr().cast(),
            exp_avg_sq: table.exp_avg_sq.data_ptr().cast(),
            grad: grad.map(|g| g.data_ptr().cast_const().cast()),
            zeros: vec![0.0; width],
            width,
            vector_end: vector_end(rows * width, lanes),
        })
    }

    /// Each of `rows` takes the steps from its own on, the last one with the gradient's row
    /// when there is a gradient.
    fn run(&mut self, s: &RowSlices, rows: &[i64]) -> Result<()> {
        // Each row once: the threads write rows, not elements, apart.
        let mut rows = rows.to_vec();
        rows.sort_unstable();
        rows.dedup();
        let count = self.taken.len() as i64;
        if let Some(row) = rows.iter().find(|r| !(0..count).contains(*r)) {
            return Err(Error::Other(format!("row {row} is outside a table of {count} rows")));
        }
        let (steps, taken) = (&self.steps, &self.taken);
        let target = Target::detect();
        ops::parallel_for(rows.len(), 16, |range| {
            for &row in &rows[range] {
                let row = row as usize;
                let missed = &steps[(taken[row] as usize).min(steps.len())..];
                target.run(Row { s, row, missed });
            }
        });
        let done = self.steps.len() as u32;
        for &row in &rows {
            self.taken[row as usize] = done;
        }
        Ok(())
    }
}

/// Row `row` takes `missed` (the last with the gradient, if `s` has one).
struct Row<'a> {
    s: &'a RowSlices,
    row: usize,
    missed: &'a [Constants],
}

impl Kernel for Row<'_> {
    #[inline(always)]
    fn run(self) {
        let Row { s, row, missed } = self;
        update_row(s, row, missed)
    }
}

#[inline(always)]
fn update_row(s: &RowSlices, row: usize, missed: &[Constants]) {
    let (start, w) = (row * s.width, s.width);
    // SAFETY: `LazyRows::slices` checked the buffers' shape, and this row is no other thread's.
    let (p, m, v, g) = unsafe {
        (
            std::slice::from_raw_parts_mut(s.param.add(start), w),
            std::slice::from_raw_parts_mut(s.exp_avg.add(start), w),
            std::slice::from_raw_parts_mut(s.exp_avg_sq.add(start), w),
            s.grad.map(|g| std::slice::from_raw_parts(g.add(start), w)),
        )
    };
    let split = s.vector_end.clamp(start, start + w) - start;
    let (zero_steps, last) = match (g, missed.split_last()) {
        (Some(g), Some((last, before))) => (before, Some((last, g))),
        _ => (missed, None),
    };
    if m.iter().chain(v.iter()).all(|&x| x == 0.0) {
        // Never reached: the moments stay zero and the update is zero; only the decay.
        for c in zero_steps {
            if let Some(decay) = c.decay {
                p.iter_mut().for_each(|p| *p *= decay);
            }
        }
    } else {
        for c in zero_steps {
            pass(c, p, m, v, &s.zeros, split);
        }
    }
    if let Some((c, g)) = last {
        pass(c, p, m, v, g, split);
    }
}

/// One step of `c` over a row, with gradient `g`; the row's vector form up to `split`.
#[inline(always)]
fn pass(c: &Constants, p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], split: usize) {
    let (p, p_tail) = p.split_at_mut(split);
    let (m, m_tail) = m.split_at_mut(split);
    let (v, v_tail) = v.split_at_mut(split);
    let (g, g_tail) = g.split_at(split);
    for (((p, m), v), g) in p.iter_mut().zip(m).zip(v).zip(g) {
        (*p, *m, *v) = c.element(*p, *m, *v, *g, true);
    }
    for (((p, m), v), g) in p_tail.iter_mut().zip(m_tail).zip(v_tail).zip(g_tail) {
        (*p, *m, *v) = c.element(*p, *m, *v, *g, false);
    }
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
                        state: Table { param: &p, exp_avg: &m, exp_avg_sq: &v },
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

    /// A table updated row by row (`LazyRows`) against `_fused_adamw_` over the whole table,
    /// at a learning rate that changes each step, with gradients on a few rows: rows caught up
    /// midway, and the whole table once settled, bit for bit, also the rows never reached and
    /// those past the kernel's vector loop.
    #[test]
    fn lazy_rows_match_torch_fused_adamw_over_the_table() {
        let Some(lanes) = torch_lanes() else { return };
        let lanes = lanes as usize;
        tch::manual_seed(1);
        let cpu = (Kind::Float, Device::Cpu);
        for (rows, width) in [(37i64, 24i64), (9, 13)] {
            for weight_decay in [0.0, 0.01] {
                let start = Tensor::randn([rows, width], cpu);
                let (p, m, v) = (start.copy(), start.zeros_like(), start.zeros_like());
                let (tp, tm, tv) = (start.copy(), start.zeros_like(), start.zeros_like());
                let theirs_step = Tensor::zeros([], cpu);
                let table = Table { param: &p, exp_avg: &m, exp_avg_sq: &v };
                let mut lazy = LazyRows::default();
                for step in 1..=7i64 {
                    let lr = 1e-2 * (1.0 - step as f64 / 8.0);
                    let hp = AdamW { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay };
                    // Row 0 every step, two others that move; the last row never.
                    let mut reached = vec![0, step % (rows - 1), (3 * step + 1) % (rows - 1)];
                    reached.sort();
                    reached.dedup();
                    let mut grad = Tensor::zeros([rows, width], cpu);
                    let index = Tensor::from_slice(&reached);
                    let values = Tensor::randn([reached.len() as i64, width], cpu);
                    let _ = grad.index_copy_(0, &index, &values);
                    tch::no_grad(|| {
                        ops::fused_adamw(
                            &[tp.shallow_clone()],
                            &[grad.shallow_clone()],
                            &[tm.shallow_clone()],
                            &[tv.shallow_clone()],
                            &[theirs_step.shallow_clone()],
                            hp,
                        )
                    })
                    .unwrap();
                    lazy.step(&table, hp, step as f64, &grad, &reached, lanes).unwrap();
                    let case = format!("{rows}x{width}, decay {weight_decay}, step {step}");
                    let caught = [1, rows - 2, rows - 1, rows + 5];
                    if step == 4 {
                        lazy.catch_up(&table, &caught, lanes).unwrap();
                    }
                    if step >= 4 {
                        for &row in caught.iter().chain(&reached).filter(|&&r| r < rows) {
                            for (ours, theirs, what) in
                                [(&p, &tp, "weight"), (&m, &tm, "exp_avg"), (&v, &tv, "exp_avg_sq")]
                            {
                                let same = ours.get(row).equal(&theirs.get(row));
                                assert!(
                                    same || step > 4 && caught.contains(&row),
                                    "{what} row {row}: {case}"
                                );
                            }
                        }
                    }
                }
                assert!(!lazy.is_whole());
                lazy.settle(&table, lanes).unwrap();
                assert!(lazy.is_whole());
                let case = format!("{rows}x{width}, decay {weight_decay}");
                assert!(p.equal(&tp), "weights differ: {case}");
                assert!(m.equal(&tm), "exp_avg differs: {case}");
                assert!(v.equal(&tv), "exp_avg_sq differs: {case}");
                assert!(!p.get(rows - 1).equal(&start.get(rows - 1)) || weight_decay == 0.0);
            }
        }
    }

    #[test]
    fn tensors_of_other_kinds_are_refused() {
        let t = Tensor::zeros([4], (Kind::Float, Device::Cpu));
        let hp = AdamW { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 };
        let state = Table { param: &t, exp_avg: &t, exp_avg_sq: &t };
        let u = Update { state, step: 1.0, grad: &t, weight: &t };
        let err = update(&[u], hp, 1.0, 16).unwrap_err().to_string();
        assert!(err.contains("BFloat16 CPU gradient of 4 elements, not Float"), "{err}");
    }
}
