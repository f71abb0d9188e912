//! Building the `tokenizers` pipeline of a folder, as transformers 5 builds it: the BERT and
//! RoBERTa classes take only the vocabulary (and merges) from `tokenizer.json` or from the older
//! files and rebuild the rest from their configuration (`BertTokenizer.__init__`,
//! `RobertaTokenizer.__init__`); any other class uses `tokenizer.json` as saved
//! (`TokenizersBackend.__init__`). Added and special tokens follow `TokenizersBackend.__init__`.

use super::config::{tokenizer_json_added_tokens, Family, Settings};
use crate::error::{Error, Result};
use crate::files::read_json;
use serde_json::Value;
use std::path::{Path, PathBuf};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{ModelWrapper, Tokenizer};

pub const TOKENIZER_FILE: &str = "tokenizer.json";
const BERT_VOCAB: &str = "vocab.txt";
const BPE_VOCAB: &str = "vocab.json";
const BPE_MERGES: &str = "merges.txt";

/// The files of a tokenizer folder that can give the vocabulary.
pub(crate) struct Files {
    dir: PathBuf,
    json: Option<PathBuf>,
    bert_vocab: Option<PathBuf>,
    bpe: Option<(PathBuf, PathBuf)>,
}

impl Files {
    pub(crate) fn find(dir: &Path) -> Result<Files> {
        if !dir.is_dir() {
            return Err(Error::io(dir, std::io::ErrorKind::NotFound.into()));
        }
        let file = |name: &str| Some(dir.join(name)).filter(|path| path.is_file());
        let files = Files {
            dir: dir.to_path_buf(),
            json: file(TOKENIZER_FILE),
            bert_vocab: file(BERT_VOCAB),
            bpe: file(BPE_VOCAB).zip(file(BPE_MERGES)),
        };
        if files.json.is_none() && files.bert_vocab.is_none() && files.bpe.is_none() {
            return Err(files.none_found(&[TOKENIZER_FILE, BERT_VOCAB, "vocab.json + merges.txt"]));
        }
        Ok(files)
    }

    /// The family the files alone suggest, when no configuration names one.
    pub(crate) fn family(&self) -> Family {
        if self.json.is_some() {
            Family::Generic
        } else if self.bert_vocab.is_some() {
            Family::Bert
        } else {
            Family::Roberta
        }
    }

    fn none_found(&self, looked_for: &[&str]) -> Error {
        Error::NoneFound {
            dir: self.dir.clone(),
            what: "tokenizer files".into(),
            looked_for: looked_for.iter().map(|name| name.to_string()).collect(),
        }
    }
}

/// Refuses token ids far beyond the vocabulary: tokenizers numbers added tokens after the
/// largest id (an id near u32::MAX overflows there), `save` lists every id below the largest
/// (gigabytes for one stray id), and batches hold ids as i32.
fn check_ids(tokenizer: &Tokenizer, dir: &Path) -> Result<()> {
    let vocab = tokenizer.get_vocab(true);
    let limit = (vocab.len() as u64 + 65_536).min(i32::MAX as u64);
    match vocab.iter().find(|(_, &id)| u64::from(id) >= limit) {
        Some((token, id)) => Err(Error::value(format!(
            "{}: the vocabulary gives {token:?} the id {id}, but it has {} tokens; token ids \
             must lie below {limit}",
            dir.display(),
            vocab.len()
        ))),
        None => Ok(()),
    }
}

/// The pipeline of `files` configured by `settings`.
pub(crate) fn build(files: &Files, settings: &Settings) -> Result<Tokenizer> {
    let json =
        files.json.as_ref().map(|path| Ok::<_, Error>((path, read_json(path)?))).transpose()?;
    let mut tokenizer = match settings.family {
        Family::Generic => match &json {
            Some((path, value)) => serde_json::from_value::<Tokenizer>(value.clone())
                .map_err(|e| not_a_tokenizer_file(path, e))?,
            None => return Err(files.none_found(&[TOKENIZER_FILE])),
        },
        Family::Bert | Family::DistilBert => bert(files, &json, settings)?,
        Family::Roberta => roberta(files, &json, settings)?,
    };

    check_ids(&tokenizer, &files.dir)?;

    // TokenizersBackend.__init__: the config's added tokens (or, for an older config, those of
    // tokenizer.json), then every special token not added yet.
    let mut added = match (&settings.added_tokens, &json, settings.family) {
        (Some(tokens), _, _) => tokens.clone(),
        // A tokenizer.json loaded as saved already holds its added tokens.
        (None, _, Family::Generic) | (None, None, _) => Vec::new(),
        (None, Some((path, value)), _) => tokenizer_json_added_tokens(value, path)?,
    };
    for token in
        settings.special_tokens.iter().map(|(_, token)| token).chain(&settings.extra_special_tokens)
    {
        let present = tokenizer.get_added_vocabulary().get_vocab().contains_key(&token.content);
        if !present && !added.iter().any(|t| t.content == token.content) {
            added.push(token.clone());
        }
    }
    tokenizer.add_tokens(added).map_err(|e| Error::value(format!("adding tokens: {e}")))?;

    match settings.family {
        Family::Bert | Family::DistilBert => {
            let cls = special_token_with_id(&tokenizer, settings, "cls_token", 2)?;
            let sep = special_token_with_id(&tokenizer, settings, "sep_token", 3)?;
            let template = TemplateProcessing::builder()
                .try_single(format!("{}:0 $A:0 {}:0", cls.0, sep.0))
                .and_then(|b| b.try_pair(format!("{}:0 $A:0 {}:0 $B:1 {}:1", cls.0, sep.0, sep.0)))
                .map_err(|e| Error::value(format!("special tokens {cls:?}, {sep:?}: {e}")))?
                .special_tokens(vec![cls, sep])
                .build()
                .map_err(|e| Error::value(format!("BERT post-processor: {e}")))?;
            tokenizer.with_post_processor(Some(template));
        }
        Family::Roberta => {
            let sep = special_token_with_id(&tokenizer, settings, "sep_token", 2)?;
            let cls = special_token_with_id(&tokenizer, settings, "cls_token", 0)?;
            let processor = RobertaProcessing::new(sep, cls)
                .trim_offsets(settings.flag("trim_offsets", true))
                .add_prefix_space(settings.flag("add_prefix_space", false));
            tokenizer.with_post_processor(Some(processor));
        }
        Family::Generic => {}
    }
    // Each call sets truncation and padding (TokenizersBackend.set_truncation_and_padding).
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(None)
        .map_err(|e| Error::value(format!("disabling truncation: {e}")))?;
    Ok(tokenizer)
}

/// `BertTokenizer.__init__`: WordPiece on the vocabulary, BERT normalizer from the config.
fn bert(files: &Files, json: &Option<(&PathBuf, Value)>, settings: &Settings) -> Result<Tokenizer> {
    let unk = settings.special_token("unk_token").unwrap_or("[UNK]").to_string();
    let mut model = match (json, &files.bert_vocab) {
        (Some((path, value)), _) => match json_model(path, value)? {
            ModelWrapper::WordPiece(model) => model,
            _ => return Err(wrong_model(path, "WordPiece", settings)),
        },
        (None, Some(vocab)) => {
            WordPiece::from_file(&vocab.to_string_lossy()).build().map_err(|e| {
                Error::value(format!("{}: not a WordPiece vocabulary: {e}", vocab.display()))
            })?
        }
        (None, None) => return Err(files.none_found(&[TOKENIZER_FILE, BERT_VOCAB])),
    };
    let defaults = WordPiece::default();
    model.unk_token = unk;
    model.continuing_subword_prefix = defaults.continuing_subword_prefix;
    model.max_input_chars_per_word = defaults.max_input_chars_per_word;

    let mut tokenizer = Tokenizer::new(model);
    let strip_accents = settings.raw.get("strip_accents").and_then(Value::as_bool);
    let normalizer = BertNormalizer::new(
        true,
        settings.flag("tokenize_chinese_chars", true),
        strip_accents,
        settings.flag("do_lower_case", true),
    );
    tokenizer
        .with_normalizer(Some(normalizer))
        .map_err(|e| Error::value(format!("BERT normalizer: {e}")))?;
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
    tokenizer.with_decoder(Some(WordPieceDecoder::new("##".into(), true)));
    Ok(tokenizer)
}

/// `RobertaTokenizer.__init__`: byte-level BPE without unknown token, no normalizer.
fn roberta(
    files: &Files,
    json: &Option<(&PathBuf, Value)>,
    settings: &Settings,
) -> Result<Tokenizer> {
    let mut model = match (json, &files.bpe) {
        (Some((path, value)), _) => match json_model(path, value)? {
            ModelWrapper::BPE(model) => model,
            _ => return Err(wrong_model(path, "BPE", settings)),
        },
        (None, Some((vocab, merges))) => {
            BPE::from_file(&vocab.to_string_lossy(), &merges.to_string_lossy()).build().map_err(
                |e| {
                    Error::value(format!(
                        "{} + {}: not a BPE vocabulary and merges: {e}",
                        vocab.display(),
                        merges.display()
                    ))
                },
            )?
        }
        (None, None) => return Err(files.none_found(&[TOKENIZER_FILE, "vocab.json + merges.txt"])),
    };
    model.dropout = None;
    model.unk_token = None;
    model.continuing_subword_prefix = Some(String::new());
    model.end_of_word_suffix = Some(String::new());
    model.fuse_unk = false;
    model.byte_fallback = false;
    model.ignore_merges = false;

    let mut tokenizer = Tokenizer::new(model);
    let add_prefix_space = settings.flag("add_prefix_space", false);
    tokenizer.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(add_prefix_space)));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    Ok(tokenizer)
}

fn json_model(path: &Path, json: &Value) -> Result<ModelWrapper> {
    let model = json.get("model").ok_or_else(|| {
        Error::value(format!("{}: not a tokenizers file: it has no \"model\"", path.display()))
    })?;
    serde_json::from_value(model.clone()).map_err(|e| not_a_tokenizer_file(path, e))
}

fn not_a_tokenizer_file(path: &Path, error: serde_json::Error) -> Error {
    Error::value(format!("{}: not a valid tokenizers file: {error}", path.display()))
}

fn wrong_model(path: &Path, expected: &str, settings: &Settings) -> Error {
    Error::value(format!(
        "{}: a {:?} tokenizer needs a {expected} model",
        path.display(),
        settings.family
    ))
}

/// A special token and its id for a post-processor: the id the vocabulary gives, else the unknown
/// token's, else the class default (`BertTokenizer.__init__`).
fn special_token_with_id(
    tokenizer: &Tokenizer,
    settings: &Settings,
    name: &str,
    default_id: u32,
) -> Result<(String, u32)> {
    let token = settings.special_token(name).ok_or_else(|| {
        Error::value(format!("the {:?} tokenizer needs a {name}", settings.family))
    })?;
    let id = tokenizer
        .token_to_id(token)
        .or_else(|| settings.special_token("unk_token").and_then(|unk| tokenizer.token_to_id(unk)))
        .unwrap_or(default_id);
    Ok((token.to_string(), id))
}
