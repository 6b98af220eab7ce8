//! Named access to positional rows.
//!
//! The host passes rows positionally (see `row` in the WIT). A [`Layout`], built
//! once at `init` from the declared inputs or outputs, maps each name to its slot,
//! so a plugin still reads `f.float("amount")?` and writes `out.set("hour", 13)?`.

use std::collections::HashMap;

use crate::bindings::types::{self, Row};
use crate::error::{PluginError, Result};
use crate::metadata::{FieldSpec, Kind};

/// Where a declared field lives in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Index into `row.numbers`, with the declared numeric kind.
    Number(usize, Kind),
    /// Index into `row.texts`.
    Text(usize),
    /// Index into `row.vectors`.
    Vector(usize),
}

/// A declared field's slot and its position among the declared fields.
#[derive(Debug, Clone, Copy)]
struct Entry {
    slot: Slot,
    /// Declaration order: what a frame's reason code refers to.
    index: u32,
}

/// The name → slot map of a list of declared fields. Built once per plugin version.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    slots: HashMap<String, Entry>,
    specs: Vec<FieldSpec>,
    numbers: usize,
    texts: usize,
    vectors: usize,
}

impl Layout {
    /// The layout of `specs`, in declaration order within each kind.
    pub fn new(specs: &[FieldSpec]) -> Self {
        let mut layout = Layout { specs: specs.to_vec(), ..Layout::default() };
        for (index, spec) in specs.iter().enumerate() {
            let slot = match spec.kind {
                Kind::Bool | Kind::Int | Kind::Float => {
                    layout.numbers += 1;
                    Slot::Number(layout.numbers - 1, spec.kind)
                }
                Kind::Text => {
                    layout.texts += 1;
                    Slot::Text(layout.texts - 1)
                }
                Kind::Floats => {
                    layout.vectors += 1;
                    Slot::Vector(layout.vectors - 1)
                }
            };
            layout.slots.insert(spec.name.clone(), Entry { slot, index: index as u32 });
        }
        layout
    }

    pub(crate) fn slot(&self, name: &str) -> Result<Slot> {
        self.slots
            .get(name)
            .map(|e| e.slot)
            .ok_or_else(|| PluginError::internal(format!("`{name}` is not a declared field of this plugin")))
    }

    /// The position of declared field `name` among the declared fields.
    pub(crate) fn index(&self, name: &str) -> Option<u32> {
        self.slots.get(name).map(|e| e.index)
    }

    /// How many slots each kind has: (numbers, texts, vectors).
    pub(crate) fn widths(&self) -> (usize, usize, usize) {
        (self.numbers, self.texts, self.vectors)
    }

    /// The declared fields, in order.
    pub fn specs(&self) -> &[FieldSpec] {
        &self.specs
    }

    /// A row with every slot missing, sized for this layout.
    pub fn empty_row(&self) -> Row {
        Row {
            numbers: vec![f64::NAN; self.numbers],
            missing: (0..self.numbers as u32).collect(),
            texts: vec![None; self.texts],
            vectors: vec![None; self.vectors],
            extra: Vec::new(),
        }
    }
}

fn missing(name: &str) -> PluginError {
    PluginError::invalid_input(format!("field `{name}` is required but missing"))
}

fn wrong_kind(name: &str, asked: &str, declared: Kind) -> PluginError {
    PluginError::internal(format!(
        "field `{name}` is declared {declared:?}, but the plugin read it as {asked}"
    ))
}

/// The slots of one input row, borrowed from a `row` or from one row of a frame.
#[derive(Clone, Copy)]
pub(crate) struct Slots<'a> {
    pub(crate) numbers: &'a [f64],
    /// A `row`'s `missing` list; `None` in a frame, where NaN alone marks a
    /// missing number (the host writes only finite values).
    pub(crate) missing: Option<&'a [u32]>,
    pub(crate) texts: &'a [Option<String>],
    pub(crate) vectors: &'a [Option<Vec<f64>>],
    pub(crate) extra: &'a [types::Field],
}

/// A read-only, named view of one input row; what `score` and `extract` receive.
///
/// Accessors come in pairs: `float` fails with an invalid-input error naming the
/// field when the value is missing; `float_opt` returns `None` instead.
pub struct Features<'a> {
    row: Slots<'a>,
    layout: &'a Layout,
}

impl<'a> Features<'a> {
    /// A view of `row` through `layout`.
    pub fn new(row: &'a Row, layout: &'a Layout) -> Self {
        let row = Slots {
            numbers: &row.numbers,
            missing: Some(&row.missing),
            texts: &row.texts,
            vectors: &row.vectors,
            extra: &row.extra,
        };
        Self { row, layout }
    }

    /// A view of one row of a frame through `layout`.
    pub(crate) fn from_slots(row: Slots<'a>, layout: &'a Layout) -> Self {
        Self { row, layout }
    }

    fn number(&self, name: &str, asked: &str, accept: &[Kind]) -> Result<Option<f64>> {
        match self.layout.slot(name)? {
            Slot::Number(i, kind) if accept.contains(&kind) => {
                let x = self.row.numbers.get(i).copied().ok_or_else(|| short_row(name))?;
                let missing = match self.row.missing {
                    Some(list) => list.contains(&(i as u32)),
                    None => x.is_nan(),
                };
                Ok((!missing).then_some(x))
            }
            Slot::Number(_, kind) => Err(wrong_kind(name, asked, kind)),
            Slot::Text(_) => Err(wrong_kind(name, asked, Kind::Text)),
            Slot::Vector(_) => Err(wrong_kind(name, asked, Kind::Floats)),
        }
    }

    /// A float (an int input is accepted too), or `None` when missing.
    pub fn float_opt(&self, name: &str) -> Result<Option<f64>> {
        self.number(name, "a float", &[Kind::Float, Kind::Int])
    }

    /// A float (an int input is accepted too); missing is the caller's error.
    pub fn float(&self, name: &str) -> Result<f64> {
        self.float_opt(name)?.ok_or_else(|| missing(name))
    }

    /// An int, or `None` when missing.
    pub fn int_opt(&self, name: &str) -> Result<Option<i64>> {
        Ok(self.number(name, "an int", &[Kind::Int])?.map(|v| v as i64))
    }

    /// An int; missing is the caller's error.
    pub fn int(&self, name: &str) -> Result<i64> {
        self.int_opt(name)?.ok_or_else(|| missing(name))
    }

    /// A boolean, or `None` when missing.
    pub fn bool_opt(&self, name: &str) -> Result<Option<bool>> {
        Ok(self.number(name, "a boolean", &[Kind::Bool])?.map(|v| v != 0.0))
    }

    /// A boolean; missing is the caller's error.
    pub fn bool(&self, name: &str) -> Result<bool> {
        self.bool_opt(name)?.ok_or_else(|| missing(name))
    }

    /// A text, or `None` when missing.
    pub fn text_opt(&self, name: &str) -> Result<Option<&'a str>> {
        match self.layout.slot(name)? {
            Slot::Text(i) => Ok(self.row.texts.get(i).ok_or_else(|| short_row(name))?.as_deref()),
            Slot::Number(_, kind) => Err(wrong_kind(name, "text", kind)),
            Slot::Vector(_) => Err(wrong_kind(name, "text", Kind::Floats)),
        }
    }

    /// A text; missing is the caller's error.
    pub fn text(&self, name: &str) -> Result<&'a str> {
        self.text_opt(name)?.ok_or_else(|| missing(name))
    }

    /// A list of floats, or `None` when missing.
    pub fn floats_opt(&self, name: &str) -> Result<Option<&'a [f64]>> {
        match self.layout.slot(name)? {
            Slot::Vector(i) => Ok(self.row.vectors.get(i).ok_or_else(|| short_row(name))?.as_deref()),
            Slot::Number(_, kind) => Err(wrong_kind(name, "a list of floats", kind)),
            Slot::Text(_) => Err(wrong_kind(name, "a list of floats", Kind::Text)),
        }
    }

    /// A list of floats; missing is the caller's error.
    pub fn floats(&self, name: &str) -> Result<&'a [f64]> {
        self.floats_opt(name)?.ok_or_else(|| missing(name))
    }

    /// The numeric slots in declared order (missing ones are NaN): the fast path for
    /// models that consume a dense vector, such as tree ensembles.
    pub fn numbers(&self) -> &'a [f64] {
        self.row.numbers
    }

    /// Undeclared fields by name, for plugins that declare open inputs.
    pub fn extra(&self) -> &'a [types::Field] {
        self.row.extra
    }
}

fn short_row(name: &str) -> PluginError {
    PluginError::internal(format!("row has no slot for `{name}`: host and plugin disagree on the layout"))
}

/// The output row an extractor fills, by name, against its declared outputs.
pub struct Output<'a> {
    layout: &'a Layout,
    row: Row,
}

impl<'a> Output<'a> {
    /// An output with every declared feature missing.
    pub fn new(layout: &'a Layout) -> Self {
        Self { layout, row: layout.empty_row() }
    }

    /// Sets output `name`. An int is accepted for a float output; `Value::Null`
    /// (or `None`) leaves it missing. Setting an undeclared name or the wrong
    /// kind is a plugin error naming the output.
    pub fn set(&mut self, name: &str, value: impl Into<Value>) -> Result<()> {
        let value = value.into();
        let slot = self.layout.slot(name)?;
        let bad = |v: &Value| PluginError::internal(format!("output `{name}` cannot hold {v:?}"));
        match (slot, value) {
            (_, Value::Null) => {}
            (Slot::Number(i, kind), v) => {
                let x = match (kind, &v) {
                    (Kind::Bool, Value::Bool(b)) => f64::from(u8::from(*b)),
                    (Kind::Int, Value::Int(n)) => *n as f64,
                    (Kind::Float, Value::Float(x)) => *x,
                    (Kind::Float, Value::Int(n)) => *n as f64,
                    _ => return Err(bad(&v)),
                };
                self.row.numbers[i] = x;
                self.row.missing.retain(|&m| m as usize != i);
            }
            (Slot::Text(i), Value::Text(s)) => self.row.texts[i] = Some(s),
            (Slot::Vector(i), Value::Floats(v)) => self.row.vectors[i] = Some(v),
            (_, v) => return Err(bad(&v)),
        }
        Ok(())
    }

    /// The finished positional row.
    pub fn into_row(self) -> Row {
        self.row
    }
}

/// A feature value with its kind, as a plugin writes outputs or a test writes inputs.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Missing.
    Null,
    /// true / false.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// A number.
    Float(f64),
    /// A string.
    Text(String),
    /// A list of numbers.
    Floats(Vec<f64>),
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<Vec<f64>> for Value {
    fn from(v: Vec<f64>) -> Self {
        Value::Floats(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}
