//! `/v1/rules`: deployed rule files, by name, for `vigil deploy`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::extract::ApiPath;
use super::statements::{SqlRequest, rejected};
use crate::error::ApiError;
use crate::rules::{RuleDeployment, RulePlan, RuleView};
use crate::service::Service;

/// The deployed rules.
#[derive(Debug, Serialize, JsonSchema)]
pub struct RulesResponse {
    /// By name.
    pub rules: Vec<RuleView>,
}

/// `GET /v1/rules`: every deployed rule with its content hash, SQL and queries.
pub async fn list(State(service): State<Arc<Service>>) -> Json<RulesResponse> {
    Json(RulesResponse {
        rules: service.rules().await,
    })
}

/// `PUT /v1/rules/{name}`: deploys a rule, or replaces the version deployed.
pub async fn deploy(
    State(service): State<Arc<Service>>,
    ApiPath(name): ApiPath<String>,
    request: Result<Json<SqlRequest>, JsonRejection>,
) -> Result<Json<RuleDeployment>, ApiError> {
    let Json(request) = request.map_err(rejected)?;
    Ok(Json(service.deploy_rule(&name, &request.sql).await?))
}

/// A rule to plan, with the declarations it needs that the server does not have yet.
#[derive(Debug, Deserialize)]
pub struct RulePlanRequest {
    /// The rule's text.
    pub sql: String,
    /// Sources and sinks of a profile deployed in the same change, planned first.
    #[serde(default)]
    pub profile: Option<String>,
}

/// `POST /v1/rules/{name}/plan`: what deploying the rule would do, doing nothing: added,
/// changed or unchanged, and per sink whether its checkpointed state is kept or reset.
pub async fn plan(
    State(service): State<Arc<Service>>,
    ApiPath(name): ApiPath<String>,
    request: Result<Json<RulePlanRequest>, JsonRejection>,
) -> Result<Json<RulePlan>, ApiError> {
    let Json(request) = request.map_err(rejected)?;
    let profile = request.profile.as_deref();
    Ok(Json(service.plan_rule(&name, &request.sql, profile).await?))
}

/// `DELETE /v1/rules/{name}`: stops a rule's queries and removes it.
pub async fn remove(
    State(service): State<Arc<Service>>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<RuleView>, ApiError> {
    Ok(Json(service.remove_rule(&name).await?))
}
