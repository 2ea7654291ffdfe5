//! CEL as Kubernetes gives it to admission policies (k8s.io/apiserver
//! `pkg/admission/plugin/cel`), on the `cel` crate (cel-rust): one shared
//! environment, compiling with Kubernetes' checks and messages
//! (`compilation failed: ERROR: <input>:1:5: ...`), JSON objects as CEL values,
//! and runtime errors worded as cel-go words them.
//!
//! cel-rust parses and evaluates but has no type checker: an expression is
//! checked here for what Kubernetes' checker would refuse without knowing the
//! object's schema — undeclared variables and functions, `variables.<name>`
//! that no earlier variable defines, and a literal of the wrong type where a
//! bool or string is required. Type errors that need schemas surface at runtime.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};

use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::objects::Key;
use cel::{Context, Env, ExecutionError, Program, Value};

use super::library;

/// Variables every policy expression sees.
const ROOTS: [&str; 4] = ["object", "oldObject", "request", "namespaceObject"];

/// Type names an expression may use as values (`type(x) == int`).
const TYPE_NAMES: [&str; 11] = [
    "bool",
    "bytes",
    "double",
    "duration",
    "int",
    "list",
    "map",
    "null_type",
    "string",
    "timestamp",
    "uint",
];

/// Functions called as `f(x)` or `ns.f(x)` that the environment implements.
const GLOBAL_FUNCTIONS: &[&str] = &[
    "base64.decode",
    "base64.encode",
    "bool",
    "bytes",
    "double",
    "duration",
    "dyn",
    "int",
    "isQuantity",
    "lists.range",
    "math.abs",
    "math.bitAnd",
    "math.bitNot",
    "math.bitOr",
    "math.bitShiftLeft",
    "math.bitShiftRight",
    "math.bitXor",
    "math.ceil",
    "math.floor",
    "math.isFinite",
    "math.isInf",
    "math.isNaN",
    "math.round",
    "math.sign",
    "math.sqrt",
    "math.trunc",
    "matches",
    "optional.none",
    "optional.of",
    "optional.ofNonZeroValue",
    "quantity",
    "sets.contains",
    "sets.equivalent",
    "sets.intersects",
    "size",
    "string",
    "strings.quote",
    "timestamp",
    "type",
    "uint",
];

/// Functions called as `x.f(y)` that the environment implements.
const MEMBER_FUNCTIONS: &[&str] = &[
    "add",
    "asApproximateFloat",
    "asInteger",
    "charAt",
    "compareTo",
    "contains",
    "distinct",
    "endsWith",
    "find",
    "findAll",
    "flatten",
    "format",
    "getDate",
    "getDayOfMonth",
    "getDayOfWeek",
    "getDayOfYear",
    "getFullYear",
    "getHours",
    "getMilliseconds",
    "getMinutes",
    "getMonth",
    "getSeconds",
    "hasValue",
    "indexOf",
    "isGreaterThan",
    "isInteger",
    "isLessThan",
    "isSorted",
    "join",
    "lastIndexOf",
    "lowerAscii",
    "matches",
    "max",
    "min",
    "or",
    "orValue",
    "replace",
    "reverse",
    "sign",
    "size",
    "slice",
    "sort",
    "split",
    "startsWith",
    "sub",
    "substring",
    "sum",
    "trim",
    "upperAscii",
    "value",
];

/// Functions of Kubernetes' CEL library that this environment does not
/// implement: refused when compiling, with a message saying so.
const UNSUPPORTED_FUNCTIONS: &[&str] = &[
    "allowed",
    "check",
    "cidr",
    "containsCIDR",
    "containsIP",
    "errored",
    "family",
    "fieldSelector",
    "first",
    "format.named",
    "getEscapedPath",
    "getHost",
    "getHostname",
    "getPort",
    "getQuery",
    "getScheme",
    "group",
    "ip",
    "ip.isCanonical",
    "isCIDR",
    "isGlobalUnicast",
    "isIP",
    "isLinkLocalMulticast",
    "isLinkLocalUnicast",
    "isLoopback",
    "isSemver",
    "isURL",
    "isUnspecified",
    "jsonpatch.escapeKey",
    "labelSelector",
    "last",
    "major",
    "masked",
    "minor",
    "optFlatMap",
    "optMap",
    "patch",
    "path",
    "prefixLength",
    "resource",
    "semver",
    "serviceAccount",
    "subresource",
    "transformList",
    "transformMap",
    "transformMapEntry",
    "url",
];

/// The environment every policy expression is compiled and run in.
pub(crate) fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        // Each registration is of a fixed set of distinct names: failing is a
        // programming error the unit tests catch, so the environment stays
        // usable with what did register.
        for (name, result) in [
            ("strings", env.add_extension(cel::extensions::strings)),
            ("lists", env.add_extension(cel::extensions::lists)),
            ("math", env.add_extension(cel::extensions::math)),
            ("encoders", env.add_extension(cel::extensions::encoders)),
            ("kubernetes", env.add_extension(library::extension)),
        ] {
            if let Err(e) = result {
                tracing::error!(extension = name, error = %e, "CEL extension not registered");
            }
        }
        Arc::new(env)
    })
}

/// What the expressions of one policy can see (Kubernetes'
/// `OptionalVariableDeclarations` plus composition).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scope<'a> {
    /// `params` (the policy has a `paramKind`).
    pub params: bool,
    /// `authorizer` (declared for validations, match conditions and variables).
    pub authorizer: bool,
    /// The names `variables.<name>` may use; `None` when the policy has no
    /// variables, so that `variables` is undeclared.
    pub variables: Option<&'a [String]>,
}

/// The type an expression must evaluate to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Returns {
    /// Validations and match conditions.
    Bool,
    /// Message expressions.
    String,
    /// Variables.
    Any,
}

/// A compiled expression and what it refers to.
#[derive(Debug)]
pub(crate) struct Expression {
    source: String,
    program: Program,
    variables: BTreeSet<String>,
}

impl Expression {
    /// The expression as written.
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// The `variables.<name>` it reads.
    pub(crate) fn variables(&self) -> &BTreeSet<String> {
        &self.variables
    }

    /// Runs it against `activation`.
    pub(crate) fn evaluate(&self, activation: &Activation<'_>) -> Result<Value, ExecutionError> {
        let mut ctx = Context::with_env(env().clone());
        ctx.set_variable_resolver(activation);
        self.program.execute(&ctx)
    }
}

/// Compiles `source` for `scope`; the error is Kubernetes' detail, e.g.
/// `compilation failed: ERROR: <input>:1:9: Syntax error: ...`.
pub(crate) fn compile(
    source: &str,
    scope: Scope<'_>,
    returns: Returns,
) -> Result<Expression, String> {
    let program = env()
        .compile(source)
        .map_err(|e| format!("compilation failed: {}", cel_go_layout(&e.to_string())))?;
    let mut check = Check {
        scope,
        source,
        program: &program,
        bound: Vec::new(),
        errors: Vec::new(),
        variables: BTreeSet::new(),
    };
    check.walk(program.expression());
    if !check.errors.is_empty() {
        return Err(format!("compilation failed: {}", check.errors.join("\n")));
    }
    let variables = check.variables;
    if let Some(got) = literal_type(program.expression()) {
        let want = match returns {
            Returns::Bool => Some("bool"),
            Returns::String => Some("string"),
            Returns::Any => None,
        };
        if let Some(want) = want
            && want != got
        {
            return Err(format!("must evaluate to {want} but got {got}"));
        }
    }
    Ok(Expression {
        source: source.to_string(),
        program,
        variables,
    })
}

/// cel-rust prints a snippet as `| line`, cel-go (whose text Kubernetes returns)
/// as ` | line`.
fn cel_go_layout(message: &str) -> String {
    message.replace("\n| ", "\n | ")
}

/// The type of a literal at the root of an expression (`1`, `'a'`, `[1]`).
fn literal_type(e: &IdedExpr) -> Option<&'static str> {
    Some(match &e.expr {
        Expr::Literal(LiteralValue::Boolean(_)) => "bool",
        Expr::Literal(LiteralValue::Bytes(_)) => "bytes",
        Expr::Literal(LiteralValue::Double(_)) => "double",
        Expr::Literal(LiteralValue::Int(_)) => "int",
        Expr::Literal(LiteralValue::Null) => "null_type",
        Expr::Literal(LiteralValue::String(_)) => "string",
        Expr::Literal(LiteralValue::UInt(_)) => "uint",
        Expr::List(_) => "list(dyn)",
        Expr::Map(_) => "map(dyn, dyn)",
        _ => return None,
    })
}

/// The declaration checks of one compile.
struct Check<'a> {
    scope: Scope<'a>,
    source: &'a str,
    program: &'a Program,
    /// Comprehension variables in scope, innermost last.
    bound: Vec<String>,
    errors: Vec<String>,
    variables: BTreeSet<String>,
}

impl Check<'_> {
    fn declared(&self, name: &str) -> bool {
        self.bound.iter().any(|b| b == name)
            || ROOTS.contains(&name)
            || (name == "params" && self.scope.params)
            || (name == "authorizer" && self.scope.authorizer)
            || (name == "variables" && self.scope.variables.is_some())
            || TYPE_NAMES.contains(&name)
    }

    /// `ERROR: <input>:L:C: message` with the line and a caret, as cel-go prints.
    fn error(&mut self, id: u64, message: String) {
        let offset = self
            .program
            .source_info()
            .offset_for(id)
            .map(|(start, _)| start as usize)
            .unwrap_or(0);
        let mut line_start = 0;
        let mut line_no = 1;
        for (i, c) in self.source.char_indices() {
            if i >= offset {
                break;
            }
            if c == '\n' {
                line_no += 1;
                line_start = i + 1;
            }
        }
        let column = self.source[line_start..]
            .char_indices()
            .take_while(|(i, _)| line_start + i < offset)
            .count();
        let line = self.source[line_start..].lines().next().unwrap_or_default();
        self.errors.push(format!(
            "ERROR: <input>:{line_no}:{}: {message}\n | {line}\n | {}^",
            column + 1,
            ".".repeat(column)
        ));
    }

    fn undeclared(&mut self, id: u64, name: &str) {
        let mut message = format!("undeclared reference to '{name}' (in container '')");
        if UNSUPPORTED_FUNCTIONS.contains(&name) {
            message.push_str(": Skiff does not implement this Kubernetes CEL function");
        }
        self.error(id, message);
    }

    fn walk(&mut self, e: &IdedExpr) {
        match &e.expr {
            Expr::Ident(name) => {
                if !self.declared(name) {
                    self.undeclared(e.id, name);
                }
            }
            Expr::Select(select) => {
                if let Expr::Ident(root) = &select.operand.expr
                    && root == "variables"
                    && !self.bound.iter().any(|b| b == root)
                    && let Some(names) = self.scope.variables
                {
                    if names.contains(&select.field) {
                        self.variables.insert(select.field.clone());
                    } else {
                        self.error(e.id, format!("undefined field '{}'", select.field));
                    }
                    return;
                }
                self.walk(&select.operand);
            }
            Expr::Call(call) => {
                let name = call.func_name.as_str();
                // Operators (`_&&_`, `!_`, `@in`) and macro internals are not
                // functions a user names.
                let is_function = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                    && !name.contains('@');
                match &call.target {
                    Some(target) => {
                        // `ns.f(x)`: a namespaced global function, unless `ns` is a
                        // variable.
                        let namespaced = match &target.expr {
                            Expr::Ident(ns) if !self.declared(ns) => Some(format!("{ns}.{name}")),
                            _ => None,
                        };
                        match namespaced {
                            Some(full) if GLOBAL_FUNCTIONS.contains(&full.as_str()) => {}
                            Some(full) if UNSUPPORTED_FUNCTIONS.contains(&full.as_str()) => {
                                self.undeclared(e.id, &full);
                            }
                            _ => {
                                if is_function && !MEMBER_FUNCTIONS.contains(&name) {
                                    self.undeclared(e.id, name);
                                }
                                self.walk(target);
                            }
                        }
                    }
                    None => {
                        if is_function && !GLOBAL_FUNCTIONS.contains(&name) {
                            self.undeclared(e.id, name);
                        }
                    }
                }
                for arg in &call.args {
                    self.walk(arg);
                }
            }
            Expr::Comprehension(c) => {
                self.walk(&c.iter_range);
                self.walk(&c.accu_init);
                let depth = self.bound.len();
                self.bound.push(c.iter_var.clone());
                if let Some(v) = &c.iter_var2 {
                    self.bound.push(v.clone());
                }
                self.bound.push(c.accu_var.clone());
                self.walk(&c.loop_cond);
                self.walk(&c.loop_step);
                self.walk(&c.result);
                self.bound.truncate(depth);
            }
            Expr::List(list) => {
                for item in &list.elements {
                    self.walk(item);
                }
            }
            Expr::Map(map) => {
                for entry in &map.entries {
                    if let EntryExpr::MapEntry(m) = &entry.expr {
                        self.walk(&m.key);
                        self.walk(&m.value);
                    }
                }
            }
            Expr::Struct(s) => {
                for entry in &s.entries {
                    match &entry.expr {
                        EntryExpr::StructField(f) => self.walk(&f.value),
                        EntryExpr::MapEntry(m) => {
                            self.walk(&m.key);
                            self.walk(&m.value);
                        }
                    }
                }
            }
            Expr::Literal(_) | Expr::Unspecified => {}
        }
    }
}

/// A JSON value as a CEL value, as Kubernetes converts unstructured objects:
/// integers that fit an int64 are `int`, other numbers `double`.
pub(crate) fn value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::String(Arc::new(s.clone())),
        serde_json::Value::Array(items) => Value::List(Arc::new(items.iter().map(value).collect())),
        serde_json::Value::Object(fields) => {
            let map: HashMap<Key, Value> = fields
                .iter()
                .map(|(k, v)| (Key::String(Arc::new(k.clone())), value(v)))
                .collect();
            Value::Map(cel::objects::Map { map: Arc::new(map) })
        }
    }
}

/// A CEL value ready to be bound to a variable.
pub(crate) fn bound(v: Value) -> Box<dyn Val> {
    match Box::<dyn Val>::try_from(v) {
        Ok(b) => b,
        // Only functions and types have no runtime representation; JSON never
        // makes either.
        Err(_) => Box::new(cel::common::types::CelNull),
    }
}

/// A JSON value ready to be bound to a variable.
pub(crate) fn json(v: &serde_json::Value) -> Box<dyn Val> {
    bound(value(v))
}

/// The variables one evaluation sees, borrowed from values converted once per
/// request (`object`, `oldObject`, `request`, `namespaceObject`), per param
/// (`params`) and per variable step (`variables`).
pub(crate) struct Activation<'a> {
    /// Variables by name.
    pub vars: [(&'static str, Option<&'a dyn Val>); 6],
}

impl VariableResolver for Activation<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        self.vars
            .iter()
            .find(|(name, _)| *name == variable)
            .and_then(|(_, v)| v.map(CowVal::Borrowed))
    }
}

/// A runtime error as cel-go words it (Kubernetes puts this text in denials:
/// `expression 'x' resulted in error: no such key: foo`).
pub(crate) fn describe(e: &ExecutionError) -> String {
    match e {
        ExecutionError::NoSuchKey(k) => format!("no such key: {k}"),
        ExecutionError::DivisionByZero(_) => "division by zero".into(),
        ExecutionError::RemainderByZero(_) => "modulus by zero".into(),
        ExecutionError::Overflow(..) => "integer overflow".into(),
        ExecutionError::FunctionError { message, .. } => message.clone(),
        ExecutionError::UndeclaredReference(name) if name.as_str() == "authorizer" => {
            "authorizer checks are not supported by Skiff".into()
        }
        ExecutionError::UndeclaredReference(name) => format!("no such attribute(s): {name}"),
        ExecutionError::IndexOutOfBounds(i) => match i {
            Value::Int(i) => format!("index out of bounds: {i}"),
            other => format!("index out of bounds: {other:?}"),
        },
        other => {
            let text = other.to_string();
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => text,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PLAIN: Scope<'static> = Scope {
        params: false,
        authorizer: true,
        variables: None,
    };

    fn run(source: &str, object: serde_json::Value) -> Result<Value, String> {
        let e = compile(source, PLAIN, Returns::Any)?;
        let object = json(&object);
        let null = json(&serde_json::Value::Null);
        let activation = Activation {
            vars: [
                ("object", Some(object.as_ref())),
                ("oldObject", Some(null.as_ref())),
                ("request", Some(null.as_ref())),
                ("namespaceObject", Some(null.as_ref())),
                ("params", None),
                ("variables", None),
            ],
        };
        e.evaluate(&activation).map_err(|e| describe(&e))
    }

    #[test]
    fn syntax_errors_are_worded_as_kubernetes_words_them() {
        let err = compile("object.spec.replicas <", PLAIN, Returns::Bool).unwrap_err();
        assert_eq!(
            err,
            "compilation failed: ERROR: <input>:1:23: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}\n | object.spec.replicas <\n | ......................^"
        );
    }

    #[test]
    fn undeclared_variables_and_functions_are_refused() {
        let err = compile("objekt.spec.replicas > 1", PLAIN, Returns::Bool).unwrap_err();
        assert_eq!(
            err,
            "compilation failed: ERROR: <input>:1:1: undeclared reference to 'objekt' (in container '')\n | objekt.spec.replicas > 1\n | ^"
        );
        let err = compile("object.metadata.name.frobnicate()", PLAIN, Returns::Bool).unwrap_err();
        assert!(
            err.contains("undeclared reference to 'frobnicate'"),
            "{err}"
        );
        let err = compile("params.max > 1", PLAIN, Returns::Bool).unwrap_err();
        assert!(err.contains("undeclared reference to 'params'"), "{err}");
        let err = compile("ip('10.0.0.1').family() == 4", PLAIN, Returns::Bool).unwrap_err();
        assert!(err.contains("Skiff does not implement"), "{err}");
        // Comprehension variables and declared roots are fine.
        compile(
            "object.spec.containers.all(c, c.image.startsWith('r/')) && oldObject == null && request.operation == 'CREATE' && namespaceObject == null",
            PLAIN,
            Returns::Bool,
        )
        .expect("compiles");
        compile(
            "params.max > 1",
            Scope {
                params: true,
                ..PLAIN
            },
            Returns::Bool,
        )
        .expect("params declared");
    }

    #[test]
    fn variables_must_be_defined_before_use() {
        let names = vec!["replicas".to_string()];
        let scope = Scope {
            variables: Some(&names),
            ..PLAIN
        };
        let e = compile("variables.replicas <= 5", scope, Returns::Bool).expect("compiles");
        assert!(e.variables().contains("replicas"));
        let err = compile("variables.other <= 5", scope, Returns::Bool).unwrap_err();
        assert!(err.contains("undefined field 'other'"), "{err}");
        let err = compile("variables.replicas <= 5", PLAIN, Returns::Bool).unwrap_err();
        assert!(err.contains("undeclared reference to 'variables'"), "{err}");
    }

    #[test]
    fn a_literal_of_the_wrong_type_is_refused() {
        assert_eq!(
            compile("1", PLAIN, Returns::Bool).unwrap_err(),
            "must evaluate to bool but got int"
        );
        assert_eq!(
            compile("true", PLAIN, Returns::String).unwrap_err(),
            "must evaluate to string but got bool"
        );
        compile("'fine'", PLAIN, Returns::String).expect("a string message");
    }

    #[test]
    fn missing_fields_are_cel_go_errors_and_has_tests_them() {
        let obj = json!({"spec": {"replicas": 3}});
        assert_eq!(
            run("object.spec.foo > 1", obj.clone()).unwrap_err(),
            "no such key: foo"
        );
        assert_eq!(
            run("has(object.spec.foo)", obj.clone()),
            Ok(Value::Bool(false))
        );
        assert_eq!(
            run("object.spec.replicas <= 5", obj.clone()),
            Ok(Value::Bool(true))
        );
        assert_eq!(run("oldObject == null", obj.clone()), Ok(Value::Bool(true)));
        assert_eq!(run("1 / 0", obj).unwrap_err(), "division by zero");
    }

    #[test]
    fn json_numbers_become_ints_or_doubles() {
        assert_eq!(value(&json!(5)), Value::Int(5));
        assert_eq!(value(&json!(1.5)), Value::Float(1.5));
        assert_eq!(value(&json!(u64::MAX)), Value::Float(u64::MAX as f64));
    }

    #[test]
    fn the_listed_functions_are_implemented() {
        // One call of each global and member function the compile check lets
        // through; none may be an undeclared reference at runtime.
        let obj = json!({"s": "a,b", "l": [3, 1, 2]});
        for source in [
            "base64.decode('aGk=') == b'hi'",
            "base64.encode(b'hi') == 'aGk='",
            "bool('true')",
            "bytes('a') == b'a'",
            "double(1) == 1.0",
            "duration('1s') == duration('1000ms')",
            "dyn(1) == 1",
            "int('2') == 2",
            "isQuantity('1Gi')",
            "lists.range(2) == [0, 1]",
            "math.abs(-1) == 1",
            "math.bitAnd(3, 1) == 1",
            "math.bitNot(0) == -1",
            "math.bitOr(2, 1) == 3",
            "math.bitShiftLeft(1, 2) == 4",
            "math.bitShiftRight(4, 2) == 1",
            "math.bitXor(3, 1) == 2",
            "math.ceil(1.2) == 2.0",
            "math.floor(1.8) == 1.0",
            "math.isFinite(1.0)",
            "!math.isInf(1.0)",
            "!math.isNaN(1.0)",
            "math.round(1.5) == 2.0",
            "math.sign(-3) == -1",
            "math.sqrt(4) == 2.0",
            "math.trunc(1.9) == 1.0",
            "matches('abc', '^a')",
            "!optional.none().hasValue()",
            "optional.of(1).value() == 1",
            "!optional.ofNonZeroValue(0).hasValue()",
            "quantity('1Gi').isGreaterThan(quantity('1Mi'))",
            "sets.contains([1, 2], [1])",
            "sets.equivalent([1, 2], [2, 1])",
            "sets.intersects([1, 2], [2, 3])",
            "size('abc') == 3",
            "string(1) == '1'",
            "strings.quote('a') == '\"a\"'",
            "timestamp('2024-01-01T00:00:00Z').getFullYear() == 2024",
            "type(1) == int",
            "uint(1) == 1u",
            "quantity('1').add(quantity('500m')) == quantity('1500m')",
            "quantity('1.5').asApproximateFloat() == 1.5",
            "quantity('2').asInteger() == 2",
            "'abc'.charAt(1) == 'b'",
            "quantity('1').compareTo(quantity('2')) == -1",
            "'abc'.contains('b')",
            "[1, 1, 2].distinct() == [1, 2]",
            "'abc'.endsWith('c')",
            "'a1b22'.find('[0-9]+') == '1'",
            "'a1b22'.findAll('[0-9]+') == ['1', '22']",
            "[[1], [2]].flatten() == [1, 2]",
            "'%d'.format([1]) == '1'",
            "timestamp('2024-01-02T03:04:05Z').getDate() == 2",
            "timestamp('2024-01-02T03:04:05Z').getDayOfMonth() == 1",
            "timestamp('2024-01-02T03:04:05Z').getDayOfWeek() == 2",
            "timestamp('2024-01-02T03:04:05Z').getDayOfYear() == 1",
            "timestamp('2024-01-02T03:04:05Z').getHours() == 3",
            "timestamp('2024-01-02T03:04:05Z').getMilliseconds() == 0",
            "timestamp('2024-01-02T03:04:05Z').getMinutes() == 4",
            "timestamp('2024-01-02T03:04:05Z').getMonth() == 0",
            "timestamp('2024-01-02T03:04:05Z').getSeconds() == 5",
            "optional.of(1).hasValue()",
            "'abc'.indexOf('c') == 2 && [1, 2].indexOf(2) == 1",
            "quantity('2').isGreaterThan(quantity('1'))",
            "quantity('2').isInteger()",
            "quantity('1').isLessThan(quantity('2'))",
            "[1, 2].isSorted() && ![2, 1].isSorted()",
            "['a', 'b'].join(',') == 'a,b'",
            "'abca'.lastIndexOf('a') == 3 && [1, 1].lastIndexOf(1) == 1",
            "'ABC'.lowerAscii() == 'abc'",
            "'abc'.matches('b')",
            "[1, 3, 2].max() == 3",
            "[1, 3, 2].min() == 1",
            "optional.none().or(optional.of(1)).value() == 1",
            "optional.none().orValue(2) == 2",
            "'aa'.replace('a', 'b') == 'bb'",
            "[1, 2].reverse() == [2, 1]",
            "quantity('-1').sign() == -1",
            "'abc'.size() == 3",
            "[1, 2, 3].slice(1, 2) == [2]",
            "[2, 1].sort() == [1, 2]",
            "object.s.split(',') == ['a', 'b']",
            "'abc'.startsWith('a')",
            "quantity('2').sub(quantity('1')) == quantity('1')",
            "'abc'.substring(1) == 'bc'",
            "[1, 2].sum() == 3",
            "' a '.trim() == 'a'",
            "'abc'.upperAscii() == 'ABC'",
            "optional.of(1).value() == 1",
            "cel.bind(x, object.l, x.size() == 3 && x.min() == 1)",
            "object.l.all(x, x > 0) && object.l.exists(x, x == 2) && object.l.exists_one(x, x == 3)",
            "object.l.map(x, x * 2) == [6, 2, 4] && object.l.filter(x, x > 1) == [3, 2]",
        ] {
            assert_eq!(run(source, obj.clone()), Ok(Value::Bool(true)), "{source}");
        }
    }
}
