//! The heads that predict one thing per token.
//!
//! Token classification (`XForTokenClassification`): dropout, then `classifier`; ModernBERT runs
//! its prediction head (dense, activation, norm) first. The dropout is `classifier_dropout`
//! (else `hidden_dropout_prob`), but DistilBERT's and DeBERTa-v2's is the hidden dropout.
//!
//! Masked language modelling (`XForMaskedLM`): a transform (dense, activation, LayerNorm), then a
//! decoder whose weight is the word embedding table (`tie_word_embeddings`, the default) and
//! whose bias is the head's own `bias` (BERT's `cls.predictions.bias`: transformers ties
//! `decoder.bias` to it). The names, widths and activations of each architecture's head are in
//! `LmHead::new`.

use super::config::{Activation, Arch, ModelConfig};
use super::dropout::dropout;
use super::encoder::activate;
use super::init::{linear, linear_trunc, normal_init, trunc_normal_, Norm};
use super::modernbert::Stds;
use tch::nn::{self, Module};
use tch::Tensor;

/// dense → activation → LayerNorm, the transform before a per-token output layer.
struct Transform {
    dense: nn::Linear,
    activation: Activation,
    norm: Norm,
}

impl Transform {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.norm.forward(&activate(self.activation, &self.dense.forward(x)))
    }

    /// ModernBERT's `ModernBertPredictionHead` under `head`.
    fn modernbert(root: &nn::Path, config: &ModelConfig) -> Transform {
        let modern = config.modernbert.as_ref().expect("read with ModernBERT's settings");
        let std = Stds::of(config, modern);
        let h = config.hidden_size;
        let head = root / "head";
        Transform {
            dense: linear_trunc(
                &head / "dense",
                h,
                h,
                modern.classifier_bias,
                std.output,
                std.cutoff,
            ),
            activation: modern.classifier_activation,
            norm: Norm::new(&head / "norm", h, modern.norm_bias, config.layer_norm_eps),
        }
    }

    /// A transform from the hidden size to `width`, with transformers' Linear and LayerNorm
    /// initialization, under `dense` and `norm`.
    fn new(
        dense: nn::Path,
        norm: nn::Path,
        width: i64,
        activation: Activation,
        config: &ModelConfig,
    ) -> Transform {
        Transform {
            dense: linear(dense, config.hidden_size, width, config),
            activation,
            norm: Norm::new(norm, width, true, config.layer_norm_eps),
        }
    }
}

/// `XForTokenClassification`'s head: logits [..., num_labels] from hidden states [..., hidden].
pub(crate) struct TokenHead {
    transform: Option<Transform>,
    dropout: f64,
    classifier: nn::Linear,
}

impl TokenHead {
    pub fn new(root: &nn::Path, config: &ModelConfig) -> TokenHead {
        let (h, n) = (config.hidden_size, config.num_labels);
        match config.arch {
            Arch::ModernBert => {
                let modern = config.modernbert.as_ref().expect("read with ModernBERT's settings");
                let cutoff = Stds::of(config, modern).cutoff;
                // The classifier's std is hidden_size ** -0.5 ("final_out").
                let final_out = (h as f64).powf(-0.5);
                TokenHead {
                    transform: Some(Transform::modernbert(root, config)),
                    dropout: config.classifier_dropout,
                    classifier: linear_trunc(root / "classifier", h, n, true, final_out, cutoff),
                }
            }
            arch => TokenHead {
                transform: None,
                dropout: match arch {
                    Arch::DistilBert | Arch::DebertaV2 => config.hidden_dropout,
                    _ => config.classifier_dropout,
                },
                classifier: linear(root / "classifier", h, n, config),
            },
        }
    }

    pub fn forward(&self, states: &Tensor, train: bool) -> Tensor {
        let states = match &self.transform {
            Some(transform) => transform.forward(states),
            None => states.shallow_clone(),
        };
        self.classifier.forward(&dropout(&states, self.dropout, train))
    }
}

/// `XForMaskedLM`'s head: logits [..., vocab_size] from hidden states [..., hidden].
pub(crate) struct LmHead {
    transform: Transform,
    /// [vocab_size, width]: the word embeddings when tied, else the decoder's own weight.
    decoder: Tensor,
    bias: Option<Tensor>,
    /// (transformers' name, the variable it is) of each tied weight: the checkpoint keys that
    /// load into another variable and are not saved.
    pub tied: Vec<(String, String)>,
}

impl LmHead {
    /// The head of `config.arch` under `root`; `words` is the encoder's word embedding table
    /// (named `words_name`), which the decoder shares when the embeddings are tied.
    pub fn new(root: &nn::Path, config: &ModelConfig, words: &Tensor, words_name: &str) -> LmHead {
        let (h, vocab) = (config.hidden_size, config.vocab_size);
        let zeros = nn::Init::Const(0.);
        // (transform, decoder path, head bias path, whether the decoder has a bias of its own
        // beside the head's).
        let (transform, decoder, bias, separate_bias): (
            Transform,
            nn::Path,
            Option<nn::Path>,
            bool,
        ) = match config.arch {
            Arch::Bert => {
                let p = root / "cls" / "predictions";
                let t = &p / "transform";
                let transform =
                    Transform::new(&t / "dense", &t / "LayerNorm", h, config.activation, config);
                (transform, &p / "decoder", Some(p.clone()), true)
            }
            Arch::DebertaV2 => {
                let deberta = config.deberta.as_ref().expect("read with DeBERTa's settings");
                if deberta.legacy {
                    let p = root / "cls" / "predictions";
                    let t = &p / "transform";
                    let e = config.embedding_size;
                    let transform = Transform::new(
                        &t / "dense",
                        &t / "LayerNorm",
                        e,
                        config.activation,
                        config,
                    );
                    (transform, &p / "decoder", Some(p.clone()), true)
                } else {
                    // `DebertaV2LMPredictionHead`: always the word embeddings, no tie.
                    let p = root / "lm_predictions" / "lm_head";
                    let transform = Transform::new(
                        &p / "dense",
                        &p / "LayerNorm",
                        h,
                        config.activation,
                        config,
                    );
                    let bias = p.var("bias", &[vocab], zeros);
                    return LmHead {
                        transform,
                        decoder: words.shallow_clone(),
                        bias: Some(bias),
                        tied: Vec::new(),
                    };
                }
            }
            Arch::Roberta | Arch::XlmRoberta => {
                let p = root / "lm_head";
                let transform =
                    Transform::new(&p / "dense", &p / "layer_norm", h, Activation::Gelu, config);
                (transform, &p / "decoder", Some(p.clone()), true)
            }
            Arch::DistilBert => {
                let transform = Transform::new(
                    root / "vocab_transform",
                    root / "vocab_layer_norm",
                    h,
                    config.activation,
                    config,
                );
                (transform, root / "vocab_projector", None, true)
            }
            Arch::Electra => {
                let p = root / "generator_predictions";
                let e = config.embedding_size;
                // get_activation("gelu"): the exact GELU.
                let transform =
                    Transform::new(&p / "dense", &p / "LayerNorm", e, Activation::Gelu, config);
                (transform, root / "generator_lm_head", None, true)
            }
            Arch::ModernBert => {
                let modern = config.modernbert.as_ref().expect("read with ModernBERT's settings");
                (Transform::modernbert(root, config), root / "decoder", None, modern.decoder_bias)
            }
        };
        let width = words.size()[1];
        let mut tied = Vec::new();
        let decoder_weight = if config.tie_word_embeddings {
            tied.push((decoder.path("weight"), words_name.to_string()));
            words.shallow_clone()
        } else if config.arch == Arch::ModernBert {
            let modern = config.modernbert.as_ref().expect("read with ModernBERT's settings");
            let std = Stds::of(config, modern);
            let weight = decoder.var("weight", &[vocab, width], zeros);
            trunc_normal_(&weight, std.output, std.cutoff);
            weight
        } else {
            decoder.var("weight", &[vocab, width], normal_init(config))
        };
        // The head's bias (BERT's `cls.predictions.bias`) is the decoder's when tied; untied,
        // the decoder has its own and the head's is left unused, as in transformers.
        let head_bias = bias.as_ref().map(|p| p.var("bias", &[vocab], zeros));
        let decoder_bias = match (head_bias, separate_bias) {
            (Some(head_bias), true) if config.tie_word_embeddings => {
                let name = bias.as_ref().map(|p| p.path("bias")).unwrap_or_default();
                tied.push((decoder.path("bias"), name));
                Some(head_bias)
            }
            (_, true) => Some(decoder.var("bias", &[vocab], zeros)),
            (_, false) => None,
        };
        LmHead { transform, decoder: decoder_weight, bias: decoder_bias, tied }
    }

    pub fn forward(&self, states: &Tensor) -> Tensor {
        let x = self.transform.forward(states);
        x.linear(&self.decoder, self.bias.as_ref())
    }
}
