//! One batch of CIFAR-10's Python version: a pickled dict whose `data` is a numpy `uint8`
//! array of shape (10000, 3072), each row an image channel-major like the binary version,
//! and whose `labels` is a list of 10,000 ints 0..9. The official files were pickled by
//! Python 2 (keys and pixel data are byte strings); the same dict pickled by Python 3, with
//! `str` keys and any protocol from 2 to 5, reads the same.
//!
//! `serde-pickle` does the unpickling. It executes nothing: with `keep_restore_state`, a
//! numpy array comes back as the arguments numpy gave its reconstructor, either
//! `_reconstruct`'s state `(version, shape, dtype, fortran, bytes)` (protocols 2 to 4) or
//! `_frombuffer`'s arguments `(bytes, dtype, shape, order)` (protocol 5). A dtype comes back
//! as its state `(3, byteorder, ...)`, which no longer holds its name: the element size is
//! taken from the byte count over the element count, so a float or wide-integer array is
//! refused, while a one-byte `int8` or `bool` array cannot be told from `uint8`.

use std::collections::BTreeMap;

use serde_pickle::{DeOptions, HashableValue, Value};

use super::{CifarSplit, IMAGE_BYTES, RECORDS_PER_FILE};

/// What a batch must be, for error messages.
const EXPECTED: &str = "a pickled dict with 'data', a uint8 numpy array of shape (10000, 3072), \
                        and 'labels', a list of 10000 ints 0..9, as in the Python version's \
                        cifar-10-batches-py";

/// A Python value's kind, as Python names it.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::None => "None",
        Value::Bool(_) => "bool",
        Value::I64(_) | Value::Int(_) => "int",
        Value::F64(_) => "float",
        Value::Bytes(_) => "bytes",
        Value::String(_) => "str",
        Value::List(_) => "list",
        Value::Tuple(_) => "tuple",
        Value::Set(_) => "set",
        Value::FrozenSet(_) => "frozenset",
        Value::Dict(_) => "dict",
    }
}

/// A dict key as text (keys of the official files are byte strings).
fn key_text(k: &HashableValue) -> String {
    match k {
        HashableValue::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        HashableValue::String(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

/// The value under `key`, whether the key was pickled as bytes (Python 2) or str.
fn field<'a>(dict: &'a BTreeMap<HashableValue, Value>, key: &str) -> Option<&'a Value> {
    dict.get(&HashableValue::Bytes(key.as_bytes().to_vec()))
        .or_else(|| dict.get(&HashableValue::String(key.to_string())))
}

/// A small non-negative int of a pickled tuple.
fn as_usize(v: &Value) -> Option<usize> {
    match v {
        Value::I64(i) => usize::try_from(*i).ok(),
        _ => None,
    }
}

/// A numpy array's shape, bytes, dtype byte order and Fortran flag, from either form its
/// pickle takes (see the module's documentation).
struct Array<'a> {
    shape: Vec<usize>,
    bytes: &'a [u8],
    byteorder: String,
    fortran: bool,
}

/// A dtype's byte order from its pickled state `(3, byteorder, ...)`.
fn byteorder(state: &Value) -> Option<String> {
    match state {
        Value::Tuple(t) if t.len() >= 2 => match &t[1] {
            Value::String(s) => Some(s.clone()),
            Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        },
        _ => None,
    }
}

/// A pickled shape tuple.
fn shape(v: &Value) -> Option<Vec<usize>> {
    match v {
        Value::Tuple(t) | Value::List(t) => t.iter().map(as_usize).collect(),
        _ => None,
    }
}

/// The numpy array pickled as `v`, if it is one.
fn array(v: &Value) -> Option<Array<'_>> {
    let Value::Tuple(t) = v else { return None };
    match t.as_slice() {
        // numpy.core.multiarray._reconstruct, then BUILD with this state.
        [Value::I64(_), sh, dtype, Value::Bool(fortran), Value::Bytes(bytes)] => Some(Array {
            shape: shape(sh)?,
            bytes,
            byteorder: byteorder(dtype)?,
            fortran: *fortran,
        }),
        // numpy.core.numeric._frombuffer(buffer, dtype, shape, order), protocol 5.
        [Value::Bytes(bytes), dtype, sh, order] => Some(Array {
            shape: shape(sh)?,
            bytes,
            byteorder: byteorder(dtype)?,
            fortran: matches!(order, Value::String(o) if o == "F"),
        }),
        _ => None,
    }
}

/// Reads one pickled batch into `out`; `file` names it (a path, or an archive's member) in
/// errors.
pub(super) fn read_batch(bytes: &[u8], file: &str, out: &mut CifarSplit) -> Result<(), String> {
    let value = serde_pickle::value_from_slice(bytes, DeOptions::new().keep_restore_state())
        .map_err(|e| format!("{file}: not a readable pickle ({e}); expected {EXPECTED}"))?;
    let Value::Dict(dict) = &value else {
        return Err(format!(
            "{file}: the pickle holds a {}, not a dict; expected {EXPECTED}",
            kind(&value)
        ));
    };
    let keys = || {
        dict.keys()
            .map(|k| format!("'{}'", key_text(k)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (Some(data), Some(labels)) = (field(dict, "data"), field(dict, "labels")) else {
        let hint = if field(dict, "fine_labels").is_some() {
            " (this is CIFAR-100, which has 100 classes)"
        } else {
            ""
        };
        return Err(format!(
            "{file}: the dict has keys {}{hint}; expected {EXPECTED}",
            keys()
        ));
    };
    let Some(arr) = array(data) else {
        return Err(format!(
            "{file}: 'data' is a {} that is not a numpy array; expected {EXPECTED}",
            kind(data)
        ));
    };
    let elements: usize = arr.shape.iter().product();
    let shape_text = format!(
        "({})",
        arr.shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if elements == 0 || arr.bytes.len() != elements || arr.byteorder != "|" {
        let per = if elements == 0 {
            "no".to_string()
        } else {
            format!("{}", arr.bytes.len() as f64 / elements as f64)
        };
        return Err(format!(
            "{file}: 'data' of shape {shape_text} holds {} bytes ({per} bytes per element, byte \
             order '{}'), so its dtype is not uint8; expected {EXPECTED}",
            arr.bytes.len(),
            arr.byteorder
        ));
    }
    if arr.shape != [RECORDS_PER_FILE, IMAGE_BYTES] {
        return Err(format!(
            "{file}: 'data' has shape {shape_text}; expected {EXPECTED}"
        ));
    }
    if arr.fortran {
        return Err(format!(
            "{file}: 'data' is stored in Fortran (column-major) order; expected {EXPECTED}"
        ));
    }
    let (Value::List(items) | Value::Tuple(items)) = labels else {
        return Err(format!(
            "{file}: 'labels' is a {}, not a list; expected {EXPECTED}",
            kind(labels)
        ));
    };
    if items.len() != RECORDS_PER_FILE {
        return Err(format!(
            "{file}: 'labels' holds {} entries for {RECORDS_PER_FILE} images; expected {EXPECTED}",
            items.len()
        ));
    }
    let first = out.labels.len();
    for (record, item) in items.iter().enumerate() {
        match item {
            Value::I64(l @ 0..=9) => out.labels.push(*l as u8),
            other => {
                out.labels.truncate(first);
                return Err(format!(
                    "{file}: label {record} is {}; labels are ints 0..9, so the file is corrupt \
                     or not CIFAR-10",
                    match other {
                        Value::I64(l) => l.to_string(),
                        o => format!("a {}", kind(o)),
                    }
                ));
            }
        }
    }
    out.images.extend_from_slice(arr.bytes);
    Ok(())
}
