//! A subset of the Prometheus HTTP API on the evaluator listener, so that
//! Grafana's built-in Prometheus data source, `promtool` and other
//! Prometheus clients chart Cube metric expressions with no plugin
//! (README "Prometheus API"). The `query` is a Cube metric expression, not
//! PromQL; the answers have Prometheus's exact JSON shapes.
//!
//! - `GET|POST /api/v1/query_range` (`query`, `start`, `end`, `step`): a
//!   `matrix`, one series per group (see [`crate::service::range`] for how
//!   steps map to tiers);
//! - `GET|POST /api/v1/query` (`query`, `time`, and Cubed's own `step`,
//!   default 1 minute): a `vector` of the bin holding `time` (a `scalar`
//!   for an expression without reduces);
//! - `GET|POST /api/v1/labels`, `GET /api/v1/label/<name>/values`
//!   (`__name__` lists the event types), `GET|POST /api/v1/series`
//!   (`match[]` selectors pick event types), `GET /api/v1/metadata`,
//!   `GET /api/v1/status/buildinfo`.
//!
//! Errors are Prometheus's `{"status": "error", "errorType", "error"}`.

use std::sync::Arc;

use serde_json::{Map, Value, json};
use warp::http::{HeaderMap, Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::App;
use super::common::{access, read_body, with_app};
use super::error::{ApiError, json_response};
use crate::expr::selector::parse_selector;
use crate::limits::{MAX_PROMETHEUS_FORM_BYTES, MAX_SELECTORS};
use crate::model::access::Role;
use crate::model::time;
use crate::service::range::evaluate_range;
use crate::service::{Access, RangeAnswer, RangeQuery, Series};

/// A request's parameters: the form body's (a POST's) first, then the
/// query string's, as Prometheus reads them.
type Params = Vec<(String, String)>;

/// The step of an instant query when none is given: one minute.
const DEFAULT_INSTANT_STEP_MS: i64 = 60_000;

fn first<'a>(p: &'a Params, name: &str) -> Option<&'a str> {
    p.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn bad_parameter(name: &str, message: String) -> ApiError {
    ApiError::with_message(
        StatusCode::BAD_REQUEST,
        &format!("invalid parameter \"{name}\""),
        message,
    )
}

fn required<'a>(p: &'a Params, name: &str) -> Result<&'a str, ApiError> {
    first(p, name).ok_or_else(|| bad_parameter(name, "missing".into()))
}

/// A time parameter: Unix seconds or RFC 3339.
fn time_param(p: &Params, name: &str) -> Result<Option<i64>, ApiError> {
    first(p, name)
        .map(|s| {
            time::parse_unix_seconds(s).ok_or_else(|| {
                bad_parameter(
                    name,
                    format!(
                        "cannot parse {s:?} to a valid timestamp (Unix seconds or RFC 3339, years 0 to 9999)"
                    ),
                )
            })
        })
        .transpose()
}

/// A duration parameter: seconds, or Prometheus's `1m`, `1h30m`.
fn duration_param(p: &Params, name: &str) -> Result<Option<i64>, ApiError> {
    first(p, name)
        .map(|s| {
            time::parse_duration_ms(s).ok_or_else(|| {
                bad_parameter(
                    name,
                    format!(
                        "cannot parse {s:?} to a valid duration (seconds, or 10s, 1m, 5m, 1h30m, 1d...); zero or negative query resolution step widths are not accepted"
                    ),
                )
            })
        })
        .transpose()
}

/// The parameters of a request: its query string, and a POST's
/// form-encoded body (at most [`MAX_PROMETHEUS_FORM_BYTES`], read within
/// `--body-timeout-ms`).
fn params(
    app: Arc<App>,
) -> impl Filter<Extract = (Result<Params, ApiError>,), Error = Rejection> + Clone {
    warp::method()
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .and(with_app(app))
        .then(
            |method: Method, raw: String, headers: HeaderMap, body, app: Arc<App>| async move {
                let query: Params = serde_urlencoded::from_str(&raw).map_err(|e| {
                    ApiError::with_message(
                        StatusCode::BAD_REQUEST,
                        "invalid query string",
                        e.to_string(),
                    )
                })?;
                let form = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| {
                        v.trim_start()
                            .to_ascii_lowercase()
                            .starts_with("application/x-www-form-urlencoded")
                    });
                if method != Method::POST || !form {
                    return Ok(query);
                }
                let length = headers
                    .get("content-length")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok());
                let bytes = read_body(
                    length,
                    body,
                    MAX_PROMETHEUS_FORM_BYTES,
                    app.limits.body_timeout,
                )
                .await?;
                let mut all: Params = serde_urlencoded::from_bytes(&bytes).map_err(|e| {
                    ApiError::with_message(
                        StatusCode::BAD_REQUEST,
                        "invalid form body",
                        e.to_string(),
                    )
                })?;
                all.extend(query);
                Ok(all)
            },
        )
}

/// A Prometheus answer: `{"status": "success", "data"}` or the error.
fn answer(r: Result<Value, ApiError>) -> Response {
    match r {
        Ok(data) => json_response(
            StatusCode::OK,
            &json!({ "status": "success", "data": data }),
        ),
        Err(e) => e.prometheus(),
    }
}

/// A sample's time: Unix seconds, with milliseconds when there are any.
fn seconds(ms: i64) -> Value {
    if ms % 1000 == 0 {
        Value::from(ms / 1000)
    } else {
        json!(ms as f64 / 1000.0)
    }
}

/// A sample's value as Prometheus writes it (Go's shortest `'f'` form,
/// `NaN`, `+Inf`, `-Inf`).
fn sample_value(v: f64) -> Value {
    Value::String(if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    })
}

/// A label name for a group field: characters Prometheus does not allow
/// in a label name become `_`; a name that would start with a digit or
/// `__`, or be `expression` or `other`, is prefixed with `group_`.
pub fn group_label(field: &str) -> String {
    let name: String = field
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let clashes = name.is_empty()
        || name.starts_with(|c: char| c.is_ascii_digit())
        || name.starts_with("__")
        || name == "expression"
        || name == "other";
    if clashes {
        format!("group_{name}")
    } else {
        name
    }
}

/// A series' labels: `expression`, and the group (`<field>="<group>"`, or
/// `other="true"` for the rest of a top-N).
fn labels(expression: &str, field: Option<&str>, s: &Series) -> Value {
    let mut m = Map::new();
    m.insert("expression".into(), Value::String(expression.to_owned()));
    match (&s.group, field) {
        (Some(Some(g)), Some(f)) => {
            m.insert(group_label(f), Value::String(g.clone()));
        }
        (Some(None), _) => {
            m.insert("other".into(), Value::String("true".into()));
        }
        _ => {}
    }
    Value::Object(m)
}

fn matrix(expression: &str, a: &RangeAnswer) -> Value {
    let result: Vec<Value> = a
        .series
        .iter()
        .filter(|s| !s.points.is_empty())
        .map(|s| {
            let values: Vec<Value> = s
                .points
                .iter()
                .map(|&(t, v)| json!([seconds(t), sample_value(v)]))
                .collect();
            json!({ "metric": labels(expression, a.group_field.as_deref(), s), "values": values })
        })
        .collect();
    json!({ "resultType": "matrix", "result": result })
}

async fn query_range(
    access: Result<Access, ApiError>,
    p: Result<Params, ApiError>,
    app: Arc<App>,
) -> Result<Value, ApiError> {
    let tenant = access?.tenant;
    let p = p?;
    let expression = required(&p, "query")?.to_owned();
    let start = time_param(&p, "start")?.ok_or_else(|| bad_parameter("start", "missing".into()))?;
    let end = time_param(&p, "end")?.ok_or_else(|| bad_parameter("end", "missing".into()))?;
    let step =
        duration_param(&p, "step")?.ok_or_else(|| bad_parameter("step", "missing".into()))?;
    let q = RangeQuery {
        expression,
        start,
        end,
        step,
    };
    let a = evaluate_range(&app.evaluator, &tenant, &q).await?;
    Ok(matrix(&q.expression, &a))
}

async fn query(
    access: Result<Access, ApiError>,
    p: Result<Params, ApiError>,
    app: Arc<App>,
) -> Result<Value, ApiError> {
    let tenant = access?.tenant;
    let p = p?;
    let expression = required(&p, "query")?.to_owned();
    let at = time_param(&p, "time")?.unwrap_or_else(|| app.clock.now_ms());
    let step = duration_param(&p, "step")?.unwrap_or(DEFAULT_INSTANT_STEP_MS);
    let q = RangeQuery {
        expression,
        start: at,
        end: at,
        step,
    };
    let a = evaluate_range(&app.evaluator, &tenant, &q).await?;
    let sample = |v: f64| json!([seconds(at), sample_value(v)]);
    let constant =
        crate::plan::compile_metric(&q.expression).is_ok_and(|(_, plan)| plan.leaves().is_empty());
    if constant {
        let v = a
            .series
            .first()
            .and_then(|s| s.points.first())
            .map_or(f64::NAN, |p| p.1);
        return Ok(json!({ "resultType": "scalar", "result": sample(v) }));
    }
    let result: Vec<Value> = a
        .series
        .iter()
        .filter_map(|s| {
            let &(_, v) = s.points.first()?;
            Some(json!({
                "metric": labels(&q.expression, a.group_field.as_deref(), s),
                "value": sample(v),
            }))
        })
        .collect();
    Ok(json!({ "resultType": "vector", "result": result }))
}

/// The `match[]` selectors of a request, parsed.
fn selectors(p: &Params) -> Result<Vec<crate::expr::selector::Selector>, ApiError> {
    let given: Vec<&str> = p
        .iter()
        .filter(|(k, _)| k == "match[]")
        .map(|(_, v)| v.as_str())
        .collect();
    if given.len() > MAX_SELECTORS {
        return Err(bad_parameter(
            "match[]",
            format!("at most {MAX_SELECTORS} selectors, not {}", given.len()),
        ));
    }
    given
        .into_iter()
        .map(|s| parse_selector(s).map_err(|e| bad_parameter("match[]", format!("{s:?}: {e}"))))
        .collect()
}

/// The tenant's event types that any of `match[]` selects (all of them
/// without selectors, unless `required`).
async fn selected_types(
    tenant: &crate::model::Tenant,
    p: &Params,
    app: &App,
    required: bool,
) -> Result<Vec<String>, ApiError> {
    let selectors = selectors(p)?;
    if required && selectors.is_empty() {
        return Err(ApiError::with_message(
            StatusCode::BAD_REQUEST,
            "no match[] parameter provided",
            "give at least one series selector, e.g. match[]=request",
        ));
    }
    let types = app.events.types(tenant).await?;
    Ok(types
        .into_iter()
        .filter(|t| selectors.is_empty() || selectors.iter().any(|s| s.selects_type(t)))
        .collect())
}

async fn series(
    access: Result<Access, ApiError>,
    p: Result<Params, ApiError>,
    app: Arc<App>,
) -> Result<Value, ApiError> {
    let tenant = access?.tenant;
    let p = p?;
    let types = selected_types(&tenant, &p, &app, true).await?;
    Ok(Value::Array(
        types
            .into_iter()
            .map(|t| json!({ "__name__": t }))
            .collect(),
    ))
}

async fn label_names(
    access: Result<Access, ApiError>,
    p: Result<Params, ApiError>,
) -> Result<Value, ApiError> {
    access?;
    selectors(&p?)?;
    Ok(json!(["__name__", "expression"]))
}

async fn label_values(
    name: String,
    access: Result<Access, ApiError>,
    p: Result<Params, ApiError>,
    app: Arc<App>,
) -> Result<Value, ApiError> {
    let tenant = access?.tenant;
    let p = p?;
    let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(bad_parameter(
            "name",
            format!("invalid label name: {name:?}"),
        ));
    }
    if name != "__name__" {
        // Series are expressions asked for, not stored: no other label
        // has values to list.
        selectors(&p)?;
        return Ok(json!([]));
    }
    Ok(Value::from(selected_types(&tenant, &p, &app, false).await?))
}

async fn metadata(
    access: Result<Access, ApiError>,
    p: Result<Params, ApiError>,
    app: Arc<App>,
) -> Result<Value, ApiError> {
    let tenant = access?.tenant;
    let p = p?;
    let limit = match first(&p, "limit") {
        None => usize::MAX,
        Some(s) => match s.trim().parse::<i64>() {
            Ok(n) if n < 0 => usize::MAX,
            Ok(n) => usize::try_from(n).unwrap_or(usize::MAX),
            Err(_) => return Err(bad_parameter("limit", format!("{s:?} is not a number"))),
        },
    };
    let metric = first(&p, "metric");
    let mut out = Map::new();
    for t in app.events.types(&tenant).await? {
        if out.len() >= limit {
            break;
        }
        if metric.is_some_and(|m| m != t) {
            continue;
        }
        let help = format!(
            "Cube events of type {t}; chart them with a metric expression such as sum({t})"
        );
        out.insert(t, json!([{ "type": "unknown", "help": help, "unit": "" }]));
    }
    Ok(Value::Object(out))
}

fn buildinfo() -> Value {
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "application": "cubed",
        "revision": "",
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    })
}

/// The routes, under `/api/v1/`.
pub fn routes(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let get_or_post = || warp::get().or(warp::post()).unify();
    // Who asks (a `read` key), the parameters, the shared state.
    let request = {
        let app = Arc::clone(&app);
        move || {
            access(Arc::clone(&app), Role::Read)
                .and(params(Arc::clone(&app)))
                .and(with_app(Arc::clone(&app)))
        }
    };
    let query_range = warp::path!("api" / "v1" / "query_range")
        .and(get_or_post())
        .and(request())
        .then(|a, p, app| async move { answer(query_range(a, p, app).await) });
    let query = warp::path!("api" / "v1" / "query")
        .and(get_or_post())
        .and(request())
        .then(|a, p, app| async move { answer(query(a, p, app).await) });
    let series = warp::path!("api" / "v1" / "series")
        .and(get_or_post())
        .and(request())
        .then(|a, p, app| async move { answer(series(a, p, app).await) });
    let labels = warp::path!("api" / "v1" / "labels")
        .and(get_or_post())
        .and(request())
        .then(|a, p, _app: Arc<App>| async move { answer(label_names(a, p).await) });
    let values = warp::path!("api" / "v1" / "label" / String / "values")
        .and(warp::get())
        .and(request())
        .then(|name, a, p, app| async move { answer(label_values(name, a, p, app).await) });
    let metadata = warp::path!("api" / "v1" / "metadata")
        .and(warp::get())
        .and(request())
        .then(|a, p, app| async move { answer(metadata(a, p, app).await) });
    let buildinfo = warp::path!("api" / "v1" / "status" / "buildinfo")
        .and(warp::get())
        .and(access(app, Role::Read))
        .then(|a: Result<Access, ApiError>| async move { answer(a.map(|_| buildinfo())) });
    query_range
        .or(query)
        .unify()
        .or(series)
        .unify()
        .or(labels)
        .unify()
        .or(values)
        .unify()
        .or(metadata)
        .unify()
        .or(buildinfo)
        .unify()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_labels_as_prometheus_writes_them() {
        assert_eq!(sample_value(1.0), json!("1"));
        assert_eq!(sample_value(0.25), json!("0.25"));
        assert_eq!(sample_value(1e21), json!("1000000000000000000000"));
        assert_eq!(sample_value(f64::NAN), json!("NaN"));
        assert_eq!(sample_value(f64::INFINITY), json!("+Inf"));
        assert_eq!(sample_value(f64::NEG_INFINITY), json!("-Inf"));
        assert_eq!(seconds(1_334_592_000_000), json!(1_334_592_000));
        assert_eq!(seconds(1_334_592_000_500), json!(1_334_592_000.5));
        assert_eq!(group_label("path"), "path");
        assert_eq!(group_label("user.agent"), "user_agent");
        assert_eq!(group_label("a[0]"), "a_0_");
        assert_eq!(group_label("0x"), "group_0x");
        assert_eq!(group_label("other"), "group_other");
        assert_eq!(group_label("__name__"), "group___name__");
    }
}
