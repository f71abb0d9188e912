//! The embedding layer of BERT, RoBERTa, XLM-RoBERTa, DistilBERT, ELECTRA and ModernBERT
//! (`BertEmbeddings`, `RobertaEmbeddings`, DistilBERT's `Embeddings`, `ElectraEmbeddings`: BERT's
//! at `embedding_size`, `ModernBertEmbeddings`: the word table and its norm only, positions are
//! rotary), and the word lookup the training loop accumulates itself.

use super::config::{Arch, ModelConfig};
use super::dropout::dropout;
use super::init::{embedding, normal_init, trunc_normal_, Norm};
use crate::error::Result;
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// DistilBERT's fixed sin/cos position table (`create_sinusoidal_embeddings`).
fn sinusoidal_table(positions: i64, dim: i64) -> Tensor {
    let pos = Tensor::arange(positions, (Kind::Double, tch::Device::Cpu)).unsqueeze(1);
    let j = Tensor::arange(dim, (Kind::Double, tch::Device::Cpu));
    let exponent = (&j - j.remainder(2)) / dim as f64;
    let angles = pos / Tensor::from(10000f64).pow(&exponent).unsqueeze(0);
    let table = Tensor::zeros([positions, dim], (Kind::Double, tch::Device::Cpu));
    let even = Tensor::arange_start_step(0, dim, 2, (Kind::Int64, tch::Device::Cpu));
    let odd = Tensor::arange_start_step(1, dim, 2, (Kind::Int64, tch::Device::Cpu));
    let table = table.index_copy(1, &even, &angles.index_select(1, &even).sin());
    table.index_copy(1, &odd, &angles.index_select(1, &odd).cos()).to_kind(Kind::Float)
}

pub struct Embeddings {
    pub(super) word: nn::Embedding,
    /// None for ModernBERT, whose positions are rotary.
    position: Option<nn::Embedding>,
    token_type: Option<nn::Embedding>,
    layer_norm: Norm,
    dropout: f64,
    /// RoBERTa: positions count from padding_idx + 1 and pads keep padding_idx.
    pub(super) roberta_padding_idx: Option<i64>,
    /// The word table's padding row, which receives no gradient.
    word_padding_idx: Option<i64>,
    /// DeBERTa-v2's `embed_proj` (no bias) from `embedding_size` to the hidden size, before the
    /// LayerNorm.
    project: Option<nn::Linear>,
    /// DeBERTa-v2: positions added before the token types, and the normalized embeddings
    /// multiplied by the attention mask.
    deberta: bool,
}

impl Embeddings {
    pub fn new(p: nn::Path, config: &ModelConfig) -> Embeddings {
        let roberta_padding_idx = match config.arch {
            Arch::Roberta | Arch::XlmRoberta => config.pad_token_id,
            _ => None,
        };
        let h = config.embedding_size;
        if let Some(modern) = &config.modernbert {
            let word =
                embedding(&p / "tok_embeddings", config.vocab_size, h, config.pad_token_id, config);
            // `_init_weights` draws the whole table again, padding row included.
            trunc_normal_(&word.ws, config.initializer_range, modern.initializer_cutoff_factor);
            return Embeddings {
                word,
                position: None,
                token_type: None,
                layer_norm: Norm::new(&p / "norm", h, modern.norm_bias, config.layer_norm_eps),
                dropout: modern.embedding_dropout,
                roberta_padding_idx: None,
                word_padding_idx: config.pad_token_id,
                project: None,
                deberta: false,
            };
        }
        if let Some(deberta) = &config.deberta {
            let (e, h) = (config.embedding_size, config.hidden_size);
            let word = embedding(
                &p / "word_embeddings",
                config.vocab_size,
                e,
                config.pad_token_id,
                config,
            );
            let position = deberta.position_biased_input.then(|| {
                embedding(
                    &p / "position_embeddings",
                    config.max_position_embeddings,
                    e,
                    None,
                    config,
                )
            });
            let token_type = (config.type_vocab_size > 0).then(|| {
                embedding(&p / "token_type_embeddings", config.type_vocab_size, e, None, config)
            });
            let project = (e != h).then(|| {
                let cfg =
                    nn::LinearConfig { ws_init: normal_init(config), bs_init: None, bias: false };
                nn::linear(&p / "embed_proj", e, h, cfg)
            });
            return Embeddings {
                word,
                position,
                token_type,
                layer_norm: Norm::new(&p / "LayerNorm", h, true, config.layer_norm_eps),
                dropout: config.hidden_dropout,
                roberta_padding_idx: None,
                word_padding_idx: config.pad_token_id,
                project,
                deberta: true,
            };
        }
        let word =
            embedding(&p / "word_embeddings", config.vocab_size, h, config.pad_token_id, config);
        let mut position = embedding(
            &p / "position_embeddings",
            config.max_position_embeddings,
            h,
            roberta_padding_idx,
            config,
        );
        if config.sinusoidal_positions {
            tch::no_grad(|| {
                let table = sinusoidal_table(config.max_position_embeddings, h);
                position.ws.copy_(&table);
            });
            // transformers freezes the sinusoidal table (requires_grad = False)
            let _ = position.ws.set_requires_grad(false);
        }
        let token_type = (config.type_vocab_size > 0).then(|| {
            embedding(&p / "token_type_embeddings", config.type_vocab_size, h, None, config)
        });
        let layer_norm = Norm::new(&p / "LayerNorm", h, true, config.layer_norm_eps);
        Embeddings {
            word,
            position: Some(position),
            token_type,
            layer_norm,
            dropout: config.hidden_dropout,
            roberta_padding_idx,
            word_padding_idx: config.pad_token_id,
            project: None,
            deberta: false,
        }
    }

    /// The embedded inputs; with `defer_word_gradient`, also the word lookup whose gradient the
    /// caller accumulates (see `WordLookup`). DeBERTa-v2 multiplies them by `attention_mask`.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        token_type_ids: Option<&Tensor>,
        position_ids: Option<&Tensor>,
        attention_mask: Option<&Tensor>,
        train: bool,
        defer_word_gradient: bool,
    ) -> (Tensor, Option<WordLookup>) {
        let (batch, seq) = input_ids.size2().expect("input_ids is 2-D (checked by the caller)");
        let device = input_ids.device();
        // Same order of additions as transformers: word + token type, then + position.
        let (embeddings, lookup) = match self.deferrable(defer_word_gradient) {
            true => {
                let looked = Tensor::embedding(&self.word.ws.detach(), input_ids, -1, false, false);
                let looked = looked.detach().set_requires_grad(true);
                let lookup = WordLookup {
                    ids: input_ids.shallow_clone(),
                    looked: looked.shallow_clone(),
                    padding_idx: self.word_padding_idx,
                };
                (looked, Some(lookup))
            }
            false => (self.word.forward(input_ids), None),
        };
        if self.deberta {
            return (
                self.deberta_rest(
                    embeddings,
                    batch,
                    seq,
                    token_type_ids,
                    position_ids,
                    attention_mask,
                    train,
                ),
                lookup,
            );
        }
        // Out of place (not +=): autograd needs the tensors as they were.
        let embeddings = self.add_token_types(embeddings, token_type_ids, batch, seq);
        let embeddings = match &self.position {
            Some(position) => {
                let ids = match (position_ids, self.roberta_padding_idx) {
                    (Some(ids), _) => ids.shallow_clone(),
                    (None, Some(pad)) => {
                        let mask = input_ids.ne(pad).to_kind(Kind::Int);
                        let incremental = mask.cumsum(1, Kind::Int) * &mask;
                        incremental.to_kind(Kind::Int64) + pad
                    }
                    (None, None) => Tensor::arange(seq, (Kind::Int64, device))
                        .unsqueeze(0)
                        .expand([batch, seq], false),
                };
                embeddings + position.forward(&ids)
            }
            None => embeddings,
        };
        (dropout(&self.layer_norm.forward(&embeddings), self.dropout, train), lookup)
    }

    /// `embeddings` + the token-type embeddings (type 0 where no ids are given), when the model
    /// has them; out of place (not +=): autograd needs the tensors as they were.
    fn add_token_types(
        &self,
        embeddings: Tensor,
        token_type_ids: Option<&Tensor>,
        batch: i64,
        seq: i64,
    ) -> Tensor {
        match &self.token_type {
            Some(token_type) => {
                let ids = match token_type_ids {
                    Some(ids) => ids.shallow_clone(),
                    None => Tensor::zeros([batch, seq], (Kind::Int64, embeddings.device())),
                };
                embeddings + token_type.forward(&ids)
            }
            None => embeddings,
        }
    }

    /// `DebertaV2Embeddings.forward` after the word lookup: + positions (when
    /// `position_biased_input`), + token types (when the model has them), `embed_proj`,
    /// LayerNorm, × the attention mask, dropout.
    #[allow(clippy::too_many_arguments)]
    fn deberta_rest(
        &self,
        words: Tensor,
        batch: i64,
        seq: i64,
        token_type_ids: Option<&Tensor>,
        position_ids: Option<&Tensor>,
        attention_mask: Option<&Tensor>,
        train: bool,
    ) -> Tensor {
        let device = words.device();
        // Out of place (not +=): autograd needs the tensors as they were.
        let embeddings = match &self.position {
            Some(position) => {
                let ids = match position_ids {
                    Some(ids) => ids.shallow_clone(),
                    None => Tensor::arange(seq, (Kind::Int64, device)).unsqueeze(0),
                };
                words + position.forward(&ids)
            }
            None => words,
        };
        let embeddings = self.add_token_types(embeddings, token_type_ids, batch, seq);
        let embeddings = match &self.project {
            Some(project) => project.forward(&embeddings),
            None => embeddings,
        };
        let embeddings = self.layer_norm.forward(&embeddings);
        let embeddings = match attention_mask {
            Some(mask) => {
                let kind = embeddings.kind();
                embeddings * mask.unsqueeze(2).to_kind(kind)
            }
            None => embeddings,
        };
        dropout(&embeddings, self.dropout, train)
    }

    /// Whether the word embeddings' gradient can be left to `WordLookup::accumulate`: a trained
    /// float32 table on the CPU. A half-precision table keeps libtorch's backward, which rounds
    /// the same sums differently; so does CUDA's, which also sums in another order and does not
    /// pay the CPU's cost of zeroing a fresh table-sized gradient.
    fn deferrable(&self, asked: bool) -> bool {
        let ws = &self.word.ws;
        asked && ws.requires_grad() && ws.kind() == Kind::Float && ws.device() == tch::Device::Cpu
    }
}

/// The word embeddings looked up outside autograd, for the training loop: libtorch's embedding
/// backward allocates and zeroes a gradient the size of the whole vocabulary table at every
/// step (47 MB for MiniLM; bench/README.md, "Measurements behind the code"), while a batch
/// touches a few hundred rows. The loop instead adds the looked-up rows' gradients into one buffer it keeps.
pub struct WordLookup {
    ids: Tensor,
    /// The looked-up rows, a leaf that receives their gradient in backward.
    looked: Tensor,
    padding_idx: Option<i64>,
}

impl WordLookup {
    /// After backward: adds the rows' gradients into `table`'s gradient, as libtorch's
    /// `embedding_dense_backward` does (row by row in the order of the ids, padding_idx skipped,
    /// so the sums are bit-identical). When `table` has no gradient yet it becomes `buffer`,
    /// which must hold zeros. Returns the ids of the rows added to when it added to `buffer`.
    pub fn accumulate(self, table: &Tensor, buffer: &Tensor) -> Result<Option<Tensor>> {
        let grad = self.looked.grad();
        if !grad.defined() {
            return Ok(None);
        }
        let width = grad.size().last().copied().unwrap_or(0);
        let mut ids = self.ids.reshape([-1]);
        let mut rows = grad.reshape([-1, width]);
        if let Some(pad) = self.padding_idx {
            let keep = ids.ne(pad).nonzero().squeeze_dim(1);
            ids = ids.index_select(0, &keep);
            rows = rows.index_select(0, &keep);
        }
        let mut target = table.grad();
        if !target.defined() {
            crate::ops::set_grad(table, Some(buffer))?;
            target = buffer.shallow_clone();
        }
        let _ = tch::no_grad(|| target.f_index_add_(0, &ids, &rows))?;
        Ok((target.data_ptr() == buffer.data_ptr()).then_some(ids))
    }
}
