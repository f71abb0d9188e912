//! Variables created as transformers' `_init_weights` initializes them, under the paths of the
//! transformers state dict.

use super::config::ModelConfig;
use tch::nn;

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
