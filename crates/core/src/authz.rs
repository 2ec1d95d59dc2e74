//! Roles and permissions: the least-privilege matrix of yunwei.
//!
//! Two kinds of role exist and never mix on one account:
//! - the three separated administrator roles required by 等保 level 3 (三权分立), held globally;
//! - per-contract roles, held through a membership in one contract.
//!
//! The matrices below are the single source of truth; ARCHITECTURE.md carries a copy that a test
//! compares against [`permission_table_markdown`].

use serde::{Deserialize, Serialize};

/// Global administrator roles. An account holds at most one of them (a single column in storage),
/// which makes the three roles mutually exclusive by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminRole {
    /// 系统管理员: users, contracts, configuration.
    SystemAdmin,
    /// 安全管理员: security policies, role grants, lockouts, API tokens.
    SecurityAdmin,
    /// 审计管理员: reads, verifies and exports the audit log; nothing else.
    AuditAdmin,
}

/// Roles a user holds inside one contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ContractRole {
    /// 服务台
    ServiceDesk,
    /// 驻场工程师
    Engineer,
    /// 后方技术专家
    BacklineExpert,
    /// 项目经理
    ProjectManager,
    /// 采购人/业主负责人
    ClientSupervisor,
    /// 业务用户
    ClientEndUser,
}

/// Permissions that only administrators hold; not tied to a contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminPermission {
    UserManage,
    ContractManage,
    ConfigManage,
    PolicyManage,
    RoleGrant,
    LockoutManage,
    TokenManage,
    AuditRead,
    AuditVerify,
    AuditExport,
}

/// Permissions inside one contract, granted by the caller's role in that contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContractPermission {
    /// See the contract's overview (parties, period, sites list).
    ContractRead,
    /// See who works on the contract and in which role.
    MemberRead,
    /// Read sites and machine rooms.
    SiteRead,
    /// Create, change and delete sites and machine rooms.
    SiteWrite,
    /// See tickets: all of the contract's, or only one's own for client end users.
    TicketRead,
    /// Report a ticket (end users through the portal, the desk for callers).
    TicketCreate,
    /// Work tickets: dispatch, handle, internal comments, time spent, links, analysis. Which
    /// lifecycle step each role may take is decided by `ticket::transition`.
    TicketWork,
    /// Ticket lists of the whole contract, statistics and Excel export.
    TicketReport,
    /// Read the asset ledger: assets, systems, relations, suppliers, device configurations.
    AssetRead,
    /// Change the ledger, import sheets, mark reconciliation items.
    AssetWrite,
    /// Machine-room access: request a visit (anyone who works there) …
    VisitRequest,
    /// … and approve or reject it (the client).
    VisitApprove,
    /// Device credentials and configuration pulls (never shown back in full).
    DeviceConfigManage,
    /// Inspections: plans, runs, records, compliance and probe history (the client reads them too).
    InspectionRead,
    /// Carry out inspection runs: enter results, upload photos, sign off.
    InspectionRun,
    /// Define inspection plans and the probes' stored credentials.
    InspectionPlan,
}

impl AdminRole {
    pub const ALL: [AdminRole; 3] = [AdminRole::SystemAdmin, AdminRole::SecurityAdmin, AdminRole::AuditAdmin];

    pub fn as_str(self) -> &'static str {
        match self {
            AdminRole::SystemAdmin => "system_admin",
            AdminRole::SecurityAdmin => "security_admin",
            AdminRole::AuditAdmin => "audit_admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn label(self) -> crate::Msg {
        use crate::Msg;
        match self {
            AdminRole::SystemAdmin => Msg::new("系统管理员", "System admin"),
            AdminRole::SecurityAdmin => Msg::new("安全管理员", "Security admin"),
            AdminRole::AuditAdmin => Msg::new("审计管理员", "Audit admin"),
        }
    }

    /// The least-privilege matrix for administrators.
    pub fn permits(self, p: AdminPermission) -> bool {
        use AdminPermission::*;
        match self {
            AdminRole::SystemAdmin => matches!(p, UserManage | ContractManage | ConfigManage),
            AdminRole::SecurityAdmin => matches!(p, PolicyManage | RoleGrant | LockoutManage | TokenManage),
            AdminRole::AuditAdmin => matches!(p, AuditRead | AuditVerify | AuditExport),
        }
    }
}

impl ContractRole {
    pub const ALL: [ContractRole; 6] = [
        ContractRole::ServiceDesk,
        ContractRole::Engineer,
        ContractRole::BacklineExpert,
        ContractRole::ProjectManager,
        ContractRole::ClientSupervisor,
        ContractRole::ClientEndUser,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ContractRole::ServiceDesk => "service_desk",
            ContractRole::Engineer => "engineer",
            ContractRole::BacklineExpert => "backline_expert",
            ContractRole::ProjectManager => "project_manager",
            ContractRole::ClientSupervisor => "client_supervisor",
            ContractRole::ClientEndUser => "client_end_user",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn label(self) -> crate::Msg {
        use crate::Msg;
        match self {
            ContractRole::ServiceDesk => Msg::new("服务台", "Service desk"),
            ContractRole::Engineer => Msg::new("驻场工程师", "On-site engineer"),
            ContractRole::BacklineExpert => Msg::new("后方技术专家", "Backline expert"),
            ContractRole::ProjectManager => Msg::new("项目经理", "Project manager"),
            ContractRole::ClientSupervisor => Msg::new("业主负责人", "Client supervisor"),
            ContractRole::ClientEndUser => Msg::new("业务用户", "Client end user"),
        }
    }

    /// Whether this role belongs to the client side (采购人) rather than the vendor.
    pub fn is_client_side(self) -> bool {
        matches!(self, ContractRole::ClientSupervisor | ContractRole::ClientEndUser)
    }

    /// The least-privilege matrix inside a contract.
    pub fn permits(self, p: ContractPermission) -> bool {
        use ContractPermission::*;
        use ContractRole::*;
        match p {
            ContractRead => true,
            MemberRead => !matches!(self, ClientEndUser),
            SiteRead => !matches!(self, ClientEndUser),
            SiteWrite => matches!(self, Engineer | ProjectManager),
            TicketRead | TicketCreate => true,
            TicketWork => !self.is_client_side(),
            TicketReport => !matches!(self, ClientEndUser),
            AssetRead => !matches!(self, ClientEndUser),
            AssetWrite => matches!(self, Engineer | BacklineExpert | ProjectManager),
            VisitRequest => !matches!(self, ClientEndUser),
            VisitApprove => matches!(self, ClientSupervisor),
            DeviceConfigManage => matches!(self, Engineer | BacklineExpert | ProjectManager),
            InspectionRead => !matches!(self, ClientEndUser),
            InspectionRun => matches!(self, Engineer | BacklineExpert | ProjectManager),
            InspectionPlan => matches!(self, BacklineExpert | ProjectManager),
        }
    }
}

impl AdminPermission {
    pub const ALL: [AdminPermission; 10] = [
        AdminPermission::UserManage,
        AdminPermission::ContractManage,
        AdminPermission::ConfigManage,
        AdminPermission::PolicyManage,
        AdminPermission::RoleGrant,
        AdminPermission::LockoutManage,
        AdminPermission::TokenManage,
        AdminPermission::AuditRead,
        AdminPermission::AuditVerify,
        AdminPermission::AuditExport,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AdminPermission::UserManage => "user.manage",
            AdminPermission::ContractManage => "contract.manage",
            AdminPermission::ConfigManage => "config.manage",
            AdminPermission::PolicyManage => "policy.manage",
            AdminPermission::RoleGrant => "role.grant",
            AdminPermission::LockoutManage => "lockout.manage",
            AdminPermission::TokenManage => "token.manage",
            AdminPermission::AuditRead => "audit.read",
            AdminPermission::AuditVerify => "audit.verify",
            AdminPermission::AuditExport => "audit.export",
        }
    }
}

impl ContractPermission {
    pub const ALL: [ContractPermission; 16] = [
        ContractPermission::ContractRead,
        ContractPermission::MemberRead,
        ContractPermission::SiteRead,
        ContractPermission::SiteWrite,
        ContractPermission::TicketRead,
        ContractPermission::TicketCreate,
        ContractPermission::TicketWork,
        ContractPermission::TicketReport,
        ContractPermission::AssetRead,
        ContractPermission::AssetWrite,
        ContractPermission::VisitRequest,
        ContractPermission::VisitApprove,
        ContractPermission::DeviceConfigManage,
        ContractPermission::InspectionRead,
        ContractPermission::InspectionRun,
        ContractPermission::InspectionPlan,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ContractPermission::ContractRead => "contract.read",
            ContractPermission::MemberRead => "member.read",
            ContractPermission::SiteRead => "site.read",
            ContractPermission::SiteWrite => "site.write",
            ContractPermission::TicketRead => "ticket.read",
            ContractPermission::TicketCreate => "ticket.create",
            ContractPermission::TicketWork => "ticket.work",
            ContractPermission::TicketReport => "ticket.report",
            ContractPermission::AssetRead => "asset.read",
            ContractPermission::AssetWrite => "asset.write",
            ContractPermission::VisitRequest => "visit.request",
            ContractPermission::VisitApprove => "visit.approve",
            ContractPermission::DeviceConfigManage => "device_config.manage",
            ContractPermission::InspectionRead => "inspection.read",
            ContractPermission::InspectionRun => "inspection.run",
            ContractPermission::InspectionPlan => "inspection.plan",
        }
    }
}

/// Both permission matrices as Markdown tables, exactly as ARCHITECTURE.md shows them.
pub fn permission_table_markdown() -> String {
    let mut out = String::new();
    out.push_str("| admin permission |");
    for r in AdminRole::ALL {
        out.push_str(&format!(" {} |", r.as_str()));
    }
    out.push_str("\n| --- |");
    for _ in AdminRole::ALL {
        out.push_str(" --- |");
    }
    out.push('\n');
    for p in AdminPermission::ALL {
        out.push_str(&format!("| `{}` |", p.as_str()));
        for r in AdminRole::ALL {
            out.push_str(if r.permits(p) { " ✔ |" } else { " |" });
        }
        out.push('\n');
    }
    out.push('\n');
    out.push_str("| contract permission |");
    for r in ContractRole::ALL {
        out.push_str(&format!(" {} |", r.as_str()));
    }
    out.push_str("\n| --- |");
    for _ in ContractRole::ALL {
        out.push_str(" --- |");
    }
    out.push('\n');
    for p in ContractPermission::ALL {
        out.push_str(&format!("| `{}` |", p.as_str()));
        for r in ContractRole::ALL {
            out.push_str(if r.permits(p) { " ✔ |" } else { " |" });
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_roles_are_disjoint() {
        // 三权分立: no permission is held by two administrator roles.
        for p in AdminPermission::ALL {
            let holders = AdminRole::ALL.iter().filter(|r| r.permits(p)).count();
            assert_eq!(holders, 1, "{} held by {holders} admin roles", p.as_str());
        }
    }

    #[test]
    fn audit_admin_only_reads_the_log() {
        for p in AdminPermission::ALL {
            let allowed = AdminRole::AuditAdmin.permits(p);
            let is_audit =
                matches!(p, AdminPermission::AuditRead | AdminPermission::AuditVerify | AdminPermission::AuditExport);
            assert_eq!(allowed, is_audit, "{}", p.as_str());
        }
    }

    #[test]
    fn end_user_and_client_cannot_change_sites() {
        assert!(!ContractRole::ClientEndUser.permits(ContractPermission::SiteWrite));
        assert!(!ContractRole::ClientEndUser.permits(ContractPermission::SiteRead));
        assert!(!ContractRole::ClientSupervisor.permits(ContractPermission::SiteWrite));
        assert!(!ContractRole::ServiceDesk.permits(ContractPermission::SiteWrite));
        assert!(ContractRole::Engineer.permits(ContractPermission::SiteWrite));
    }

    #[test]
    fn role_names_round_trip() {
        for r in ContractRole::ALL {
            assert_eq!(ContractRole::parse(r.as_str()), Some(r));
        }
        for r in AdminRole::ALL {
            assert_eq!(AdminRole::parse(r.as_str()), Some(r));
        }
        assert_eq!(ContractRole::parse("root"), None);
    }
}

#[cfg(test)]
mod doc_tests {
    #[test]
    fn architecture_md_shows_the_matrix_in_force() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../ARCHITECTURE.md")).unwrap();
        let start = doc.find("<!-- permission-table:start -->\n").unwrap() + "<!-- permission-table:start -->\n".len();
        let end = doc.find("<!-- permission-table:end -->").unwrap();
        assert_eq!(
            doc[start..end].trim(),
            super::permission_table_markdown().trim(),
            "ARCHITECTURE.md is out of date: cargo run -q -p yunwei-core --example permission_table"
        );
    }
}
