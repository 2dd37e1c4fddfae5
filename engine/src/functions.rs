//! Scalar functions whose result grows with an argument (`repeat(s, n)`, `lpad(s, n)`,
//! `array_repeat(x, n)`), wrapped so that one row cannot ask for gigabytes: a call over the
//! limit fails with an error (which the query treats as that row's error) instead of an
//! allocation failure that aborts the process.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::compute::kernels::length::length;
use datafusion::arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion::common::{Result, exec_err};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, simplify::ExprSimplifyResult,
};

/// The largest string one call may build.
pub const MAX_VALUE_BYTES: i64 = 1 << 20;
/// The most elements one `array_repeat` may build.
pub const MAX_ARRAY_ELEMENTS: i64 = 1 << 20;

/// How a function's result grows with its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(s, n)`: `n` times the bytes of `s`.
    Repeat,
    /// `lpad(s, n)`, `rpad(s, n)`: `n` characters, up to four bytes each.
    Pad,
    /// `array_repeat(x, n)`: `n` elements.
    ArrayRepeat,
}

/// Replaces the growing functions of `ctx` with bounded versions of themselves.
pub(crate) fn register_bounded(ctx: &SessionContext) {
    let growing = [
        ("repeat", Growth::Repeat),
        ("lpad", Growth::Pad),
        ("rpad", Growth::Pad),
        ("array_repeat", Growth::ArrayRepeat),
    ];
    for (name, growth) in growing {
        if let Some(udf) = ctx.state().scalar_functions().get(name).cloned() {
            let bounded = Bounded {
                inner: Arc::clone(udf.inner()),
                growth,
            };
            ctx.register_udf(ScalarUDF::new_from_impl(bounded));
        }
    }
}

/// A growing function with its growth checked before it runs.
#[derive(Debug)]
struct Bounded {
    inner: Arc<dyn ScalarUDFImpl>,
    growth: Growth,
}

impl PartialEq for Bounded {
    fn eq(&self, other: &Self) -> bool {
        self.growth == other.growth && self.inner.name() == other.inner.name()
    }
}

impl Eq for Bounded {}

impl Hash for Bounded {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.name().hash(state);
        self.growth.hash(state);
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        self.inner.simplify(args, info)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.check(&args.args, args.number_rows)?;
        self.inner.invoke_with_args(args)
    }
}

impl Bounded {
    /// Fails when some row would build more than the limit allows.
    fn check(&self, args: &[ColumnarValue], rows: usize) -> Result<()> {
        let (Some(first), Some(count)) = (args.first(), args.get(1)) else {
            return Ok(());
        };
        let counts = as_int64(count, rows)?;
        let counts = counts.as_primitive::<Int64Type>();
        let (limit, unit) = match self.growth {
            Growth::Repeat => (MAX_VALUE_BYTES, "bytes"),
            Growth::Pad => (MAX_VALUE_BYTES / 4, "characters"),
            Growth::ArrayRepeat => (MAX_ARRAY_ELEMENTS, "elements"),
        };
        let lengths = match self.growth {
            Growth::Repeat => Some(as_int64(
                &ColumnarValue::Array(length(&first.to_array(rows)?)?),
                rows,
            )?),
            _ => None,
        };
        let largest = match &lengths {
            Some(lengths) => counts
                .iter()
                .zip(lengths.as_primitive::<Int64Type>().iter())
                .map(|(n, len)| n.unwrap_or(0).max(0).saturating_mul(len.unwrap_or(0)))
                .max(),
            None => counts.iter().map(|n| n.unwrap_or(0)).max(),
        };
        match largest {
            Some(size) if size > limit => exec_err!(
                "{}() would build a value of {size} {unit}, over the limit of {limit}",
                self.name()
            ),
            _ => Ok(()),
        }
    }
}

fn as_int64(value: &ColumnarValue, rows: usize) -> Result<ArrayRef> {
    let array = value.to_array(rows)?;
    Ok(match array.data_type() {
        DataType::Int64 => array,
        _ => cast(&array, &DataType::Int64)?,
    })
}
