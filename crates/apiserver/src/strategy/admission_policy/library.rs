//! Kubernetes' additions to CEL (k8s.io/apiserver `pkg/cel/library`) that
//! policies commonly use, on cel-rust: the list functions (`isSorted`, `sum`,
//! `min`, `max`, `indexOf`, `lastIndexOf`), regex `find`/`findAll`, the `sets`
//! functions, `quantity` (compared in millis, so quantities below `1m` round up),
//! and cel-go's `cel.bind` macro. URLs, IPs and CIDRs, semver, format and the
//! authorizer are not implemented (see `cel::UNSUPPORTED_FUNCTIONS`).

use std::cmp::Ordering;
use std::sync::Arc;

use cel::common::ast::{ComprehensionExpr, Expr, IdedExpr, ListExpr, LiteralValue};
use cel::common::types::{DYN_TYPE, INT_TYPE, LIST_TYPE, STRING_TYPE, Type};
use cel::common::value::{CowVal, Val};
use cel::objects::Opaque;
use cel::parser::{Macro, MacroExprHelper};
use cel::{DeclarationError, Env, ExecutionError, ParseError, Value};

/// The runtime type name of quantities.
const QUANTITY: &str = "kubernetes.Quantity";

/// Kubernetes' message for a string that is no quantity.
const QUANTITY_FORMAT: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// Registers the functions and the `cel.bind` macro on `env`.
pub(super) fn extension(env: &mut Env) -> Result<(), DeclarationError> {
    let list_member = |env: &mut Env, name: &str, args: Vec<Type>, f| {
        let id = format!("list_{name}_{}", args.len());
        env.add_member_overload(name, &id, LIST_TYPE, args, f)
    };
    list_member(env, "isSorted", vec![], is_sorted)?;
    list_member(env, "sum", vec![], sum)?;
    list_member(env, "min", vec![], min)?;
    list_member(env, "max", vec![], max)?;
    list_member(env, "indexOf", vec![DYN_TYPE], index_of)?;
    list_member(env, "lastIndexOf", vec![DYN_TYPE], last_index_of)?;
    env.add_member_overload("find", "string_find", STRING_TYPE, vec![STRING_TYPE], find)?;
    env.add_member_overload(
        "findAll",
        "string_findAll",
        STRING_TYPE,
        vec![STRING_TYPE],
        find_all,
    )?;
    env.add_member_overload(
        "findAll",
        "string_findAll_n",
        STRING_TYPE,
        vec![STRING_TYPE, INT_TYPE],
        find_all_n,
    )?;
    for (name, f) in [
        (
            "sets.contains",
            sets_contains as cel::common::functions::Function,
        ),
        ("sets.equivalent", sets_equivalent),
        ("sets.intersects", sets_intersects),
    ] {
        env.add_overload(name, name, vec![LIST_TYPE, LIST_TYPE], f)?;
    }
    let q = || Type::new_opaque_type(QUANTITY);
    env.add_type(q())?;
    env.add_overload("quantity", "quantity_string", vec![STRING_TYPE], quantity)?;
    env.add_overload(
        "isQuantity",
        "isQuantity_string",
        vec![STRING_TYPE],
        is_quantity,
    )?;
    for (name, f) in [
        (
            "isGreaterThan",
            is_greater_than as cel::common::functions::Function,
        ),
        ("isLessThan", is_less_than),
        ("compareTo", compare_to),
        ("add", add),
        ("sub", sub),
    ] {
        env.add_member_overload(name, &format!("quantity_{name}"), q(), vec![q()], f)?;
    }
    for (name, f) in [
        ("add", add as cel::common::functions::Function),
        ("sub", sub),
    ] {
        env.add_member_overload(
            name,
            &format!("quantity_{name}_int"),
            q(),
            vec![INT_TYPE],
            f,
        )?;
    }
    for (name, f) in [
        ("asInteger", as_integer as cel::common::functions::Function),
        ("isInteger", is_integer),
        ("asApproximateFloat", as_approximate_float),
        ("sign", sign),
    ] {
        env.add_member_overload(name, &format!("quantity_{name}"), q(), vec![], f)?;
    }
    env.add_macro(Macro::receiver("bind", 3, bind))
}

/// `cel.bind(name, init, body)`: `body` with `name` bound to `init`, evaluated
/// once (cel-go's expansion: a comprehension over an empty list whose
/// accumulator is the binding). A `bind` on anything but `cel` is left alone.
fn bind(
    helper: &mut MacroExprHelper<'_>,
    target: &mut Option<IdedExpr>,
    args: &mut Vec<IdedExpr>,
) -> Result<Option<IdedExpr>, ParseError> {
    if !matches!(target, Some(IdedExpr { expr: Expr::Ident(ns), .. }) if ns == "cel") {
        return Ok(None);
    }
    let (Some(body), Some(init), Some(name)) = (args.pop(), args.pop(), args.pop()) else {
        return Ok(None);
    };
    let Expr::Ident(var) = name.expr else {
        return Err(helper.new_error(
            name.id,
            "cel.bind() variable names must be simple identifiers",
        ));
    };
    let range = helper.next_expr(Expr::List(ListExpr::new(Vec::new())));
    let cond = helper.next_expr(Expr::Literal(LiteralValue::Boolean(false.into())));
    let step = helper.next_expr(Expr::Ident(var.clone()));
    Ok(Some(helper.next_expr(Expr::Comprehension(Box::new(
        ComprehensionExpr {
            iter_range: range,
            iter_var: "#unused".into(),
            iter_var2: None,
            accu_var: var,
            accu_init: init,
            loop_cond: cond,
            loop_step: step,
            result: body,
        },
    )))))
}

fn arg(args: &[CowVal<'_, '_>], i: usize) -> Result<Value, ExecutionError> {
    let v = args
        .get(i)
        .ok_or_else(|| ExecutionError::invalid_argument_count(i + 1, args.len()))?;
    Value::try_from(v.as_ref())
}

fn list(args: &[CowVal<'_, '_>]) -> Result<Arc<Vec<Value>>, ExecutionError> {
    match arg(args, 0)? {
        Value::List(items) => Ok(items),
        other => Err(ExecutionError::UnexpectedType {
            got: other.type_of().to_string(),
            want: "list".into(),
        }),
    }
}

fn string(args: &[CowVal<'_, '_>], i: usize) -> Result<Arc<String>, ExecutionError> {
    match arg(args, i)? {
        Value::String(s) => Ok(s),
        other => Err(ExecutionError::UnexpectedType {
            got: other.type_of().to_string(),
            want: "string".into(),
        }),
    }
}

fn out<'b, 'v>(v: Value) -> Result<CowVal<'b, 'v>, ExecutionError> {
    Ok(CowVal::Owned(Box::<dyn Val>::try_from(v)?))
}

fn order(function: &str, a: &Value, b: &Value) -> Result<Ordering, ExecutionError> {
    a.partial_cmp(b).ok_or_else(|| {
        ExecutionError::no_such_overload(
            function,
            vec![a.type_of().to_string(), b.type_of().to_string()],
        )
    })
}

fn is_sorted<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let items = list(&args)?;
    for pair in items.windows(2) {
        if order("isSorted", &pair[0], &pair[1])? == Ordering::Greater {
            return out(Value::Bool(false));
        }
    }
    out(Value::Bool(true))
}

fn sum<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let items = list(&args)?;
    let Some(first) = items.first() else {
        return out(Value::Int(0));
    };
    if !matches!(
        first,
        Value::Int(_) | Value::UInt(_) | Value::Float(_) | Value::Duration(_)
    ) {
        return Err(ExecutionError::no_such_overload(
            "sum",
            vec![format!("list({})", first.type_of())],
        ));
    }
    let mut total = first.clone();
    for item in items.iter().skip(1) {
        total = match (&total, item) {
            (Value::Int(a), Value::Int(b)) => Value::Int(a.checked_add(*b).ok_or(
                ExecutionError::Overflow("add", Value::Int(*a), Value::Int(*b)),
            )?),
            (Value::UInt(a), Value::UInt(b)) => Value::UInt(a.checked_add(*b).ok_or(
                ExecutionError::Overflow("add", Value::UInt(*a), Value::UInt(*b)),
            )?),
            (Value::Float(a), Value::Float(b)) => Value::Float(a + b),
            (Value::Duration(a), Value::Duration(b)) => Value::Duration(*a + *b),
            (a, b) => {
                return Err(ExecutionError::no_such_overload(
                    "sum",
                    vec![a.type_of().to_string(), b.type_of().to_string()],
                ));
            }
        };
    }
    out(total)
}

fn extreme<'b, 'v>(
    args: Vec<CowVal<'b, 'v>>,
    name: &str,
    keep: Ordering,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let items = list(&args)?;
    let mut best = items.first().ok_or_else(|| {
        ExecutionError::function_error(name, format!("{name} called on empty list"))
    })?;
    for item in items.iter().skip(1) {
        if order(name, item, best)? == keep {
            best = item;
        }
    }
    out(best.clone())
}

fn min<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    extreme(args, "min", Ordering::Less)
}

fn max<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    extreme(args, "max", Ordering::Greater)
}

fn index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let items = list(&args)?;
    let needle = arg(&args, 1)?;
    let i = items.iter().position(|v| *v == needle);
    out(Value::Int(i.map_or(-1, |i| i as i64)))
}

fn last_index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let items = list(&args)?;
    let needle = arg(&args, 1)?;
    let i = items.iter().rposition(|v| *v == needle);
    out(Value::Int(i.map_or(-1, |i| i as i64)))
}

fn regex(function: &str, pattern: &str) -> Result<regex::Regex, ExecutionError> {
    regex::Regex::new(pattern).map_err(|e| ExecutionError::function_error(function, e))
}

fn find<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let s = string(&args, 0)?;
    let re = regex("find", &string(&args, 1)?)?;
    let found = re
        .find(&s)
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    out(Value::String(Arc::new(found)))
}

fn find_all_limited<'b, 'v>(
    args: &[CowVal<'b, 'v>],
    limit: Option<i64>,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let s = string(args, 0)?;
    let re = regex("findAll", &string(args, 1)?)?;
    let take = match limit {
        Some(n) if n >= 0 => usize::try_from(n).unwrap_or(usize::MAX),
        _ => usize::MAX,
    };
    let found = re
        .find_iter(&s)
        .take(take)
        .map(|m| Value::String(Arc::new(m.as_str().to_string())))
        .collect();
    out(Value::List(Arc::new(found)))
}

fn find_all<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    find_all_limited(&args, None)
}

fn find_all_n<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let n = match arg(&args, 2)? {
        Value::Int(n) => n,
        _ => -1,
    };
    find_all_limited(&args, Some(n))
}

/// A list argument's items.
type Items = Arc<Vec<Value>>;

fn two_lists(args: &[CowVal<'_, '_>]) -> Result<(Items, Items), ExecutionError> {
    let second = match arg(args, 1)? {
        Value::List(items) => items,
        other => {
            return Err(ExecutionError::UnexpectedType {
                got: other.type_of().to_string(),
                want: "list".into(),
            });
        }
    };
    Ok((list(args)?, second))
}

fn sets_contains<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (a, b) = two_lists(&args)?;
    out(Value::Bool(b.iter().all(|x| a.contains(x))))
}

fn sets_equivalent<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (a, b) = two_lists(&args)?;
    out(Value::Bool(
        b.iter().all(|x| a.contains(x)) && a.iter().all(|x| b.contains(x)),
    ))
}

fn sets_intersects<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (a, b) = two_lists(&args)?;
    out(Value::Bool(b.iter().any(|x| a.contains(x))))
}

/// A `resource.Quantity`, exact to the milli-unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Quantity {
    milli: i64,
}

impl Opaque for Quantity {
    fn runtime_type_name(&self) -> &str {
        QUANTITY
    }
}

fn quantity_arg(args: &[CowVal<'_, '_>], i: usize) -> Result<Quantity, ExecutionError> {
    match arg(args, i)? {
        Value::Opaque(o) => {
            o.downcast_ref::<Quantity>()
                .copied()
                .ok_or_else(|| ExecutionError::UnexpectedType {
                    got: o.runtime_type_name().to_string(),
                    want: QUANTITY.into(),
                })
        }
        Value::Int(i) => Ok(Quantity {
            milli: i.saturating_mul(1000),
        }),
        other => Err(ExecutionError::UnexpectedType {
            got: other.type_of().to_string(),
            want: QUANTITY.into(),
        }),
    }
}

fn quantity_out<'b, 'v>(q: Quantity) -> Result<CowVal<'b, 'v>, ExecutionError> {
    out(Value::Opaque(Arc::new(q)))
}

fn parse_quantity(s: &str) -> Option<Quantity> {
    if s.trim() != s {
        return None;
    }
    api::quantity::milli_value(s).map(|milli| Quantity { milli })
}

fn quantity<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let s = string(&args, 0)?;
    let q = parse_quantity(&s)
        .ok_or_else(|| ExecutionError::function_error("quantity", QUANTITY_FORMAT))?;
    quantity_out(q)
}

fn is_quantity<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    out(Value::Bool(parse_quantity(&string(&args, 0)?).is_some()))
}

fn compare(args: &[CowVal<'_, '_>]) -> Result<Ordering, ExecutionError> {
    Ok(quantity_arg(args, 0)?
        .milli
        .cmp(&quantity_arg(args, 1)?.milli))
}

fn is_greater_than<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    out(Value::Bool(compare(&args)? == Ordering::Greater))
}

fn is_less_than<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    out(Value::Bool(compare(&args)? == Ordering::Less))
}

fn compare_to<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    out(Value::Int(compare(&args)? as i64))
}

fn arithmetic<'b, 'v>(
    args: &[CowVal<'b, 'v>],
    name: &'static str,
    op: fn(i64, i64) -> Option<i64>,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (a, b) = (quantity_arg(args, 0)?, quantity_arg(args, 1)?);
    let milli = op(a.milli, b.milli)
        .ok_or_else(|| ExecutionError::function_error(name, "integer overflow"))?;
    quantity_out(Quantity { milli })
}

fn add<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    arithmetic(&args, "add", i64::checked_add)
}

fn sub<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    arithmetic(&args, "sub", i64::checked_sub)
}

fn as_integer<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let q = quantity_arg(&args, 0)?;
    if q.milli % 1000 != 0 {
        return Err(ExecutionError::function_error(
            "asInteger",
            "cannot convert value to integer",
        ));
    }
    out(Value::Int(q.milli / 1000))
}

fn is_integer<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    out(Value::Bool(quantity_arg(&args, 0)?.milli % 1000 == 0))
}

fn as_approximate_float<'b, 'v>(
    args: Vec<CowVal<'b, 'v>>,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    out(Value::Float(quantity_arg(&args, 0)?.milli as f64 / 1000.0))
}

fn sign<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    out(Value::Int(quantity_arg(&args, 0)?.milli.signum()))
}

#[cfg(test)]
mod tests {
    use super::super::cel::{Activation, Returns, Scope, compile, describe};
    use cel::Value;

    fn eval(source: &str) -> Result<Value, String> {
        let scope = Scope {
            params: false,
            authorizer: false,
            variables: None,
        };
        let e = compile(source, scope, Returns::Any)?;
        let activation = Activation {
            vars: [
                ("object", None),
                ("oldObject", None),
                ("request", None),
                ("namespaceObject", None),
                ("params", None),
                ("variables", None),
            ],
        };
        e.evaluate(&activation).map_err(|e| describe(&e))
    }

    #[test]
    fn list_functions_follow_kubernetes() {
        assert_eq!(eval("[1, 2, 2].isSorted()"), Ok(Value::Bool(true)));
        assert_eq!(eval("['b', 'a'].isSorted()"), Ok(Value::Bool(false)));
        assert_eq!(eval("[].sum()"), Ok(Value::Int(0)));
        assert_eq!(eval("[1.5, 2.0].sum()"), Ok(Value::Float(3.5)));
        assert_eq!(eval("[].min()"), Err("min called on empty list".into()));
        assert_eq!(
            eval("['b', 'c', 'a'].max()"),
            Ok(Value::String("c".to_string().into()))
        );
        assert_eq!(eval("[1, 2].indexOf(3)"), Ok(Value::Int(-1)));
    }

    #[test]
    fn quantities_compare_by_value() {
        assert_eq!(
            eval("quantity('1') == quantity('1000m')"),
            Ok(Value::Bool(true))
        );
        assert_eq!(
            eval("quantity('1Gi').compareTo(quantity('1G'))"),
            Ok(Value::Int(1))
        );
        assert_eq!(
            eval("quantity('1.5').asInteger()").unwrap_err(),
            "cannot convert value to integer"
        );
        assert_eq!(
            eval("quantity('1').add(2) == quantity('3')"),
            Ok(Value::Bool(true))
        );
        assert!(
            eval("quantity('one')")
                .unwrap_err()
                .starts_with("quantities must match")
        );
        assert_eq!(eval("isQuantity('one')"), Ok(Value::Bool(false)));
    }

    #[test]
    fn cel_bind_binds_once_and_other_binds_are_left_alone() {
        assert_eq!(
            eval("cel.bind(x, [1, 2], x.size() + x.sum())"),
            Ok(Value::Int(5))
        );
        assert!(
            eval("cel.bind(1, 2, 3)")
                .unwrap_err()
                .contains("simple identifiers")
        );
    }
}
