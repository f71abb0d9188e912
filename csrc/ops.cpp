// libtorch operations that tch does not bind: the fused AdamW step, the gradients' norm and
// scaling for clipping, which parameters reach a loss only through a cast to bfloat16, setting
// `.grad`, GradScaler's unscaling, autocast, randperm with a private seeded generator,
// at::parallel_for (libtorch's own thread pool) for Rust work, and, as autograd functions, the
// attention's change of layout between packed token rows and heads (with the rotary), the
// attention of each packed sequence, the linear layers of bfloat16 training, and DeBERTa's
// relative attention scores. Called from src/ops.rs; tensors arrive as tch's `at::Tensor*`.
// Each function returns NULL on success or a malloc'ed error message (freed by the caller):
// no C++ exception crosses into Rust.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Dispatch.h>
#include <ATen/Version.h>
#include <ATen/autocast_mode.h>
#include <ATen/ExpandUtils.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/functions/accumulate_grad.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <unordered_map>
#include <unordered_set>
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

// The attention's layouts. Rows: [tokens, parts · heads · head_dim], the packed tokens (or all
// batch · seq positions when nothing is packed), each part (q, k, v) a block of heads. Heads:
// per part, one [rows, heads, seq, head_dim] tensor per block of the layout, zeros at the
// padding; the blocks' positions (rows · seq each) follow one another in the flat positions
// (one block [batch, seq], or the packed sequences in groups of similar length). `source` maps
// each flat position to its row or -1 (padding); `index` maps each row to its flat position.
// The first `rotated` parts are turned by the rotary (`x · cos + rotate_half(x) · sin` in
// float32, cos and sin per row [tokens, head_dim / 2]); `sign` -1 turns them back (the
// transpose, for gradients). Products and sums are those of the tensor formula, one by one (no
// contraction into fused multiply-adds: the file is built with -ffp-contract=off).
struct Layout {
  int64_t positions, parts, heads, dim, rotated;
  const int64_t *source, *index;
  const float *cos, *sin;
  float sign;
  // Each block's rows and seq, and its first flat position.
  std::vector<int64_t> rows, seqs, starts;
  int64_t width() const { return parts * heads * dim; }
  int64_t blocks() const { return static_cast<int64_t>(seqs.size()); }
  // The block of flat position n (blocks are few).
  int64_t block(int64_t n) const {
    return std::upper_bound(starts.begin(), starts.end(), n) - starts.begin() - 1;
  }
  // Where head `head` of flat position n, in block g, is in that block's heads tensor.
  int64_t plane(int64_t g, int64_t n, int64_t head) const {
    int64_t seq = seqs[g], local = n - starts[g];
    int64_t b = local / seq, s = local % seq;
    return ((b * heads + head) * seq + s) * dim;
  }
};

// One head's vector from `from` into `to`, turned when `turn` with the row's cos and sin.
template <typename T>
inline void move_head(const T *from, T *to, const Layout &l, int64_t row, bool turn) {
  if (!turn) {
    std::memcpy(to, from, sizeof(T) * l.dim);
    return;
  }
  int64_t half = l.dim / 2;
  const float *c = l.cos + row * half, *s = l.sin + row * half;
  for (int64_t i = 0; i < half; ++i) {
    float x1 = static_cast<float>(from[i]), x2 = static_cast<float>(from[i + half]);
    float ss = l.sign * s[i];
    float first = x1 * c[i], second = x2 * -ss;
    float third = x2 * c[i], fourth = x1 * ss;
    to[i] = static_cast<T>(first + second);
    to[i + half] = static_cast<T>(third + fourth);
  }
}

template <typename T>
void rows_to_heads(const T *rows, const std::vector<T *> &heads, const Layout &l) {
  at::parallel_for(0, l.positions, 16, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      int64_t row = l.source[n], g = l.block(n);
      for (int64_t p = 0; p < l.parts; ++p) {
        for (int64_t h = 0; h < l.heads; ++h) {
          T *to = heads[p * l.blocks() + g] + l.plane(g, n, h);
          if (row < 0) {
            std::memset(to, 0, sizeof(T) * l.dim);
          } else {
            const T *from = rows + row * l.width() + (p * l.heads + h) * l.dim;
            move_head(from, to, l, row, p < l.rotated);
          }
        }
      }
    }
  });
}

// The inverse gather; a null heads tensor (an unused output's gradient) reads as zeros.
template <typename T>
void heads_to_rows(const std::vector<const T *> &heads, T *rows, int64_t tokens,
                   const Layout &l) {
  at::parallel_for(0, tokens, 16, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      int64_t n = l.index[row], g = l.block(n);
      for (int64_t p = 0; p < l.parts; ++p) {
        const T *plane = heads[p * l.blocks() + g];
        for (int64_t h = 0; h < l.heads; ++h) {
          T *to = rows + row * l.width() + (p * l.heads + h) * l.dim;
          if (plane == nullptr) {
            std::memset(to, 0, sizeof(T) * l.dim);
          } else {
            move_head(plane + l.plane(g, n, h), to, l, row, p < l.rotated);
          }
        }
      }
    }
  });
}

// The layout's sizes and tables, checked: what both directions need of the saved tensors.
// `blocks`: each block's rows and seq, [rows₀, seq₀, rows₁, seq₁, …].
struct Tables {
  at::Tensor source, index, cos, sin;
  std::vector<int64_t> blocks;
  int64_t parts, heads, rotated;

  Layout layout(int64_t dim, float sign) const {
    for (auto *t : {&source, &index, &cos, &sin})
      TORCH_CHECK(t->device().is_cpu() && t->is_contiguous(),
                  "layout tables must be contiguous CPU tensors");
    TORCH_CHECK(!blocks.empty() && blocks.size() % 2 == 0, "blocks are pairs [rows, seq]");
    Layout l{source.numel(), parts, heads, dim, rotated,
             source.data_ptr<int64_t>(), index.data_ptr<int64_t>(),
             rotated > 0 ? cos.data_ptr<float>() : nullptr,
             rotated > 0 ? sin.data_ptr<float>() : nullptr, sign, {}, {}, {}};
    int64_t start = 0;
    for (size_t i = 0; i < blocks.size(); i += 2) {
      TORCH_CHECK(blocks[i] > 0 && blocks[i + 1] > 0, "a block of ", blocks[i], " × ",
                  blocks[i + 1], " positions");
      l.rows.push_back(blocks[i]);
      l.seqs.push_back(blocks[i + 1]);
      l.starts.push_back(start);
      start += blocks[i] * blocks[i + 1];
    }
    TORCH_CHECK(start == source.numel(), "the blocks have ", start, " positions, the layout ",
                source.numel());
    return l;
  }
};

std::vector<at::Tensor> to_heads(const at::Tensor &rows_in, const Tables &t, float sign) {
  TORCH_CHECK(rows_in.device().is_cpu(), "split_heads runs on CPU tensors");
  auto rows = rows_in.contiguous();
  int64_t dim = rows.size(1) / (t.parts * t.heads);
  TORCH_CHECK(rows.dim() == 2 && dim * t.parts * t.heads == rows.size(1),
              "rows are not [tokens, parts · heads · head_dim]");
  auto l = t.layout(dim, sign);
  std::vector<at::Tensor> out;
  for (int64_t p = 0; p < t.parts; ++p)
    for (int64_t g = 0; g < l.blocks(); ++g)
      out.push_back(at::empty({l.rows[g], t.heads, l.seqs[g], dim}, rows.options()));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, rows.scalar_type(), "to_heads", [&] {
    std::vector<scalar_t *> heads;
    for (auto &o : out) heads.push_back(o.data_ptr<scalar_t>());
    rows_to_heads(rows.data_ptr<scalar_t>(), heads, l);
  });
  return out;
}

at::Tensor to_rows(const std::vector<at::Tensor> &heads_in, const Tables &t, float sign) {
  std::vector<at::Tensor> heads;
  at::Tensor like;
  for (auto &h : heads_in) {
    heads.push_back(h.defined() ? h.contiguous() : h);
    if (h.defined()) like = h;
  }
  TORCH_CHECK(like.defined(), "no heads tensor");
  int64_t dim = like.size(3), tokens = t.index.numel();
  auto l = t.layout(dim, sign);
  TORCH_CHECK(static_cast<int64_t>(heads.size()) == t.parts * l.blocks(), heads.size(),
              " heads tensors for ", t.parts, " parts of ", l.blocks(), " blocks");
  for (size_t i = 0; i < heads.size(); ++i) {
    const auto &h = heads[i];
    int64_t g = i % l.blocks();
    std::vector<int64_t> shape{l.rows[g], t.heads, l.seqs[g], dim};
    TORCH_CHECK(!h.defined() || (h.device().is_cpu() && h.sizes() == at::IntArrayRef(shape)),
                "heads must be CPU tensors [rows, heads, seq, head_dim] of their block, got ",
                h.sizes(), " for ", at::IntArrayRef(shape));
  }
  auto rows = at::empty({tokens, t.parts * t.heads * dim}, like.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, like.scalar_type(), "to_rows", [&] {
    std::vector<const scalar_t *> planes;
    for (auto &h : heads) planes.push_back(h.defined() ? h.data_ptr<scalar_t>() : nullptr);
    heads_to_rows(planes, rows.data_ptr<scalar_t>(), tokens, l);
  });
  return rows;
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

Tables saved(AutogradContext *ctx) {
  auto s = ctx->get_saved_variables();
  auto &d = ctx->saved_data;
  return Tables{s[0], s[1], s[2], s[3], d["blocks"].toIntVector(), d["parts"].toInt(),
                d["heads"].toInt(), d["rotated"].toInt()};
}

void save(AutogradContext *ctx, const Tables &t) {
  ctx->save_for_backward({t.source, t.index, t.cos, t.sin});
  ctx->saved_data["blocks"] = t.blocks;
  ctx->saved_data["parts"] = t.parts;
  ctx->saved_data["heads"] = t.heads;
  ctx->saved_data["rotated"] = t.rotated;
}

// Rows → heads (rotated): per part, one tensor per block; and back for the gradient.
struct SplitHeads : public torch::autograd::Function<SplitHeads> {
  static variable_list forward(AutogradContext *ctx, at::Tensor rows, at::Tensor source,
                               at::Tensor index, at::Tensor cos, at::Tensor sin,
                               std::vector<int64_t> blocks, int64_t parts, int64_t heads,
                               int64_t rotated) {
    Tables t{source, index, cos, sin, blocks, parts, heads, rotated};
    save(ctx, t);
    return to_heads(rows, t, 1.0f);
  }
  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    auto rows = to_rows(grads, saved(ctx), -1.0f);
    return {rows, {}, {}, {}, {}, {}, {}, {}, {}};
  }
};

// Heads → rows (one part, not rotated; one context per block), and back for the gradient.
struct MergeHeads : public torch::autograd::Function<MergeHeads> {
  static at::Tensor forward(AutogradContext *ctx, at::TensorList contexts, at::Tensor source,
                            at::Tensor index, std::vector<int64_t> blocks, int64_t heads) {
    auto none = at::empty({0}, source.options().dtype(at::kFloat));
    Tables t{source, index, none, none, blocks, 1, heads, 0};
    save(ctx, t);
    return to_rows(contexts.vec(), t, 1.0f);
  }
  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    auto out = to_heads(grads[0], saved(ctx), 1.0f);
    out.resize(out.size() + 4);  // none for source, index, blocks, heads
    return out;
  }
};

// A linear layer on the CPU in bfloat16 (x [tokens, in], W [out, in], b [out] or undefined),
// as at::linear computes it under autocast, bit for bit: the forward is oneDNN's product with
// the bias added to its float32 sums (mkldnn::_linear_pointwise; at::addmm first copies the
// bias into every row of the output, then adds the product to it, rounding once as well), the
// backward AddmmBackward0's: the input's gradient g·W, the weight's gᵀ·x, the bias's the
// column sums of g (at::sum_to). The two products, equal in work, run at once, one thread
// each: oneDNN's bfloat16 products of a MiniLM layer's shapes gained less from a second thread
// than from running beside the other product (bench/README.md). No bias: `b` has no elements
// (autograd functions take no undefined inputs).
struct BfLinear : public torch::autograd::Function<BfLinear> {
  static at::Tensor forward(AutogradContext *ctx, at::Tensor x, at::Tensor w, at::Tensor b) {
    ctx->save_for_backward({x, w});
    if (b.numel() == 0) b = at::Tensor();
    ctx->saved_data["bias"] = b.defined();
    static auto op =
        c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn::_linear_pointwise", "");
    std::vector<c10::IValue> stack{x, w, b.defined() ? c10::IValue(b) : c10::IValue(),
                                   c10::IValue(std::string("none")),
                                   c10::IValue(c10::List<std::optional<at::Scalar>>()),
                                   c10::IValue(std::string(""))};
    op.callBoxed(stack);
    return stack[0].toTensor();
  }
  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &w = saved[1];
    auto g = grads[0].contiguous();
    at::Tensor gx, gw, gb;
    bool want_x = ctx->needs_input_grad(0), want_w = ctx->needs_input_grad(1);
    if (ctx->saved_data["bias"].toBool() && ctx->needs_input_grad(2)) {
      std::vector<int64_t> shape{w.size(0)};
      gb = at::sum_to(g, at::IntArrayRef(shape));
    }
    at::parallel_for(0, 2, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        if (i == 0 && want_x) gx = g.mm(w);
        if (i == 1 && want_w) gw = g.t().mm(x);
      }
    });
    return {gx, gw, gb};
  }
};

// Attention of each sequence on its own tokens. q, k, v: [1, heads, tokens, head_dim], the
// packed tokens of the sequences one after another (`lengths`); `masks`: each sequence's
// additive mask [1, 1, length, length] or undefined. Each sequence is computed as the tensor
// formula computes it: explicitly (q·kᵀ · scale + mask, softmax, in float32 when
// `float_softmax`, then cast back, · v) or, from `fused_from` tokens on, by libtorch's CPU
// flash kernel; no dropout. The contexts and the gradients are written into one tensor each:
// no padding, no concatenation, and no autograd node per sequence.
struct Sequences {
  std::vector<int64_t> lengths;
  double scale;
  bool float_softmax;
  int64_t fused_from;
  bool fused(int64_t length) const { return length >= fused_from; }
};

struct AttendEach : public torch::autograd::Function<AttendEach> {
  static at::Tensor forward(AutogradContext *ctx, at::Tensor q, at::Tensor k, at::Tensor v,
                            std::vector<at::Tensor> masks, std::vector<int64_t> lengths,
                            double scale, bool float_softmax, int64_t fused_from) {
    Sequences seq{lengths, scale, float_softmax, fused_from};
    auto out = at::empty_like(q, at::MemoryFormat::Contiguous);
    // Per sequence: the probabilities (explicit; float32 when float_softmax, as its backward
    // needs them) or the log-sum-exp (fused), and the mask.
    std::vector<at::Tensor> saved{q, k, v, out};
    int64_t start = 0;
    for (size_t i = 0; i < lengths.size(); ++i) {
      int64_t n = lengths[i];
      auto qi = q.narrow(2, start, n), ki = k.narrow(2, start, n), vi = v.narrow(2, start, n);
      auto oi = out.narrow(2, start, n);
      std::optional<at::Tensor> mask;
      if (masks[i].defined()) mask = masks[i];
      if (seq.fused(n)) {
        auto [o, lse] = at::_scaled_dot_product_flash_attention_for_cpu(qi, ki, vi, 0.0, false,
                                                                        mask, scale);
        oi.copy_(o);
        saved.push_back(lse);
      } else {
        auto scores = at::matmul(qi, ki.transpose(2, 3)) * scale;
        if (mask) scores = scores + *mask;
        auto probs = float_softmax ? at::softmax(scores, -1, at::kFloat) : at::softmax(scores, -1);
        oi.copy_(at::matmul(probs.to(q.scalar_type()), vi));
        saved.push_back(probs);
      }
      saved.push_back(masks[i]);
      start += n;
    }
    ctx->save_for_backward(saved);
    ctx->saved_data["lengths"] = lengths;
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["float_softmax"] = float_softmax;
    ctx->saved_data["fused_from"] = fused_from;
    return out;
  }

  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    auto s = ctx->get_saved_variables();
    auto &d = ctx->saved_data;
    Sequences seq{d["lengths"].toIntVector(), d["scale"].toDouble(),
                  d["float_softmax"].toBool(), d["fused_from"].toInt()};
    const auto &q = s[0], &k = s[1], &v = s[2], &out = s[3];
    const auto dout = grads[0].contiguous();
    auto dq = at::empty_like(q, at::MemoryFormat::Contiguous);
    auto dk = at::empty_like(k, at::MemoryFormat::Contiguous);
    auto dv = at::empty_like(v, at::MemoryFormat::Contiguous);
    int64_t start = 0;
    for (size_t i = 0; i < seq.lengths.size(); ++i) {
      int64_t n = seq.lengths[i];
      auto qi = q.narrow(2, start, n), ki = k.narrow(2, start, n), vi = v.narrow(2, start, n);
      auto gi = dout.narrow(2, start, n);
      const auto &kept = s[4 + 2 * i], &mask_i = s[5 + 2 * i];
      if (seq.fused(n)) {
        std::optional<at::Tensor> mask;
        if (mask_i.defined()) mask = mask_i;
        auto [gq, gk, gv] = at::_scaled_dot_product_flash_attention_for_cpu_backward(
            gi, qi, ki, vi, out.narrow(2, start, n), kept, 0.0, false, mask, seq.scale);
        dq.narrow(2, start, n).copy_(gq);
        dk.narrow(2, start, n).copy_(gk);
        dv.narrow(2, start, n).copy_(gv);
      } else {
        // The tensor formula's backward, step by step: matmul, cast, softmax (in the dtype of
        // its output), cast, scale.
        auto probs = kept.to(q.scalar_type());
        dv.narrow(2, start, n).copy_(at::matmul(probs.transpose(2, 3), gi));
        auto dprobs = at::matmul(gi, vi.transpose(2, 3)).to(kept.scalar_type());
        auto dscores = at::_softmax_backward_data(dprobs, kept, -1, kept.scalar_type())
                           .to(q.scalar_type()) *
                       seq.scale;
        dq.narrow(2, start, n).copy_(at::matmul(dscores, ki));
        dk.narrow(2, start, n).copy_(at::matmul(dscores.transpose(2, 3), qi));
      }
      start += n;
    }
    return {dq, dk, dv, {}, {}, {}, {}, {}};
  }
};

// The explicit attention's probabilities, dropout(softmax(scores · scale + bias)) in float32,
// in one pass per row forward and backward (src/models/probs.rs, whose kernels these call).
// The layout of ProbsArgs is probs.rs's.
struct ProbsArgs {
  const void *input;
  const float *bias;
  int64_t bias_strides[3];
  const uint8_t *keep;
  float *probs;
  void *out;
  int64_t heads, queries, rows, n;
  double scale, kept;
  int32_t scores_bf16, out_bf16, lanes;
};
using ProbsKernel = int (*)(const ProbsArgs *);

ProbsArgs probs_args(const at::Tensor &scores, at::ScalarType scores_type, bool out_bf16,
                     const at::Tensor &keep, double scale, double kept, int64_t lanes) {
  ProbsArgs a{};
  a.keep = keep.defined() ? keep.data_ptr<uint8_t>() : nullptr;
  a.heads = scores.size(1);
  a.queries = scores.size(2);
  a.n = scores.size(3);
  a.rows = scores.numel() / std::max<int64_t>(a.n, 1);
  a.scale = scale;
  a.kept = kept;
  a.scores_bf16 = scores_type == at::kBFloat16;
  a.out_bf16 = out_bf16;
  a.lanes = static_cast<int32_t>(lanes);
  return a;
}

struct AttentionProbs : public torch::autograd::Function<AttentionProbs> {
  // scores [batch, heads, queries, n] contiguous; bias none or float32 [1 or batch, 1 or
  // heads, 1 or queries, n] with its last dimension contiguous; keep none (no dropout) or
  // bytes shaped like the scores; the result float32, or bfloat16 (out_bf16).
  static at::Tensor forward(AutogradContext *ctx, at::Tensor scores,
                            std::optional<at::Tensor> bias_in, std::optional<at::Tensor> keep_in,
                            double scale, double kept, int64_t lanes, bool out_bf16,
                            int64_t forward_kernel, int64_t backward_kernel) {
    auto bias = bias_in.value_or(at::Tensor()), keep = keep_in.value_or(at::Tensor());
    auto probs = at::empty(scores.sizes(), scores.options().dtype(at::kFloat));
    // Without dropout the float32 result is the probabilities themselves.
    bool separate = keep.defined() || out_bf16;
    auto out = separate ? at::empty_like(probs, out_bf16 ? at::kBFloat16 : at::kFloat) : probs;
    auto a = probs_args(scores, scores.scalar_type(), out_bf16, keep, scale, kept, lanes);
    a.input = scores.const_data_ptr();
    a.probs = probs.data_ptr<float>();
    a.out = separate ? out.data_ptr() : nullptr;
    if (bias.defined()) {
      a.bias = bias.const_data_ptr<float>();
      for (int d = 0; d < 3; ++d) a.bias_strides[d] = bias.size(d) == 1 ? 0 : bias.stride(d);
    }
    TORCH_CHECK(reinterpret_cast<ProbsKernel>(forward_kernel)(&a) == 0,
                "the attention probabilities' kernel failed");
    ctx->save_for_backward({probs});
    ctx->saved_data["keep"] = keep;
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["kept"] = kept;
    ctx->saved_data["lanes"] = lanes;
    ctx->saved_data["out_bf16"] = out_bf16;
    ctx->saved_data["scores_type"] = scores.scalar_type();
    ctx->saved_data["backward_kernel"] = backward_kernel;
    return out;
  }

  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    auto probs = ctx->get_saved_variables()[0];
    auto &d = ctx->saved_data;
    auto keep = d["keep"].isTensor() ? d["keep"].toTensor() : at::Tensor();
    auto scores_type = d["scores_type"].toScalarType();
    bool out_bf16 = d["out_bf16"].toBool();
    // The result's gradient, in the result's dtype (which autograd gives it already).
    auto grad = grads[0].to(out_bf16 ? at::kBFloat16 : at::kFloat).contiguous();
    auto out = at::empty(probs.sizes(), probs.options().dtype(scores_type));
    auto a = probs_args(probs, scores_type, out_bf16, keep, d["scale"].toDouble(),
                        d["kept"].toDouble(), d["lanes"].toInt());
    a.input = grad.const_data_ptr();
    a.probs = probs.data_ptr<float>();
    a.out = out.data_ptr();
    auto kernel = reinterpret_cast<ProbsKernel>(d["backward_kernel"].toInt());
    TORCH_CHECK(kernel(&a) == 0, "the attention probabilities' backward kernel failed");
    return {out, {}, {}, {}, {}, {}, {}, {}, {}};
  }
};

// DeBERTa's attention scores with their relative terms, `scores + (c2p / scale + p2cᵀ /
// scale)` at each pair's offset and the masked pairs set to the lowest value, in one pass per
// [seq, seq] block forward and backward (src/models/relative.rs, whose kernels these call and
// which says what the tensors are). The layout of RelativeArgs is relative.rs's.
struct RelativeArgs {
  const void *input;
  void *c2p, *p2c;
  const uint8_t *masked;
  void *out;
  int64_t batch, heads, seq, width;
  float scale;
  int32_t bf16;
};
using RelativeKernel = int (*)(const RelativeArgs *);

// The kernels' arguments: `input` [batch, heads, seq, seq], and NULL for each other tensor that
// is undefined or without elements (absent).
RelativeArgs relative_args(const at::Tensor &input, at::Tensor &c2p, at::Tensor &p2c,
                           const at::Tensor &masked, at::Tensor &out, int64_t width,
                           double scale) {
  auto ptr = [](const at::Tensor &t) {
    return t.defined() && t.numel() > 0 ? t.data_ptr() : nullptr;
  };
  return {input.const_data_ptr(),
          ptr(c2p),
          ptr(p2c),
          static_cast<const uint8_t *>(ptr(masked)),
          ptr(out),
          input.size(0),
          input.size(1),
          input.size(2),
          width,
          static_cast<float>(scale),
          input.scalar_type() == at::kBFloat16};
}

struct RelativeScores : public torch::autograd::Function<RelativeScores> {
  // c2p, p2c or masked without elements where absent (not both terms).
  static at::Tensor forward(AutogradContext *ctx, at::Tensor scores, at::Tensor c2p,
                            at::Tensor p2c, at::Tensor masked, double scale,
                            int64_t forward_kernel, int64_t backward_kernel) {
    bool has_c = c2p.numel() > 0, has_p = p2c.numel() > 0;
    auto out = at::empty_like(scores);
    auto a = relative_args(scores, c2p, p2c, masked, out, (has_c ? c2p : p2c).size(3), scale);
    TORCH_CHECK(reinterpret_cast<RelativeKernel>(forward_kernel)(&a) == 0,
                "the relative scores' kernel failed");
    ctx->save_for_backward({masked});
    ctx->saved_data["c2p"] = has_c;
    ctx->saved_data["p2c"] = has_p;
    ctx->saved_data["width"] = a.width;
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["backward_kernel"] = backward_kernel;
    return out;
  }

  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    if (!grads[0].defined()) return {{}, {}, {}, {}, {}, {}, {}};
    auto masked = ctx->get_saved_variables()[0];
    auto &d = ctx->saved_data;
    auto grad = grads[0].contiguous();
    bool has_m = masked.numel() > 0;
    bool want_s = ctx->needs_input_grad(0);
    bool want_c = d["c2p"].toBool() && ctx->needs_input_grad(1);
    bool want_p = d["p2c"].toBool() && ctx->needs_input_grad(2);
    // Without a mask the scores' gradient is the result's itself.
    at::Tensor gs = want_s && has_m ? at::empty_like(grad) : at::Tensor();
    std::vector<int64_t> terms{grad.size(1), grad.size(0), grad.size(2), d["width"].toInt()};
    at::Tensor gc = want_c ? at::empty(terms, grad.options()) : at::Tensor();
    at::Tensor gp = want_p ? at::empty(terms, grad.options()) : at::Tensor();
    auto a = relative_args(grad, gc, gp, masked, gs, terms[3], d["scale"].toDouble());
    if (gc.defined() || gp.defined() || gs.defined()) {
      auto kernel = reinterpret_cast<RelativeKernel>(d["backward_kernel"].toInt());
      TORCH_CHECK(kernel(&a) == 0, "the relative scores' backward kernel failed");
    }
    if (want_s && !has_m) gs = grad;
    return {gs, gc, gp, {}, {}, {}, {}};
  }
};

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

// torch.nn.utils.clip_grad_norm_'s total norm (foreach path): each gradient's 2-norm computed
// in float32 (a bfloat16 gradient's is then bit for bit its float32 copy's), then theirs.
char *ft_grad_norm(at::Tensor **grads, int n, float *norm) {
  return guarded([&] {
    auto g = list(grads, n);
    *norm = 0.0f;
    if (g.empty()) return;
    auto norms = at::_foreach_norm(g, 2, at::kFloat);
    *norm = at::linalg_vector_norm(at::stack(norms), 2).item<float>();
  });
}

// `grads *= coefficient`, clipping's multiply by its float32 coefficient.
char *ft_scale_grads(at::Tensor **grads, int n, float coefficient) {
  return guarded([&] {
    auto g = list(grads, n);
    if (!g.empty()) at::_foreach_mul_(g, static_cast<double>(coefficient));
  });
}

// For each of `params`, whether the graph that computes `loss` reaches it only through one
// cast of it to bfloat16 (autocast's, or the model's own) from float32 on the CPU: flags[i] is
// 1 for those, 0 for the others. Such a parameter can be given bfloat16 data for the forward
// and backward, its gradient then being the cast's (src/train/optim.rs).
char *ft_cast_only(at::Tensor *loss, at::Tensor **params, int n, int *flags) {
  return guarded([&] {
    using torch::autograd::Node;
    // Each AccumulateGrad node the graph reaches, with the nodes whose edges lead to it (one
    // entry per edge).
    std::unordered_map<const Node *, std::vector<const Node *>> into;
    std::unordered_set<const Node *> seen;
    std::vector<Node *> stack;
    if (auto root = loss->grad_fn()) {
      stack.push_back(root.get());
      seen.insert(root.get());
    }
    while (!stack.empty()) {
      Node *node = stack.back();
      stack.pop_back();
      for (const auto &edge : node->next_edges()) {
        Node *next = edge.function.get();
        if (!next) continue;
        if (dynamic_cast<torch::autograd::AccumulateGrad *>(next)) into[next].push_back(node);
        if (seen.insert(next).second) stack.push_back(next);
      }
    }
    for (int i = 0; i < n; ++i) {
      const at::Tensor &p = *params[i];
      flags[i] = 0;
      if (p.scalar_type() != at::kFloat || !p.device().is_cpu()) continue;
      auto accumulator = torch::autograd::impl::try_get_grad_accumulator(p);
      if (!accumulator) continue;
      auto found = into.find(accumulator.get());
      if (found == into.end() || found->second.size() != 1) continue;
      const Node *cast = found->second[0];
      flags[i] = cast->name() == "ToCopyBackward0" && cast->num_inputs() == 1 &&
                 cast->input_metadata(0).dtype() == caffe2::TypeMeta::Make<at::BFloat16>() &&
                 cast->input_metadata(0).device().is_cpu();
    }
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

// Whether this libtorch has oneDNN's linear (mkldnn::_linear_pointwise) and runs it in
// bfloat16 on this CPU (mkldnn::_is_mkldnn_bf16_supported).
bool bf_linear_available() {
  static const bool available = [] {
    auto &dispatcher = c10::Dispatcher::singleton();
    auto linear = dispatcher.findSchema({"mkldnn::_linear_pointwise", ""});
    auto supported = dispatcher.findSchema({"mkldnn::_is_mkldnn_bf16_supported", ""});
    if (!linear || !supported) return false;
    std::vector<c10::IValue> stack;
    supported->callBoxed(stack);
    return stack.size() == 1 && stack[0].isBool() && stack[0].toBool();
  }();
  return available;
}

// at::linear(x, w, b) (b may be undefined): BfLinear where x is a 2-D CPU tensor, autocast
// casts to bfloat16 on the CPU, gradients are recorded and oneDNN's linear is there
// (autocast's casts are made here, as autocast makes them, cached for the weights);
// at::linear elsewhere.
char *ft_linear(at::Tensor *x, at::Tensor *w, at::Tensor *b, at::Tensor **out) {
  return guarded([&] {
    at::Tensor bias = b ? *b : at::Tensor();
    bool bf16 = at::autocast::is_autocast_enabled(at::kCPU) &&
                at::autocast::get_autocast_dtype(at::kCPU) == at::kBFloat16;
    if (bf16 && at::GradMode::is_enabled() && x->dim() == 2 && x->device().is_cpu() &&
        w->device().is_cpu() && bf_linear_available()) {
      auto cast = [](const at::Tensor &t) {
        return at::autocast::cached_cast(at::kBFloat16, t, c10::DeviceType::CPU);
      };
      auto xb = cast(*x).contiguous();
      auto wb = cast(*w).contiguous();
      auto none = at::empty({0}, wb.options());
      *out = new at::Tensor(BfLinear::apply(xb, wb, bias.defined() ? cast(bias) : none));
      return;
    }
    *out = new at::Tensor(at::linear(*x, *w, bias.defined() ? std::optional<at::Tensor>(bias)
                                                            : std::nullopt));
  });
}

// Writes the dtype autocast casts to on the CPU (cuda == 0) or CUDA on this thread: 0 when it
// is off, 1 bfloat16, 2 float16, 3 another.
char *ft_autocast_dtype(int cuda, int *dtype) {
  return guarded([&] {
    auto device = cuda ? at::kCUDA : at::kCPU;
    if (!at::autocast::is_autocast_enabled(device)) {
      *dtype = 0;
      return;
    }
    auto type = at::autocast::get_autocast_dtype(device);
    *dtype = type == at::kBFloat16 ? 1 : type == at::kHalf ? 2 : 3;
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

// Packed rows [tokens, parts · heads · head_dim] → per part, one tensor [rows, heads, seq,
// head_dim] per block (blocks: n pairs [rows, seq]), written to out[part · n + block] (see
// Layout; cos and sin float32 [tokens, head_dim / 2], read when rotated > 0), differentiable.
char *ft_split_heads(at::Tensor *rows, at::Tensor *source, at::Tensor *index, at::Tensor *cos,
                     at::Tensor *sin, const int64_t *blocks, int n, int64_t parts,
                     int64_t heads, int64_t rotated, at::Tensor **out) {
  return guarded([&] {
    std::vector<int64_t> b(blocks, blocks + 2 * n);
    auto result = SplitHeads::apply(*rows, *source, *index, *cos, *sin, b, parts, heads, rotated);
    for (size_t i = 0; i < result.size(); ++i) out[i] = new at::Tensor(result[i]);
  });
}

// The attention contexts, one [rows, heads, seq, head_dim] per block (n blocks) → packed rows
// [tokens, heads · head_dim] written to *out, differentiable.
char *ft_merge_heads(at::Tensor **contexts, at::Tensor *source, at::Tensor *index,
                     const int64_t *blocks, int n, int64_t heads, at::Tensor **out) {
  return guarded([&] {
    std::vector<int64_t> b(blocks, blocks + 2 * n);
    auto c = list(contexts, n);
    *out = new at::Tensor(MergeHeads::apply(at::TensorList(c), *source, *index, b, heads));
  });
}

// Attention of each packed sequence (see AttendEach): q, k, v [1, heads, tokens, head_dim];
// masks[i] NULL where sequence i has none. The context [1, heads, tokens, head_dim] is written
// to *out, differentiable.
char *ft_attend_each(at::Tensor *q, at::Tensor *k, at::Tensor *v, at::Tensor **masks,
                     const int64_t *lengths, int n, double scale, int float_softmax,
                     int64_t fused_from, at::Tensor **out) {
  return guarded([&] {
    TORCH_CHECK(q->device().is_cpu() && k->device().is_cpu() && v->device().is_cpu(),
                "attend_each runs on the CPU");
    TORCH_CHECK(q->dim() == 4 && q->size(0) == 1 && q->sizes() == k->sizes() &&
                    q->sizes() == v->sizes(),
                "attend_each takes q, k, v of one shape [1, heads, tokens, head_dim]");
    std::vector<int64_t> sizes(lengths, lengths + n);
    int64_t total = 0;
    for (auto l : sizes) {
      TORCH_CHECK(l > 0, "a sequence of ", l, " tokens");
      total += l;
    }
    TORCH_CHECK(total == q->size(2), "the sequences have ", total, " tokens, q has ",
                q->size(2));
    std::vector<at::Tensor> m;
    for (int i = 0; i < n; ++i) {
      m.push_back(masks[i] ? *masks[i] : at::Tensor());
      if (masks[i])
        TORCH_CHECK(m[i].dim() == 4 && m[i].size(2) == sizes[i] && m[i].size(3) == sizes[i],
                    "the mask of sequence ", i, " is not [1, 1, ", sizes[i], ", ", sizes[i],
                    "]");
    }
    *out = new at::Tensor(
        AttendEach::apply(*q, *k, *v, m, sizes, scale, float_softmax != 0, fused_from));
  });
}

// Writes libtorch's CPU capability ("AVX2", "AVX512", "DEFAULT", ...: the kernels its
// operations run) into out, at most size bytes with the terminating zero.
char *ft_cpu_capability(char *out, int size) {
  return guarded([&] {
    auto capability = at::get_cpu_capability();
    TORCH_CHECK(size > 0 && capability.size() < static_cast<size_t>(size),
                "the capability's name is longer than ", size);
    std::memcpy(out, capability.c_str(), capability.size() + 1);
  });
}

// dropout(softmax(scores · scale + bias)) computed in float32 (see AttentionProbs), the
// result float32 or bfloat16 (out_bf16); bias and keep NULL where there are none; lanes the
// width of libtorch's float vectors. Written to *out, differentiable in the scores.
char *ft_attention_probs(at::Tensor *scores, at::Tensor *bias, at::Tensor *keep, double scale,
                         double kept, int64_t lanes, int out_bf16, ProbsKernel forward,
                         ProbsKernel backward, at::Tensor **out) {
  return guarded([&] {
    const auto &s = *scores;
    TORCH_CHECK(s.device().is_cpu() && s.dim() == 4 &&
                    (s.scalar_type() == at::kFloat ||
                     (s.scalar_type() == at::kBFloat16 && bias)),
                "attention_probs takes float32 CPU scores [batch, heads, queries, keys], or "
                "bfloat16 ones with a float32 bias; got ", s.sizes(), " ", s.scalar_type());
    TORCH_CHECK(lanes == 8 || lanes == 16, "libtorch vectors of ", lanes, " floats");
    at::Tensor b;
    if (bias) {
      b = *bias;
      TORCH_CHECK(b.device().is_cpu() && b.dim() == 4 && b.scalar_type() == at::kFloat &&
                      !b.requires_grad() && (b.size(0) == 1 || b.size(0) == s.size(0)) &&
                      (b.size(1) == 1 || b.size(1) == s.size(1)) &&
                      (b.size(2) == 1 || b.size(2) == s.size(2)) && b.size(3) == s.size(3),
                  "the attention bias ", b.sizes(), " ", b.scalar_type(),
                  " is not a float32 bias that broadcasts to the scores ", s.sizes());
      if (b.stride(3) != 1) b = b.contiguous();
    }
    at::Tensor k;
    if (keep) {
      k = *keep;
      TORCH_CHECK(k.scalar_type() == at::kByte && k.sizes() == s.sizes() && k.is_contiguous(),
                  "the dropout mask must be contiguous bytes shaped like the scores");
    }
    auto optional = [](const at::Tensor &t) {
      return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
    };
    *out = new at::Tensor(AttentionProbs::apply(
        s.contiguous(), optional(b), optional(k), scale, kept, lanes, out_bf16 != 0,
        reinterpret_cast<int64_t>(forward), reinterpret_cast<int64_t>(backward)));
  });
}

// DeBERTa's scores with their relative terms (see RelativeScores); c2p, p2c and masked NULL
// where absent (not both terms). Written to *out, differentiable in scores, c2p and p2c.
char *ft_relative_scores(at::Tensor *scores, at::Tensor *c2p, at::Tensor *p2c,
                         at::Tensor *masked, double scale, RelativeKernel forward,
                         RelativeKernel backward, at::Tensor **out) {
  return guarded([&] {
    const auto &s = *scores;
    TORCH_CHECK(s.device().is_cpu() && s.dim() == 4 && s.size(2) == s.size(3) &&
                    (s.scalar_type() == at::kFloat || s.scalar_type() == at::kBFloat16),
                "relative_scores takes float32 or bfloat16 CPU scores [batch, heads, seq, "
                "seq]; got ", s.sizes(), " ", s.scalar_type());
    TORCH_CHECK(c2p || p2c, "relative_scores needs c2p or p2c");
    int64_t batch = s.size(0), heads = s.size(1), seq = s.size(2);
    auto none = at::empty({0}, s.options());
    auto term = [&](at::Tensor *t, const char *name) {
      if (!t) return none;
      TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == s.scalar_type() &&
                      t->dim() == 4 && t->size(0) == heads && t->size(1) == batch &&
                      t->size(2) == seq && t->size(3) >= 2 * seq - 1,
                  name, " ", t->sizes(), " ", t->scalar_type(), " is not [", heads, ", ",
                  batch, ", ", seq, ", at least ", 2 * seq - 1, "] of the scores' dtype");
      return t->contiguous();
    };
    auto c = term(c2p, "c2p"), p = term(p2c, "p2c");
    TORCH_CHECK(!c2p || !p2c || c.size(3) == p.size(3), "c2p and p2c differ in width");
    auto m = none.to(at::kBool);
    if (masked) {
      TORCH_CHECK(masked->scalar_type() == at::kBool &&
                      masked->sizes() == at::IntArrayRef({batch, 1, seq, seq}),
                  "the mask ", masked->sizes(), " is not bool [", batch, ", 1, ", seq, ", ",
                  seq, "]");
      m = masked->contiguous();
    }
    *out = new at::Tensor(RelativeScores::apply(s.contiguous(), c, p, m, scale,
                                                reinterpret_cast<int64_t>(forward),
                                                reinterpret_cast<int64_t>(backward)));
  });
}

}  // extern "C"
