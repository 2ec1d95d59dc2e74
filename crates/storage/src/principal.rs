//! Who is acting, and the scopes that prove what they may touch.

use std::sync::Arc;

use yunwei_core::authz::{AdminPermission, AdminRole, ContractPermission, ContractRole};

use crate::db::Db;
use crate::error::{StoreError, StoreResult};

/// The person or integration behind a request, as the audit log names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub user_id: Option<i64>,
    pub name: String,
    pub source_ip: String,
}

#[derive(Debug, Clone)]
enum Kind {
    /// `memberships` is read together with the session, in the same query, so that a contract
    /// scope costs no further round trip; it is as fresh as the request.
    User {
        user_id: i64,
        admin_role: Option<AdminRole>,
        memberships: Arc<[(i64, ContractRole)]>,
    },
    Token {
        contract_id: i64,
        role: ContractRole,
    },
    LocalOperator,
}

/// An authenticated caller. Created only by [`crate::sessions`] and [`crate::tokens`] after they
/// verified a secret, or by [`Principal::local_operator`] for the command line.
#[derive(Debug, Clone)]
pub struct Principal {
    kind: Kind,
    actor: Actor,
}

impl Principal {
    pub(crate) fn user(
        user_id: i64,
        login: String,
        admin_role: Option<AdminRole>,
        memberships: Arc<[(i64, ContractRole)]>,
        source_ip: String,
    ) -> Self {
        Principal {
            kind: Kind::User { user_id, admin_role, memberships },
            actor: Actor { user_id: Some(user_id), name: login, source_ip },
        }
    }

    pub(crate) fn token(token_id: i64, name: &str, contract_id: i64, role: ContractRole, source_ip: String) -> Self {
        Principal {
            kind: Kind::Token { contract_id, role },
            actor: Actor { user_id: None, name: format!("token:{token_id}:{name}"), source_ip },
        }
    }

    /// The operator at the server's console (`yunwei user add`, `yunwei restore`, …). Whoever runs
    /// the binary on the host already holds the database files, so this principal may do every
    /// administrator task; it is used by the command line only and audited as `local-operator`.
    pub fn local_operator(os_user: &str) -> Self {
        Principal {
            kind: Kind::LocalOperator,
            actor: Actor { user_id: None, name: format!("local-operator:{os_user}"), source_ip: "console".into() },
        }
    }

    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    pub fn user_id(&self) -> Option<i64> {
        match self.kind {
            Kind::User { user_id, .. } => Some(user_id),
            _ => None,
        }
    }

    pub fn admin_role(&self) -> Option<AdminRole> {
        match self.kind {
            Kind::User { admin_role, .. } => admin_role,
            _ => None,
        }
    }

    pub fn is_token(&self) -> bool {
        matches!(self.kind, Kind::Token { .. })
    }

    /// The contract and role an API token is bound to.
    pub fn token_contract(&self) -> Option<(i64, ContractRole)> {
        match self.kind {
            Kind::Token { contract_id, role } => Some((contract_id, role)),
            _ => None,
        }
    }

    /// The scope for one contract, or `NotFound` when the caller is not a member: a non-member
    /// learns nothing, not even that the contract exists.
    pub async fn contract_scope(&self, db: &Db, contract_id: i64) -> StoreResult<ContractScope> {
        let role = match &self.kind {
            Kind::User { memberships, .. } => {
                memberships.iter().find(|(c, _)| *c == contract_id).map(|(_, r)| *r).ok_or(StoreError::NotFound)?
            }
            Kind::Token { contract_id: c, role } if *c == contract_id => *role,
            Kind::Token { .. } => return Err(StoreError::NotFound),
            Kind::LocalOperator => {
                crate::contracts::get_contract_row(db, contract_id).await?;
                ContractRole::ProjectManager
            }
        };
        Ok(ContractScope { contract_id, role, actor: self.actor.clone(), platform: false })
    }

    /// The administrator scope for one permission, or `Forbidden`.
    pub fn admin_scope(&self, permission: AdminPermission) -> StoreResult<AdminScope> {
        match &self.kind {
            Kind::User { admin_role: Some(role), .. } if role.permits(permission) => {
                Ok(AdminScope { permission, actor: self.actor.clone() })
            }
            Kind::LocalOperator => Ok(AdminScope { permission, actor: self.actor.clone() }),
            _ => Err(StoreError::Forbidden),
        }
    }

    pub fn has_admin_permission(&self, permission: AdminPermission) -> bool {
        self.admin_scope(permission).is_ok()
    }
}

/// Proof that an actor may work in one contract with one role. Every contract-owned query takes it
/// and uses its `contract_id`; nothing outside this crate can make one.
#[derive(Debug, Clone)]
pub struct ContractScope {
    contract_id: i64,
    role: ContractRole,
    actor: Actor,
    /// The platform itself (the desk scheduler closing a ticket nobody confirmed): no person's role.
    platform: bool,
}

impl ContractScope {
    /// The scheduler's own scope in one contract. Crate-private: only background jobs of this crate
    /// act without a person, and they are audited as `platform`.
    pub(crate) fn platform(contract_id: i64) -> Self {
        ContractScope {
            contract_id,
            role: ContractRole::ProjectManager,
            actor: Actor { user_id: None, name: "platform".into(), source_ip: String::new() },
            platform: true,
        }
    }

    pub fn is_platform(&self) -> bool {
        self.platform
    }

    pub fn contract_id(&self) -> i64 {
        self.contract_id
    }

    pub fn role(&self) -> ContractRole {
        self.role
    }

    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    pub fn permits(&self, p: ContractPermission) -> bool {
        self.role.permits(p)
    }

    pub fn require(&self, p: ContractPermission) -> StoreResult<()> {
        if self.permits(p) { Ok(()) } else { Err(StoreError::Forbidden) }
    }
}

/// Proof that an administrator holds one permission.
#[derive(Debug, Clone)]
pub struct AdminScope {
    permission: AdminPermission,
    actor: Actor,
}

impl AdminScope {
    pub fn permission(&self) -> AdminPermission {
        self.permission
    }

    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    pub(crate) fn expect(&self, p: AdminPermission) -> StoreResult<()> {
        if self.permission == p { Ok(()) } else { Err(StoreError::Forbidden) }
    }
}
