//! Building the `tokenizers` pipeline of a folder, as transformers 5 builds it: the BERT,
//! RoBERTa, XLM-RoBERTa and DeBERTa-v2 classes take only the vocabulary (and merges) from
//! `tokenizer.json` or from the older files (`vocab.txt`, `vocab.json` + `merges.txt`, the
//! SentencePiece model) and rebuild the rest from their configuration (each class's
//! `__init__`); any other class uses `tokenizer.json` as saved (`TokenizersBackend.__init__`).
//! Added and special tokens follow `TokenizersBackend.__init__`.

use super::config::{tokenizer_json_added_tokens, Family, Settings};
use super::spm::{PieceKind, SpmModel};
use crate::error::{Error, Result};
use crate::files::read_json;
use serde_json::Value;
use std::path::{Path, PathBuf};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::models::unigram::Unigram;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::normalizers::replace::ReplacePattern;
use tokenizers::normalizers::{Lowercase, Precompiled, Replace, Sequence, Strip, NFC};
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::punctuation::Punctuation;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::whitespace::WhitespaceSplit;
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, ModelWrapper, NormalizerWrapper, SplitDelimiterBehavior, Tokenizer};

pub const TOKENIZER_FILE: &str = "tokenizer.json";
const BERT_VOCAB: &str = "vocab.txt";
const BPE_VOCAB: &str = "vocab.json";
const BPE_MERGES: &str = "merges.txt";
/// The SentencePiece model files of `XLMRobertaTokenizer` and `DebertaV2Tokenizer`
/// (their `vocab_files_names`).
const XLM_ROBERTA_SPM: &str = "sentencepiece.bpe.model";
const DEBERTA_V2_SPM: &str = "spm.model";
const LOOKED_FOR: [&str; 5] =
    [TOKENIZER_FILE, BERT_VOCAB, "vocab.json + merges.txt", XLM_ROBERTA_SPM, DEBERTA_V2_SPM];

/// The files of a tokenizer folder that can give the vocabulary.
pub(crate) struct Files {
    dir: PathBuf,
    json: Option<PathBuf>,
    bert_vocab: Option<PathBuf>,
    bpe: Option<(PathBuf, PathBuf)>,
    xlm_roberta_spm: Option<PathBuf>,
    deberta_v2_spm: Option<PathBuf>,
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
            xlm_roberta_spm: file(XLM_ROBERTA_SPM),
            deberta_v2_spm: file(DEBERTA_V2_SPM),
        };
        if files.json.is_none()
            && files.bert_vocab.is_none()
            && files.bpe.is_none()
            && files.xlm_roberta_spm.is_none()
            && files.deberta_v2_spm.is_none()
        {
            return Err(files.none_found(&LOOKED_FOR));
        }
        Ok(files)
    }

    /// The family the files alone suggest, when no configuration names one.
    pub(crate) fn family(&self) -> Family {
        if self.json.is_some() {
            Family::Generic
        } else if self.bert_vocab.is_some() {
            Family::Bert
        } else if self.bpe.is_some() {
            Family::Roberta
        } else if self.xlm_roberta_spm.is_some() {
            Family::XlmRoberta
        } else {
            Family::DebertaV2
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

/// The pipeline of `files` configured by `settings`; a SentencePiece model read for the
/// vocabulary also gives the extra special tokens when the configuration names none.
pub(crate) fn build(files: &Files, settings: &mut Settings) -> Result<Tokenizer> {
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
        Family::XlmRoberta | Family::DebertaV2 => {
            let source = UnigramSource::find(files, &json, settings)?;
            if let UnigramSource::Spm(_, model) = &source {
                if !settings.names_extra_special_tokens {
                    settings.extra_special_tokens = spm_added_tokens(model);
                }
            }
            match settings.family {
                Family::XlmRoberta => xlm_roberta(source, settings)?,
                _ => deberta_v2(source, settings)?,
            }
        }
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
            tokenizer.with_post_processor(Some(bert_template(cls, sep)?));
        }
        Family::Roberta => {
            let sep = special_token_with_id(&tokenizer, settings, "sep_token", 2)?;
            let cls = special_token_with_id(&tokenizer, settings, "cls_token", 0)?;
            let processor = RobertaProcessing::new(sep, cls)
                .trim_offsets(settings.flag("trim_offsets", true))
                .add_prefix_space(settings.flag("add_prefix_space", false));
            tokenizer.with_post_processor(Some(processor));
        }
        Family::XlmRoberta => {
            // XLMRobertaTokenizer.__init__: `bos A eos` and `bos A eos eos B eos`, one type id.
            let bos = special_token_with_id(&tokenizer, settings, "bos_token", 0)?;
            let eos = special_token_with_id(&tokenizer, settings, "eos_token", 0)?;
            let (b, e) = (&bos.0, &eos.0);
            let template = TemplateProcessing::builder()
                .try_single(format!("{b} $A {e}"))
                .and_then(|t| t.try_pair(format!("{b} $A {e} {e} $B {e}")))
                .map_err(|err| Error::value(format!("special tokens {bos:?}, {eos:?}: {err}")))?
                .special_tokens(vec![bos, eos])
                .build()
                .map_err(|err| Error::value(format!("XLM-RoBERTa post-processor: {err}")))?;
            tokenizer.with_post_processor(Some(template));
        }
        Family::DebertaV2 => {
            // DebertaV2Tokenizer.__init__: BERT's template and token types.
            let cls = special_token_with_id(&tokenizer, settings, "cls_token", 0)?;
            let sep = special_token_with_id(&tokenizer, settings, "sep_token", 0)?;
            tokenizer.with_post_processor(Some(bert_template(cls, sep)?));
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

/// Where a SentencePiece class takes its Unigram vocabulary from: `tokenizer.json` when the
/// folder has one, else the class's model file (`convert_to_native_format`).
enum UnigramSource {
    Json { vocab: Vec<(String, f64)>, precompiled: Option<Precompiled> },
    Spm(PathBuf, SpmModel),
}

impl UnigramSource {
    fn find(
        files: &Files,
        json: &Option<(&PathBuf, Value)>,
        settings: &Settings,
    ) -> Result<UnigramSource> {
        let spm_file = match settings.family {
            Family::XlmRoberta => (&files.xlm_roberta_spm, XLM_ROBERTA_SPM),
            _ => (&files.deberta_v2_spm, DEBERTA_V2_SPM),
        };
        match (json, spm_file) {
            (Some((path, value)), _) => {
                let vocab = match json_model(path, value)? {
                    ModelWrapper::Unigram(model) => {
                        model.iter().map(|(t, s)| (t.clone(), *s)).collect()
                    }
                    _ => return Err(wrong_model(path, "Unigram", settings)),
                };
                Ok(UnigramSource::Json { vocab, precompiled: json_precompiled(path, value)? })
            }
            (None, (Some(path), _)) => Ok(UnigramSource::Spm(path.clone(), SpmModel::read(path)?)),
            (None, (None, name)) => Err(files.none_found(&[TOKENIZER_FILE, name])),
        }
    }
}

/// The precompiled SentencePiece map of a `tokenizer.json` normalizer, alone or in a sequence.
fn json_precompiled(path: &Path, json: &Value) -> Result<Option<Precompiled>> {
    let normalizer = json.get("normalizer").unwrap_or(&Value::Null);
    let candidates = match normalizer.get("type").and_then(Value::as_str) {
        Some("Sequence") => normalizer.get("normalizers").and_then(Value::as_array).cloned(),
        _ => Some(vec![normalizer.clone()]),
    };
    let found = candidates.unwrap_or_default().into_iter().find(|n| {
        n.get("type").and_then(Value::as_str) == Some("Precompiled")
            && n.get("precompiled_charsmap").is_some()
    });
    // Parsed from text: the map's base64 field borrows its string, which a `Value` cannot lend.
    found
        .map(|n| serde_json::from_str(&n.to_string()).map_err(|e| not_a_tokenizer_file(path, e)))
        .transpose()
}

fn spm_precompiled(path: &Path, model: &SpmModel) -> Result<Option<Precompiled>> {
    if model.precompiled_charsmap.is_empty() {
        return Ok(None);
    }
    Precompiled::from(&model.precompiled_charsmap).map(Some).map_err(|e| {
        Error::value(format!("{}: its precompiled normalization map: {e}", path.display()))
    })
}

/// `SentencePieceExtractor.extract`: control pieces are special added tokens, user-defined
/// pieces plain ones, both matched on the raw text.
fn spm_added_tokens(model: &SpmModel) -> Vec<AddedToken> {
    model
        .pieces
        .iter()
        .filter(|p| matches!(p.kind, PieceKind::Control | PieceKind::UserDefined))
        .map(|p| AddedToken::from(p.piece.clone(), p.kind == PieceKind::Control).normalized(false))
        .collect()
}

fn spm_vocab(model: &SpmModel) -> Vec<(String, f64)> {
    model.pieces.iter().map(|p| (p.piece.clone(), f64::from(p.score))).collect()
}

fn unigram(
    vocab: Vec<(String, f64)>,
    unk_id: usize,
    what: &dyn std::fmt::Display,
) -> Result<Tokenizer> {
    let model = Unigram::from(vocab, Some(unk_id), false)
        .map_err(|e| Error::value(format!("{what}: not a Unigram vocabulary: {e}")))?;
    Ok(Tokenizer::new(model))
}

/// The Metaspace pre-tokenizer and decoder with `prepend_scheme`, "▁" for spaces.
fn metaspace(prepend_scheme: PrependScheme) -> Metaspace {
    Metaspace::new('\u{2581}', prepend_scheme, true)
}

/// `XLMRobertaTokenizer.__init__`: fairseq's ids (`<s> <pad> </s> <unk>`, then the model's
/// pieces after its first three, then `<mask>`; `XLMRobertaConverter.convert_from_spm`), the
/// unknown token at id 3, the precompiled map as the only normalizer, whitespace split.
fn xlm_roberta(source: UnigramSource, settings: &Settings) -> Result<Tokenizer> {
    let token = |name: &str, default: &str| {
        (settings.special_token(name).unwrap_or(default).to_string(), 0.0)
    };
    let (vocab, precompiled, what) = match source {
        UnigramSource::Json { vocab, precompiled } => (vocab, precompiled, TOKENIZER_FILE.into()),
        UnigramSource::Spm(path, model) => {
            let mut vocab = vec![
                token("bos_token", "<s>"),
                token("pad_token", "<pad>"),
                token("eos_token", "</s>"),
                token("unk_token", "<unk>"),
            ];
            vocab.extend(spm_vocab(&model).into_iter().skip(3));
            vocab.push(token("mask_token", "<mask>"));
            (vocab, spm_precompiled(&path, &model)?, path.display().to_string())
        }
    };
    let mut tokenizer = unigram(vocab, 3, &what)?;
    if let Some(precompiled) = precompiled {
        tokenizer
            .with_normalizer(Some(precompiled))
            .map_err(|e| Error::value(format!("{what}: precompiled normalizer: {e}")))?;
    }
    let scheme = match settings.flag("add_prefix_space", true) {
        true => PrependScheme::Always,
        false => PrependScheme::Never,
    };
    tokenizer.with_pre_tokenizer(Some(PreTokenizerSequence::new(vec![
        WhitespaceSplit.into(),
        metaspace(scheme).into(),
    ])));
    tokenizer.with_decoder(Some(metaspace(scheme)));
    Ok(tokenizer)
}

/// `DebertaV2Tokenizer.__init__`: the vocabulary as given, its own normalizer (the precompiled
/// map is not used), Metaspace with punctuation split when `split_by_punct`.
fn deberta_v2(source: UnigramSource, settings: &Settings) -> Result<Tokenizer> {
    let (vocab, unk_id, what) = match source {
        UnigramSource::Json { vocab, .. } => {
            let unk_id = settings.raw.get("unk_id").and_then(Value::as_u64);
            (vocab, unk_id.map_or(1, |id| id as usize), TOKENIZER_FILE.to_string())
        }
        UnigramSource::Spm(path, model) => {
            let unk_id = usize::try_from(model.unk_id).map_err(|_| {
                Error::value(format!(
                    "{}: the unknown piece's id is {}",
                    path.display(),
                    model.unk_id
                ))
            })?;
            (spm_vocab(&model), unk_id, path.display().to_string())
        }
    };
    // `vocab.index((unk_token, 0.0))` wins over the configured id.
    let unk = settings.special_token("unk_token").unwrap_or("[UNK]");
    let unk_id = vocab.iter().position(|(t, s)| t == unk && *s == 0.0).unwrap_or(unk_id);
    let mut tokenizer = unigram(vocab, unk_id, &what)?;

    let mut normalizers: Vec<NormalizerWrapper> = Vec::new();
    if settings.flag("do_lower_case", false) {
        normalizers.push(Lowercase.into());
    }
    let spaces = Replace::new(ReplacePattern::Regex(r"\s{2,}|[\n\r\t]".into()), " ")
        .map_err(|e| Error::value(format!("DeBERTa-v2 normalizer: {e}")))?;
    normalizers.extend([spaces.into(), NFC.into(), Strip::new(false, true).into()]);
    tokenizer
        .with_normalizer(Some(Sequence::new(normalizers)))
        .map_err(|e| Error::value(format!("DeBERTa-v2 normalizer: {e}")))?;

    let scheme = match settings.flag("add_prefix_space", true) {
        true => PrependScheme::Always,
        false => PrependScheme::First,
    };
    let mut pre_tokenizers = Vec::new();
    if settings.flag("split_by_punct", false) {
        pre_tokenizers.push(Punctuation::new(SplitDelimiterBehavior::Isolated).into());
    }
    pre_tokenizers.push(metaspace(scheme).into());
    tokenizer.with_pre_tokenizer(Some(PreTokenizerSequence::new(pre_tokenizers)));
    tokenizer.with_decoder(Some(metaspace(scheme)));
    Ok(tokenizer)
}

/// BERT's `[CLS] A [SEP]` and `[CLS] A [SEP] B [SEP]` with token types 0 and 1.
fn bert_template(cls: (String, u32), sep: (String, u32)) -> Result<TemplateProcessing> {
    TemplateProcessing::builder()
        .try_single(format!("{}:0 $A:0 {}:0", cls.0, sep.0))
        .and_then(|b| b.try_pair(format!("{}:0 $A:0 {}:0 $B:1 {}:1", cls.0, sep.0, sep.0)))
        .map_err(|e| Error::value(format!("special tokens {cls:?}, {sep:?}: {e}")))?
        .special_tokens(vec![cls, sep])
        .build()
        .map_err(|e| Error::value(format!("post-processor: {e}")))
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
