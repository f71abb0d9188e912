//! The sequence-classification heads, on the first token's hidden state:
//! BERT's (`BertPooler` tanh, dropout, `classifier`), RoBERTa's (`RobertaClassificationHead`:
//! dropout, dense, tanh, dropout, out_proj), DistilBERT's (pre_classifier, ReLU, dropout,
//! classifier), ELECTRA's (`ElectraClassificationHead`: RoBERTa's with exact GELU for tanh) and
//! ModernBERT's (pooling "cls" or "mean", `ModernBertPredictionHead`: dense, activation, norm;
//! dropout, `classifier`) and DeBERTa-v2's (`ContextPooler`: dropout, dense, activation;
//! dropout, `classifier`).

use super::config::{Activation, Arch, ModelConfig, Pooling};
use super::dropout::dropout;
use super::encoder::{activate, Hidden};
use super::init::{linear, linear_trunc, Norm};
use super::modernbert::Stds;
use tch::nn::{self, Module};
use tch::Tensor;

pub(crate) enum SequenceHead {
    Bert {
        pooler: nn::Linear,
        classifier: nn::Linear,
    },
    Roberta {
        dense: nn::Linear,
        out_proj: nn::Linear,
    },
    Electra {
        dense: nn::Linear,
        out_proj: nn::Linear,
    },
    ModernBert {
        pooling: Pooling,
        dense: nn::Linear,
        activation: Activation,
        norm: Norm,
        classifier: nn::Linear,
    },
    DistilBert {
        pre_classifier: nn::Linear,
        classifier: nn::Linear,
    },
    Deberta {
        pooler: nn::Linear,
        activation: Activation,
        pooler_dropout: f64,
        classifier: nn::Linear,
    },
}

impl SequenceHead {
    /// Creates the head's variables under the model root `root` (encoder prefix for the pooler).
    pub fn new(root: &nn::Path, config: &ModelConfig) -> SequenceHead {
        let (h, n) = (config.hidden_size, config.num_labels);
        match config.arch {
            Arch::Bert => SequenceHead::Bert {
                pooler: linear(root / "bert" / "pooler" / "dense", h, h, config),
                classifier: linear(root / "classifier", h, n, config),
            },
            Arch::Roberta | Arch::XlmRoberta => SequenceHead::Roberta {
                dense: linear(root / "classifier" / "dense", h, h, config),
                out_proj: linear(root / "classifier" / "out_proj", h, n, config),
            },
            Arch::Electra => SequenceHead::Electra {
                dense: linear(root / "classifier" / "dense", h, h, config),
                out_proj: linear(root / "classifier" / "out_proj", h, n, config),
            },
            Arch::DistilBert => SequenceHead::DistilBert {
                pre_classifier: linear(root / "pre_classifier", h, h, config),
                classifier: linear(root / "classifier", h, n, config),
            },
            Arch::DebertaV2 => {
                let deberta = config.deberta.as_ref().expect("read with DeBERTa's settings");
                SequenceHead::Deberta {
                    pooler: linear(root / "pooler" / "dense", h, h, config),
                    activation: deberta.pooler_activation,
                    pooler_dropout: deberta.pooler_dropout,
                    classifier: linear(root / "classifier", h, n, config),
                }
            }
            Arch::ModernBert => {
                let modern = config.modernbert.as_ref().expect("read with ModernBERT's settings");
                let std = Stds::of(config, modern);
                let (bias, cutoff) = (modern.classifier_bias, std.cutoff);
                // The classifier's std is hidden_size ** -0.5 ("final_out").
                let final_out = (h as f64).powf(-0.5);
                let eps = config.layer_norm_eps;
                SequenceHead::ModernBert {
                    pooling: modern.pooling,
                    dense: linear_trunc(root / "head" / "dense", h, h, bias, std.output, cutoff),
                    activation: modern.classifier_activation,
                    norm: Norm::new(root / "head" / "norm", h, modern.norm_bias, eps),
                    classifier: linear_trunc(root / "classifier", h, n, true, final_out, cutoff),
                }
            }
        }
    }

    /// Logits [batch, num_labels] from the encoder's last hidden states (the first token's, or
    /// their mean over `attention_mask`).
    pub fn forward(
        &self,
        hidden: &Hidden,
        attention_mask: Option<&Tensor>,
        p: f64,
        train: bool,
    ) -> Tensor {
        let first = || hidden.first_tokens();
        match self {
            SequenceHead::Bert { pooler, classifier } => {
                let pooled = pooler.forward(&first()).tanh();
                classifier.forward(&dropout(&pooled, p, train))
            }
            SequenceHead::Roberta { dense, out_proj } => {
                let x = dense.forward(&dropout(&first(), p, train)).tanh();
                out_proj.forward(&dropout(&x, p, train))
            }
            SequenceHead::Electra { dense, out_proj } => {
                // get_activation("gelu"): the exact (erf) GELU.
                let x = dense.forward(&dropout(&first(), p, train)).gelu("none");
                out_proj.forward(&dropout(&x, p, train))
            }
            SequenceHead::DistilBert { pre_classifier, classifier } => {
                let x = pre_classifier.forward(&first()).relu();
                classifier.forward(&dropout(&x, p, train))
            }
            SequenceHead::Deberta { pooler, activation, pooler_dropout, classifier } => {
                // ContextPooler: dropout, dense, activation; then dropout (cls_dropout).
                let context = dropout(&first(), *pooler_dropout, train);
                let pooled = activate(*activation, &pooler.forward(&context));
                classifier.forward(&dropout(&pooled, p, train))
            }
            SequenceHead::ModernBert { pooling, dense, activation, norm, classifier } => {
                let pooled = match pooling {
                    Pooling::Cls => first(),
                    Pooling::Mean => hidden.mean(attention_mask),
                };
                let x = norm.forward(&activate(*activation, &dense.forward(&pooled)));
                classifier.forward(&dropout(&x, p, train))
            }
        }
    }
}
