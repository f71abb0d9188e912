//! Tests of the tokenizer core on small folders written here, with ids worked out by hand, and
//! of the fast path against the tokenizers pipeline it stands in for.

use super::fast::Scratch;
use super::*;
use crate::rows::Rows;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokenizers::{NormalizedString, Normalizer};

/// A fresh folder holding `files`.
fn folder(files: &[(&str, String)]) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("ferrotune-tokenizer-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, contents) in files {
        std::fs::write(dir.join(name), contents).unwrap();
    }
    dir
}

const BERT_VOCAB: &[&str] = &[
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "##s", "!", ",", "cafe", "na",
    "##ive", "¿", "que", "中", "?", "'", "t", "don",
];

fn bert(config: serde_json::Value) -> Tokenizer {
    let dir = folder(&[
        ("vocab.txt", BERT_VOCAB.join("\n")),
        ("tokenizer_config.json", config.to_string()),
    ]);
    Tokenizer::from_folder(&dir).unwrap()
}

/// vocab.json + merges.txt: the special tokens, the 256 byte characters (id 5 + byte), merges.
fn roberta_files(merges: &[&str]) -> Vec<(&'static str, String)> {
    let mut vocab = serde_json::Map::new();
    for (i, special) in ["<s>", "<pad>", "</s>", "<unk>", "<mask>"].iter().enumerate() {
        vocab.insert(special.to_string(), i.into());
    }
    let chars = fast::byte_chars();
    for b in 0..=255u8 {
        vocab.insert(chars[b as usize].to_string(), (5 + b as usize).into());
    }
    for merge in merges {
        let merged = merge.replace(' ', "");
        let id = vocab.len();
        vocab.entry(merged).or_insert(id.into());
    }
    vec![
        ("vocab.json", serde_json::Value::Object(vocab).to_string()),
        ("merges.txt", format!("#version: 0.2\n{}\n", merges.join("\n"))),
    ]
}

const ROBERTA_MERGES: &[&str] = &["h e", "l l", "he ll", "hell o", "Ġ w", "Ġw o", "a Ġ", "! !"];

fn roberta() -> Tokenizer {
    Tokenizer::from_folder(&folder(&roberta_files(ROBERTA_MERGES))).unwrap()
}

fn encode(
    tokenizer: &Tokenizer,
    texts: &[&str],
    pairs: Option<&[&str]>,
    request: Request,
) -> Result<Rows> {
    let plan = tokenizer.plan(&request)?;
    tokenizer.encode_batch(texts, pairs, &plan)
}

fn rows<T: Copy>(batch: &Rows, values: &[T]) -> Vec<Vec<T>> {
    (0..batch.len()).map(|i| values[batch.row(i)].to_vec()).collect()
}

fn ids(
    tokenizer: &Tokenizer,
    texts: &[&str],
    pairs: Option<&[&str]>,
    request: Request,
) -> Vec<Vec<i32>> {
    let batch = encode(tokenizer, texts, pairs, request).unwrap();
    rows(&batch, &batch.input_ids)
}

fn truncating(truncation: Truncation, max_length: usize) -> Request {
    Request { truncation: Some(truncation), max_length: Some(max_length), ..Request::default() }
}

#[test]
fn bert_from_vocab_txt_lowercases_strips_accents_and_splits_punctuation() {
    let tokenizer = bert(json!({}));
    assert_eq!(tokenizer.family(), Family::Bert);
    assert_eq!((tokenizer.vocab_size(), tokenizer.len()), (20, 20));
    let got = ids(
        &tokenizer,
        &["Hello, worlds!", "¿Qué tal, naïve café? 中", ""],
        None,
        Request::default(),
    );
    assert_eq!(got[0], [2, 5, 9, 6, 7, 8, 3]);
    // "tal" has no WordPiece split in this vocabulary: [UNK].
    assert_eq!(got[1], [2, 13, 14, 1, 9, 11, 12, 10, 16, 15, 3]);
    assert_eq!(got[2], [2, 3]);
    let cased = bert(json!({"do_lower_case": false}));
    assert_eq!(ids(&cased, &["Hello café"], None, Request::default())[0], [2, 1, 1, 3]);
}

#[test]
fn pairs_get_the_second_type_id_and_longest_first_truncation() {
    let tokenizer = bert(json!({}));
    let batch = encode(&tokenizer, &["hello"], Some(&["world"]), Request::default()).unwrap();
    assert_eq!(rows(&batch, &batch.input_ids), [[2, 5, 3, 6, 3]]);
    assert_eq!(batch.type_ids(), [0, 0, 0, 1, 1]);
    // 3 + 2 tokens into 6 - 3 special tokens: tokenizers' truncate_encodings keeps 2 + 1
    // longest first, 1 + 2 only first.
    for (strategy, expected) in [
        (Truncation::LongestFirst, [2, 5, 5, 3, 6, 3]),
        (Truncation::OnlyFirst, [2, 5, 3, 6, 6, 3]),
    ] {
        let pairs: &[&str] = &["world world"];
        let got = ids(&tokenizer, &["hello hello hello"], Some(pairs), truncating(strategy, 6));
        assert_eq!(got, [expected], "{strategy:?}");
    }
}

#[test]
fn truncation_below_the_special_tokens_follows_tokenizers_release_builds() {
    let tokenizer = bert(json!({}));
    // max_length 1 < 2 special tokens: the unchecked subtraction wraps, nothing is truncated.
    assert_eq!(
        ids(&tokenizer, &["hello world"], None, truncating(Truncation::LongestFirst, 1)),
        [[2, 5, 6, 3]]
    );
    // max_length 2 leaves no room: both special tokens only.
    assert_eq!(
        ids(&tokenizer, &["hello world"], None, truncating(Truncation::LongestFirst, 2)),
        [[2, 3]]
    );
    let left = Tokenizer { truncation_side: Side::Left, ..bert(json!({})) };
    assert_eq!(
        ids(&left, &["hello world !"], None, truncating(Truncation::LongestFirst, 4)),
        [[2, 6, 8, 3]]
    );
}

#[test]
fn impossible_truncations_are_errors_with_tokenizers_messages() {
    let tokenizer = bert(json!({}));
    // Only a row that needs truncating fails (tokenizers' truncate_encodings returns early).
    assert!(encode(&tokenizer, &["hello"], None, truncating(Truncation::OnlySecond, 4)).is_ok());
    let err =
        encode(&tokenizer, &["hello world hello"], None, truncating(Truncation::OnlySecond, 4))
            .unwrap_err();
    assert_eq!(err.to_string(), "Truncation error: Second sequence not provided");
    let err = encode(
        &tokenizer,
        &["hello"],
        Some(&["world world"]),
        truncating(Truncation::OnlyFirst, 5),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Value(_)));
    assert_eq!(
        err.to_string(),
        "Truncation error: Sequence to truncate too short to respect the provided max_length"
    );
}

#[test]
fn truncation_without_max_length_uses_model_max_length_or_none() {
    let limited = bert(json!({"model_max_length": 4}));
    let request = Request { truncation: Some(Truncation::LongestFirst), ..Request::default() };
    assert_eq!(ids(&limited, &["hello world hello"], None, request.clone()), [[2, 5, 6, 3]]);
    let unlimited = bert(json!({}));
    assert_eq!(unlimited.model_max_length, None);
    assert_eq!(ids(&unlimited, &["hello world hello"], None, request), [[2, 5, 6, 5, 3]]);
    // max_length alone turns truncation on.
    let request = Request { max_length: Some(3), ..Request::default() };
    assert_eq!(ids(&unlimited, &["hello world"], None, request), [[2, 5, 3]]);
}

#[test]
fn padding_longest_max_length_and_multiples_on_both_sides() {
    let tokenizer = bert(json!({"model_max_length": 8}));
    let texts = ["hello", "hello world !"];
    let longest =
        Request { padding: Padding::Longest, pad_to_multiple_of: Some(4), ..Request::default() };
    let batch = encode(&tokenizer, &texts, None, longest).unwrap();
    assert_eq!(
        rows(&batch, &batch.input_ids),
        [vec![2, 5, 3, 0, 0, 0, 0, 0], vec![2, 5, 6, 8, 3, 0, 0, 0]]
    );
    assert_eq!(rows(&batch, &batch.attention_mask)[0], [1, 1, 1, 0, 0, 0, 0, 0]);
    let max_length = Request {
        padding: Padding::MaxLength,
        padding_side: Some(Side::Left),
        ..Request::default()
    };
    assert_eq!(ids(&tokenizer, &texts, None, max_length)[0], [0, 0, 0, 0, 0, 2, 5, 3]);
    let err = tokenizer
        .plan(&Request {
            padding: Padding::Longest,
            truncation: Some(Truncation::LongestFirst),
            max_length: Some(10),
            pad_to_multiple_of: Some(4),
            ..Request::default()
        })
        .unwrap_err();
    assert!(err
        .to_string()
        .contains("truncation length (10) is not a multiple of pad_to_multiple_of (4)"));
    // Without model_max_length, padding to max_length pads nothing.
    let unlimited = bert(json!({}));
    let request = Request { padding: Padding::MaxLength, ..Request::default() };
    assert_eq!(ids(&unlimited, &texts, None, request)[0], [2, 5, 3]);
}

#[test]
fn padding_needs_a_pad_token() {
    let tokenizer = bert(json!({"pad_token": null}));
    assert_eq!(tokenizer.pad_token_id(), None);
    let err =
        tokenizer.plan(&Request { padding: Padding::Longest, ..Request::default() }).unwrap_err();
    assert!(err
        .to_string()
        .starts_with("Asking to pad but the tokenizer does not have a padding token"));
}

#[test]
fn decode_joins_word_pieces_and_skips_special_tokens() {
    let tokenizer = bert(json!({}));
    let ids = [2, 5, 9, 6, 7, 8, 3];
    assert_eq!(tokenizer.decode(&ids, false, None).unwrap(), "[CLS] hello, worlds! [SEP]");
    assert_eq!(tokenizer.decode(&ids, true, None).unwrap(), "hello, worlds!");
    // The WordPiece decoder leaves "don ' t"; transformers' clean-up, when asked, joins it.
    assert_eq!(tokenizer.decode(&[19, 17, 18], false, None).unwrap(), "don ' t");
    assert_eq!(tokenizer.decode(&[19, 17, 18], false, Some(true)).unwrap(), "don't");
    assert_eq!(clean_up_tokenization("a , b . don 't it 's do n't"), "a, b. don 't it's don't");
    assert_eq!(
        tokenizer.decode_batch(&[vec![5], vec![2, 6, 3]], true, None).unwrap(),
        ["hello", "world"]
    );
}

#[test]
fn special_tokens_come_from_the_class_defaults_and_the_config() {
    let tokenizer = bert(json!({"mask_token": {"content": "[MASK]", "lstrip": true}}));
    let named: Vec<_> = tokenizer.special_tokens().collect();
    assert_eq!(
        named,
        [
            ("unk_token", "[UNK]"),
            ("sep_token", "[SEP]"),
            ("pad_token", "[PAD]"),
            ("cls_token", "[CLS]"),
            ("mask_token", "[MASK]")
        ]
    );
    assert_eq!(tokenizer.special_token_id("cls_token"), Some(2));
    assert_eq!(tokenizer.convert_token_to_id("nope"), Some(1));
    assert_eq!(tokenizer.all_special_tokens(), ["[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]"]);
    // Special tokens in the text are kept whole.
    assert_eq!(
        ids(&tokenizer, &["hello [MASK] world"], None, Request::default()),
        [[2, 5, 4, 6, 3]]
    );
    assert_eq!(tokenizer.model_input_names(), ["input_ids", "token_type_ids", "attention_mask"]);
}

#[test]
fn roberta_from_vocab_json_and_merges() {
    let tokenizer = roberta();
    assert_eq!(tokenizer.family(), Family::Roberta);
    // "hello" merges whole; " world" is "Ġwo" + r + l + d (bytes 0x72, 0x6c, 0x64 at 5 + byte).
    let got = ids(&tokenizer, &["hello world"], Some(&["hello"]), Request::default());
    assert_eq!(got, [[0, 264, 266, 119, 113, 105, 2, 2, 264, 2]]);
    assert_eq!(
        tokenizer.decode(&[0, 264, 266, 119, 113, 105, 2], true, None).unwrap(),
        "hello world"
    );
    assert_eq!(tokenizer.decode(&[266], false, None).unwrap(), " wo");
    assert_eq!(tokenizer.model_input_names(), ["input_ids", "attention_mask"]);
    let with_prefix = Tokenizer::from_folder(&folder(
        &[
            roberta_files(ROBERTA_MERGES),
            vec![("tokenizer_config.json", json!({"add_prefix_space": true}).to_string())],
        ]
        .concat(),
    ))
    .unwrap();
    assert_eq!(ids(&with_prefix, &["wo"], None, Request::default()), [[0, 266, 2]]);
}

#[test]
fn save_writes_a_folder_that_loads_back_the_same() {
    for tokenizer in [bert(json!({"model_max_length": 8, "do_lower_case": true})), roberta()] {
        let texts = ["Hello, worlds!", "¿Qué tal, naïve café? 中", "hello world !!"];
        let dir = folder(&[]).join("saved");
        let paths = tokenizer.save(&dir).unwrap();
        assert_eq!(paths, [dir.join("tokenizer_config.json"), dir.join("tokenizer.json")]);
        let config = crate::files::read_json(&paths[0]).unwrap();
        assert_eq!(config["tokenizer_class"], tokenizer.family().class_name().unwrap());
        assert_eq!(config["padding_side"], "right");
        let reloaded = Tokenizer::from_folder(&dir).unwrap();
        assert_eq!(reloaded.family(), tokenizer.family());
        assert_eq!(reloaded.model_max_length, tokenizer.model_max_length);
        assert_eq!(
            ids(&reloaded, &texts, None, Request::default()),
            ids(&tokenizer, &texts, None, Request::default())
        );
    }
}

#[test]
fn missing_and_corrupt_files_name_what_is_wrong() {
    let missing = std::env::temp_dir().join("ferrotune-no-such-folder");
    assert!(matches!(Tokenizer::from_folder(&missing).err().unwrap(), Error::NotFound(_)));
    let empty = folder(&[("tokenizer_config.json", "{}".into())]);
    let err = Tokenizer::from_folder(&empty).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: no tokenizer files found (looked for tokenizer.json, vocab.txt, vocab.json + merges.txt, sentencepiece.bpe.model, spm.model)",
            empty.display()
        )
    );
    let bert_without_vocab = folder(&[
        ("tokenizer_config.json", json!({"tokenizer_class": "BertTokenizer"}).to_string()),
        ("vocab.json", "{}".into()),
        ("merges.txt", String::new()),
    ]);
    let err = Tokenizer::from_folder(&bert_without_vocab).err().unwrap();
    assert!(err.to_string().ends_with("(looked for tokenizer.json, vocab.txt)"), "{err}");
    let corrupt = folder(&[("tokenizer.json", "{\"model\": ".into())]);
    let err = Tokenizer::from_folder(&corrupt).err().unwrap();
    assert!(matches!(err, Error::Value(_)));
    assert!(err
        .to_string()
        .starts_with(&format!("{}: not valid JSON", corrupt.join("tokenizer.json").display())));
    let not_a_tokenizer =
        folder(&[("tokenizer.json", json!({"model": {"type": "Nope"}}).to_string())]);
    let err = Tokenizer::from_folder(&not_a_tokenizer).err().unwrap();
    assert!(err.to_string().contains("tokenizer.json: not a valid tokenizers file"), "{err}");
}

#[test]
fn parallel_and_serial_encodings_are_the_same() {
    let tokenizer = roberta();
    let texts: Vec<String> =
        (0..3000).map(|i| format!("hello {i} world{} !!", "o".repeat(i % 7))).collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let request = Request { padding: Padding::Longest, ..Request::default() };
    let _settings = crate::parallel::lock_settings();
    crate::parallel::set_enabled(false);
    let serial = encode(&tokenizer, &texts, None, request.clone()).unwrap();
    crate::parallel::set_enabled(true);
    let parallel = encode(&tokenizer, &texts, None, request).unwrap();
    assert_eq!(serial, parallel);
    assert_eq!(serial.len(), 3000);
}

#[test]
fn the_frames_of_the_post_processors() {
    let pieces = |frame: &Option<frame::Frame>| format!("{frame:?}");
    let tokenizer = roberta();
    assert_eq!(
        pieces(&tokenizer.frames[1][1]),
        "Some(Frame { before: [(0, 0)], first_type: 0, between: [(2, 0), (2, 0)], second_type: 0, after: [(2, 0)] })"
    );
    let tokenizer = bert(json!({}));
    assert_eq!(
        pieces(&tokenizer.frames[1][1]),
        "Some(Frame { before: [(2, 0)], first_type: 0, between: [(3, 0)], second_type: 1, after: [(3, 1)] })"
    );
    assert_eq!(
        pieces(&tokenizer.frames[0][0]),
        "Some(Frame { before: [], first_type: 0, between: [], second_type: 0, after: [] })"
    );
}

#[test]
fn arrow_strings_name_null_rows_and_other_types() {
    use arrow_array::{ArrayRef, Int32Array, LargeStringArray, StringArray};
    use std::sync::Arc;
    let chunks: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["a", "b"])),
        Arc::new(LargeStringArray::from(vec![Some("c"), None])),
    ];
    let err = arrow::strings(&chunks).unwrap_err();
    assert!(matches!(err, Error::Type(_)));
    assert_eq!(err.to_string(), "text at index 3 is null (None), expected str");
    assert_eq!(arrow::strings(&chunks[..1]).unwrap(), ["a", "b"]);
    let ints: Vec<ArrayRef> = vec![Arc::new(Int32Array::from(vec![1]))];
    assert_eq!(
        arrow::strings(&ints).unwrap_err().to_string(),
        "expected a column of strings, got Arrow type Int32"
    );
}

#[test]
fn arrow_record_batches_are_laid_out_as_datasets_stores_them() {
    let tokenizer = bert(json!({}));
    let batch = encode(&tokenizer, &["hello", "hello world"], None, Request::default()).unwrap();
    let record = arrow::record_batch(batch, true, true, None).unwrap();
    let schema = record.schema();
    let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["input_ids", "token_type_ids", "attention_mask"]);
    assert_eq!(schema.field(0).data_type().to_string(), "List(Int32)");
    assert_eq!(schema.field(2).data_type().to_string(), "List(Int8)");
    let input_ids = record.column(0).as_any().downcast_ref::<arrow_array::ListArray>().unwrap();
    assert_eq!(input_ids.value_offsets(), [0, 3, 7]);
}

// -- the fast path against the pipeline it replaces ---------------------------------------

/// Texts with every kind of character the normalizers and pre-tokenizers treat specially.
fn tricky_texts() -> Vec<String> {
    let mut texts: Vec<String> = [
        "Hello, World!",
        "¡¿Qué?!",
        "naïve café Ça ÀÉÎÕÜ",
        "İstanbul ΣΑΣ ß ﬁ ǅ",
        "中文字符 and 日本語 한국어",
        "emoji 😀👍🏽 👨‍👩‍👧 \u{1F600}\u{FE0F}",
        "tab\tnew\nline\rcr",
        "nul\0char \u{fffd} repl \u{7f}",
        "zero\u{200b}width \u{200d} joiner \u{feff}",
        "nbsp\u{a0}here \u{2028} ls \u{2029} ps \u{85} nel",
        "combining e\u{301} a\u{308}\u{301} e\u{301}\u{327}",
        "https://t.co/abc?x=1&y=2 #tag @user",
        "   leading and trailing   ",
        "   ",
        "a",
        "ＡＢＣ！ fullwidth",
        "٣ arabic שלום",
        "ΑΣ. \u{0345}",
        "'s 're 've 'm 'll 'd 'S",
        "numbers 123 4.5 ½ ²",
        "can't won't",
        "a  b   c",
        "!!! ... ???",
        "\u{3000}ideographic space",
        "x\u{301}",
        "\u{301}leading mark",
        "<s> looks special",
        "[CLS] looks special",
        "\u{E000} private use",
        "\u{10FFFF}",
        "😀😀😀😀",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    texts.push("w".repeat(150));
    texts.push("long ".repeat(300));
    // Pseudo-random strings over the same kinds of characters.
    let pools: &[(u32, u32)] = &[
        (0x20, 0x7e),
        (0x00, 0x1f),
        (0xa0, 0xff),
        (0x300, 0x36f),
        (0x370, 0x3ff),
        (0x4e00, 0x4e40),
        (0xac00, 0xac20),
        (0x2000, 0x206f),
        (0x1f600, 0x1f64f),
        (0xff01, 0xff5e),
        (0x600, 0x6ff),
    ];
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |bound: u32| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) % u64::from(bound)) as u32
    };
    for _ in 0..600 {
        let len = next(24);
        let text: String = (0..len)
            .filter_map(|_| {
                let (lo, hi) = pools[next(pools.len() as u32) as usize];
                char::from_u32(lo + next(hi - lo + 1))
            })
            .collect();
        texts.push(text);
    }
    texts
}

/// Asserts that the fast path gives `encode_fast`'s ids for every text it takes, and that it
/// takes every non-empty text without added tokens.
fn assert_fast_path_matches(tokenizer: &Tokenizer, texts: &[String]) {
    let fast = tokenizer.fast.as_ref().expect("this pipeline has a fast path");
    let mut scratch = Scratch::default();
    for text in texts {
        let expected = tokenizer.inner.encode_fast(text.as_str(), false).unwrap();
        match fast.ids(text, tokenizer.inner.get_model(), &mut scratch).unwrap() {
            Some(ids) => assert_eq!(ids, expected.get_ids(), "{text:?}"),
            None => assert!(
                text.is_empty() || text.contains("[CLS]") || text.contains("<s>"),
                "{text:?}"
            ),
        }
    }
}

/// A BERT folder whose vocabulary holds every character the normalizer leaves (alone and as
/// `##` continuation), so that any difference in normalization changes the ids.
fn bert_of_every_character(config: serde_json::Value, texts: &[String]) -> Tokenizer {
    let reference = bert(config.clone());
    let mut vocab: Vec<String> = BERT_VOCAB.iter().map(|s| s.to_string()).collect();
    let mut seen = std::collections::HashSet::new();
    for text in texts {
        let mut normalized = NormalizedString::from(text.as_str());
        reference.inner.get_normalizer().unwrap().normalize(&mut normalized).unwrap();
        for c in normalized.get().chars().filter(|c| !c.is_whitespace()) {
            if seen.insert(c) {
                vocab.push(c.to_string());
                vocab.push(format!("##{c}"));
            }
        }
    }
    let dir =
        folder(&[("vocab.txt", vocab.join("\n")), ("tokenizer_config.json", config.to_string())]);
    Tokenizer::from_folder(&dir).unwrap()
}

#[test]
fn the_bert_fast_path_gives_the_pipeline_ids() {
    let texts = tricky_texts();
    for config in [
        json!({}),
        json!({"do_lower_case": false}),
        json!({"do_lower_case": true, "strip_accents": false}),
        json!({"do_lower_case": false, "strip_accents": true}),
        json!({"tokenize_chinese_chars": false}),
    ] {
        assert_fast_path_matches(&bert_of_every_character(config, &texts), &texts);
    }
}

#[test]
fn the_byte_level_fast_path_gives_the_pipeline_ids() {
    let texts = tricky_texts();
    // Merges across word boundaries ("a Ġ", "Ġ Ġ") only fire if the words are split wrongly.
    let merges = [ROBERTA_MERGES, &["Ġ Ġ", "' s", "Ġ '", "1 2", "Ã ©", "Ġ Ã"]].concat();
    for config in [json!({}), json!({"add_prefix_space": true})] {
        let files =
            [roberta_files(&merges), vec![("tokenizer_config.json", config.to_string())]].concat();
        let tokenizer = Tokenizer::from_folder(&folder(&files)).unwrap();
        assert_fast_path_matches(&tokenizer, &texts);
    }
}

#[test]
fn rows_through_the_fast_path_and_the_full_pipeline_agree() {
    let texts = tricky_texts();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let pairs: Vec<&str> = texts.iter().rev().copied().collect();
    for tokenizer in [bert_of_every_character(json!({}), &tricky_texts()), roberta()] {
        for request in [
            Request::default(),
            truncating(Truncation::LongestFirst, 9),
            truncating(Truncation::LongestFirst, 600),
            Request { add_special_tokens: false, ..truncating(Truncation::LongestFirst, 7) },
        ] {
            for pairs in [None, Some(&pairs[..])] {
                let plan = tokenizer.plan(&request).unwrap();
                let batch = tokenizer.encode_batch(&texts, pairs, &plan).unwrap();
                let mut full = Rows::empty(true);
                for (i, text) in texts.iter().enumerate() {
                    let row =
                        tokenizer.encode_row(text, pairs.map(|p| p[i]), &plan, false).unwrap();
                    full.push(&row).unwrap();
                }
                assert_eq!(batch, full, "{request:?}, pairs: {}", pairs.is_some());
            }
        }
    }
}
