//! Chinese first, English second. One table holds both languages side by side so that a
//! translator sees each string with its counterpart.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Zh,
    En,
}

impl Lang {
    pub fn parse(s: &str) -> Lang {
        if s.eq_ignore_ascii_case("en") { Lang::En } else { Lang::Zh }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }

    pub fn pick(self, m: yunwei_core::Msg) -> &'static str {
        match self {
            Lang::Zh => m.zh,
            Lang::En => m.en,
        }
    }
}

/// (key, 中文, English)
const CATALOG: &[(&str, &str, &str)] = &[
    ("app.name", "运维台", "yunwei"),
    ("app.tagline", "政务运维合同执行与考核平台", "Government O&M contracts, run and proven"),
    ("nav.home", "首页", "Home"),
    ("nav.contracts", "合同", "Contracts"),
    ("nav.users", "用户管理", "Users"),
    ("nav.admin_contracts", "合同管理", "Contracts"),
    ("nav.memberships", "角色授权", "Role grants"),
    ("nav.policy", "安全策略", "Security policy"),
    ("nav.tokens", "API 令牌", "API tokens"),
    ("nav.audit", "审计日志", "Audit log"),
    ("nav.api_docs", "API 文档", "API docs"),
    ("nav.password", "修改密码", "Change password"),
    ("nav.logout", "退出", "Log out"),
    ("nav.switch", "切换合同", "Switch contract"),
    ("lang.switch", "English", "中文"),
    ("login.title", "登录", "Log in"),
    ("login.login", "登录名", "Login name"),
    ("login.password", "密码", "Password"),
    ("login.submit", "登录", "Log in"),
    ("login.failed", "登录名或密码错误", "Wrong login name or password"),
    (
        "login.locked",
        "账号已锁定，请稍后再试或联系安全管理员",
        "The account is locked; try later or ask the security admin",
    ),
    ("login.disabled", "账号已停用", "The account is disabled"),
    ("login.ended_idle", "会话空闲超时，请重新登录", "Your session was idle too long; please log in again"),
    ("login.ended_expired", "会话已结束，请重新登录", "Your session ended; please log in again"),
    ("login.insecure", "密码登录需要加密连接（HTTPS）", "Password login needs an encrypted connection (HTTPS)"),
    ("totp.title", "双因素认证", "Two-factor authentication"),
    ("totp.code", "验证码（6 位）", "Code (6 digits)"),
    ("totp.submit", "验证", "Verify"),
    ("totp.failed", "验证码错误或已使用", "Wrong or already used code"),
    ("enrol.title", "绑定身份验证器", "Set up your authenticator"),
    (
        "enrol.help",
        "用身份验证器应用扫描二维码，或手工输入密钥，然后输入应用显示的验证码。",
        "Scan the QR code with an authenticator app, or type the key, then enter the code it shows.",
    ),
    ("enrol.secret", "密钥", "Key"),
    ("enrol.optional", "您的账号尚未启用双因素认证。", "Your account does not use two-factor authentication yet."),
    ("password.title", "修改密码", "Change password"),
    (
        "password.must",
        "首次登录或密码已过期，请先设置新密码。",
        "First login or expired password: set a new password first.",
    ),
    ("password.current", "当前密码", "Current password"),
    ("password.new", "新密码", "New password"),
    ("password.confirm", "确认新密码", "Confirm new password"),
    ("password.mismatch", "两次输入的新密码不一致", "The two new passwords differ"),
    (
        "password.rules",
        "至少 {n} 个字符，包含大写字母、小写字母、数字和符号，不能包含登录名或常见密码。",
        "At least {n} characters with upper and lower case, a digit and a symbol; not your login name or a common password.",
    ),
    ("password.done", "密码已修改", "Password changed"),
    ("common.save", "保存", "Save"),
    ("common.create", "新建", "Create"),
    ("common.delete", "删除", "Delete"),
    ("common.edit", "编辑", "Edit"),
    ("common.cancel", "取消", "Cancel"),
    ("common.filter", "筛选", "Filter"),
    ("common.actions", "操作", "Actions"),
    ("common.none", "暂无记录", "Nothing yet"),
    ("common.name", "名称", "Name"),
    ("common.role", "角色", "Role"),
    ("common.status", "状态", "Status"),
    ("common.next_page", "下一页", "Next page"),
    ("common.back", "返回", "Back"),
    ("home.title", "我的合同", "My contracts"),
    (
        "home.none",
        "您还不是任何合同的成员。请联系安全管理员授权。",
        "You are not a member of any contract yet. Ask the security admin for a role.",
    ),
    ("home.admin", "管理员工作台", "Administration"),
    ("contract.code", "合同编号", "Code"),
    ("contract.name", "合同名称", "Name"),
    ("contract.client", "采购人", "Client"),
    ("contract.vendor", "服务商", "Vendor"),
    ("contract.period", "服务期", "Period"),
    ("contract.starts", "开始日期", "Starts on"),
    ("contract.ends", "结束日期", "Ends on"),
    ("contract.my_role", "我的角色", "My role"),
    ("contract.members", "项目成员", "Members"),
    ("sla.title", "服务等级与时限", "Service levels and deadlines"),
    ("calendar.title", "服务日历", "Service calendar"),
    ("calendar.missing", "缺少以下年份的节假日数据，按普通周计算：", "Holiday data missing for:"),
    ("calendar.makeup", "补班", "make-up workday"),
    ("calendar.mon", "一", "Mon"),
    ("calendar.tue", "二", "Tue"),
    ("calendar.wed", "三", "Wed"),
    ("calendar.thu", "四", "Thu"),
    ("calendar.fri", "五", "Fri"),
    ("calendar.sat", "六", "Sat"),
    ("calendar.sun", "日", "Sun"),
    ("calendar.view", "查看月历", "Month view"),
    ("sla.level", "等级", "Level"),
    ("sla.pausable", "挂起时暂停", "pauses when suspended"),
    ("sla.progress", "进展通报", "Progress reports"),
    ("sla.calendars", "服务日历", "Service calendars"),
    ("sla.escalation", "升级矩阵", "Escalation matrix"),
    ("sla.versions", "合同文件版本", "Contract file versions"),
    ("site.title", "站点与机房", "Sites and machine rooms"),
    ("site.new", "新建站点", "New site"),
    ("site.kind", "类型", "Kind"),
    ("site.address", "地址", "Address"),
    ("site.notes", "备注", "Notes"),
    ("site.kind.machine_room", "机房", "Machine room"),
    ("site.kind.weak_current_room", "弱电间", "Weak-current room"),
    ("site.kind.control_room", "监控室", "Control room"),
    ("site.kind.office", "办公区", "Office"),
    ("site.kind.other", "其他", "Other"),
    ("users.title", "用户管理", "Users"),
    ("users.new", "新建用户", "New user"),
    ("users.display_name", "姓名", "Name"),
    ("users.email", "邮箱", "E-mail"),
    ("users.initial_password", "初始密码", "Initial password"),
    (
        "users.initial_help",
        "留空则自动生成；用户首次登录时必须修改。",
        "Leave empty to generate one; the user must change it at first login.",
    ),
    ("users.created", "用户已创建，初始密码（仅显示一次）：", "User created. Initial password (shown once):"),
    ("users.reset", "重置密码", "Reset password"),
    (
        "users.reset_done",
        "密码已重置，新的初始密码（仅显示一次）：",
        "Password reset. New initial password (shown once):",
    ),
    ("users.disable", "停用", "Disable"),
    ("users.enable", "启用", "Enable"),
    ("users.unlock", "解锁", "Unlock"),
    ("users.reset_totp", "重置双因素", "Reset 2FA"),
    ("users.locked", "已锁定", "Locked"),
    ("users.disabled", "已停用", "Disabled"),
    ("users.active", "正常", "Active"),
    ("users.admin_role", "管理员角色", "Admin role"),
    ("users.no_admin_role", "（无）", "(none)"),
    ("users.totp", "双因素", "2FA"),
    ("users.last_login", "最近登录", "Last login"),
    ("members.title", "合同角色授权", "Contract role grants"),
    ("members.grant", "授权", "Grant"),
    ("members.revoke", "撤销", "Revoke"),
    ("members.user", "用户", "User"),
    ("members.contract", "合同", "Contract"),
    ("admin_roles.title", "管理员角色", "Administrator roles"),
    ("policy.title", "安全策略", "Security policy"),
    ("policy.min_length", "密码最小长度", "Minimum password length"),
    ("policy.expiry_days", "密码有效期（天，0 为不过期）", "Password expiry (days, 0 = never)"),
    ("policy.reuse_history", "禁止重复使用最近几个密码", "Recent passwords that cannot be reused"),
    ("policy.lockout_threshold", "连续失败几次后锁定", "Failures before lockout"),
    ("policy.lockout_minutes", "锁定时长（分钟）", "Lockout duration (minutes)"),
    ("policy.idle_timeout_minutes", "空闲超时（分钟）", "Idle timeout (minutes)"),
    ("policy.absolute_lifetime_hours", "会话最长有效期（小时）", "Session lifetime (hours)"),
    ("policy.totp_required_for_all", "所有用户必须使用双因素认证", "Require two-factor authentication for everyone"),
    ("policy.saved", "安全策略已保存", "Security policy saved"),
    ("tokens.title", "API 令牌", "API tokens"),
    ("tokens.new", "新建令牌", "New token"),
    ("tokens.expires", "过期时间", "Expires"),
    ("tokens.days", "有效天数", "Valid for (days)"),
    ("tokens.created", "令牌已创建（仅显示一次，请妥善保存）：", "Token created (shown once, keep it safe):"),
    ("tokens.revoke", "吊销", "Revoke"),
    ("tokens.revoked", "已吊销", "Revoked"),
    ("audit.title", "审计日志", "Audit log"),
    ("audit.time", "时间", "Time"),
    ("audit.user", "用户", "User"),
    ("audit.ip", "来源地址", "Source IP"),
    ("audit.contract", "合同", "Contract"),
    ("audit.action", "操作", "Action"),
    ("audit.object", "对象", "Object"),
    ("audit.result", "结果", "Result"),
    ("audit.detail", "详情", "Detail"),
    ("audit.from", "起始日期", "From"),
    ("audit.to", "截止日期", "To"),
    ("audit.verify", "校验完整性", "Verify integrity"),
    ("audit.export", "导出 CSV", "Export CSV"),
    (
        "audit.verify_ok",
        "审计日志完整：已校验 {n} 条记录，哈希链无断裂。",
        "The audit log is intact: {n} records checked, the hash chain is unbroken.",
    ),
    (
        "audit.verify_broken",
        "审计日志被篡改：第 {seq} 条记录校验失败",
        "The audit log was altered: record {seq} fails verification",
    ),
    ("error.title", "出错了", "Something went wrong"),
];

/// Looks up a key; an unknown key shows itself, so a missing translation is visible, not silent.
pub fn t(lang: Lang, key: &str) -> String {
    match CATALOG.iter().find(|(k, _, _)| *k == key) {
        Some((_, zh, en)) => match lang {
            Lang::Zh => (*zh).to_string(),
            Lang::En => (*en).to_string(),
        },
        None => key.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_complete() {
        let mut seen = std::collections::HashSet::new();
        for (k, zh, en) in CATALOG {
            assert!(seen.insert(*k), "duplicate key {k}");
            assert!(!zh.is_empty() && !en.is_empty(), "{k} lacks a language");
        }
    }

    #[test]
    fn dynamic_keys_exist() {
        for kind in yunwei_storage::sites::KINDS {
            assert!(CATALOG.iter().any(|(k, _, _)| *k == format!("site.kind.{kind}")), "{kind}");
        }
        for f in [
            "min_length",
            "expiry_days",
            "reuse_history",
            "lockout_threshold",
            "lockout_minutes",
            "idle_timeout_minutes",
            "absolute_lifetime_hours",
        ] {
            assert!(CATALOG.iter().any(|(k, _, _)| *k == format!("policy.{f}")), "{f}");
        }
    }

    #[test]
    fn every_key_used_in_templates_exists() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");
        for entry in std::fs::read_dir(dir).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            for part in text.split("t(\"").skip(1) {
                let key = &part[..part.find('"').unwrap()];
                if key.ends_with('.') {
                    // A prefix completed at render time (`t("site.kind." ~ kind)`); checked below.
                    continue;
                }
                assert!(CATALOG.iter().any(|(k, _, _)| *k == key), "missing translation key {key}");
            }
        }
    }
}
