//! The JSON API under `/api/v1/`: the same permissions as the pages, errors as
//! `{"error": {"code", "message"}}` in Chinese and English, cursor pagination, and an OpenAPI 3
//! document generated from these handlers.

mod admin;
pub(crate) mod assets;
mod assets_import;
mod contracts;
mod device_configs;
pub(crate) mod inspections;
pub(crate) mod interfaces;
mod ledger;
pub(crate) mod monitors;
pub(crate) mod tickets;

use axum::Router;
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use utoipa_swagger_ui::{Config, SwaggerUi};
use yunwei_core::Msg;

use crate::AppState;
use crate::auth::ApiCaller;
use crate::error::AppError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi_json))
        .route("/me", get(me))
        .merge(contracts::routes())
        .merge(admin::routes())
        .merge(tickets::routes())
        .merge(device_configs::routes())
        .merge(ledger::routes())
        .merge(assets::routes())
        .merge(assets_import::routes())
        .merge(inspections::routes())
        .merge(monitors::routes())
        .merge(interfaces::routes())
        .fallback(|| async { AppError::not_found() })
}

/// The self-hosted API browser: an index of operations and the vendored Swagger UI.
pub fn docs_routes() -> Router<AppState> {
    let swagger: Router<AppState> =
        SwaggerUi::new("/api/docs/swagger").config(Config::new(["/api/v1/openapi.json"])).into();
    Router::new().route("/api/docs", get(docs_index)).merge(swagger)
}

pub fn unauthorized() -> AppError {
    AppError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        Msg::new("需要登录会话或 API 令牌", "A login session or an API token is required"),
    )
}

#[derive(OpenApi)]
#[openapi(
    info(title = "yunwei API", description = "运维台 JSON API. Authenticate with a browser session (and the X-CSRF-Token header for writes) or `Authorization: Bearer ywt_…`."),
    paths(
        me,
        contracts::list_contracts,
        contracts::get_contract,
        contracts::list_members,
        contracts::list_sites,
        contracts::create_site,
        contracts::get_site,
        contracts::update_site,
        contracts::delete_site,
        admin::list_users,
        admin::create_user,
        admin::list_contracts,
        admin::create_contract,
        admin::grant_membership,
        admin::list_audit,
        admin::verify_audit,
        tickets::list,
        tickets::create,
        tickets::detail,
        tickets::edit,
        tickets::act,
        tickets::comment,
        tickets::analysis,
        tickets::summary,
        tickets::work,
        tickets::link,
        tickets::merge,
        tickets::suggestions,
        tickets::upload,
        tickets::download,
        tickets::export,
        tickets::stats,
        tickets::ingest_mail,
        tickets::inbox,
        tickets::mark_read,
        device_configs::vendors,
        device_configs::list_targets,
        device_configs::get_target,
        device_configs::set_target,
        device_configs::pull_now,
        device_configs::list_versions,
        device_configs::get_version,
        device_configs::diff,
        ledger::list_systems,
        ledger::create_system,
        ledger::import_systems,
        ledger::system_detail,
        ledger::update_system,
        ledger::delete_system,
        ledger::list_relations,
        ledger::create_relation,
        ledger::delete_relation,
        ledger::topology_svg,
        ledger::list_suppliers,
        ledger::create_supplier,
        ledger::supplier_detail,
        ledger::update_supplier,
        ledger::delete_supplier,
        ledger::list_evaluations,
        ledger::evaluate_supplier,
        ledger::list_visits,
        ledger::request_visit,
        ledger::visit_detail,
        ledger::act_visit,
        assets::list,
        assets::create,
        assets::detail,
        assets::update,
        assets::history,
        assets::onboard,
        assets::retire,
        assets::list_fields,
        assets::define_field,
        assets::list_rounds,
        assets::start_round,
        assets::round,
        assets::round_items,
        assets::mark_item,
        assets::close_round,
        assets::round_report,
        assets_import::import,
        assets_import::export,
        inspections::list_plans,
        inspections::create_plan,
        inspections::check_plan,
        inspections::get_plan,
        inspections::update_plan,
        inspections::set_active,
        inspections::slots,
        inspections::history,
        inspections::history_svg,
        inspections::list_runs,
        inspections::run_detail,
        inspections::assign,
        inspections::sign_off,
        inspections::submit_results,
        inspections::upload_photo,
        inspections::photo,
        inspections::compliance,
        inspections::list_credentials,
        inspections::set_credential,
        inspections::delete_credential,
        inspections::day_sheet_xlsx,
        inspections::month_summary_xlsx,
        monitors::list,
        monitors::summary,
        monitors::create,
        monitors::bulk_create,
        monitors::detail,
        monitors::update,
        monitors::delete,
        monitors::history,
        monitors::history_svg,
        monitors::engine_stats,
        interfaces::list,
        interfaces::create,
        interfaces::check,
        interfaces::detail,
        interfaces::update,
        interfaces::retire,
        interfaces::set_active,
        interfaces::rotate_token,
        interfaces::history,
        interfaces::compliance,
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

async fn openapi_json() -> Response {
    axum::Json(ApiDoc::openapi()).into_response()
}

#[derive(Serialize)]
struct Operation {
    method: String,
    path: String,
    summary: String,
}

async fn docs_index(State(state): State<AppState>, ui: crate::auth::UiUser) -> Result<Response, AppError> {
    let doc = ApiDoc::openapi();
    let mut operations = Vec::new();
    for (path, item) in doc.paths.paths.iter() {
        for (method, op) in [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("DELETE", &item.delete),
            ("PATCH", &item.patch),
        ] {
            if let Some(op) = op {
                operations.push(Operation {
                    method: method.into(),
                    path: path.clone(),
                    summary: op.summary.clone().unwrap_or_default(),
                });
            }
        }
    }
    let p = crate::ui::page(&state, &ui, "/api/docs").await?;
    Ok(crate::ui::render(&state, "api_docs.html", ui.ctx.lang, &p, crate::view! { operations })?.into_response())
}

/// The API's error body.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code: bad_request, unauthorized, forbidden, not_found, conflict, invalid, csrf, too_large.
    code: String,
    /// "中文 / English"
    message: String,
    message_zh: String,
    message_en: String,
    /// The input field at fault, when there is one.
    field: Option<String>,
}

/// A JSON body whose every parse error (syntax, wrong type, unknown field, too large, wrong
/// content type) is a clear 4xx in our error format.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::rejection::JsonRejection;
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(AppError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                Msg::new("请求须为 application/json", "The request must be application/json"),
            )),
            Err(JsonRejection::JsonSyntaxError(_)) => {
                Err(AppError::bad_request(Msg::new("JSON 格式错误", "Malformed JSON")))
            }
            Err(JsonRejection::JsonDataError(_)) => Err(AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                Msg::new("字段缺失、类型错误或包含未知字段", "A field is missing, has the wrong type, or is unknown"),
            )),
            Err(JsonRejection::BytesRejection(_)) => Err(AppError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                Msg::new("请求内容过大或无法读取", "The request body is too large or unreadable"),
            )),
            Err(_) => Err(AppError::bad_request(Msg::new("请求内容无效", "The request body is invalid"))),
        }
    }
}

/// Query parameters of every list: `limit` (1–500, default 50) and an opaque `cursor`.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn limit(&self) -> i64 {
        self.limit.unwrap_or(50).clamp(1, 500)
    }

    pub fn after_id(&self) -> Result<Option<i64>, AppError> {
        match self.cursor.as_deref() {
            None | Some("") => Ok(None),
            Some(c) => yunwei_storage::cursor::decode(c)
                .map(Some)
                .ok_or_else(|| AppError::bad_request(Msg::new("分页游标无效", "Invalid cursor"))),
        }
    }
}

/// A page of items with the cursor of the next page (absent on the last page).
#[derive(Serialize, ToSchema)]
pub struct Paged<T: ToSchema> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T: ToSchema> Paged<T> {
    pub fn new(items: Vec<T>, limit: i64, id_of: impl Fn(&T) -> i64) -> Self {
        let next_cursor = if items.len() as i64 == limit {
            items.last().map(|i| yunwei_storage::cursor::encode(id_of(i)))
        } else {
            None
        };
        Paged { items, next_cursor }
    }
}

#[derive(Serialize, ToSchema)]
pub struct MeView {
    pub kind: String,
    pub user_id: Option<i64>,
    pub login: String,
    pub display_name: String,
    pub admin_role: Option<String>,
    pub contracts: Vec<MyContractView>,
    /// For browser sessions: the token to send as X-CSRF-Token on writes.
    pub csrf_token: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct MyContractView {
    pub id: i64,
    pub code: String,
    pub name: String,
    pub role: String,
}

/// The caller, and their contracts with their role in each.
#[utoipa::path(get, path = "/api/v1/me", tag = "identity", responses((status = 200, body = MeView), (status = 401, body = ErrorBody)))]
async fn me(State(state): State<AppState>, caller: ApiCaller) -> Result<axum::Json<MeView>, AppError> {
    let contracts: Vec<MyContractView> = if let Some((cid, role)) = caller.principal.token_contract() {
        let scope = caller.principal.contract_scope(&state.db, cid).await?;
        let c = yunwei_storage::contracts::get(&state.db, &scope).await?;
        vec![MyContractView { id: c.id, code: c.code, name: c.name, role: role.as_str().into() }]
    } else {
        yunwei_storage::contracts::list_mine(&state.db, &caller.principal, None, 500)
            .await?
            .into_iter()
            .map(|m| MyContractView {
                id: m.contract.id,
                code: m.contract.code,
                name: m.contract.name,
                role: m.role.as_str().into(),
            })
            .collect()
    };
    Ok(axum::Json(match &caller.session {
        Some(s) => MeView {
            kind: "user".into(),
            user_id: Some(s.user.id),
            login: s.user.login.clone(),
            display_name: s.user.display_name.clone(),
            admin_role: s.user.admin_role.map(|r| r.as_str().into()),
            contracts,
            csrf_token: Some(s.csrf_token.clone()),
        },
        None => MeView {
            kind: "token".into(),
            user_id: None,
            login: caller.principal.actor().name.clone(),
            display_name: caller.principal.actor().name.clone(),
            admin_role: None,
            contracts,
            csrf_token: None,
        },
    }))
}
