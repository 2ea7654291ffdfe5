//! `kubectl get` columns of custom resources: `Name` and the version's
//! `additionalPrinterColumns` (or `Age` when it has none), cells computed as
//! apiextensions-apiserver's table convertor does (the first value the JSONPath
//! selects; typed cells; dates as ages).

use api::table::{ColumnDefinition, IncludeObject};
use jiff::Timestamp;
use serde_json::{Value, json};

use super::jsonpath::{self, JsonPath};

/// One printer column.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub name: String,
    pub ty: String,
    pub format: String,
    pub description: String,
    pub priority: i32,
    pub path: JsonPath,
}

impl Column {
    /// Reads an `additionalPrinterColumns` entry (validated already).
    pub(crate) fn parse(v: &Value) -> Option<Column> {
        let s = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Some(Column {
            name: s("name"),
            ty: s("type"),
            format: s("format"),
            description: s("description"),
            priority: v
                .get("priority")
                .and_then(Value::as_i64)
                .and_then(|p| i32::try_from(p).ok())
                .unwrap_or(0),
            path: JsonPath::parse(v.get("jsonPath").and_then(Value::as_str)?).ok()?,
        })
    }

    /// The `Age` column served when a version defines none.
    pub(crate) fn age() -> Column {
        Column {
            name: "Age".into(),
            ty: "date".into(),
            format: String::new(),
            description: api::table::creation_timestamp_description().into(),
            priority: 0,
            path: JsonPath::parse(".metadata.creationTimestamp").expect("a valid path"),
        }
    }

    fn definition(&self) -> ColumnDefinition {
        ColumnDefinition {
            name: self.name.clone(),
            value_type: self.ty.clone(),
            format: self.format.clone(),
            description: self.description.clone(),
            priority: self.priority,
        }
    }

    fn cell(&self, obj: &Value, now: Timestamp) -> Value {
        let Some(v) = self.path.first(obj) else {
            return Value::Null;
        };
        if v.is_null() {
            return Value::Null;
        }
        match self.ty.as_str() {
            "string" => Value::String(jsonpath::print(v)),
            "integer" => match v {
                Value::Number(n) => n
                    .as_i64()
                    .or_else(|| n.as_f64().map(|f| f as i64))
                    .map_or(Value::Null, Value::from),
                _ => Value::Null,
            },
            "number" => match v {
                Value::Number(n) => n.as_f64().map_or(Value::Null, Value::from),
                _ => Value::Null,
            },
            "boolean" => match v {
                Value::Bool(b) => Value::Bool(*b),
                _ => Value::Null,
            },
            "date" => match v.as_str() {
                Some(s) => match s.parse::<Timestamp>() {
                    Ok(t) => {
                        Value::String(api::table::human_duration(now.as_second() - t.as_second()))
                    }
                    Err(_) => Value::String("<invalid>".into()),
                },
                None => Value::Null,
            },
            _ => Value::Null,
        }
    }
}

/// A `Table` of custom resources with `columns` (after `Name`).
pub(crate) fn table(
    columns: &[Column],
    objects: &[Value],
    now: Timestamp,
    include_object: IncludeObject,
    list_meta: Value,
) -> Value {
    let mut defs = vec![api::table::name_column()];
    defs.extend(columns.iter().map(Column::definition));
    let cells = |obj: &Value| {
        let mut row = vec![json!(
            obj.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
        )];
        row.extend(columns.iter().map(|c| c.cell(obj, now)));
        row
    };
    api::table::build_table_with(defs, objects, &cells, include_object, list_meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_typed_like_kubernetes_table_convertor() {
        let cols: Vec<Column> = [
            json!({"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"}),
            json!({"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}),
            json!({"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status", "priority": 1}),
            json!({"name": "Missing", "type": "string", "jsonPath": ".spec.nothing"}),
            json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}),
        ]
        .iter()
        .map(|c| Column::parse(c).expect("valid column"))
        .collect();
        let now: Timestamp = "2024-01-01T01:00:00Z".parse().expect("time");
        let obj = json!({"metadata": {"name": "c1", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"cronSpec": "* * * * */5", "replicas": 2},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let t = table(
            &cols,
            &[obj],
            now,
            IncludeObject::None,
            json!({"resourceVersion": "5"}),
        );
        assert_eq!(t["kind"], "Table");
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| c["name"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(
            names,
            ["Name", "Spec", "Replicas", "Ready", "Missing", "Age"]
        );
        assert_eq!(t["columnDefinitions"][0]["format"], "name");
        assert_eq!(t["columnDefinitions"][3]["priority"], 1);
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["c1", "* * * * */5", 2, "True", null, "60m"])
        );
        assert_eq!(t["metadata"]["resourceVersion"], "5");
    }
}
