//! One error type for handlers. People see a bilingual message and a status; the cause goes to the
//! log. API routes answer `{"error": {"code", "message"}}`; pages answer an HTML error page.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use yunwei_core::Msg;
use yunwei_storage::StoreError;

#[derive(Debug)]
pub struct AppError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: Msg,
    /// Which input field was wrong, when one was.
    pub field: Option<&'static str>,
}

impl AppError {
    pub fn new(status: StatusCode, code: &'static str, message: Msg) -> Self {
        AppError { status, code, message, field: None }
    }

    pub fn bad_request(message: Msg) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", Msg::new("记录不存在或无权访问", "Not found"))
    }

    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            Msg::new("您的角色无权执行此操作", "Your role does not permit this"),
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", Msg::new("请先登录", "Please log in"))
    }

    pub fn csrf() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "csrf",
            Msg::new("请求来源校验失败，请刷新页面后重试", "Request origin check failed; reload the page and retry"),
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            Msg::new("服务暂时不可用，请稍后重试", "The service is temporarily unavailable; retry shortly"),
        )
    }

    /// The JSON body of an API error.
    pub fn json_body(&self) -> serde_json::Value {
        let mut e = serde_json::json!({
            "code": self.code,
            "message": self.message.to_string(),
            "message_zh": self.message.zh,
            "message_en": self.message.en,
        });
        if let Some(f) = self.field {
            e["field"] = serde_json::Value::from(f);
        }
        serde_json::json!({ "error": e })
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => AppError::not_found(),
            StoreError::Forbidden => AppError::forbidden(),
            StoreError::Conflict(m) => AppError::new(StatusCode::CONFLICT, "conflict", m),
            StoreError::Invalid { field, msg } => {
                AppError { status: StatusCode::UNPROCESSABLE_ENTITY, code: "invalid", message: msg, field: Some(field) }
            }
            StoreError::ContractFile(_) => AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                Msg::new(
                    "合同文件有错误，请用 yunwei contract check 查看",
                    "The contract file has errors; see yunwei contract check",
                ),
            ),
            other => {
                tracing::error!(error = %other, "storage failure");
                AppError::internal()
            }
        }
    }
}

/// Marker put into response extensions so the outer layer can render errors as HTML for pages.
#[derive(Clone)]
pub(crate) struct ErrorMarker {
    pub status: StatusCode,
    pub message: Msg,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.json_body())).into_response();
        resp.extensions_mut().insert(ErrorMarker { status: self.status, message: self.message });
        resp
    }
}
