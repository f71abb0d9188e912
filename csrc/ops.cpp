// libtorch operations that tch does not bind: the fused AdamW step, foreach gradient
// clipping, setting `.grad`, GradScaler's unscaling, autocast, randperm with a private
// seeded generator, and at::parallel_for (libtorch's own thread pool) for Rust work. Called from src/ops.rs; tensors arrive as tch's `at::Tensor*`.
// Each function returns NULL on success or a malloc'ed error message (freed by the caller):
// no C++ exception crosses into Rust.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>

#include <cstring>
#include <exception>
#include <vector>

namespace {

std::vector<at::Tensor> list(at::Tensor **tensors, int n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (int i = 0; i < n; ++i) out.push_back(*tensors[i]);
  return out;
}

template <typename F>
char *guarded(F f) {
  try {
    f();
    return nullptr;
  } catch (const std::exception &e) {
    return strdup(e.what());
  } catch (...) {
    return strdup("unknown C++ exception");
  }
}

}  // namespace

extern "C" {

// torch.optim.AdamW(fused=True).step() for one parameter group (torch/optim/adamw.py).
char *ft_fused_adamw(at::Tensor **params, at::Tensor **grads, at::Tensor **exp_avgs,
                     at::Tensor **exp_avg_sqs, at::Tensor **steps, int n, double lr,
                     double beta1, double beta2, double weight_decay, double eps) {
  return guarded([&] {
    auto p = list(params, n), g = list(grads, n), m = list(exp_avgs, n),
         v = list(exp_avg_sqs, n), s = list(steps, n);
    at::_foreach_add_(s, 1);
    at::_fused_adamw_(p, g, m, v, {}, s, lr, beta1, beta2, weight_decay, eps,
                      /*amsgrad=*/false, /*maximize=*/false);
  });
}

// torch.nn.utils.clip_grad_norm_ (foreach path): writes the total 2-norm before clipping.
char *ft_clip_grad_norm(at::Tensor **grads, int n, double max_norm, double *total_norm) {
  return guarded([&] {
    auto g = list(grads, n);
    if (g.empty()) {
      *total_norm = 0.0;
      return;
    }
    auto norms = at::_foreach_norm(g, 2);
    auto total = at::linalg_vector_norm(at::stack(norms), 2);
    auto coef = at::clamp_max(max_norm / (total + 1e-6), 1.0);
    *total_norm = total.item<double>();
    // torch multiplies by the clamped coefficient even when it is 1, which changes nothing:
    // that pass over every gradient is skipped.
    if (coef.item<double>() != 1.0) at::_foreach_mul_(g, coef.to(g[0].device()));
  });
}

// `param.grad = grad` (grad NULL: `param.grad = None`, as zero_grad(set_to_none=True)).
char *ft_set_grad(at::Tensor *param, at::Tensor *grad) {
  return guarded([&] { param->mutable_grad() = grad ? *grad : at::Tensor(); });
}

// GradScaler.unscale_ (torch/amp/grad_scaler.py): multiplies the gradients by inv_scale in
// place and sets found_inf to 1 if any of them holds an inf or a NaN.
char *ft_unscale(at::Tensor **grads, int n, at::Tensor *found_inf, at::Tensor *inv_scale) {
  return guarded([&] {
    auto g = list(grads, n);
    if (!g.empty()) at::_amp_foreach_non_finite_check_and_unscale_(g, *found_inf, *inv_scale);
  });
}

// Enters (enabled != 0) or leaves autocast to bfloat16 (half == 0) or float16 on the CPU
// (cuda == 0) or CUDA, as `torch.autocast(device_type, dtype=...)` does.
char *ft_autocast(int cuda, int half, int enabled) {
  return guarded([&] {
    auto device = cuda ? at::kCUDA : at::kCPU;
    if (enabled) {
      at::autocast::set_autocast_dtype(device, half ? at::kHalf : at::kBFloat16);
      at::autocast::set_autocast_enabled(device, true);
      at::autocast::increment_nesting();
    } else {
      if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
      at::autocast::set_autocast_enabled(device, false);
    }
  });
}

// torch.randperm(n, generator=torch.Generator().manual_seed(seed)): the order in which the
// transformers Trainer's seeded sampler visits a data set (accelerate's SeedableRandomSampler).
char *ft_randperm(int64_t n, uint64_t seed, int64_t *out) {
  return guarded([&] {
    auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
    auto perm = at::randperm(n, generator, at::TensorOptions().dtype(at::kLong));
    std::memcpy(out, perm.data_ptr<int64_t>(), sizeof(int64_t) * n);
  });
}

// at::parallel_for(0, n, grain, ...) calling body(context, begin, end) on each range: work
// inside a training or inference step runs on the threads libtorch already uses
// (torch.set_num_threads), never on a second pool competing with them. `body` must not unwind.
char *ft_parallel_for(int64_t n, int64_t grain, void (*body)(void *, int64_t, int64_t),
                      void *context) {
  return guarded([&] {
    at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) { body(context, begin, end); });
  });
}

}  // extern "C"
