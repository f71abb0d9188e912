//! Fuzzing tokenizer folders (`Tokenizer::from_folder`, src/tokenizer/): `tokenizer.json`,
//! `tokenizer_config.json`, `special_tokens_map.json`, `config.json`, `vocab.txt`,
//! `vocab.json` + `merges.txt`, each absent, valid, valid with JSON keys deleted or retyped,
//! truncated at a byte, with bytes overwritten, or arbitrary bytes. Property: loading returns Ok
//! or an Err with a message, never panics; a tokenizer that loads encodes, tokenizes, decodes
//! and saves any text without a panic, into rows of consistent lengths.

#[path = "common.rs"]
mod common;

use common::{fuzz, nonempty_message};
use ferrotune::tokenizer::{Padding, Request, Side, Tokenizer, Truncation};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;
use serde_json::{json, Map, Value};

const VOCAB: &[&str] = &[
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "##s", "!", ",", "cafe", "na",
    "##ive", "¿", "que", "中", "?", "'", "t", "don", "a", "##a", "##aa", "h", "##e", "##llo",
];

fn vocab_object() -> Value {
    Value::Object(VOCAB.iter().enumerate().map(|(i, t)| (t.to_string(), json!(i))).collect())
}

fn special(content: &str, id: usize) -> Value {
    json!({"id": id, "content": content, "single_word": false, "lstrip": false,
           "rstrip": false, "normalized": false, "special": true})
}

/// A WordPiece `tokenizer.json` as tokenizers writes bert-base-uncased's, on `VOCAB`; with a
/// `TemplateProcessing` post-processor or, when `bert_processing`, a `BertProcessing` one.
fn wordpiece_json(bert_processing: bool) -> Value {
    let post_processor = if bert_processing {
        json!({"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]})
    } else {
        json!({
            "type": "TemplateProcessing",
            "single": [
                {"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "[SEP]", "type_id": 0}}
            ],
            "pair": [
                {"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
                {"Sequence": {"id": "B", "type_id": 1}},
                {"SpecialToken": {"id": "[SEP]", "type_id": 1}}
            ],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}
            }
        })
    };
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special("[PAD]", 0), special("[UNK]", 1), special("[CLS]", 2),
                         special("[SEP]", 3), special("[MASK]", 4)],
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                       "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": post_processor,
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab_object()}
    })
}

/// GPT-2's byte-to-character map (tokenizers' `bytes_char`): the alphabet of byte-level BPE.
fn byte_chars() -> Vec<char> {
    let mut visible: Vec<u32> = (b'!' as u32..=b'~' as u32).collect();
    visible.extend(0xA1..=0xAC);
    visible.extend(0xAE..=0xFF);
    let mut extra = 0;
    (0..=255u32)
        .map(|b| {
            if visible.contains(&b) {
                char::from_u32(b).unwrap()
            } else {
                extra += 1;
                char::from_u32(255 + extra).unwrap()
            }
        })
        .collect()
}

/// vocab.json of a byte-level BPE: the RoBERTa special tokens, every byte, and the merges.
fn bpe_vocab() -> Value {
    let mut vocab = Map::new();
    for token in ["<s>", "<pad>", "</s>", "<unk>", "<mask>"] {
        let id = vocab.len();
        vocab.insert(token.into(), id.into());
    }
    for c in byte_chars() {
        let id = vocab.len();
        vocab.insert(c.to_string(), id.into());
    }
    for merged in ["he", "ll", "hell", "hello", "Ġh", "Ġw"] {
        let id = vocab.len();
        vocab.insert(merged.into(), id.into());
    }
    Value::Object(vocab)
}

const BPE_MERGES: &str = "#version: 0.2\nh e\nl l\nhe ll\nhell o\nĠ h\nĠ w\n";

/// The files of a folder, each with its valid contents.
#[derive(Debug, Clone, Copy, PartialEq)]
enum File {
    TokenizerJson,
    TokenizerConfig,
    SpecialTokensMap,
    ModelConfig,
    VocabTxt,
    VocabJson,
    Merges,
}

impl File {
    fn name(self) -> &'static str {
        match self {
            File::TokenizerJson => "tokenizer.json",
            File::TokenizerConfig => "tokenizer_config.json",
            File::SpecialTokensMap => "special_tokens_map.json",
            File::ModelConfig => "config.json",
            File::VocabTxt => "vocab.txt",
            File::VocabJson => "vocab.json",
            File::Merges => "merges.txt",
        }
    }
}

/// Valid JSON contents of the JSON files, in a few variants (`variant` picks one).
fn valid_json(file: File, variant: usize) -> Value {
    match file {
        File::TokenizerJson => wordpiece_json(variant % 2 == 1),
        File::TokenizerConfig => {
            let class = [
                "BertTokenizer",
                "BertTokenizerFast",
                "DistilBertTokenizer",
                "RobertaTokenizer",
                "PreTrainedTokenizerFast",
                "ElectraTokenizerFast",
            ];
            let mut config = json!({
                "tokenizer_class": class[variant % class.len()],
                "do_lower_case": true, "model_max_length": 512, "padding_side": "right",
                "truncation_side": "right", "clean_up_tokenization_spaces": variant % 2 == 0,
                "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                "cls_token": "[CLS]", "mask_token": "[MASK]", "strip_accents": null,
                "tokenize_chinese_chars": true
            });
            if variant % 3 == 0 {
                let decoder: Map<String, Value> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (i.to_string(), special(t, i)))
                    .collect();
                config["added_tokens_decoder"] = Value::Object(decoder);
            }
            config
        }
        File::SpecialTokensMap => json!({
            "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
            "mask_token": {"content": "[MASK]", "lstrip": true, "normalized": false,
                           "rstrip": false, "single_word": false},
            "additional_special_tokens": ["<extra>"]
        }),
        File::ModelConfig => {
            let model_type = ["bert", "distilbert", "roberta", "gpt2"][variant % 4];
            json!({ "model_type": model_type })
        }
        File::VocabJson => bpe_vocab(),
        File::VocabTxt | File::Merges => unreachable!("not JSON"),
    }
}

fn valid_bytes(file: File, variant: usize) -> Vec<u8> {
    match file {
        File::VocabTxt => (VOCAB.join("\n") + "\n").into_bytes(),
        File::Merges => BPE_MERGES.as_bytes().to_vec(),
        _ => serde_json::to_vec_pretty(&valid_json(file, variant)).unwrap(),
    }
}

/// An edit of a JSON document at one of its nodes (in pre-order).
#[derive(Debug, Clone)]
enum JsonEdit {
    Delete(Index),
    Replace(Index, Value),
    /// An object or array emptied, a string or number turned to the other.
    Retype(Index),
}

fn junk_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(json!(true)),
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(u64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(100_000)),
        // Token ids near the limits: the largest ids tokenizers and the i32 batches can hold.
        Just(json!(u32::MAX)),
        Just(json!(i32::MAX - 1)),
        Just(json!(1e30)),
        Just(json!(0.5)),
        Just(json!("")),
        Just(json!("[UNK]")),
        Just(json!("[CLS]")),
        Just(json!("WordPiece")),
        Just(json!("BPE")),
        Just(json!("TemplateProcessing")),
        Just(json!("RobertaTokenizer")),
        Just(json!("left")),
        Just(json!([])),
        Just(json!({})),
        Just(json!([["[SEP]", 99999], ["[CLS]", -1]])),
        Just(json!({"content": null})),
        Just(json!({"id": "A", "type_id": 4294967295u64})),
        any::<String>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
    ]
}

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    prop_oneof![
        2 => any::<Index>().prop_map(JsonEdit::Delete),
        3 => (any::<Index>(), junk_value()).prop_map(|(at, v)| JsonEdit::Replace(at, v)),
        1 => any::<Index>().prop_map(JsonEdit::Retype),
    ]
}

/// The node paths of `value` in pre-order (keys and indices from the root).
fn paths(value: &Value, prefix: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    out.push(prefix.clone());
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                prefix.push(Value::from(key.as_str()));
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                prefix.push(Value::from(i));
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn node<'a>(root: &'a mut Value, path: &[Value]) -> &'a mut Value {
    path.iter().fold(root, |node, step| match step {
        Value::String(key) => &mut node[key.as_str()],
        _ => &mut node[step.as_u64().unwrap() as usize],
    })
}

fn apply(mut value: Value, edits: &[JsonEdit]) -> Value {
    for edit in edits {
        let mut all = Vec::new();
        paths(&value, &mut Vec::new(), &mut all);
        let at = match edit {
            JsonEdit::Delete(at) | JsonEdit::Replace(at, _) | JsonEdit::Retype(at) => at,
        };
        let path = &all[at.index(all.len())];
        match edit {
            JsonEdit::Delete(_) => {
                let Some((last, parent)) = path.split_last() else {
                    continue;
                };
                match (node(&mut value, parent), last) {
                    (Value::Object(map), Value::String(key)) => {
                        map.shift_remove(key);
                    }
                    (Value::Array(items), step) => {
                        items.remove(step.as_u64().unwrap() as usize);
                    }
                    _ => {}
                }
            }
            JsonEdit::Replace(_, new) => *node(&mut value, path) = new.clone(),
            JsonEdit::Retype(_) => {
                let target = node(&mut value, path);
                *target = match target.take() {
                    Value::Object(_) => json!([]),
                    Value::Array(_) => json!({}),
                    Value::String(s) => s.parse::<f64>().map(Value::from).unwrap_or(json!(1)),
                    Value::Number(n) => Value::from(n.to_string()),
                    Value::Bool(b) => Value::from(u8::from(b)),
                    Value::Null => json!(""),
                };
            }
        }
    }
    value
}

/// How one file of the folder is written.
#[derive(Debug, Clone)]
enum Contents {
    Valid(usize),
    /// The valid JSON with edits (for the text files: lines deleted or repeated).
    Edited(usize, Vec<JsonEdit>),
    Truncated(usize, Index),
    Overwritten(usize, Vec<(Index, u8)>),
    Bytes(Vec<u8>),
}

fn contents() -> impl Strategy<Value = Contents> {
    prop_oneof![
        4 => (0..6usize).prop_map(Contents::Valid),
        4 => (0..6usize, prop::collection::vec(json_edit(), 1..5))
            .prop_map(|(v, e)| Contents::Edited(v, e)),
        2 => (0..6usize, any::<Index>()).prop_map(|(v, at)| Contents::Truncated(v, at)),
        1 => (0..6usize, prop::collection::vec((any::<Index>(), any::<u8>()), 1..6))
            .prop_map(|(v, e)| Contents::Overwritten(v, e)),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Contents::Bytes),
    ]
}

fn render(file: File, contents: &Contents) -> Vec<u8> {
    match contents {
        Contents::Valid(v) => valid_bytes(file, *v),
        Contents::Edited(v, edits) => match file {
            File::VocabTxt | File::Merges => {
                let text = String::from_utf8(valid_bytes(file, *v)).unwrap();
                let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
                for edit in edits {
                    match edit {
                        JsonEdit::Delete(at) => {
                            lines.remove(at.index(lines.len()));
                        }
                        JsonEdit::Replace(at, new) => {
                            let i = at.index(lines.len());
                            lines[i] = lines[at.index(i + 1)].clone();
                            if let Value::String(s) = new {
                                lines.push(s.clone());
                            }
                        }
                        JsonEdit::Retype(at) => {
                            lines.insert(at.index(lines.len() + 1), String::new())
                        }
                    }
                    if lines.is_empty() {
                        break;
                    }
                }
                lines.join("\n").into_bytes()
            }
            _ => serde_json::to_vec(&apply(valid_json(file, *v), edits)).unwrap(),
        },
        Contents::Truncated(v, at) => {
            let bytes = valid_bytes(file, *v);
            bytes[..at.index(bytes.len() + 1)].to_vec()
        }
        Contents::Overwritten(v, edits) => {
            let mut bytes = valid_bytes(file, *v);
            for (at, byte) in edits {
                let i = at.index(bytes.len());
                bytes[i] = *byte;
            }
            bytes
        }
        Contents::Bytes(bytes) => bytes.clone(),
    }
}

const FILES: [File; 7] = [
    File::TokenizerJson,
    File::TokenizerConfig,
    File::SpecialTokensMap,
    File::ModelConfig,
    File::VocabTxt,
    File::VocabJson,
    File::Merges,
];

/// A folder: per file, absent or written some way. Files that give a vocabulary are present
/// more often, so most folders get past "no tokenizer files".
fn folder() -> impl Strategy<Value = Vec<(File, Contents)>> {
    let present = [0.7, 0.6, 0.3, 0.3, 0.4, 0.3, 0.3];
    let parts: Vec<_> = FILES
        .iter()
        .zip(present)
        .map(|(&file, p)| {
            prop::option::weighted(p, contents()).prop_map(move |c| c.map(|c| (file, c)))
        })
        .collect();
    parts.prop_map(|files| files.into_iter().flatten().collect())
}

/// Padding lengths far beyond any memory: `Batch::pad` must return an error for them.
const HUGE_LENGTHS: &[usize] =
    &[usize::MAX, usize::MAX / 2 + 1, 1 << 62, 1_000_000_000_000, 1 << 40];

fn request() -> impl Strategy<Value = Request> {
    (
        any::<bool>(),
        proptest::sample::select(vec![Padding::DoNotPad, Padding::Longest, Padding::MaxLength]),
        prop::option::of(proptest::sample::select(vec![
            Truncation::DoNotTruncate,
            Truncation::LongestFirst,
            Truncation::OnlyFirst,
            Truncation::OnlySecond,
        ])),
        // Small lengths, and huge ones padding must refuse; none of 2^20..2^36, which may
        // really allocate gigabytes.
        prop::option::of(prop_oneof![
            8 => prop_oneof![0..8usize, Just(64usize), Just(512usize)],
            1 => proptest::sample::select(HUGE_LENGTHS.to_vec()),
        ]),
        prop::option::of(0..5usize),
        prop::option::of(proptest::sample::select(vec![Side::Left, Side::Right])),
    )
        .prop_map(|(add_special_tokens, padding, truncation, max_length, multiple, side)| {
            Request {
                add_special_tokens,
                padding,
                truncation,
                max_length,
                pad_to_multiple_of: multiple,
                padding_side: side,
            }
        })
}

/// Texts, and pairs of the same number (or, now and then, another).
fn texts() -> impl Strategy<Value = (Vec<String>, Option<Vec<String>>)> {
    prop::collection::vec(common::tricky_text(), 0..4).prop_flat_map(|texts| {
        let n = texts.len();
        let pairs = prop_oneof![
            2 => Just(None),
            2 => prop::collection::vec(common::tricky_text(), n).prop_map(Some),
            1 => prop::collection::vec(common::tricky_text(), 0..4).prop_map(Some),
        ];
        (Just(texts), pairs)
    })
}

/// Everything a loaded tokenizer offers, on `texts`: no panic, rows of consistent lengths.
fn use_tokenizer(
    tokenizer: &Tokenizer,
    requests: &[Request],
    (texts, pairs): &(Vec<String>, Option<Vec<String>>),
    ids: &[u32],
) -> Result<(), TestCaseError> {
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let pairs: Option<Vec<&str>> = pairs.as_ref().map(|p| p.iter().map(String::as_str).collect());
    let _ = (tokenizer.vocab_size(), tokenizer.len(), tokenizer.vocab().len());
    let _ = (tokenizer.all_special_tokens(), tokenizer.pad_token_id(), tokenizer.family());
    let _ = (tokenizer.num_special_tokens_to_add(false), tokenizer.num_special_tokens_to_add(true));
    for id in ids {
        let _ = tokenizer.id_to_token(*id);
    }
    for request in requests {
        let plan = match tokenizer.plan(request) {
            Ok(plan) => plan,
            Err(e) => {
                nonempty_message(&e)?;
                continue;
            }
        };
        match tokenizer.encode_batch(&texts, pairs.as_deref(), &plan) {
            Ok(batch) => {
                prop_assert_eq!(batch.len(), texts.len());
                let end = *batch.offsets.last().unwrap();
                prop_assert_eq!(batch.input_ids.len(), end);
                prop_assert_eq!(batch.type_ids().len(), end);
                prop_assert_eq!(batch.attention_mask.len(), end);
                prop_assert!(batch.offsets.windows(2).all(|w| w[0] <= w[1]));
                if request.padding == Padding::Longest && tokenizer.pad_token_id().is_some() {
                    prop_assert!(batch.width().is_some(), "padded rows of different lengths");
                }
                let rows: Vec<Vec<u32>> = (0..batch.len())
                    .map(|i| batch.input_ids[batch.row(i)].iter().map(|&id| id as u32).collect())
                    .collect();
                if let Err(e) = tokenizer.decode_batch(&rows, true, None) {
                    nonempty_message(&e)?;
                }
            }
            Err(e) => nonempty_message(&e)?,
        }
        for (i, text) in texts.iter().enumerate() {
            let pair = pairs.as_ref().and_then(|p| p.get(i)).copied();
            if let Err(e) = tokenizer.tokenize(text, pair, &plan) {
                nonempty_message(&e)?;
            }
        }
    }
    for skip in [false, true] {
        if let Err(e) = tokenizer.decode(ids, skip, Some(true)) {
            nonempty_message(&e)?;
        }
    }
    // save_pretrained, then from_pretrained of what it wrote.
    let saved = tempfile::tempdir().unwrap();
    match tokenizer.save(saved.path()) {
        Ok(_) => {
            if let Err(e) = Tokenizer::from_folder(saved.path()) {
                nonempty_message(&e)?;
            }
        }
        Err(e) => nonempty_message(&e)?,
    }
    Ok(())
}

fn load(files: &[(File, Contents)]) -> (tempfile::TempDir, ferrotune::Result<Tokenizer>) {
    let dir = tempfile::tempdir().unwrap();
    for (file, contents) in files {
        std::fs::write(dir.path().join(file.name()), render(*file, contents)).unwrap();
    }
    let loaded = Tokenizer::from_folder(dir.path());
    (dir, loaded)
}

#[test]
fn the_valid_folders_load_and_encode() {
    let plan = |t: &Tokenizer| t.plan(&Request::default()).unwrap();
    for files in [
        vec![(File::TokenizerJson, Contents::Valid(0))],
        vec![(File::TokenizerJson, Contents::Valid(1))],
        vec![
            (File::TokenizerJson, Contents::Valid(0)),
            (File::TokenizerConfig, Contents::Valid(0)),
        ],
        vec![(File::VocabTxt, Contents::Valid(0))],
    ] {
        let (_dir, loaded) = load(&files);
        let tokenizer = loaded.unwrap();
        let batch = tokenizer.encode_batch(&["Hello worlds!"], None, &plan(&tokenizer)).unwrap();
        assert_eq!(batch.input_ids, [2, 5, 6, 7, 8, 3], "{files:?}");
    }
    let (_dir, loaded) =
        load(&[(File::VocabJson, Contents::Valid(0)), (File::Merges, Contents::Valid(0))]);
    let tokenizer = loaded.unwrap();
    let batch = tokenizer.encode_batch(&["hello"], None, &plan(&tokenizer)).unwrap();
    let hello = bpe_vocab()["hello"].as_i64().unwrap() as i32;
    assert_eq!(batch.input_ids, [0, hello, 2]);
}

#[test]
fn folders() {
    let strategy = (
        folder(),
        prop::collection::vec(request(), 1..4),
        texts(),
        prop::collection::vec(prop_oneof![0..40u32, any::<u32>()], 0..6),
    );
    fuzz("tokenizer/folders", strategy, |(files, requests, texts, ids)| {
        let (_dir, loaded) = load(&files);
        match loaded {
            Ok(tokenizer) => {
                common::accepted();
                use_tokenizer(&tokenizer, &requests, &texts, &ids)
            }
            Err(e) => nonempty_message(&e),
        }
    });
}

#[test]
fn arbitrary_bytes_in_every_file() {
    let strategy = prop::collection::vec(
        (
            proptest::sample::select(FILES.to_vec()),
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..128),
                any::<String>().prop_map(String::into_bytes),
                // Lines of vocabulary-like words, which vocab.txt and merges.txt take.
                "([a-z#\\[\\]<>/ ]{0,6}\n){0,12}".prop_map(String::into_bytes),
            ],
        ),
        1..5,
    );
    fuzz("tokenizer/bytes", strategy, |files| {
        let files: Vec<(File, Contents)> =
            files.into_iter().map(|(f, bytes)| (f, Contents::Bytes(bytes))).collect();
        let (_dir, loaded) = load(&files);
        match loaded {
            Ok(tokenizer) => {
                common::accepted();
                use_tokenizer(
                    &tokenizer,
                    &[Request::default()],
                    &(vec!["hello".into()], None),
                    &[0, 1],
                )
            }
            Err(e) => nonempty_message(&e),
        }
    });
}

/// Asserts `result` is an error whose message contains one of `phrases`.
fn assert_error<T>(result: ferrotune::Result<T>, phrases: &[&str], what: &str) {
    match result {
        Ok(_) => panic!("{what}: accepted"),
        Err(e) => {
            let message = e.to_string();
            assert!(
                phrases.iter().any(|p| message.contains(p)),
                "{what}: unexpected error {message:?}"
            );
        }
    }
}

const PADDING_TOO_LONG: &[&str] = &["needs more memory than can be had", "the size overflows"];

// Fuzzing found this: padding to a huge max_length overflowed (a panic) or exhausted memory.
#[test]
fn padding_to_a_huge_max_length_is_an_error() {
    let (_dir, loaded) = load(&[(File::VocabTxt, Contents::Valid(0))]);
    let tokenizer = loaded.unwrap();
    for &max_length in HUGE_LENGTHS {
        for multiple in [None, Some(2), Some(3)] {
            for texts in [&[""][..], &["hello", "hello world !"][..]] {
                let request = Request {
                    padding: Padding::MaxLength,
                    max_length: Some(max_length),
                    pad_to_multiple_of: multiple,
                    ..Request::default()
                };
                let what =
                    format!("max_length={max_length} pad_to_multiple_of={multiple:?} {texts:?}");
                let plan = tokenizer.plan(&request).unwrap();
                assert_error(tokenizer.encode_batch(texts, None, &plan), PADDING_TOO_LONG, &what);
            }
        }
    }
}

// Fuzzing found this: padding to a model_max_length of 2^64 - 1 (tokenizer_config.json) panicked.
#[test]
fn padding_to_a_huge_model_max_length_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("vocab.txt"), VOCAB.join("\n")).unwrap();
    let config = json!({"tokenizer_class": "BertTokenizer", "model_max_length": u64::MAX});
    std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string()).unwrap();
    let tokenizer = Tokenizer::from_folder(dir.path()).unwrap();
    let plan = tokenizer.plan(&Request { padding: Padding::MaxLength, ..Request::default() });
    let batch = tokenizer.encode_batch(&["hello"], None, &plan.unwrap());
    assert_error(batch, PADDING_TOO_LONG, "model_max_length=2^64-1");
}

// Fuzzing found this: a TemplateProcessing naming a token missing from its special_tokens panicked.
#[test]
fn template_without_its_special_token_is_an_error() {
    let mut json = wordpiece_json(false);
    json["post_processor"]["special_tokens"].as_object_mut().unwrap().remove("[CLS]");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tokenizer.json"), json.to_string()).unwrap();
    assert_error(
        Tokenizer::from_folder(dir.path()),
        &["post_processor fails on a plain sequence"],
        "template naming [CLS] without it",
    );
}

// Fuzzing found this: a token id of u32::MAX overflowed in tokenizers (load, save, vocab.json).
#[test]
fn token_ids_far_beyond_the_vocabulary_are_an_error() {
    let folder = |json: &Value, config: &str| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tokenizer.json"), json.to_string()).unwrap();
        std::fs::write(dir.path().join("tokenizer_config.json"), config).unwrap();
        dir
    };
    // An added token ([PAD]) whose vocabulary id is u32::MAX: the next added token overflowed.
    let mut added = wordpiece_json(false);
    added["model"]["vocab"]["[PAD]"] = json!(u32::MAX);
    // `save` overflowed on u32::MAX, and listed every missing id below 2^31 - 2 (gigabytes).
    let mut vocab = wordpiece_json(false);
    vocab["model"]["vocab"]["hello"] = json!(u32::MAX);
    let mut large = wordpiece_json(false);
    large["model"]["vocab"]["hello"] = json!(i32::MAX - 1);
    // vocab.json ids are read `as u32`: 2^64 - 1 is u32::MAX.
    let bpe = tempfile::tempdir().unwrap();
    let mut bpe_ids = bpe_vocab();
    bpe_ids["<s>"] = json!(u64::MAX);
    std::fs::write(bpe.path().join("vocab.json"), bpe_ids.to_string()).unwrap();
    std::fs::write(bpe.path().join("merges.txt"), BPE_MERGES).unwrap();
    let bert = r#"{"tokenizer_class": "BertTokenizer"}"#;
    for (what, dir) in [
        ("added token", folder(&added, "{}")),
        ("vocabulary id u32::MAX", folder(&vocab, bert)),
        ("vocabulary id 2^31 - 2", folder(&large, bert)),
        ("vocab.json", bpe),
    ] {
        assert_error(Tokenizer::from_folder(dir.path()), &["token ids must lie below"], what);
    }
}
