//! Variables created as transformers' `_init_weights` initializes them, under the paths of the
//! transformers state dict.

use super::config::ModelConfig;
use tch::{nn, Tensor};

pub(crate) fn normal_init(config: &ModelConfig) -> nn::Init {
    nn::Init::Randn { mean: 0., stdev: config.initializer_range }
}

/// transformers' `_init_weights` for nn.Linear: normal(0, initializer_range), zero bias.
pub(crate) fn linear(p: nn::Path, input: i64, output: i64, config: &ModelConfig) -> nn::Linear {
    let cfg = nn::LinearConfig {
        ws_init: normal_init(config),
        bs_init: Some(nn::Init::Const(0.)),
        bias: true,
    };
    nn::linear(p, input, output, cfg)
}

/// `layer.forward(x)` through `ops::linear`: in bfloat16 training on the CPU the bias is added
/// inside the product and the backward's two products run at once, with the same numbers.
pub(crate) fn apply(layer: &nn::Linear, x: &Tensor) -> Tensor {
    crate::ops::linear(layer, x).expect("a linear layer")
}

/// A LayerNorm over the hidden size.
pub(crate) fn layer_norm(p: nn::Path, config: &ModelConfig) -> nn::LayerNorm {
    layer_norm_of(p, config.hidden_size, config)
}

/// A LayerNorm over `width` features (ones and zeros, as transformers initializes it).
pub(crate) fn layer_norm_of(p: nn::Path, width: i64, config: &ModelConfig) -> nn::LayerNorm {
    let cfg = nn::LayerNormConfig { eps: config.layer_norm_eps, ..Default::default() };
    nn::layer_norm(p, vec![width], cfg)
}

/// nn.Embedding as transformers initializes it: normal, with the padding row zeroed; the padding
/// row also receives no gradient.
pub(crate) fn embedding(
    p: nn::Path,
    num: i64,
    dim: i64,
    padding_idx: Option<i64>,
    config: &ModelConfig,
) -> nn::Embedding {
    let cfg = nn::EmbeddingConfig {
        ws_init: normal_init(config),
        padding_idx: padding_idx.unwrap_or(-1),
        ..Default::default()
    };
    let emb = nn::embedding(p, num, dim, cfg);
    if let Some(pad) = padding_idx {
        tch::no_grad(|| {
            let _ = emb.ws.get(pad).zero_();
        });
    }
    emb
}

/// A LayerNorm whose bias is optional (`nn.LayerNorm(..., bias=False)`): weight ones, bias
/// zeros, as transformers initializes them.
#[derive(Debug)]
pub(crate) struct Norm {
    weight: Tensor,
    bias: Option<Tensor>,
    width: i64,
    eps: f64,
}

impl Norm {
    pub(crate) fn new(p: nn::Path, width: i64, bias: bool, eps: f64) -> Norm {
        Norm {
            weight: p.var("weight", &[width], nn::Init::Const(1.)),
            bias: bias.then(|| p.var("bias", &[width], nn::Init::Const(0.))),
            width,
            eps,
        }
    }
}

impl nn::Module for Norm {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.layer_norm([self.width], Some(&self.weight), self.bias.as_ref(), self.eps, true)
    }
}

/// torch's `trunc_normal_(w, mean=0, std, a=-cutoff·std, b=cutoff·std)` (inverse-CDF
/// sampling from the uniform draw), as ModernBERT's `_init_weights` draws its weights.
pub(crate) fn trunc_normal_(w: &Tensor, std: f64, cutoff: f64) {
    let cdf =
        |x: f64| (1.0 + Tensor::from(x / std::f64::consts::SQRT_2).erf().double_value(&[])) / 2.0;
    let (low, high) = (cdf(-cutoff), cdf(cutoff));
    tch::no_grad(|| {
        let mut w = w.shallow_clone();
        let _ = w.uniform_(2.0 * low - 1.0, 2.0 * high - 1.0);
        let _ = w.erfinv_();
        let _ = w.f_mul_scalar_(std * std::f64::consts::SQRT_2).map(|_| ());
        let _ = w.clamp_(-cutoff * std, cutoff * std);
    });
}

/// A linear layer with a truncated-normal weight and an optional zero bias.
pub(crate) fn linear_trunc(
    p: nn::Path,
    input: i64,
    output: i64,
    bias: bool,
    std: f64,
    cutoff: f64,
) -> nn::Linear {
    let cfg =
        nn::LinearConfig { ws_init: nn::Init::Const(0.), bs_init: Some(nn::Init::Const(0.)), bias };
    let layer = nn::linear(p, input, output, cfg);
    trunc_normal_(&layer.ws, std, cutoff);
    layer
}
