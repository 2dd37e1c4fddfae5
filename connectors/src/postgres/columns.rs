//! Result columns as Postgres stores them: the type each Arrow type maps to, the table a
//! sink creates, whether an existing table's column can take a result column, and a
//! batch's values ready to bind.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Field, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, TimeUnit,
    TimestampNanosecondType,
};
use tokio_postgres::types::{ToSql, Type};

use crate::ConnectorError;

/// How a result column's values are bound: the Rust type they become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    Text,
    SmallInt,
    Integer,
    BigInt,
    Real,
    Double,
    Boolean,
    Timestamp,
    /// A list (`array_agg`), as `text[]`.
    TextList,
}

impl Binding {
    /// The binding of Arrow `data_type`, if Vigil can write it.
    fn of(data_type: &DataType) -> Option<Self> {
        Some(match data_type {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Self::Text,
            DataType::Int8 | DataType::Int16 | DataType::UInt8 => Self::SmallInt,
            DataType::Int32 | DataType::UInt16 => Self::Integer,
            DataType::Int64 | DataType::UInt32 | DataType::UInt64 => Self::BigInt,
            DataType::Float16 | DataType::Float32 => Self::Real,
            DataType::Float64 => Self::Double,
            DataType::Boolean => Self::Boolean,
            DataType::Timestamp(_, _) => Self::Timestamp,
            DataType::List(item) | DataType::LargeList(item) if matches!(Self::of(item.data_type()), Some(b) if b != Self::TextList) => {
                Self::TextList
            }
            _ => return None,
        })
    }

    /// The Postgres type a created table gives the column (timestamps as `timestamptz`).
    pub fn created_type(self) -> Type {
        match self {
            Self::Text => Type::TEXT,
            Self::SmallInt => Type::INT2,
            Self::Integer => Type::INT4,
            Self::BigInt => Type::INT8,
            Self::Real => Type::FLOAT4,
            Self::Double => Type::FLOAT8,
            Self::Boolean => Type::BOOL,
            Self::Timestamp => Type::TIMESTAMPTZ,
            Self::TextList => Type::TEXT_ARRAY,
        }
    }

    /// Whether values bound this way can be written to a column of `ty`.
    pub fn accepts(self, ty: &Type) -> bool {
        match self {
            Self::Text => <&str as ToSql>::accepts(ty),
            Self::SmallInt => <i16 as ToSql>::accepts(ty),
            Self::Integer => <i32 as ToSql>::accepts(ty),
            Self::BigInt => <i64 as ToSql>::accepts(ty),
            Self::Real => <f32 as ToSql>::accepts(ty),
            Self::Double => <f64 as ToSql>::accepts(ty),
            Self::Boolean => <bool as ToSql>::accepts(ty),
            Self::Timestamp => <SystemTime as ToSql>::accepts(ty),
            Self::TextList => <Vec<Option<String>> as ToSql>::accepts(ty),
        }
    }

    /// The Arrow type values are cast to before binding.
    fn arrow_type(self) -> DataType {
        match self {
            Self::Text => DataType::Utf8,
            Self::SmallInt => DataType::Int16,
            Self::Integer => DataType::Int32,
            Self::BigInt => DataType::Int64,
            Self::Real => DataType::Float32,
            Self::Double => DataType::Float64,
            Self::Boolean => DataType::Boolean,
            Self::Timestamp => DataType::Timestamp(TimeUnit::Nanosecond, None),
            Self::TextList => DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
        }
    }
}

/// A result column of a Postgres sink.
#[derive(Debug, Clone)]
pub struct Column {
    /// Its name, as in the table.
    pub name: String,
    pub binding: Binding,
    /// Its type in the table: the one created, or the existing table's.
    pub ty: Type,
    pub nullable: bool,
}

/// The columns of result `fields` (without a changelog's `op`); an error names every
/// column whose type cannot be written.
pub fn columns(fields: &[Arc<Field>]) -> Result<Vec<Column>, ConnectorError> {
    let mut unsupported = Vec::new();
    let columns = (fields.iter())
        .filter_map(|f| match Binding::of(f.data_type()) {
            Some(binding) => Some(Column {
                name: f.name().clone(),
                binding,
                ty: binding.created_type(),
                nullable: f.is_nullable(),
            }),
            None => {
                unsupported.push(format!("'{}' ({})", f.name(), f.data_type()));
                None
            }
        })
        .collect();
    if !unsupported.is_empty() {
        return Err(ConnectorError::Schema(format!(
            "a postgres sink cannot write {}: cast to TEXT, BIGINT, DOUBLE, BOOLEAN, TIMESTAMP or a list of them",
            unsupported.join(", ")
        )));
    }
    Ok(columns)
}

/// `name` quoted as a Postgres identifier.
pub fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A table name as written (`schema.table` or `table`), quoted part by part.
pub fn quoted_table(table: &str) -> String {
    table.split('.').map(quoted).collect::<Vec<_>>().join(".")
}

/// `CREATE TABLE IF NOT EXISTS` for `columns`, with `key` as its primary key.
pub fn create_table(table: &str, columns: &[Column], key: &[String]) -> String {
    let mut parts: Vec<String> = (columns.iter())
        .map(|c| {
            let not_null = if !c.nullable || key.contains(&c.name) {
                " NOT NULL"
            } else {
                ""
            };
            format!("{} {}{not_null}", quoted(&c.name), c.ty.name())
        })
        .collect();
    if !key.is_empty() {
        let key: Vec<String> = key.iter().map(|k| quoted(k)).collect();
        parts.push(format!("PRIMARY KEY ({})", key.join(", ")));
    }
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({})",
        quoted_table(table),
        parts.join(", ")
    )
}

/// The values of one column of a batch, ready to bind.
pub enum Values {
    Text(Vec<Option<String>>),
    SmallInt(Vec<Option<i16>>),
    Integer(Vec<Option<i32>>),
    BigInt(Vec<Option<i64>>),
    Real(Vec<Option<f32>>),
    Double(Vec<Option<f64>>),
    Boolean(Vec<Option<bool>>),
    Timestamp(Vec<Option<SystemTime>>),
    TextList(Vec<Option<Vec<Option<String>>>>),
}

impl Values {
    /// `array`'s values bound as `binding`; a value that does not fit (an unsigned number
    /// past BIGINT) is an error.
    pub fn of(array: &ArrayRef, binding: Binding) -> Result<Self, ConnectorError> {
        let cast = cast(array, &binding.arrow_type())?;
        if cast.null_count() > array.null_count() {
            return Err(ConnectorError::Schema(format!(
                "a value of type {} does not fit Postgres' {}",
                array.data_type(),
                binding.created_type().name()
            )));
        }
        Ok(match binding {
            Binding::Text => Self::Text(
                cast.as_string::<i32>()
                    .iter()
                    .map(|v| v.map(str::to_string))
                    .collect(),
            ),
            Binding::SmallInt => Self::SmallInt(cast.as_primitive::<Int16Type>().iter().collect()),
            Binding::Integer => Self::Integer(cast.as_primitive::<Int32Type>().iter().collect()),
            Binding::BigInt => Self::BigInt(cast.as_primitive::<Int64Type>().iter().collect()),
            Binding::Real => Self::Real(cast.as_primitive::<Float32Type>().iter().collect()),
            Binding::Double => Self::Double(cast.as_primitive::<Float64Type>().iter().collect()),
            Binding::Boolean => Self::Boolean(cast.as_boolean().iter().collect()),
            Binding::Timestamp => Self::Timestamp(
                (cast.as_primitive::<TimestampNanosecondType>().iter())
                    .map(|v| v.map(system_time))
                    .collect(),
            ),
            Binding::TextList => Self::TextList(
                (cast.as_list::<i32>().iter())
                    .map(|list| list.map(|items| text_items(&items)))
                    .collect(),
            ),
        })
    }

    /// Row `i`'s value.
    pub fn get(&self, i: usize) -> &(dyn ToSql + Sync) {
        match self {
            Self::Text(v) => &v[i],
            Self::SmallInt(v) => &v[i],
            Self::Integer(v) => &v[i],
            Self::BigInt(v) => &v[i],
            Self::Real(v) => &v[i],
            Self::Double(v) => &v[i],
            Self::Boolean(v) => &v[i],
            Self::Timestamp(v) => &v[i],
            Self::TextList(v) => &v[i],
        }
    }

    /// The values of `rows`, as one array parameter (for `UNNEST`).
    pub fn array_of(&self, rows: &[usize]) -> Box<dyn ToSql + Sync + Send> {
        fn pick<T: Clone>(v: &[Option<T>], rows: &[usize]) -> Vec<Option<T>> {
            rows.iter().map(|&i| v[i].clone()).collect()
        }
        match self {
            Self::Text(v) => Box::new(pick(v, rows)),
            Self::SmallInt(v) => Box::new(pick(v, rows)),
            Self::Integer(v) => Box::new(pick(v, rows)),
            Self::BigInt(v) => Box::new(pick(v, rows)),
            Self::Real(v) => Box::new(pick(v, rows)),
            Self::Double(v) => Box::new(pick(v, rows)),
            Self::Boolean(v) => Box::new(pick(v, rows)),
            Self::Timestamp(v) => Box::new(pick(v, rows)),
            // UNNEST would flatten an array of arrays: each list goes as its literal.
            Self::TextList(v) => Box::new(
                (rows.iter())
                    .map(|&i| v[i].as_deref().map(array_literal))
                    .collect::<Vec<_>>(),
            ),
        }
    }
}

/// A Postgres array literal of `items`: `{"a","b \"c\"",NULL}`.
fn array_literal(items: &[Option<String>]) -> String {
    let quoted: Vec<String> = (items.iter())
        .map(|item| match item {
            Some(text) => format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\"")),
            None => "NULL".to_string(),
        })
        .collect();
    format!("{{{}}}", quoted.join(","))
}

fn text_items(items: &ArrayRef) -> Vec<Option<String>> {
    (items.as_string::<i32>().iter())
        .map(|v| v.map(str::to_string))
        .collect()
}

/// An Arrow timestamp (nanoseconds since the epoch, UTC) as a `SystemTime`.
fn system_time(nanos: i64) -> SystemTime {
    let magnitude = Duration::from_nanos(nanos.unsigned_abs());
    if nanos >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int64Array, UInt64Array};

    use super::*;

    #[test]
    fn a_created_table_keys_its_key_columns_and_quotes_names() {
        let fields = [
            Arc::new(Field::new("sensor_id", DataType::Utf8, true)),
            Arc::new(Field::new(
                "window start",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            )),
            Arc::new(Field::new("n", DataType::Int64, true)),
        ];
        let columns = columns(&fields).unwrap();
        let key = ["sensor_id".to_string(), "window start".to_string()];
        assert_eq!(
            create_table("metrics.stats", &columns, &key),
            "CREATE TABLE IF NOT EXISTS \"metrics\".\"stats\" (\"sensor_id\" text NOT NULL, \
             \"window start\" timestamptz NOT NULL, \"n\" int8, \
             PRIMARY KEY (\"sensor_id\", \"window start\"))"
        );
    }

    #[test]
    fn lists_become_array_literals_with_quotes_and_nulls_escaped() {
        let items = [Some("a".to_string()), Some(r#"b "c" \d"#.to_string()), None];
        assert_eq!(array_literal(&items), r#"{"a","b \"c\" \\d",NULL}"#);
        assert_eq!(array_literal(&[]), "{}");
    }

    #[test]
    fn unwritable_types_are_named_and_values_that_do_not_fit_refused() {
        let map = DataType::Struct(vec![Field::new("a", DataType::Int64, true)].into());
        let list = DataType::List(Arc::new(Field::new("item", map, true)));
        let error = columns(&[Arc::new(Field::new("xs", list, true))]).unwrap_err();
        assert!(error.to_string().contains("'xs'"), "{error}");
        let big: ArrayRef = Arc::new(UInt64Array::from(vec![u64::MAX]));
        assert!(Values::of(&big, Binding::BigInt).is_err());
        let fine: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None]));
        assert!(Values::of(&fine, Binding::BigInt).is_ok());
    }
}
