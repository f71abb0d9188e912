//! Hugging Face tokenization: a `tokenizers::Tokenizer` built and configured as transformers'
//! `AutoTokenizer` builds it, encoding whole batches (and Arrow columns) in parallel.

pub mod arrow;
pub mod config;
mod details;
mod encode;
mod fast;
mod frame;
mod load;
mod request;
mod spm;

use crate::error::{Error, Result};
use crate::parallel;
use config::Settings;
pub use config::{Family, Side, SPECIAL_TOKEN_NAMES};
pub use details::{Details, Sequence};
pub use request::{Padding, Plan, Request, Truncation};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tokenizers::ModelWrapper;

/// A tokenizer loaded from a folder, with the settings transformers keeps beside it.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// `inner` without its post-processor, made when first needed (`details.rs`).
    unprocessed: std::sync::OnceLock<tokenizers::Tokenizer>,
    /// The ids of most texts without tokenizers' offset bookkeeping, where the pipeline allows.
    fast: Option<fast::FastPath>,
    /// The special tokens around [single, pair][without, with special tokens] rows.
    frames: [[Option<frame::Frame>; 2]; 2],
    settings: Settings,
    /// `None`: no limit (transformers' `VERY_LARGE_INTEGER`).
    pub model_max_length: Option<usize>,
    pub padding_side: Side,
    pub truncation_side: Side,
}

impl Tokenizer {
    /// Loads the tokenizer of a folder: `tokenizer.json`, or `vocab.txt` (WordPiece, BERT), or
    /// `vocab.json` + `merges.txt` (byte-level BPE, RoBERTa), or the SentencePiece model
    /// (`sentencepiece.bpe.model`, XLM-RoBERTa; `spm.model`, DeBERTa-v2); `tokenizer_config.json`,
    /// `special_tokens_map.json` and `config.json` when present.
    pub fn from_folder(dir: &Path) -> Result<Tokenizer> {
        Tokenizer::from_folder_with(dir, &Map::new())
    }

    /// `from_folder` with settings that win over the folder's (`from_pretrained`'s keyword
    /// arguments: `add_prefix_space`, `do_lower_case`, special tokens, ...).
    pub fn from_folder_with(dir: &Path, overrides: &Map<String, Value>) -> Result<Tokenizer> {
        let files = load::Files::find(dir)?;
        let mut settings = Settings::read(dir, files.family(), overrides)?;
        let inner = load::build(&files, &mut settings)?;
        let processor = inner.get_post_processor();
        // tokenizers panics on a template that names a token missing from its special_tokens
        // (it checks that only when a template is built, not when one is read).
        let frames = std::panic::catch_unwind(|| {
            [false, true].map(|pair| {
                [false, true].map(|special| frame::Frame::learn(processor, pair, special))
            })
        })
        .map_err(|_| {
            Error::value(format!(
                "{}: the tokenizer's post_processor fails on a plain sequence; does its template \
                 name a special token missing from its special_tokens?",
                dir.display()
            ))
        })?;
        Ok(Tokenizer {
            fast: fast::FastPath::of(&inner)?,
            frames,
            inner,
            unprocessed: std::sync::OnceLock::new(),
            model_max_length: settings.model_max_length,
            padding_side: settings.padding_side,
            truncation_side: settings.truncation_side,
            settings,
        })
    }

    pub fn family(&self) -> Family {
        self.settings.family
    }

    /// The size of the base vocabulary, without added tokens (`vocab_size`).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(false)
    }

    /// The size of the vocabulary with the added tokens (`len(tokenizer)`).
    pub fn len(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The vocabulary with the added tokens (`get_vocab()`).
    pub fn vocab(&self) -> HashMap<String, u32> {
        self.inner.get_vocab(true)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// `convert_tokens_to_ids` for one token: its id, else the unknown token's id.
    pub fn convert_token_to_id(&self, token: &str) -> Option<u32> {
        self.token_to_id(token).or_else(|| self.special_token_id("unk_token"))
    }

    /// The named special tokens that are set ("pad_token" → "[PAD]", ...), in transformers' order.
    pub fn special_tokens(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.settings.special_tokens.iter().map(|(name, token)| (*name, token.content.as_str()))
    }

    pub fn extra_special_tokens(&self) -> impl Iterator<Item = &str> {
        self.settings.extra_special_tokens.iter().map(|token| token.content.as_str())
    }

    /// The named special token `name` ("pad_token", ...), if set.
    pub fn special_token(&self, name: &str) -> Option<&str> {
        self.settings.special_token(name)
    }

    /// The id of the named special token `name` (`pad_token_id`, ...).
    pub fn special_token_id(&self, name: &str) -> Option<u32> {
        let token = self.special_token(name)?;
        self.token_to_id(token).or_else(|| match name {
            "unk_token" => None,
            _ => self.special_token_id("unk_token"),
        })
    }

    pub fn pad_token_id(&self) -> Option<u32> {
        self.special_token_id("pad_token")
    }

    /// Named and extra special tokens, without repeats (`all_special_tokens`).
    pub fn all_special_tokens(&self) -> Vec<&str> {
        let mut all: Vec<&str> = Vec::new();
        for token in self.special_tokens().map(|(_, t)| t).chain(self.extra_special_tokens()) {
            if !all.contains(&token) {
                all.push(token);
            }
        }
        all
    }

    /// `model_input_names`: the outputs a call returns by default.
    pub fn model_input_names(&self) -> &[String] {
        &self.settings.model_input_names
    }

    /// Whether `decode` cleans up spaces before punctuation by default.
    pub fn clean_up_tokenization_spaces(&self) -> bool {
        self.settings.clean_up_tokenization_spaces
    }

    /// The number of special tokens a call adds (`num_special_tokens_to_add`).
    pub fn num_special_tokens_to_add(&self, pair: bool) -> usize {
        use tokenizers::PostProcessor;
        self.inner.get_post_processor().map_or(0, |p| p.added_tokens(pair))
    }

    /// The tokens of one text (and pair) after the whole pipeline (`tokenize`).
    pub fn tokenize(&self, text: &str, pair: Option<&str>, plan: &Plan) -> Result<Vec<String>> {
        Ok(self.encode_row(text, pair, plan, true)?.get_tokens().to_vec())
    }

    /// The text of `ids` (`decode`); `clean_up_tokenization_spaces` `None` takes the config's.
    pub fn decode(
        &self,
        ids: &[u32],
        skip_special_tokens: bool,
        clean_up_tokenization_spaces: Option<bool>,
    ) -> Result<String> {
        let text = self.inner.decode(ids, skip_special_tokens)?;
        let clean_up = clean_up_tokenization_spaces.unwrap_or(self.clean_up_tokenization_spaces());
        // TokenizersBackend._decode skips the clean-up for BPE, where it would remove real spaces.
        let is_bpe = matches!(self.inner.get_model(), ModelWrapper::BPE(_));
        Ok(if clean_up && !is_bpe { clean_up_tokenization(&text) } else { text })
    }

    /// `convert_tokens_to_string`: the decoder's text of `tokens`, or the tokens joined by
    /// spaces when there is no decoder (`TokenizersBackend.convert_tokens_to_string`).
    pub fn convert_tokens_to_string(&self, tokens: &[String]) -> Result<String> {
        use tokenizers::Decoder;
        match self.inner.get_decoder() {
            Some(decoder) => Ok(decoder.decode(tokens.to_vec())?),
            None => Ok(tokens.join(" ")),
        }
    }

    /// The prefix the model puts on tokens that continue a word (WordPiece's "##"), if any.
    pub fn continuing_subword_prefix(&self) -> Option<&str> {
        match self.inner.get_model() {
            ModelWrapper::WordPiece(model) => Some(&model.continuing_subword_prefix),
            ModelWrapper::BPE(model) => model.continuing_subword_prefix.as_deref(),
            _ => None,
        }
    }

    /// `decode` of each sequence, in parallel (`batch_decode`).
    pub fn decode_batch(
        &self,
        sequences: &[Vec<u32>],
        skip_special_tokens: bool,
        clean_up_tokenization_spaces: Option<bool>,
    ) -> Result<Vec<String>> {
        parallel::map(sequences, |ids| {
            self.decode(ids, skip_special_tokens, clean_up_tokenization_spaces)
        })
        .into_iter()
        .collect()
    }

    /// Writes `tokenizer.json` and `tokenizer_config.json` into `dir` (created if needed), as
    /// transformers' `save_pretrained` does; returns their paths.
    pub fn save(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let config_path = dir.join("tokenizer_config.json");
        let json_path = dir.join(load::TOKENIZER_FILE);
        let config = serde_json::to_string_pretty(&self.saved_config())
            .map_err(|e| Error::Other(format!("serializing the tokenizer config: {e}")))?;
        std::fs::write(&config_path, config + "\n").map_err(|e| Error::io(&config_path, e))?;
        let json = self
            .inner
            .to_string(true)
            .map_err(|e| Error::Other(format!("serializing the tokenizer: {e}")))?;
        std::fs::write(&json_path, json).map_err(|e| Error::io(&json_path, e))?;
        Ok(vec![config_path, json_path])
    }

    /// The config `save` writes: the one read, with the current settings, the special tokens as
    /// strings and the class name (`PreTrainedTokenizerBase.save_pretrained`), keys sorted.
    fn saved_config(&self) -> Map<String, Value> {
        let mut config = self.settings.raw.clone();
        // Paths and token tables of the folder it was read from; tokenizer.json now has them.
        for key in [
            "name_or_path",
            "tokenizer_file",
            "vocab_file",
            "merges_file",
            "special_tokens_map_file",
            "added_tokens_decoder",
            "additional_special_tokens",
        ] {
            config.remove(key);
        }
        for name in SPECIAL_TOKEN_NAMES {
            config.remove(name);
        }
        for (name, token) in self.special_tokens() {
            config.insert(name.into(), token.into());
        }
        let extra: Vec<Value> = self.extra_special_tokens().map(Value::from).collect();
        if !extra.is_empty() {
            config.insert("extra_special_tokens".into(), extra.into());
        }
        match self.model_max_length {
            Some(limit) => config.insert("model_max_length".into(), limit.into()),
            None => config.remove("model_max_length"),
        };
        config.insert("padding_side".into(), self.padding_side.as_str().into());
        config.insert("truncation_side".into(), self.truncation_side.as_str().into());
        if let Some(class) = self.family().class_name() {
            config.insert("tokenizer_class".into(), class.into());
        }
        config.sort_keys();
        config
    }
}

/// transformers' `PreTrainedTokenizerBase.clean_up_tokenization`.
pub fn clean_up_tokenization(text: &str) -> String {
    text.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
}

#[cfg(test)]
mod tests;
