//! Fuzzing the Arrow input paths: text columns (`ferrotune::tokenizer::arrow::strings`) and
//! tokenized datasets (`Examples::from_record_batches`, then `check_labels`, `lengths` and the
//! collator), with arrays of many Arrow types, nulls, empty and sliced lists, huge and negative
//! ids, NaN and infinite labels, missing columns, zero-row and multi-chunk tables. Property: Ok
//! or an Err with a message, never a panic; what is accepted is consistent (one length and one
//! label per row, masks as long as their ids) and collates.

#[path = "common.rs"]
mod common;

use arrow_array::types::{
    Float32Type, Float64Type, Int32Type, Int64Type, Int8Type, UInt64Type, UInt8Type,
};
use arrow_array::{
    new_null_array, Array, ArrayRef, BinaryArray, BooleanArray, DictionaryArray,
    FixedSizeListArray, LargeListArray, LargeStringArray, ListArray, ListViewArray, NullArray,
    PrimitiveArray, RecordBatch, StringArray, StringViewArray,
};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::{DataType, Field, Schema};
use common::{fuzz, nonempty_message};
use ferrotune::tokenizer::arrow::strings;
use ferrotune::train::data::{Collator, Examples, Labels, PadSettings};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::sync::Arc;
use tch::Device;

/// The Arrow types a column is built with.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Utf8,
    LargeUtf8,
    Utf8View,
    DictionaryUtf8,
    Binary,
    ListInt64,
    ListInt32,
    ListInt8,
    ListUInt64,
    ListFloat32,
    ListNull,
    LargeListInt64,
    FixedSizeListInt32(i32),
    ListViewInt32,
    Int64,
    Int32,
    UInt8,
    Float64,
    Float32,
    Float16AllNull,
    Boolean,
    Null,
}

const KINDS: &[Kind] = &[
    Kind::Utf8,
    Kind::LargeUtf8,
    Kind::Utf8View,
    Kind::DictionaryUtf8,
    Kind::Binary,
    Kind::ListInt64,
    Kind::ListInt32,
    Kind::ListInt8,
    Kind::ListUInt64,
    Kind::ListFloat32,
    Kind::ListNull,
    Kind::LargeListInt64,
    Kind::FixedSizeListInt32(0),
    Kind::FixedSizeListInt32(1),
    Kind::FixedSizeListInt32(3),
    Kind::ListViewInt32,
    Kind::Int64,
    Kind::Int32,
    Kind::UInt8,
    Kind::Float64,
    Kind::Float32,
    Kind::Float16AllNull,
    Kind::Boolean,
    Kind::Null,
];

/// The types a tokenized column usually has, drawn more often than the rest.
const LIST_KINDS: &[Kind] =
    &[Kind::ListInt32, Kind::ListInt64, Kind::ListInt8, Kind::LargeListInt64];
const LABEL_KINDS: &[Kind] = &[Kind::Int64, Kind::Float64, Kind::ListFloat32, Kind::Float32];
const STRING_KINDS: &[Kind] = &[Kind::Utf8, Kind::LargeUtf8, Kind::Utf8View];

fn kind(common: &'static [Kind]) -> impl Strategy<Value = Kind> {
    prop_oneof![
        5 => proptest::sample::select(common),
        1 => proptest::sample::select(KINDS),
    ]
}

/// One row of a column before it is given a type: the parts each type takes what it needs from.
#[derive(Debug, Clone)]
struct Row {
    null: bool,
    ints: Vec<i64>,
    float: f64,
    text: String,
}

fn int() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => 0i64..200,
        1 => proptest::sample::select(vec![
            -1, -100, -129, 127, 128, 255, 256, i32::MAX as i64, i32::MIN as i64,
            u32::MAX as i64, i64::MAX, i64::MIN,
        ]),
        1 => any::<i64>(),
    ]
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => (-3i64..4).prop_map(|x| x as f64),
        1 => proptest::sample::select(vec![
            f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 0.5, 1e300, -1e300, 1e-320,
            f32::MAX as f64 * 2.0,
        ]),
        1 => any::<f64>(),
    ]
}

fn row(nulls: bool) -> impl Strategy<Value = Row> {
    let null = if nulls { prop::bool::weighted(0.25).boxed() } else { Just(false).boxed() };
    let ints = prop_oneof![1 => Just(Vec::new()), 6 => prop::collection::vec(int(), 1..6)];
    (null, ints, float(), common::tricky_text()).prop_map(|(null, ints, float, text)| Row {
        null,
        ints,
        float,
        text,
    })
}

fn rows(n: usize) -> impl Strategy<Value = Vec<Row>> {
    prop::bool::weighted(0.15).prop_flat_map(move |nulls| prop::collection::vec(row(nulls), n))
}

fn list_field(item: DataType) -> Arc<Field> {
    Arc::new(Field::new("item", item, true))
}

fn nulls(rows: &[Row]) -> Option<NullBuffer> {
    let valid: Vec<bool> = rows.iter().map(|r| !r.null).collect();
    Some(NullBuffer::from(valid)).filter(|n| n.null_count() > 0)
}

/// The column of `rows` in the Arrow type `kind`.
fn array(kind: Kind, rows: &[Row]) -> ArrayRef {
    let texts = || rows.iter().map(|r| (!r.null).then_some(r.text.as_str())).collect::<Vec<_>>();
    let lists = |cast: fn(i64) -> i64| {
        rows.iter()
            .map(|r| (!r.null).then(|| r.ints.iter().map(|&v| Some(cast(v))).collect::<Vec<_>>()))
            .collect::<Vec<_>>()
    };
    macro_rules! list {
        ($list:ty, $t:ty, $native:ty) => {
            Arc::new(<$list>::from_iter_primitive::<$t, _, _>(rows.iter().map(|r| {
                (!r.null).then(|| r.ints.iter().map(|&v| Some(v as $native)).collect::<Vec<_>>())
            })))
        };
    }
    macro_rules! scalars {
        ($t:ty, $field:ident, $native:ty) => {
            Arc::new(PrimitiveArray::<$t>::from(
                rows.iter().map(|r| (!r.null).then_some(r.$field as $native)).collect::<Vec<_>>(),
            ))
        };
    }
    let first = |r: &Row| r.ints.first().copied().unwrap_or(0);
    match kind {
        Kind::Utf8 => Arc::new(StringArray::from(texts())),
        Kind::LargeUtf8 => Arc::new(LargeStringArray::from(texts())),
        Kind::Utf8View => Arc::new(StringViewArray::from(texts())),
        Kind::DictionaryUtf8 => {
            Arc::new(texts().into_iter().collect::<DictionaryArray<Int32Type>>())
        }
        Kind::Binary => Arc::new(BinaryArray::from(
            rows.iter().map(|r| (!r.null).then_some(r.text.as_bytes())).collect::<Vec<_>>(),
        )),
        Kind::ListInt64 => list!(ListArray, Int64Type, i64),
        Kind::ListInt32 => list!(ListArray, Int32Type, i32),
        Kind::ListInt8 => list!(ListArray, Int8Type, i8),
        Kind::ListUInt64 => list!(ListArray, UInt64Type, u64),
        Kind::ListFloat32 => {
            Arc::new(ListArray::from_iter_primitive::<Float32Type, _, _>(rows.iter().map(|r| {
                (!r.null).then(|| {
                    r.ints
                        .iter()
                        .map(|&v| Some(if v == 7 { r.float as f32 } else { v as f32 }))
                        .collect::<Vec<_>>()
                })
            })))
        }
        Kind::ListNull => {
            let lengths = rows.iter().map(|r| if r.null { 0 } else { r.ints.len() });
            let offsets = OffsetBuffer::<i32>::from_lengths(lengths);
            let total = *offsets.last().unwrap() as usize;
            Arc::new(ListArray::new(
                list_field(DataType::Null),
                offsets,
                Arc::new(NullArray::new(total)),
                nulls(rows),
            ))
        }
        Kind::LargeListInt64 => list!(LargeListArray, Int64Type, i64),
        Kind::FixedSizeListInt32(size) => {
            // Null rows hold `size` values too, as Arrow's layout has them.
            let values: Vec<i32> = rows
                .iter()
                .flat_map(|r| {
                    (0..size as usize).map(|i| r.ints.get(i).copied().unwrap_or(1) as i32)
                })
                .collect();
            Arc::new(
                FixedSizeListArray::try_new_with_length(
                    list_field(DataType::Int32),
                    size,
                    Arc::new(PrimitiveArray::<Int32Type>::from(values)),
                    nulls(rows),
                    rows.len(),
                )
                .expect("a valid fixed-size list"),
            )
        }
        Kind::ListViewInt32 => Arc::new(ListViewArray::from_iter_primitive::<Int32Type, _, _>(
            lists(|v| v as i32 as i64).into_iter().map(|row| {
                row.map(|r| r.into_iter().map(|v| v.map(|v| v as i32)).collect::<Vec<_>>())
            }),
        )),
        Kind::Int64 => Arc::new(PrimitiveArray::<Int64Type>::from(
            rows.iter().map(|r| (!r.null).then(|| first(r))).collect::<Vec<_>>(),
        )),
        Kind::Int32 => Arc::new(PrimitiveArray::<Int32Type>::from(
            rows.iter().map(|r| (!r.null).then(|| first(r) as i32)).collect::<Vec<_>>(),
        )),
        Kind::UInt8 => Arc::new(PrimitiveArray::<UInt8Type>::from(
            rows.iter().map(|r| (!r.null).then(|| first(r) as u8)).collect::<Vec<_>>(),
        )),
        Kind::Float64 => scalars!(Float64Type, float, f64),
        Kind::Float32 => scalars!(Float32Type, float, f32),
        Kind::Float16AllNull => new_null_array(&DataType::Float16, rows.len()),
        Kind::Boolean => Arc::new(BooleanArray::from(
            rows.iter().map(|r| (!r.null).then_some(r.float > 0.0)).collect::<Vec<_>>(),
        )),
        Kind::Null => Arc::new(NullArray::new(rows.len())),
    }
}

/// A column as drawn: the Arrow type and the rows of each batch.
#[derive(Debug, Clone)]
struct Column {
    name: &'static str,
    kind: Kind,
}

/// Where a batch or chunk is sliced: its start and length, drawn as indices into its rows.
type Slice = Option<(prop::sample::Index, prop::sample::Index)>;

/// A table: columns, batches of rows, and per batch whether the mask and type ids follow the
/// ids' lengths (as a tokenizer writes them) and an optional slice.
#[derive(Debug, Clone)]
struct Table {
    columns: Vec<Column>,
    /// Per batch: per column, its rows; all columns of a batch have the same number of rows.
    batches: Vec<(Vec<Vec<Row>>, bool, Slice)>,
    label_column: Option<&'static str>,
}

const LABEL_NAMES: &[Option<&str>] =
    &[None, Some("labels"), Some("label"), Some("missing"), Some("input_ids"), Some("text")];

fn columns() -> impl Strategy<Value = Vec<Column>> {
    (
        prop::bool::weighted(0.9),
        kind(LIST_KINDS),
        prop::option::weighted(0.6, kind(LIST_KINDS)),
        prop::option::weighted(0.4, kind(LIST_KINDS)),
        prop::option::weighted(0.8, kind(LABEL_KINDS)),
        prop::option::weighted(0.2, kind(LABEL_KINDS)),
        prop::option::weighted(0.3, kind(STRING_KINDS)),
    )
        .prop_map(|(ids, ids_kind, mask, types, labels, label, text)| {
            let mut columns = Vec::new();
            let mut add = |name, kind: Option<Kind>| {
                if let Some(kind) = kind {
                    columns.push(Column { name, kind });
                }
            };
            add("text", text);
            add("input_ids", ids.then_some(ids_kind));
            add("attention_mask", mask);
            add("token_type_ids", types);
            add("labels", labels);
            add("label", label);
            columns
        })
}

fn table() -> impl Strategy<Value = Table> {
    let sizes = prop_oneof![1 => prop::collection::vec(0..6usize, 0..4), 4 => prop::collection::vec(1..6usize, 1..4)];
    // Mostly a label column the table has, as the Trainer passes it.
    let label = prop_oneof![1 => proptest::sample::select(LABEL_NAMES), 2 => Just(Some("labels"))];
    (columns(), sizes, label)
        .prop_flat_map(|(columns, sizes, label_column)| {
            let n = columns.len();
            let batches = sizes
                .into_iter()
                .map(|size| {
                    (
                        prop::collection::vec(rows(size), n),
                        prop::bool::weighted(0.75),
                        prop::option::weighted(
                            0.2,
                            (any::<prop::sample::Index>(), any::<prop::sample::Index>()),
                        ),
                    )
                })
                .collect::<Vec<_>>();
            (Just(columns), batches, Just(label_column))
        })
        .prop_map(|(columns, batches, label_column)| Table { columns, batches, label_column })
}

/// The record batches of `table`, all with one schema (as a pyarrow Table gives them).
fn record_batches(table: &Table) -> Vec<RecordBatch> {
    let ids = table.columns.iter().position(|c| c.name == "input_ids");
    let mut out = Vec::new();
    for (rows, aligned, slice) in &table.batches {
        let arrays: Vec<ArrayRef> = table
            .columns
            .iter()
            .zip(rows)
            .map(|(column, column_rows)| {
                let follows_ids =
                    *aligned && matches!(column.name, "attention_mask" | "token_type_ids");
                match (ids, follows_ids) {
                    (Some(ids), true) => {
                        // A tokenizer's mask: the ids' lengths and nulls, all ones (type ids 0).
                        let value = i64::from(column.name == "attention_mask");
                        let like_ids: Vec<Row> = column_rows
                            .iter()
                            .zip(&rows[ids])
                            .map(|(r, id_row)| Row {
                                null: id_row.null,
                                ints: vec![value; id_row.ints.len()],
                                ..r.clone()
                            })
                            .collect();
                        array(column.kind, &like_ids)
                    }
                    _ => array(column.kind, column_rows),
                }
            })
            .collect();
        let fields: Vec<Field> = table
            .columns
            .iter()
            .zip(&arrays)
            .map(|(c, a)| Field::new(c.name, a.data_type().clone(), true))
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let batch = if arrays.is_empty() {
            RecordBatch::new_empty(schema)
        } else {
            RecordBatch::try_new(schema, arrays).expect("columns of one length")
        };
        let batch = match slice {
            Some((start, len)) => {
                let start = start.index(batch.num_rows() + 1);
                let len = len.index(batch.num_rows() - start + 1);
                batch.slice(start, len)
            }
            None => batch,
        };
        out.push(batch);
    }
    out
}

/// The property on one table: no panic, errors with messages, and consistent examples.
fn check_table(
    batches: &[RecordBatch],
    label_column: Option<&str>,
    shared_schema: bool,
) -> Result<(), TestCaseError> {
    let examples = match Examples::from_record_batches(batches, label_column) {
        Ok(examples) => examples,
        Err(e) => return nonempty_message(&e),
    };
    common::accepted();
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let lengths = examples.lengths();
    prop_assert_eq!(examples.len(), rows);
    prop_assert_eq!(lengths.len(), rows);
    prop_assert!(lengths.iter().all(|&n| n > 0), "an empty row was accepted: {:?}", lengths);
    let tokens = examples.rows.input_ids.len();
    prop_assert_eq!(*examples.rows.offsets.last().unwrap(), tokens);
    prop_assert_eq!(examples.rows.attention_mask.len(), tokens);
    if let Some(types) = &examples.rows.token_type_ids {
        prop_assert_eq!(types.len(), tokens);
    }
    if let (Some(labels), true) = (&examples.labels, shared_schema) {
        prop_assert_eq!(labels.len(), rows, "one label per row: {:?}", labels);
        if let Labels::Values { values, width } = labels {
            prop_assert_eq!(values.len(), rows * width);
        }
    }
    for num_labels in [i64::MIN, -1, 0, 1, 2, 3, 5, i64::MAX] {
        if let Err(e) = examples.check_labels(num_labels) {
            nonempty_message(&e)?;
        }
    }
    if shared_schema {
        // What the trainer does next: pad every row into tensors.
        let indices: Vec<usize> = (0..rows).rev().collect();
        for pad in [
            PadSettings { pad_token_id: Some(0), pad_to_multiple_of: None, pad_left: false },
            PadSettings { pad_token_id: Some(-1), pad_to_multiple_of: Some(3), pad_left: true },
        ] {
            let collator = Collator::new(pad, None).expect("pad ids that fit");
            let batch = collator.collate(&examples, &indices, Device::Cpu).expect("small rows");
            let width = *lengths.iter().max().unwrap() as i64;
            prop_assert_eq!(batch.input_ids.size()[0], rows as i64);
            prop_assert!(batch.input_ids.size()[1] >= width);
        }
    }
    Ok(())
}

#[test]
fn a_tokenized_table_reads() {
    let rows = |lengths: &[usize]| -> Vec<Row> {
        lengths
            .iter()
            .map(|&n| Row { null: false, ints: vec![5; n.max(1)], float: 1.0, text: String::new() })
            .collect()
    };
    let table = Table {
        columns: vec![
            Column { name: "input_ids", kind: Kind::ListInt32 },
            Column { name: "attention_mask", kind: Kind::ListInt8 },
            Column { name: "labels", kind: Kind::Int64 },
        ],
        batches: vec![
            (vec![rows(&[2, 3]), rows(&[1, 1]), rows(&[1, 1])], true, None),
            (vec![rows(&[1]), rows(&[1]), rows(&[1])], true, None),
        ],
        label_column: Some("labels"),
    };
    let examples =
        Examples::from_record_batches(&record_batches(&table), table.label_column).unwrap();
    assert_eq!(examples.lengths(), vec![2, 3, 1]);
    assert_eq!(examples.labels, Some(Labels::Classes(vec![5, 5, 5])));
    assert!(examples.check_labels(2).is_err());
}

#[test]
fn tables_with_one_schema() {
    fuzz("arrow/record_batches", table(), |table| {
        check_table(&record_batches(&table), table.label_column, true)
    });
}

/// Tables whose record batches have different schemas (the Rust API takes any batches): Ok or
/// an Err with a message, as for one schema.
#[test]
fn tables_with_different_schemas() {
    fuzz("arrow/mixed_schemas", prop::collection::vec(table(), 1..4), |tables| {
        let batches: Vec<RecordBatch> = tables.iter().flat_map(record_batches).collect();
        check_table(&batches, tables[0].label_column, false)
    });
}

// Fuzzing found this: a batch lacking a column of the first panicked ("checked in the schema").
#[test]
fn batches_with_different_schemas_are_an_error() {
    let row = Row { null: false, ints: vec![5], float: 1.0, text: String::new() };
    let table = |names: &[&'static str]| Table {
        columns: names
            .iter()
            .map(|&name| Column {
                name,
                kind: if name == "labels" { Kind::Int64 } else { Kind::ListInt32 },
            })
            .collect(),
        batches: vec![(vec![vec![row.clone()]; names.len()], true, None)],
        label_column: None,
    };
    for (second, label_column, missing) in [
        (&["attention_mask"][..], None, "input_ids"),
        (&["input_ids"][..], Some("labels"), "labels"),
    ] {
        let mut batches = record_batches(&table(&["input_ids", "labels"]));
        batches.extend(record_batches(&table(second)));
        let error = Examples::from_record_batches(&batches, label_column)
            .err()
            .unwrap_or_else(|| panic!("batches without {missing:?} accepted"));
        let expected = format!("record batch 1 has no \"{missing}\" column, unlike the first");
        assert!(error.to_string().contains(&expected), "{error}");
    }
}

/// A text column in chunks, each of any type, possibly sliced.
fn text_chunks() -> impl Strategy<Value = Vec<(Kind, Vec<Row>, Slice)>> {
    prop::collection::vec(
        (
            prop_oneof![4 => proptest::sample::select(STRING_KINDS), 1 => proptest::sample::select(KINDS)],
            (0..6usize).prop_flat_map(rows),
            prop::option::weighted(
                0.3,
                (any::<prop::sample::Index>(), any::<prop::sample::Index>()),
            ),
        ),
        0..5,
    )
}

#[test]
fn text_columns() {
    fuzz("arrow/strings", text_chunks(), |chunks| {
        let mut arrays: Vec<ArrayRef> = Vec::new();
        let mut expected: Vec<Option<String>> = Vec::new();
        let mut all_strings = true;
        for (kind, rows, slice) in &chunks {
            let mut rows: &[Row] = rows;
            let mut array = array(*kind, rows);
            if let Some((start, len)) = slice {
                let start = start.index(rows.len() + 1);
                let len = len.index(rows.len() - start + 1);
                array = array.slice(start, len);
                rows = &rows[start..start + len];
            }
            all_strings &= STRING_KINDS.contains(kind);
            expected.extend(rows.iter().map(|r| (!r.null).then(|| r.text.clone())));
            arrays.push(array);
        }
        match strings(&arrays) {
            Ok(texts) => {
                common::accepted();
                prop_assert!(all_strings, "a chunk of another type was read as text");
                let expected: Vec<String> = expected.into_iter().map(Option::unwrap).collect();
                prop_assert_eq!(texts, expected);
            }
            Err(e) => {
                nonempty_message(&e)?;
                let message = e.to_string();
                if all_strings {
                    let null = expected.iter().position(Option::is_none);
                    prop_assert!(null.is_some(), "strings without nulls refused: {}", message);
                    let index = format!("index {} ", null.unwrap());
                    prop_assert!(message.contains(&index), "{} does not name {}", message, index);
                }
            }
        }
        Ok(())
    });
}
