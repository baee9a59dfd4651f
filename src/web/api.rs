//! The JSON API over the store and the live view. Times are Unix seconds; a negative
//! `from` or `to` counts back from now (`from=-3600`: the last hour).

use crate::engine::features::EngineStatus;
use crate::sinks::live::{LiveSnapshot, SharedLive};
use crate::store::{GroupBy, History, Only, Reader, Readers, Total};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::SystemTime;

#[derive(Clone)]
pub struct ApiState {
    pub live: SharedLive,
    /// None when the store is off.
    pub reader: Option<Arc<Readers>>,
    pub alerts: crate::alerts::board::AlertBoard,
    /// Where billing months start, for the usage view.
    pub billing_day: u32,
}

#[derive(Deserialize)]
pub struct RangeParams {
    from: Option<i64>,
    to: Option<i64>,
    step: Option<i64>,
    #[serde(default)]
    group_by: GroupBy,
    top: Option<usize>,
    /// Only this process (by name): short for `only_by=process&only=NAME`.
    process: Option<String>,
    /// Only the group `only` of this grouping (a container, pod, unit, ...).
    only_by: Option<GroupBy>,
    only: Option<String>,
}

impl RangeParams {
    /// The group asked for alone, if any: (grouping, key).
    fn only(&self) -> Option<(GroupBy, String)> {
        match (&self.process, &self.only) {
            (Some(process), _) => Some((GroupBy::Process, process.clone())),
            (None, Some(key)) => Some((self.only_by.unwrap_or_default(), key.clone())),
            (None, None) => None,
        }
    }
}

#[derive(Serialize)]
struct TotalsAnswer {
    from: i64,
    to: i64,
    resolution: i64,
    /// When the store's history begins (null while it is empty).
    recorded_since: Option<i64>,
    rows: Vec<Total>,
}

#[derive(Serialize)]
struct HistoryAnswer {
    from: i64,
    to: i64,
    /// When the store's history begins: the page draws nothing before it.
    recorded_since: Option<i64>,
    #[serde(flatten)]
    history: History,
}

pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

/// A malformed query answers 400 in the API's JSON like every other error.
fn parameters(params: Result<Query<RangeParams>, QueryRejection>) -> Result<RangeParams, ApiError> {
    params
        .map(|Query(params)| params)
        .map_err(|rejection| ApiError(StatusCode::BAD_REQUEST, rejection.body_text()))
}

fn now() -> i64 {
    crate::store::seconds(SystemTime::now())
}

/// Resolves relative times; refuses empty or upside-down ranges.
fn range(params: &RangeParams) -> Result<(i64, i64), ApiError> {
    let now = now();
    let absolute = |t: i64| if t <= 0 { now + t } else { t };
    let to = params.to.map_or(now + 1, absolute);
    let from = params.from.map_or(to - 3600, absolute);
    if from >= to {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("from ({from}) must be before to ({to})"),
        ));
    }
    Ok((from, to))
}

async fn with_reader<T: Send + 'static>(
    state: &ApiState,
    query: impl FnOnce(&Reader) -> anyhow::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    let reader = state.reader.clone().ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            "the store is off ([store] enabled = false): no history".into(),
        )
    })?;
    tokio::task::spawn_blocking(move || reader.with(query))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))
}

pub async fn live(State(state): State<ApiState>) -> Json<LiveSnapshot> {
    Json(crate::locks::read(&state.live).clone())
}

/// The engine counting, and each optional part it runs with or without.
pub async fn status(State(state): State<ApiState>) -> Json<EngineStatus> {
    Json(crate::locks::read(&state.live).engine.clone())
}

pub async fn totals(
    State(state): State<ApiState>,
    params: Result<Query<RangeParams>, QueryRejection>,
) -> Result<Json<impl Serialize>, ApiError> {
    let params = parameters(params)?;
    let (from, to) = range(&params)?;
    let (group_by, top) = (params.group_by, params.top.unwrap_or(20).clamp(1, 1000));
    let only = params.only();
    let (recorded_since, (resolution, rows)) = with_reader(&state, move |reader| {
        let only = only.as_ref().map(|(group_by, key)| Only {
            group_by: *group_by,
            key,
        });
        Ok((
            reader.recording_since()?,
            reader.totals(from, to, group_by, top, only)?,
        ))
    })
    .await?;
    Ok(Json(TotalsAnswer {
        from,
        to,
        resolution,
        recorded_since,
        rows,
    }))
}

pub async fn history(
    State(state): State<ApiState>,
    params: Result<Query<RangeParams>, QueryRejection>,
) -> Result<Json<impl Serialize>, ApiError> {
    let params = parameters(params)?;
    let (from, to) = range(&params)?;
    // About 300 points across the range unless asked otherwise.
    let step = params.step.unwrap_or(((to - from) / 300).max(1));
    let (group_by, top) = (params.group_by, params.top.unwrap_or(10).clamp(1, 100));
    let only = params.only();
    let (recorded_since, history) = with_reader(&state, move |reader| {
        let only = only.as_ref().map(|(group_by, key)| Only {
            group_by: *group_by,
            key,
        });
        Ok((
            reader.recording_since()?,
            reader.history(from, to, step, group_by, top, only)?,
        ))
    })
    .await?;
    Ok(Json(HistoryAnswer {
        from,
        to,
        recorded_since,
        history,
    }))
}

#[derive(Deserialize)]
pub struct UsageParams {
    #[serde(default)]
    group_by: GroupBy,
    top: Option<usize>,
}

#[derive(Serialize)]
struct UsageAnswer {
    #[serde(flatten)]
    usage: crate::report::usage::Usage,
    /// The alert rules: quotas with how much of each is used.
    alerts: Vec<crate::alerts::board::RuleStatus>,
}

/// Days and billing months, stacked by the largest groups, with the alert rules.
pub async fn usage(
    State(state): State<ApiState>,
    params: Result<Query<UsageParams>, QueryRejection>,
) -> Result<Json<impl Serialize>, ApiError> {
    let params = params
        .map(|Query(params)| params)
        .map_err(|rejection| ApiError(StatusCode::BAD_REQUEST, rejection.body_text()))?;
    let (group_by, top) = (params.group_by, params.top.unwrap_or(8).clamp(1, 50));
    let billing_day = state.billing_day;
    let usage = with_reader(&state, move |reader| {
        let now = chrono::Local::now();
        crate::report::usage::usage(reader, &chrono::Local, now, group_by, top, billing_day)
    })
    .await?;
    Ok(Json(UsageAnswer {
        usage,
        alerts: state.alerts.rules(),
    }))
}
