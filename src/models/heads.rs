//! The sequence-classification heads, on the first token's hidden state:
//! BERT's (`BertPooler` tanh, dropout, `classifier`), RoBERTa's (`RobertaClassificationHead`:
//! dropout, dense, tanh, dropout, out_proj), DistilBERT's (pre_classifier, ReLU, dropout,
//! classifier) and ELECTRA's (`ElectraClassificationHead`: RoBERTa's with exact GELU for tanh).

use super::config::{Arch, ModelConfig};
use super::dropout::dropout;
use super::init::linear;
use tch::nn::{self, Module};
use tch::Tensor;

pub enum Head {
    Bert { pooler: nn::Linear, classifier: nn::Linear },
    Roberta { dense: nn::Linear, out_proj: nn::Linear },
    Electra { dense: nn::Linear, out_proj: nn::Linear },
    DistilBert { pre_classifier: nn::Linear, classifier: nn::Linear },
}

impl Head {
    /// Creates the head's variables under the model root `root` (encoder prefix for the pooler).
    pub fn new(root: &nn::Path, config: &ModelConfig) -> Head {
        let (h, n) = (config.hidden_size, config.num_labels);
        match config.arch {
            Arch::Bert => Head::Bert {
                pooler: linear(root / "bert" / "pooler" / "dense", h, h, config),
                classifier: linear(root / "classifier", h, n, config),
            },
            Arch::Roberta | Arch::XlmRoberta => Head::Roberta {
                dense: linear(root / "classifier" / "dense", h, h, config),
                out_proj: linear(root / "classifier" / "out_proj", h, n, config),
            },
            Arch::Electra => Head::Electra {
                dense: linear(root / "classifier" / "dense", h, h, config),
                out_proj: linear(root / "classifier" / "out_proj", h, n, config),
            },
            Arch::DistilBert => Head::DistilBert {
                pre_classifier: linear(root / "pre_classifier", h, h, config),
                classifier: linear(root / "classifier", h, n, config),
            },
        }
    }

    /// Logits [batch, num_labels] from the first token's hidden state [batch, hidden].
    pub fn forward(&self, first: &Tensor, p: f64, train: bool) -> Tensor {
        match self {
            Head::Bert { pooler, classifier } => {
                let pooled = pooler.forward(first).tanh();
                classifier.forward(&dropout(&pooled, p, train))
            }
            Head::Roberta { dense, out_proj } => {
                let x = dense.forward(&dropout(first, p, train)).tanh();
                out_proj.forward(&dropout(&x, p, train))
            }
            Head::Electra { dense, out_proj } => {
                // get_activation("gelu"): the exact (erf) GELU.
                let x = dense.forward(&dropout(first, p, train)).gelu("none");
                out_proj.forward(&dropout(&x, p, train))
            }
            Head::DistilBert { pre_classifier, classifier } => {
                let x = pre_classifier.forward(first).relu();
                classifier.forward(&dropout(&x, p, train))
            }
        }
    }
}
