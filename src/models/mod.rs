//! Encoders with the heads of their tasks on tch (sequence classification, token
//! classification, masked LM): BERT, RoBERTa, XLM-RoBERTa, DistilBERT, ELECTRA, ModernBERT,
//! DeBERTa-v2.

pub mod attention;
pub mod config;
mod deberta;
pub mod dropout;
pub mod embeddings;
pub mod encoder;
pub mod heads;
mod init;
pub mod loss;
mod modernbert;
pub(crate) mod probs;
pub(crate) mod relative;
mod token_heads;
pub mod weights;

pub use attention::AttentionImpl;
pub use config::{supported_model_types, Arch, ModelConfig, Task};
pub use embeddings::WordLookup;
pub use loss::ProblemType;
pub use weights::LoadReport;

use crate::error::{Error, Result};
use encoder::{Encoder, Mode};
use heads::SequenceHead;
use std::collections::HashMap;
use tch::{nn, Device, Kind, Tensor};
use token_heads::{LmHead, TokenHead};

/// The inputs of one forward pass; the optional ones as transformers defaults them.
pub struct Batch<'a> {
    pub input_ids: &'a Tensor,
    pub attention_mask: Option<&'a Tensor>,
    pub token_type_ids: Option<&'a Tensor>,
    pub position_ids: Option<&'a Tensor>,
    pub labels: Option<&'a Tensor>,
}

/// `SequenceClassifierOutput`, `TokenClassifierOutput` or `MaskedLMOutput` (loss, logits), with
/// the problem type a sequence classifier's loss used.
pub struct Output {
    pub loss: Option<Tensor>,
    pub logits: Tensor,
    pub problem_type: Option<ProblemType>,
}

/// An encoder with the head of its task; variables named as in transformers' state dict.
pub struct Model {
    pub config: ModelConfig,
    pub task: Task,
    pub vs: nn::VarStore,
    encoder: Encoder,
    head: Head,
}

enum Head {
    Sequence(SequenceHead),
    Token(TokenHead),
    MaskedLm(LmHead),
}

impl Model {
    /// A model with freshly initialized weights (transformers' `_init_weights`), drawn from
    /// libtorch's default generator (so `torch.manual_seed` makes it reproducible).
    pub fn new(config: ModelConfig, task: Task, device: Device) -> Model {
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let prefix = config.arch.prefix();
        let encoder = Encoder::new(&root / prefix, &config);
        let head = match task {
            Task::SequenceClassification => Head::Sequence(SequenceHead::new(&root, &config)),
            Task::TokenClassification => Head::Token(TokenHead::new(&root, &config)),
            Task::MaskedLm => {
                let words = encoder.word_embeddings();
                let name = vs
                    .variables()
                    .into_iter()
                    .find(|(_, t)| t.data_ptr() == words.data_ptr())
                    .map(|(name, _)| name)
                    .expect("the word embeddings are a variable");
                Head::MaskedLm(LmHead::new(&root, &config, words, &name))
            }
        };
        Model { config, task, vs, encoder, head }
    }

    /// The longest sequence the model takes (max_position_embeddings, less RoBERTa's offset).
    pub fn max_sequence_length(&self) -> i64 {
        self.encoder.max_sequence_length()
    }

    pub fn attention(&self) -> AttentionImpl {
        self.encoder.attention
    }

    pub fn set_attention(&mut self, attention: AttentionImpl) {
        self.encoder.attention = attention;
    }

    /// Logits, and the loss when labels are given. `problem_type` None infers it from the
    /// labels as transformers does.
    pub fn forward(
        &self,
        batch: &Batch,
        problem_type: Option<ProblemType>,
        train: bool,
    ) -> Result<Output> {
        Ok(self.forward_with(batch, problem_type, train, false)?.0)
    }

    /// `forward` in training mode for the training loop, which accumulates the word
    /// embeddings' gradient itself from the returned lookup after backward (see `WordLookup`;
    /// None when autograd computes it, for a frozen or half-precision table).
    pub fn forward_for_training(
        &self,
        batch: &Batch,
        problem_type: Option<ProblemType>,
    ) -> Result<(Output, Option<WordLookup>)> {
        self.forward_with(batch, problem_type, true, true)
    }

    /// The word embedding table.
    pub fn word_embeddings(&self) -> &Tensor {
        self.encoder.word_embeddings()
    }

    fn forward_with(
        &self,
        batch: &Batch,
        problem_type: Option<ProblemType>,
        train: bool,
        defer_word_gradient: bool,
    ) -> Result<(Output, Option<WordLookup>)> {
        self.encoder.check_inputs(batch)?;
        let device = self.vs.device();
        let on_device = |t: &Tensor| t.to_device(device);
        let Batch { input_ids, attention_mask, token_type_ids, position_ids, labels } = *batch;
        let (input_ids, attention_mask, token_type_ids, position_ids) = (
            on_device(input_ids),
            attention_mask.map(on_device),
            token_type_ids.map(on_device),
            position_ids.map(on_device),
        );
        let inputs = Batch {
            input_ids: &input_ids,
            attention_mask: attention_mask.as_ref(),
            token_type_ids: token_type_ids.as_ref(),
            position_ids: position_ids.as_ref(),
            labels: None,
        };
        let mode = Mode { train, defer_word_gradient, pack: true };
        match &self.head {
            Head::Sequence(head) => {
                self.classify_sequences(head, &inputs, labels, problem_type, mode)
            }
            Head::Token(_) | Head::MaskedLm(_) => self.predict_tokens(&inputs, labels, mode),
        }
    }

    fn classify_sequences(
        &self,
        head: &SequenceHead,
        inputs: &Batch,
        labels: Option<&Tensor>,
        problem_type: Option<ProblemType>,
        mode: Mode,
    ) -> Result<(Output, Option<WordLookup>)> {
        let logits_shape = [inputs.input_ids.size()[0], self.config.num_labels];
        // DeBERTa-v2 without a problem type computes its own loss and leaves the type unset.
        let deberta_loss = match (labels, problem_type, self.config.arch) {
            (Some(l), None, Arch::DebertaV2) => {
                let kind = loss::DebertaLoss::infer(self.config.num_labels, l);
                kind.check(&logits_shape, l)?;
                Some(kind)
            }
            _ => None,
        };
        let problem_type = match deberta_loss {
            Some(_) => None,
            None => labels.map(|l| {
                problem_type.unwrap_or_else(|| ProblemType::infer(self.config.num_labels, l))
            }),
        };
        if let (Some(labels), Some(problem)) = (labels, problem_type) {
            loss::check_labels(problem, &logits_shape, labels)?;
        }
        let hidden = self.encoder.forward(inputs, mode);
        let logits = head.forward(
            &hidden,
            inputs.attention_mask,
            self.config.classifier_dropout,
            mode.train,
        );
        let device = self.vs.device();
        let loss = match (labels, problem_type, deberta_loss) {
            (Some(labels), Some(problem), _) => {
                Some(loss::loss(problem, &logits, &labels.to_device(device)))
            }
            (Some(labels), None, Some(kind)) => Some(kind.loss(&logits, &labels.to_device(device))),
            _ => None,
        };
        Ok((Output { loss, logits, problem_type }, hidden.word_lookup))
    }

    /// Token classification and masked LM: logits [batch, seq, width] and the cross-entropy
    /// over the labelled tokens. The training loop reads only the loss, so there the head runs
    /// on the labelled tokens alone (for masked LM, 15% of them) and the padding is skipped;
    /// ModernBERT's `sparse_prediction` returns those logits, [labelled tokens, vocab_size].
    fn predict_tokens(
        &self,
        inputs: &Batch,
        labels: Option<&Tensor>,
        mode: Mode,
    ) -> Result<(Output, Option<WordLookup>)> {
        let (width, what) = match &self.head {
            Head::MaskedLm(_) => (self.config.vocab_size, "vocab_size"),
            _ => (self.config.num_labels, "num_labels"),
        };
        let labels = labels
            .map(|l| loss::check_token_labels(l, &inputs.input_ids.size(), width, what))
            .transpose()?
            .map(|l| l.to_device(self.vs.device()));
        let sparse = self.config.modernbert.as_ref().filter(|m| m.sparse_prediction);
        let ignore = match (&self.head, sparse) {
            (Head::MaskedLm(_), Some(modern)) => Some(modern.sparse_pred_ignore_index),
            _ => mode.defer_word_gradient.then_some(loss::IGNORE_INDEX),
        };
        let selected = match (&labels, ignore) {
            (Some(l), Some(ignore)) => Some(l.ne(ignore).nonzero().squeeze_dim(1)),
            _ => None,
        };
        // Skipping the padding needs every selected token to be attended; with every position
        // read, the padding's states are computed as transformers computes them.
        let pack = match (&selected, inputs.attention_mask) {
            (Some(s), Some(mask)) => {
                mask.reshape([-1]).index_select(0, s).ne(0).all().int64_value(&[]) != 0
            }
            (Some(_), None) => true,
            (None, _) => false,
        };
        let hidden = self.encoder.forward(inputs, Mode { pack, ..mode });
        let states = match &selected {
            Some(s) => hidden.at_positions(s),
            None => hidden.all_tokens(),
        };
        let logits = match &self.head {
            Head::Token(head) => head.forward(&states, mode.train),
            Head::MaskedLm(head) => head.forward(&states),
            Head::Sequence(_) => unreachable!("sequence heads are not token heads"),
        };
        let loss = labels.map(|labels| {
            let targets = match &selected {
                Some(s) => labels.index_select(0, s),
                None => labels,
            };
            let flat = logits.reshape([-1, width]);
            // ModernBertForMaskedLM's `loss_function` computes in float32.
            let flat = match (&self.head, self.config.arch) {
                (Head::MaskedLm(_), Arch::ModernBert) => flat.to_kind(Kind::Float),
                _ => flat,
            };
            flat.cross_entropy_loss::<Tensor>(
                &targets,
                None,
                tch::Reduction::Mean,
                loss::IGNORE_INDEX,
                0.0,
            )
        });
        Ok((Output { loss, logits, problem_type: None }, hidden.word_lookup))
    }

    fn key_rules(&self) -> weights::KeyRules<'_> {
        // DeBERTa-v2's `_keys_to_ignore_on_load_unexpected`: position embeddings of a checkpoint
        // whose model does not add them (`position_biased_input` false), and, for masked LM,
        // the replaced-token-detection head of DeBERTa-v3's checkpoints.
        let ignored: &[&str] = match (self.config.arch, self.task) {
            (Arch::DebertaV2, Task::MaskedLm) => &["position_embeddings", "mask_predictions."],
            (Arch::DebertaV2, _) => &["position_embeddings"],
            _ => &[],
        };
        weights::KeyRules { prefix: self.config.arch.prefix(), tied: self.tied(), ignored }
    }

    /// (transformers' name, variable) of the weights tied to another variable: the masked-LM
    /// decoder's weight (the word embeddings) and bias. They load into that variable and are
    /// not saved.
    pub fn tied(&self) -> &[(String, String)] {
        match &self.head {
            Head::MaskedLm(head) => &head.tied,
            _ => &[],
        }
    }

    /// Every variable by its transformers state-dict name, sorted (shallow: same storage).
    pub fn state_dict(&self) -> Vec<(String, Tensor)> {
        let mut named: Vec<_> = self.vs.variables().into_iter().collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        named
    }

    /// Variables that training updates (the frozen sinusoidal position table is not one).
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.state_dict().into_iter().filter(|(_, t)| t.requires_grad()).collect()
    }

    pub fn load_state_dict(
        &self,
        checkpoint: Vec<(String, Tensor)>,
        ignore_mismatched_sizes: bool,
    ) -> Result<LoadReport> {
        let variables: HashMap<String, Tensor> = self.vs.variables();
        weights::load_into(&variables, self.key_rules(), checkpoint, ignore_mismatched_sizes)
    }

    /// Loads safetensors files (one, or the shards of an index) into the variables.
    pub fn load_safetensors(
        &self,
        paths: &[std::path::PathBuf],
        ignore_mismatched_sizes: bool,
    ) -> Result<LoadReport> {
        weights::load_safetensors(
            &self.vs.variables(),
            self.key_rules(),
            paths,
            ignore_mismatched_sizes,
        )
    }

    pub fn save_safetensors(&self, path: &std::path::Path) -> Result<()> {
        weights::write_safetensors(path, &self.state_dict())
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    pub fn to_device(&mut self, device: Device) {
        self.vs.set_device(device);
    }

    /// The floating-point dtype of the weights.
    pub fn kind(&self) -> Kind {
        self.vs.kind()
    }

    pub fn set_kind(&mut self, kind: Kind) -> Result<()> {
        if !matches!(kind, Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16) {
            return Err(Error::value(format!(
                "model weights must be a floating-point dtype, got {kind:?}"
            )));
        }
        self.vs.set_kind(kind);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The training loop's token-task loss (the head run on the labelled tokens only, the
    /// padding skipped) equals the public forward's (every position), and so do its gradients.
    #[test]
    fn training_loss_of_the_labelled_tokens_is_the_full_loss() {
        let _generator = crate::ops::lock_default_generator();
        let config = ModelConfig::from_json(&json!({
            "model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 64, "vocab_size": 50,
            "max_position_embeddings": 40, "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0, "num_labels": 5
        }))
        .unwrap();
        let ids = Tensor::from_slice(&[2i64, 5, 7, 5, 3, 0, 0, 2, 9, 9, 9, 3]).view([2, 6]);
        let mask = ids.ne(0).to_kind(Kind::Int64);
        for (task, labels) in [
            (Task::TokenClassification, [-100i64, 1, 4, 0, -100, -100, -100, 2, 2, 3, -100, -100]),
            (
                Task::MaskedLm,
                [-100i64, -100, 49, -100, -100, -100, -100, 8, -100, -100, -100, -100],
            ),
        ] {
            tch::manual_seed(0);
            let model = Model::new(config.clone(), task, Device::Cpu);
            let labels = Tensor::from_slice(&labels).view([2, 6]);
            let batch = Batch {
                input_ids: &ids,
                attention_mask: Some(&mask),
                token_type_ids: None,
                position_ids: None,
                labels: Some(&labels),
            };
            let full = model.forward(&batch, None, true).unwrap();
            assert_eq!(full.logits.size()[..2], [2, 6]);
            let (sparse, _) = model.forward_for_training(&batch, None).unwrap();
            let selected = labels.ne(-100).sum(Kind::Int64).int64_value(&[]);
            assert_eq!(sparse.logits.size()[0], selected, "{task:?}");
            let (a, b) = (full.loss.unwrap(), sparse.loss.unwrap());
            assert!((a.double_value(&[]) - b.double_value(&[])).abs() < 1e-6, "{task:?}");
        }
    }

    /// The training loop's word-embedding gradient (looked up outside autograd, accumulated by
    /// `WordLookup`) equals autograd's, bit for bit, with padding and over two micro-batches
    /// (the second adds to the first, as AccumulateGrad does; the sums of one row then
    /// associate differently, so that case is compared to a tight tolerance).
    #[test]
    fn deferred_word_gradient_is_autograds() {
        let _generator = crate::ops::lock_default_generator();
        let config = ModelConfig::from_json(&json!({
            "model_type": "roberta", "hidden_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 64, "vocab_size": 50,
            "pad_token_id": 1, "max_position_embeddings": 40, "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0
        }))
        .unwrap();
        tch::manual_seed(0);
        let model = Model::new(config, Task::SequenceClassification, Device::Cpu);
        let ids = Tensor::from_slice(&[0i64, 5, 7, 5, 2, 1, 1, 0, 9, 9, 9, 2]).view([2, 6]);
        let mask = ids.ne(1).to_kind(Kind::Int64);
        let labels = Tensor::from_slice(&[0i64, 1]);
        let batch = Batch {
            input_ids: &ids,
            attention_mask: Some(&mask),
            token_type_ids: None,
            position_ids: None,
            labels: Some(&labels),
        };
        let table = model.word_embeddings().shallow_clone();
        let mut optimizer =
            crate::train::optim::Optimizer::new(model.named_parameters(), 0.0, 0.9, 0.999, 1e-8);

        model.forward(&batch, None, true).unwrap().loss.unwrap().backward();
        let expected = table.grad().copy();
        optimizer.zero_grad().unwrap();
        let (out, lookup) = model.forward_for_training(&batch, None).unwrap();
        out.loss.unwrap().backward();
        optimizer.accumulate_words(&table, lookup.expect("a float32 table is deferred")).unwrap();
        assert!(table.grad().equal(&expected));
        assert_eq!(
            table.grad().get(1).abs().sum(Kind::Float).double_value(&[]),
            0.0,
            "padding row"
        );

        // A second micro-batch adds to the first.
        let (out, lookup) = model.forward_for_training(&batch, None).unwrap();
        out.loss.unwrap().backward();
        optimizer.accumulate_words(&table, lookup.unwrap()).unwrap();
        assert!(table.grad().allclose(&(&expected * 2.0), 1e-6, 1e-7, false));

        // Clipping reads and scales only the rows the step wrote: the norm and the clipped
        // gradients of the whole table.
        let dense: Vec<Tensor> = optimizer.grads().iter().map(Tensor::copy).collect();
        let expected_norm =
            crate::ops::clip_grad_norm(&dense, &vec![true; dense.len()], 0.01).unwrap().norm;
        assert!(expected_norm > 0.01, "the gradients are clipped");
        let grads = optimizer.grads();
        let norm = optimizer.clip_grad_norm(&grads, 0.01).unwrap();
        assert!((norm - expected_norm).abs() <= 1e-6 * expected_norm, "{norm} {expected_norm}");
        for (g, d) in grads.iter().zip(&dense) {
            assert!(g.allclose(d, 1e-6, 1e-9, false));
        }
        // A NaN norm makes every gradient NaN, the rows no step wrote included, as over the
        // whole table; zero_grad then clears the whole buffer.
        let other = grads.iter().find(|g| !g.is_set_to(&table.grad())).expect("layer gradients");
        let _ = tch::no_grad(|| other.view([-1]).get(0).fill_(f64::NAN));
        assert!(optimizer.clip_grad_norm(&grads, 0.01).unwrap().is_nan());
        assert!(table.grad().isnan().all().int64_value(&[]) == 1);
        optimizer.zero_grad().unwrap();
        let (out, lookup) = model.forward_for_training(&batch, None).unwrap();
        out.loss.unwrap().backward();
        optimizer.accumulate_words(&table, lookup.unwrap()).unwrap();
        assert!(table.grad().allclose(&expected, 1e-6, 1e-7, false));

        // zero_grad leaves no gradient and a clean buffer for the next step.
        optimizer.zero_grad().unwrap();
        assert!(!table.grad().defined());
        let (out, lookup) = model.forward_for_training(&batch, None).unwrap();
        out.loss.unwrap().backward();
        optimizer.accumulate_words(&table, lookup.unwrap()).unwrap();
        assert!(table.grad().equal(&expected));

        // zero_grad clears only the rows a step wrote: a step on other ids finds the rest zero.
        let other = Tensor::from_slice(&[0i64, 11, 12, 13, 2, 1, 1, 0, 14, 15, 2, 1]).view([2, 6]);
        let other_mask = other.ne(1).to_kind(Kind::Int64);
        let other_batch = Batch {
            input_ids: &other,
            attention_mask: Some(&other_mask),
            token_type_ids: None,
            position_ids: None,
            labels: Some(&labels),
        };
        optimizer.zero_grad().unwrap();
        model.forward(&other_batch, None, true).unwrap().loss.unwrap().backward();
        let other_expected = table.grad().copy();
        optimizer.zero_grad().unwrap();
        let (out, lookup) = model.forward_for_training(&other_batch, None).unwrap();
        out.loss.unwrap().backward();
        optimizer.accumulate_words(&table, lookup.unwrap()).unwrap();
        assert!(table.grad().equal(&other_expected));

        // A frozen table is not looked up for a gradient.
        let _ = table.shallow_clone().set_requires_grad(false);
        assert!(model.forward_for_training(&batch, None).unwrap().1.is_none());
    }
}
