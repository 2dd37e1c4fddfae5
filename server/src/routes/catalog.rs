//! `GET /v1/catalog`: sources, views and sinks with their schemas and options, secrets
//! masked.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use datafusion::arrow::datatypes::SchemaRef;
use schemars::JsonSchema;
use serde::Serialize;
use vigil_engine::Engine;
use vigil_engine::sql::Options;

use crate::service::Service;

/// Option keys whose values are never shown.
const SECRET_MARKERS: &[&str] = &["password", "secret", "token", "credential", "jaas"];

/// The catalog.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CatalogView {
    sources: Vec<ObjectView>,
    views: Vec<ObjectView>,
    sinks: Vec<ObjectView>,
}

/// One source, view or sink.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ObjectView {
    name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    columns: Vec<ColumnView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    watermark: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    options: BTreeMap<String, String>,
    sql: String,
}

/// A column.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ColumnView {
    name: String,
    #[serde(rename = "type")]
    data_type: String,
}

/// `GET /v1/catalog`.
pub async fn catalog(State(service): State<Arc<Service>>) -> Json<CatalogView> {
    Json(service.with_engine(view).await)
}

fn view(engine: &Engine) -> CatalogView {
    let catalog = engine.catalog();
    let columns = |schema: Option<SchemaRef>| -> Vec<ColumnView> {
        schema
            .map(|s| {
                s.fields()
                    .iter()
                    .map(|f| ColumnView {
                        name: f.name().clone(),
                        data_type: f.data_type().to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    CatalogView {
        sources: catalog
            .sources()
            .values()
            .map(|s| ObjectView {
                name: s.name.clone(),
                columns: columns(Some(s.schema.clone())),
                watermark: s
                    .watermark
                    .as_ref()
                    .map(|w| format!("{} AS {}", w.column, w.sql)),
                options: masked(&s.options),
                sql: shown_sql(&s.options, &s.sql),
            })
            .collect(),
        views: catalog
            .views()
            .values()
            .map(|v| ObjectView {
                name: v.name.clone(),
                columns: columns(catalog.relation_schema(&v.name)),
                watermark: None,
                options: BTreeMap::new(),
                sql: v.sql.clone(),
            })
            .collect(),
        sinks: catalog
            .sinks()
            .values()
            .map(|s| ObjectView {
                name: s.name.clone(),
                columns: Vec::new(),
                watermark: None,
                options: masked(&s.options),
                sql: shown_sql(&s.options, &s.sql),
            })
            .collect(),
    }
}

/// The statement, unless it carries a secret option.
fn shown_sql(options: &Options, sql: &str) -> String {
    if options.iter().any(|(k, _)| is_secret(k)) {
        "(hidden: the statement sets a secret option)".into()
    } else {
        sql.to_string()
    }
}

fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_MARKERS.iter().any(|m| key.contains(m))
}

fn masked(options: &Options) -> BTreeMap<String, String> {
    options
        .iter()
        .map(|(k, v)| {
            let value = if is_secret(k) { "****" } else { v };
            (k.to_string(), value.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked() {
        let options = Options::new([
            ("connector", "kafka"),
            ("properties.sasl.password", "hunter2"),
            ("properties.sasl.jaas.config", "x"),
        ]);
        let shown = masked(&options);
        assert_eq!(shown["connector"], "kafka");
        assert_eq!(shown["properties.sasl.password"], "****");
        assert_eq!(shown["properties.sasl.jaas.config"], "****");
    }
}
