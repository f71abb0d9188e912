//! Safe wrappers of `csrc/ops.cpp`: libtorch operations that tch does not bind.

use crate::error::{Error, Result};
use std::ffi::{c_char, c_int, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use tch::Tensor;
use torch_sys::C_tensor;

extern "C" {
    fn ft_fused_adamw(
        params: *const *const C_tensor,
        grads: *const *const C_tensor,
        exp_avgs: *const *const C_tensor,
        exp_avg_sqs: *const *const C_tensor,
        steps: *const *const C_tensor,
        n: c_int,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
    ) -> *mut c_char;
    fn ft_linear(
        x: *const C_tensor,
        w: *const C_tensor,
        b: *const C_tensor,
        out: *mut *mut C_tensor,
    ) -> *mut c_char;
    fn ft_grad_norm(grads: *const *const C_tensor, n: c_int, norm: *mut f32) -> *mut c_char;
    fn ft_scale_grads(grads: *const *const C_tensor, n: c_int, coefficient: f32) -> *mut c_char;
    fn ft_cast_only(
        loss: *const C_tensor,
        params: *const *const C_tensor,
        n: c_int,
        flags: *mut c_int,
    ) -> *mut c_char;
    fn ft_set_grad(param: *const C_tensor, grad: *const C_tensor) -> *mut c_char;
    fn ft_autocast(cuda: c_int, half: c_int, enabled: c_int) -> *mut c_char;
    fn ft_autocast_dtype(cuda: c_int, dtype: *mut c_int) -> *mut c_char;
    fn ft_unscale(
        grads: *const *const C_tensor,
        n: c_int,
        found_inf: *const C_tensor,
        inv_scale: *const C_tensor,
    ) -> *mut c_char;
    fn ft_randperm(n: i64, seed: u64, out: *mut i64) -> *mut c_char;
    fn ft_split_heads(
        rows: *const C_tensor,
        source: *const C_tensor,
        index: *const C_tensor,
        cos: *const C_tensor,
        sin: *const C_tensor,
        blocks: *const i64,
        n: c_int,
        parts: i64,
        heads: i64,
        rotated: i64,
        out: *mut *mut C_tensor,
    ) -> *mut c_char;
    fn ft_merge_heads(
        contexts: *const *const C_tensor,
        source: *const C_tensor,
        index: *const C_tensor,
        blocks: *const i64,
        n: c_int,
        heads: i64,
        out: *mut *mut C_tensor,
    ) -> *mut c_char;
    fn ft_attend_each(
        q: *const C_tensor,
        k: *const C_tensor,
        v: *const C_tensor,
        masks: *const *const C_tensor,
        lengths: *const i64,
        n: c_int,
        scale: f64,
        float_softmax: c_int,
        fused_from: i64,
        out: *mut *mut C_tensor,
    ) -> *mut c_char;
    fn ft_cpu_capability(out: *mut c_char, size: c_int) -> *mut c_char;
    fn ft_attention_probs(
        scores: *const C_tensor,
        bias: *const C_tensor,
        keep: *const C_tensor,
        scale: f64,
        kept: f64,
        lanes: i64,
        out_bf16: c_int,
        forward: Kernel,
        backward: Kernel,
        out: *mut *mut C_tensor,
    ) -> *mut c_char;
    fn ft_relative_scores(
        scores: *const C_tensor,
        c2p: *const C_tensor,
        p2c: *const C_tensor,
        masked: *const C_tensor,
        scale: f64,
        forward: Kernel,
        backward: Kernel,
        out: *mut *mut C_tensor,
    ) -> *mut c_char;
    fn ft_parallel_for(
        n: i64,
        grain: i64,
        body: extern "C" fn(*mut c_void, i64, i64),
        context: *mut c_void,
    ) -> *mut c_char;
}

/// Turns the C++ side's error message (or NULL) into a Result.
fn check(message: *mut c_char) -> Result<()> {
    if message.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null result is a NUL-terminated string from strdup, freed here once.
    let text = unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned();
    unsafe { libc::free(message.cast()) };
    Err(Error::Other(format!("libtorch: {text}")))
}

fn pointers(tensors: &[Tensor]) -> Vec<*const C_tensor> {
    tensors.iter().map(Tensor::as_ptr).collect()
}

/// AdamW hyper-parameters of one parameter group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamW {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

/// One fused AdamW step (torch.optim.AdamW(fused=True)) over a parameter group: increments each
/// step counter, then updates the parameters and moments in place.
pub fn fused_adamw(
    params: &[Tensor],
    grads: &[Tensor],
    exp_avgs: &[Tensor],
    exp_avg_sqs: &[Tensor],
    steps: &[Tensor],
    hp: AdamW,
) -> Result<()> {
    let n = params.len();
    assert!(
        grads.len() == n && exp_avgs.len() == n && exp_avg_sqs.len() == n && steps.len() == n,
        "fused_adamw: lists of different lengths"
    );
    if n == 0 {
        return Ok(());
    }
    let (p, g, m, v, s) = (
        pointers(params),
        pointers(grads),
        pointers(exp_avgs),
        pointers(exp_avg_sqs),
        pointers(steps),
    );
    // SAFETY: every pointer is a live tch tensor borrowed for the duration of the call.
    check(unsafe {
        ft_fused_adamw(
            p.as_ptr(),
            g.as_ptr(),
            m.as_ptr(),
            v.as_ptr(),
            s.as_ptr(),
            n as c_int,
            hp.lr,
            hp.beta1,
            hp.beta2,
            hp.weight_decay,
            hp.eps,
        )
    })
}

/// What `clip_grad_norm` did: the gradients' total 2-norm before clipping, and the factor they
/// were multiplied by (`min(max_norm / (norm + 1e-6), 1)`, NaN for a NaN norm).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clipped {
    pub norm: f64,
    pub coefficient: f64,
}

/// `layer.forward(x)` (at::linear); on the CPU under bfloat16 autocast while gradients are
/// recorded, with the bias added inside the product and the backward's two products at once
/// (csrc/ops.cpp, `BfLinear`), the same numbers bit for bit.
pub fn linear(layer: &tch::nn::Linear, x: &Tensor) -> Result<Tensor> {
    let bias = layer.bs.as_ref().map_or(std::ptr::null(), Tensor::as_ptr);
    let mut out = std::ptr::null_mut();
    // SAFETY: the pointers are live tch tensors (or NULL for no bias) for the duration of the
    // call; `out` receives a new at::Tensor owned by the Tensor made of it.
    check(unsafe { ft_linear(x.as_ptr(), layer.ws.as_ptr(), bias, &mut out) })?;
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// clip_grad_norm_'s coefficient for gradients of total norm `norm`: `max_norm / (norm +
/// 1e-6)` clamped at 1, computed as torch computes it, in float32 and as the reciprocal times
/// `max_norm` (Python's `float / tensor`); NaN for a NaN norm. An infinite `max_norm` (no
/// clipping) gives 1.
pub fn clip_coefficient(norm: f32, max_norm: f64) -> f32 {
    if max_norm == f64::INFINITY {
        return 1.0;
    }
    let coefficient = (1.0 / (norm + 1e-6)) * max_norm as f32;
    if coefficient.is_nan() {
        coefficient
    } else {
        coefficient.min(1.0)
    }
}

/// torch.nn.utils.clip_grad_norm_ on libtorch: the total 2-norm of `grads` (each norm computed
/// in float32) and `clip_coefficient`, which multiplies in place those grads whose `scale` flag
/// is set (the optimizer's update scales the others).
pub fn clip_grad_norm(grads: &[Tensor], scale: &[bool], max_norm: f64) -> Result<Clipped> {
    assert_eq!(grads.len(), scale.len(), "clip_grad_norm: one flag per gradient");
    let g = pointers(grads);
    let mut norm = 0.0f32;
    // SAFETY: as in fused_adamw; `norm` outlives the call.
    check(unsafe { ft_grad_norm(g.as_ptr(), g.len() as c_int, &mut norm) })?;
    let coefficient = clip_coefficient(norm, max_norm);
    if coefficient != 1.0 {
        let flagged: Vec<_> = g.iter().zip(scale).filter(|(_, &s)| s).map(|(g, _)| *g).collect();
        // SAFETY: as in fused_adamw.
        check(unsafe { ft_scale_grads(flagged.as_ptr(), flagged.len() as c_int, coefficient) })?;
    }
    Ok(Clipped { norm: f64::from(norm), coefficient: f64::from(coefficient) })
}

/// For each of `params` (float32 leaves on the CPU), whether the autograd graph of `loss`
/// reaches it only through one cast of it to bfloat16: autocast's (or the model's own), which
/// then is all its gradient goes through.
pub fn cast_only(loss: &Tensor, params: &[Tensor]) -> Result<Vec<bool>> {
    let p = pointers(params);
    let mut flags: Vec<c_int> = vec![0; params.len()];
    // SAFETY: as in fused_adamw; `flags` holds one int per parameter.
    check(unsafe {
        ft_cast_only(loss.as_ptr(), p.as_ptr(), p.len() as c_int, flags.as_mut_ptr())
    })?;
    Ok(flags.into_iter().map(|f| f != 0).collect())
}

/// `param.grad = grad`, or `param.grad = None` for None.
pub fn set_grad(param: &Tensor, grad: Option<&Tensor>) -> Result<()> {
    let grad = grad.map_or(std::ptr::null(), Tensor::as_ptr);
    // SAFETY: both pointers are live tch tensors (or NULL) for the duration of the call.
    check(unsafe { ft_set_grad(param.as_ptr(), grad) })
}

/// GradScaler.unscale_: `grads *= inv_scale` in place, and `found_inf` (a float32 scalar on the
/// gradients' device) set to 1 if any gradient holds an inf or a NaN.
pub fn unscale(grads: &[Tensor], found_inf: &Tensor, inv_scale: &Tensor) -> Result<()> {
    let g = pointers(grads);
    // SAFETY: as in fused_adamw.
    check(unsafe {
        ft_unscale(g.as_ptr(), g.len() as c_int, found_inf.as_ptr(), inv_scale.as_ptr())
    })
}

/// The half precision of mixed-precision training.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Half {
    BFloat16,
    Float16,
}

impl Half {
    /// The autocast precision of `bf16` / `fp16` (at most one of them).
    pub fn from_flags(bf16: bool, fp16: bool) -> Result<Option<Half>> {
        match (bf16, fp16) {
            (true, true) => {
                Err(Error::value("At most one of fp16 and bf16 can be True, but not both"))
            }
            (true, false) => Ok(Some(Half::BFloat16)),
            (false, true) => Ok(Some(Half::Float16)),
            (false, false) => Ok(None),
        }
    }
}

/// Autocast to `half` while alive, as `with torch.autocast(device_type, dtype)`.
/// Autocast state is per thread: the guard must be dropped on the thread that made it.
pub struct Autocast {
    cuda: bool,
    half: Half,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Autocast {
    pub fn enter(device: tch::Device, half: Half) -> Result<Autocast> {
        let cuda = device.is_cuda();
        // SAFETY: only sets libtorch's thread-local autocast state.
        check(unsafe { ft_autocast(cuda as c_int, (half == Half::Float16) as c_int, 1) })?;
        Ok(Autocast { cuda, half, _not_send: std::marker::PhantomData })
    }
}

/// The dtype autocast casts to for `device`'s type on this thread, None when it is off
/// (`torch.is_autocast_enabled`, `torch.get_autocast_dtype`); Float for a dtype other than
/// bfloat16 and float16.
pub fn autocast_kind(device: tch::Device) -> Option<tch::Kind> {
    let mut dtype: c_int = 0;
    // SAFETY: only reads libtorch's thread-local autocast state into `dtype`.
    check(unsafe { ft_autocast_dtype(device.is_cuda() as c_int, &mut dtype) })
        .expect("reading the autocast state");
    match dtype {
        0 => None,
        1 => Some(tch::Kind::BFloat16),
        2 => Some(tch::Kind::Half),
        _ => Some(tch::Kind::Float),
    }
}

/// Whether autocast is on for `device`'s type on this thread (`torch.is_autocast_enabled`).
pub fn autocast_enabled(device: tch::Device) -> bool {
    autocast_kind(device).is_some()
}

impl Drop for Autocast {
    fn drop(&mut self) {
        // SAFETY: as in enter; leaving cannot fail short of a libtorch bug, which is reported.
        if let Err(e) = check(unsafe {
            ft_autocast(self.cuda as c_int, (self.half == Half::Float16) as c_int, 0)
        }) {
            eprintln!("ferrotune: leaving autocast failed: {e}");
        }
    }
}

/// `torch.randperm(n, generator=torch.Generator().manual_seed(seed))`.
pub fn randperm(n: usize, seed: u64) -> Result<Vec<usize>> {
    let mut out = vec![0i64; n];
    // SAFETY: `out` has room for n values.
    check(unsafe { ft_randperm(n as i64, seed, out.as_mut_ptr()) })?;
    Ok(out.into_iter().map(|i| i as usize).collect())
}

/// Where the rows of the token-wise layers are in the attention's layout: its `blocks` [rows,
/// seq] (one [batch, seq] block, or the packed sequences in groups of similar length), whose
/// flat positions (rows × seq each) follow one another; for each flat position its row or -1
/// (padding), `source`, and for each row its flat position, `index` (both int64, on the CPU).
pub struct RowMap<'a> {
    pub source: &'a Tensor,
    pub index: &'a Tensor,
    pub blocks: &'a [[i64; 2]],
}

impl RowMap<'_> {
    fn blocks(&self) -> (*const i64, c_int) {
        (self.blocks.as_ptr().cast(), self.blocks.len() as c_int)
    }
}

/// Rows [tokens, parts × heads × head_dim] → per part, one tensor [rows, heads, seq, head_dim]
/// per block of `map` (part after part), zeros at the padding, the first `rotated` parts
/// turned by the rotary (`x·cos + rotate_half(x)·sin` in float32 with float32 `cos` and `sin`
/// [tokens, head_dim / 2]), in one pass; its backward is the transposed pass. CPU tensors only.
pub fn split_heads(
    rows: &Tensor,
    map: &RowMap,
    parts: i64,
    heads: i64,
    rotary: Option<(&Tensor, &Tensor, i64)>,
) -> Result<Vec<Tensor>> {
    let none = Tensor::empty([0], (tch::Kind::Float, rows.device()));
    let (cos, sin, rotated) = rotary.unwrap_or((&none, &none, 0));
    let mut out = vec![std::ptr::null_mut(); parts as usize * map.blocks.len()];
    let (blocks, n) = map.blocks();
    // SAFETY: every pointer is a live tch tensor for the duration of the call, `blocks` holds n
    // pairs; `out` has room for parts × n results, each a new at::Tensor owned by the Tensor
    // made of it.
    check(unsafe {
        ft_split_heads(
            rows.as_ptr(),
            map.source.as_ptr(),
            map.index.as_ptr(),
            cos.as_ptr(),
            sin.as_ptr(),
            blocks,
            n,
            parts,
            heads,
            rotated,
            out.as_mut_ptr(),
        )
    })?;
    Ok(out.into_iter().map(|t| unsafe { Tensor::from_ptr(t) }).collect())
}

/// The attention contexts, one [rows, heads, seq, head_dim] per block of `map` → rows [tokens,
/// heads × head_dim] (split_heads' inverse for one part, not rotated). CPU tensors only.
pub fn merge_heads(contexts: &[&Tensor], map: &RowMap, heads: i64) -> Result<Tensor> {
    if contexts.len() != map.blocks.len() {
        return Err(Error::value(format!(
            "{} attention contexts for {} blocks",
            contexts.len(),
            map.blocks.len()
        )));
    }
    let pointers: Vec<*const C_tensor> = contexts.iter().map(|t| t.as_ptr()).collect();
    let (blocks, n) = map.blocks();
    let mut out = std::ptr::null_mut();
    // SAFETY: as in split_heads, for one result.
    check(unsafe {
        ft_merge_heads(
            pointers.as_ptr(),
            map.source.as_ptr(),
            map.index.as_ptr(),
            blocks,
            n,
            heads,
            &mut out,
        )
    })?;
    // SAFETY: `out` is the new at::Tensor the call made.
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// Attention of each sequence on its own tokens, without dropout: q, k, v [1, heads, tokens,
/// head_dim] hold the sequences of `lengths` one after another, `masks` each one's additive
/// mask [1, 1, length, length] if it has one. Each is computed as the tensor formula does:
/// `softmax(q·kᵀ · scale + mask)` (in float32 when `float_softmax`, then cast back) `· v`, or
/// by libtorch's CPU flash kernel for the sequences of `fused_from` tokens or more. The context
/// [1, heads, tokens, head_dim]; its backward writes each gradient once. CPU tensors only.
pub fn attend_each(
    [q, k, v]: [&Tensor; 3],
    lengths: &[i64],
    masks: &[Option<Tensor>],
    scale: f64,
    float_softmax: bool,
    fused_from: i64,
) -> Result<Tensor> {
    if masks.len() != lengths.len() {
        return Err(crate::Error::value(format!(
            "{} masks for {} sequences",
            masks.len(),
            lengths.len()
        )));
    }
    let masks: Vec<*const C_tensor> =
        masks.iter().map(|m| m.as_ref().map_or(std::ptr::null(), |m| m.as_ptr())).collect();
    let mut out = std::ptr::null_mut();
    // SAFETY: every pointer is a live tch tensor (or NULL for no mask) for the duration of the
    // call; `lengths` and `masks` have the same length, passed as n.
    check(unsafe {
        ft_attend_each(
            q.as_ptr(),
            k.as_ptr(),
            v.as_ptr(),
            masks.as_ptr(),
            lengths.as_ptr(),
            lengths.len() as c_int,
            scale,
            float_softmax as c_int,
            fused_from,
            &mut out,
        )
    })?;
    // SAFETY: `out` is the new at::Tensor the call made.
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// A kernel that `csrc/ops.cpp` calls with its arguments' struct (`models::probs::ProbsArgs`,
/// `models::relative::RelativeArgs`): returns 0, or 1 for a failure.
pub type Kernel = extern "C" fn(*const c_void) -> c_int;

/// libtorch's CPU capability: "AVX2", "AVX512", "DEFAULT", ... (the kernels its CPU
/// operations run).
pub fn cpu_capability() -> Result<String> {
    let mut out = [0 as c_char; 32];
    // SAFETY: `out` has the size passed; the call writes a zero-terminated string into it.
    check(unsafe { ft_cpu_capability(out.as_mut_ptr(), out.len() as c_int) })?;
    // SAFETY: as above.
    Ok(unsafe { CStr::from_ptr(out.as_ptr()) }.to_string_lossy().into_owned())
}

/// `dropout(softmax(scores · scale + bias, dim=-1))` computed in float32 by one autograd
/// function whose forward and backward run `kernels` (see `models::probs`): scores [batch,
/// heads, queries, keys] float32 (or bfloat16 with a bias) on the CPU, a float32 bias broadcast
/// to them, `keep` the dropout mask (bytes shaped like the scores, None: no dropout), `kept` the
/// kept elements' factor, `lanes` the width of libtorch's float vectors (8 or 16); the result
/// float32, or bfloat16 when `out_bf16` (rounded once, as a cast of the float32 result).
#[allow(clippy::too_many_arguments)]
pub fn attention_probs(
    scores: &Tensor,
    bias: Option<&Tensor>,
    keep: Option<&Tensor>,
    scale: f64,
    kept: f64,
    lanes: i32,
    out_bf16: bool,
    (forward, backward): (Kernel, Kernel),
) -> Result<Tensor> {
    let pointer = |t: Option<&Tensor>| t.map_or(std::ptr::null(), Tensor::as_ptr);
    let mut out = std::ptr::null_mut();
    // SAFETY: the tensors are live (or NULL) for the duration of the call; the kernels match
    // the C++ side's ProbsArgs and never unwind.
    check(unsafe {
        ft_attention_probs(
            scores.as_ptr(),
            pointer(bias),
            pointer(keep),
            scale,
            kept,
            i64::from(lanes),
            c_int::from(out_bf16),
            forward,
            backward,
            &mut out,
        )
    })?;
    // SAFETY: `out` is the new at::Tensor the call made.
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// DeBERTa's attention scores with their relative terms by one autograd function whose forward
/// and backward run `kernels` (see `models::relative`, which says what the arguments are).
pub fn relative_scores(
    scores: &Tensor,
    c2p: Option<&Tensor>,
    p2c: Option<&Tensor>,
    masked: Option<&Tensor>,
    scale: f64,
    (forward, backward): (Kernel, Kernel),
) -> Result<Tensor> {
    let pointer = |t: Option<&Tensor>| t.map_or(std::ptr::null(), Tensor::as_ptr);
    let mut out = std::ptr::null_mut();
    // SAFETY: the tensors are live (or NULL) for the duration of the call; the kernels match
    // the C++ side's RelativeArgs and never unwind.
    check(unsafe {
        ft_relative_scores(
            scores.as_ptr(),
            pointer(c2p),
            pointer(p2c),
            pointer(masked),
            scale,
            forward,
            backward,
            &mut out,
        )
    })?;
    // SAFETY: `out` is the new at::Tensor the call made.
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// `at::parallel_for(0, n, grain, ...)`: calls `body(range)` on libtorch's own threads (as many
/// as `torch.get_num_threads()`), or inline when the range is at most `grain` long or there is
/// one thread. A panic in `body` is carried back and resumed here.
pub fn parallel_for<F>(n: usize, grain: usize, body: F)
where
    F: Fn(std::ops::Range<usize>) + Sync,
{
    struct Context<'a, F> {
        body: &'a F,
        panic: std::sync::Mutex<Option<Box<dyn std::any::Any + Send>>>,
    }
    extern "C" fn call<F: Fn(std::ops::Range<usize>) + Sync>(
        context: *mut c_void,
        begin: i64,
        end: i64,
    ) {
        // SAFETY: `context` is the `Context<F>` below, alive until ft_parallel_for returns.
        let context = unsafe { &*context.cast::<Context<F>>() };
        let run = catch_unwind(AssertUnwindSafe(|| (context.body)(begin as usize..end as usize)));
        if let Err(payload) = run {
            context.panic.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(payload);
        }
    }
    if n == 0 {
        return;
    }
    let context = Context { body: &body, panic: std::sync::Mutex::new(None) };
    let pointer = (&context as *const Context<F>).cast_mut().cast::<c_void>();
    // SAFETY: `call::<F>` matches the callback type and never unwinds into C++.
    let message = unsafe { ft_parallel_for(n as i64, grain.max(1) as i64, call::<F>, pointer) };
    if let Some(payload) = context.panic.into_inner().unwrap_or_else(|e| e.into_inner()) {
        std::panic::resume_unwind(payload);
    }
    // at::parallel_for fails only for a bad grain or an exception from `body`, neither of
    // which can happen here.
    check(message).expect("at::parallel_for");
}

/// Held by the tests that draw from libtorch's default generator (seeding it, building models,
/// dropout, masking): they run on parallel threads, and a test that seeds the generator must
/// see its own draws only.
#[cfg(test)]
pub fn lock_default_generator() -> std::sync::MutexGuard<'static, ()> {
    static GENERATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());
    GENERATOR.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use tch::{Device, Kind};

    #[test]
    fn parallel_for_visits_each_index_once() {
        let _settings = crate::parallel::lock_settings();
        let threads = tch::get_num_threads();
        for (n, grain, threads) in [(0, 4, 2), (1, 4, 2), (10, 3, 2), (1000, 7, 2), (1000, 7, 1)] {
            tch::set_num_threads(threads);
            let seen: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
            parallel_for(n, grain, |range| {
                for i in range {
                    seen[i].fetch_add(1, Ordering::SeqCst);
                }
            });
            assert!(seen.iter().all(|c| c.load(Ordering::SeqCst) == 1), "n {n} grain {grain}");
        }
        tch::set_num_threads(threads);
    }

    #[test]
    fn parallel_for_resumes_a_panic_of_its_body() {
        let result = catch_unwind(|| parallel_for(100, 10, |range| assert!(!range.contains(&42))));
        assert!(result.is_err());
    }

    #[test]
    fn split_and_merge_heads_report_bad_layouts_as_errors() {
        let index = Tensor::arange(6, (Kind::Int64, Device::Cpu));
        let map = RowMap { source: &index, index: &index, blocks: &[[2, 3]] };
        let rows = Tensor::zeros([6, 10], (Kind::Float, Device::Cpu));
        // 10 columns are not 3 parts of 2 heads.
        let error = split_heads(&rows, &map, 3, 2, None).unwrap_err().to_string();
        assert!(error.contains("rows are not [tokens, parts"), "{error}");
        // A context of 3 rows where the map has 2.
        let context = Tensor::zeros([3, 2, 3, 5], (Kind::Float, Device::Cpu));
        let error = merge_heads(&[&context], &map, 2).unwrap_err().to_string();
        assert!(error.contains("heads must be CPU tensors"), "{error}");
        // Two contexts for one block.
        let error = merge_heads(&[&context, &context], &map, 2).unwrap_err().to_string();
        assert!(error.contains("2 attention contexts for 1 blocks"), "{error}");
        // Blocks of 2 × 2 positions where the layout has 6.
        let map = RowMap { source: &index, index: &index, blocks: &[[2, 2]] };
        let error = split_heads(&rows, &map, 1, 2, None).unwrap_err().to_string();
        assert!(error.contains("the blocks have 4 positions, the layout 6"), "{error}");
    }

    #[test]
    fn linear_under_bfloat16_autocast_is_at_linear_bit_for_bit() {
        use tch::nn::Module;
        tch::manual_seed(3);
        let vs = tch::nn::VarStore::new(Device::Cpu);
        for (i, (tokens, input, output, bias)) in [
            (530, 768, 3072, true),
            (880, 1536, 384, true),
            (540, 384, 384, true),
            (37, 384, 1536, true),
            (53, 1536, 384, true),
            (7, 24, 2, false),
        ]
        .into_iter()
        .enumerate()
        {
            let config = tch::nn::LinearConfig { bias, ..Default::default() };
            let layer = tch::nn::linear(vs.root() / i, input, output, config);
            let x =
                Tensor::randn([tokens, input], (Kind::Float, Device::Cpu)).set_requires_grad(true);
            let g = Tensor::randn([tokens, output], (Kind::Float, Device::Cpu));
            // The output and the float32 gradients of x, W and b, by `run`.
            let grads = |run: &dyn Fn() -> Tensor| {
                let guard = Autocast::enter(Device::Cpu, Half::BFloat16).unwrap();
                let y = run();
                drop(guard);
                let mut inputs = vec![&x, &layer.ws];
                inputs.extend(layer.bs.as_ref());
                let mut out = vec![y.copy()];
                let loss = (y.to_kind(Kind::Float) * &g).sum(Kind::Float);
                out.extend(Tensor::run_backward(&[&loss], &inputs, false, false));
                out
            };
            let ours = grads(&|| linear(&layer, &x).unwrap());
            let theirs = grads(&|| layer.forward(&x));
            assert_eq!(ours[0].kind(), Kind::BFloat16);
            assert_eq!(ours.len(), theirs.len());
            for (k, (a, b)) in ours.iter().zip(&theirs).enumerate() {
                assert_eq!(a.kind(), b.kind(), "{i} {k}");
                assert!(a.equal(b), "shape {i}, tensor {k}: {}", (a - b).abs().max());
            }
        }
        // Without autocast, or without gradients, it is at::linear.
        let layer = tch::nn::linear(vs.root() / "plain", 4, 3, Default::default());
        let x = Tensor::randn([5, 4], (Kind::Float, Device::Cpu));
        assert!(linear(&layer, &x).unwrap().equal(&layer.forward(&x)));
        let _guard = Autocast::enter(Device::Cpu, Half::BFloat16).unwrap();
        let y = tch::no_grad(|| linear(&layer, &x).unwrap());
        assert!(y.equal(&tch::no_grad(|| layer.forward(&x))));
    }

    #[test]
    fn autocast_enabled_reads_the_threads_state() {
        assert!(!autocast_enabled(Device::Cpu));
        let guard = Autocast::enter(Device::Cpu, Half::BFloat16).unwrap();
        assert!(autocast_enabled(Device::Cpu));
        assert_eq!(autocast_kind(Device::Cpu), Some(Kind::BFloat16));
        drop(guard);
        assert!(!autocast_enabled(Device::Cpu));
        assert_eq!(autocast_kind(Device::Cpu), None);
    }

    #[test]
    fn attend_each_reports_bad_lengths_and_masks_as_errors() {
        let q = Tensor::zeros([1, 2, 5, 4], (Kind::Float, Device::Cpu));
        let qkv = [&q, &q, &q];
        let run = |lengths: &[i64], masks: &[Option<Tensor>]| {
            attend_each(qkv, lengths, masks, 0.5, true, i64::MAX).unwrap_err().to_string()
        };
        let error = run(&[2, 2], &[None, None]);
        assert!(error.contains("the sequences have 4 tokens, q has 5"), "{error}");
        let error = run(&[2, 3], &[None]);
        assert!(error.contains("1 masks for 2 sequences"), "{error}");
        let mask = Tensor::zeros([1, 1, 2, 2], (Kind::Float, Device::Cpu));
        let error = run(&[2, 3], &[None, Some(mask)]);
        assert!(error.contains("the mask of sequence 1 is not [1, 1, 3, 3]"), "{error}");
        let error = run(&[5, 0], &[None, None]);
        assert!(error.contains("a sequence of 0 tokens"), "{error}");
    }

    #[test]
    fn clip_grad_norm_matches_the_formula() {
        let grads = vec![Tensor::from_slice(&[3.0f32, 0.0]), Tensor::from_slice(&[0.0f32, 4.0])];
        let clipped = clip_grad_norm(&grads, &[true, false], 1.0).unwrap();
        assert!((clipped.norm - 5.0).abs() < 1e-6);
        let coef = 1.0 / (5.0 + 1e-6);
        assert!((clipped.coefficient - coef).abs() < 1e-7); // computed in float32
        assert!((grads[0].double_value(&[0]) - 3.0 * coef).abs() < 1e-6);
        assert_eq!(grads[1].double_value(&[1]), 4.0, "not flagged, not scaled");
        // Under the limit nothing changes.
        let small = vec![Tensor::from_slice(&[0.1f32])];
        let clipped = clip_grad_norm(&small, &[true], 1.0).unwrap();
        assert!((clipped.norm - 0.1).abs() < 1e-7 && clipped.coefficient == 1.0);
        assert!((small[0].double_value(&[0]) - 0.1).abs() < 1e-7);
    }

    #[test]
    fn a_bfloat16_gradient_counts_in_the_norm_as_its_float32_copy() {
        tch::manual_seed(0);
        let g16: Vec<Tensor> = [384 * 1536, 384, 7]
            .iter()
            .map(|&n| {
                (Tensor::randn([n], (Kind::Float, Device::Cpu)) * 0.01).to_kind(Kind::BFloat16)
            })
            .collect();
        let g32: Vec<Tensor> = g16.iter().map(|g| g.to_kind(Kind::Float)).collect();
        let mixed = [g32[0].shallow_clone(), g16[1].shallow_clone(), g16[2].shallow_clone()];
        let theirs = clip_grad_norm(&g32, &[false; 3], 0.01).unwrap();
        let ours = clip_grad_norm(&mixed, &[false; 3], 0.01).unwrap();
        assert_eq!(ours, theirs);
        assert!(ours.coefficient < 1.0);
    }

    #[test]
    fn one_fused_adamw_step_matches_the_update_rule() {
        // First step of AdamW: p -= lr * wd * p; then m = (1-b1) g, v = (1-b2) g^2,
        // p -= lr * (m / (1-b1)) / (sqrt(v / (1-b2)) + eps) = lr * sign(g) (almost).
        let hp = AdamW { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 };
        let p = Tensor::from_slice(&[1.0f32, -2.0]);
        let g = Tensor::from_slice(&[0.5f32, -0.25]);
        let (m, v) = (p.zeros_like(), p.zeros_like());
        let step = Tensor::zeros([], (Kind::Float, Device::Cpu));
        fused_adamw(&[p.shallow_clone()], &[g], &[m], &[v], &[step.shallow_clone()], hp).unwrap();
        assert_eq!(step.double_value(&[]), 1.0);
        let expected = [1.0 * (1.0 - 0.001) - 0.1, -2.0 * (1.0 - 0.001) + 0.1];
        for (i, e) in expected.iter().enumerate() {
            assert!(
                (p.double_value(&[i as i64]) - e).abs() < 1e-5,
                "{i}: {}",
                p.double_value(&[i as i64])
            );
        }
    }

    #[test]
    fn randperm_is_torchs_seeded_permutation() {
        // torch.randperm(10, generator=torch.Generator().manual_seed(42)), as the transformers
        // Trainer's first epoch with seed 42 visits 10 examples.
        assert_eq!(randperm(10, 42).unwrap(), vec![2, 6, 1, 8, 4, 5, 0, 9, 3, 7]);
        assert_eq!(randperm(10, 43).unwrap(), vec![8, 4, 9, 0, 5, 1, 6, 7, 2, 3]);
    }

    #[test]
    fn autocast_makes_cpu_matmuls_half_inside_only() {
        let a = Tensor::ones([2, 2], (Kind::Float, Device::Cpu));
        for (half, kind) in [(Half::BFloat16, Kind::BFloat16), (Half::Float16, Kind::Half)] {
            {
                let _guard = Autocast::enter(Device::Cpu, half).unwrap();
                assert_eq!(a.matmul(&a).kind(), kind);
            }
            assert_eq!(a.matmul(&a).kind(), Kind::Float);
        }
    }
}
