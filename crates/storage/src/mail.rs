//! Mail into tickets: a message whose subject quotes a ticket number ("Re: [CD-DCM-2022-000012] …")
//! becomes a comment on that ticket; any other message becomes a new ticket on the email channel.
//! The transport (an IMAP poller or a gateway posting to the API) only hands messages over.

use serde::Serialize;
use sqlx::Row;
use yunwei_core::Msg;
use yunwei_core::authz::ContractPermission;

use crate::db::Db;
use crate::error::{StoreError, StoreResult};
use crate::principal::ContractScope;
use crate::rules;
use crate::tickets::{self, NewTicket};

#[derive(Debug, Clone, Serialize)]
pub struct MailOutcome {
    pub ticket_id: i64,
    pub number: String,
    pub created: bool,
}

/// The ticket number quoted in a subject, for a contract whose numbers start with `code-`.
pub fn quoted_number(subject: &str, code: &str) -> Option<String> {
    let prefix = format!("{code}-");
    let mut rest = subject;
    while let Some(i) = rest.find(&prefix) {
        let after = &rest[i + prefix.len()..];
        let digits: String = after.chars().take_while(|c| c.is_ascii_digit()).collect();
        if digits.len() == 6 {
            return Some(format!("{prefix}{digits}"));
        }
        rest = &rest[i + prefix.len()..];
    }
    None
}

fn address_of(from: &str) -> String {
    // "张三 <zhang@example.cn>" → "zhang@example.cn"
    match (from.rfind('<'), from.rfind('>')) {
        (Some(a), Some(b)) if a < b => from[a + 1..b].trim().to_string(),
        _ => from.trim().to_string(),
    }
}

pub async fn ingest(
    db: &Db,
    scope: &ContractScope,
    from: &str,
    subject: &str,
    body: &str,
    now: i64,
) -> StoreResult<MailOutcome> {
    scope.require(ContractPermission::TicketCreate)?;
    let Some(rules) = rules::current(db, scope.contract_id()).await? else {
        return Err(StoreError::Conflict(Msg::new("该合同尚未导入合同文件", "This contract has no contract file yet")));
    };
    let addr = address_of(from);
    if !crate::notifications::looks_like_email(&addr) {
        return Err(StoreError::invalid("from", Msg::new("发件人地址无效", "The sender address is invalid")));
    }
    if let Some(number) = quoted_number(subject, &rules.code)
        && let Ok(t) = tickets::get_by_number(db, scope, &number).await
    {
        let text = format!("来自邮件 / By mail from {addr}:\n{}", body.trim());
        tickets::comment(db, scope, t.id, &text, false, "email", now).await?;
        return Ok(MailOutcome { ticket_id: t.id, number: t.number, created: false });
    }
    // A sender who is a member of the contract is the reporter.
    let member = sqlx::query(
        "SELECT u.id FROM app_user u JOIN membership m ON m.user_id = u.id WHERE m.contract_id = $1 AND LOWER(u.email) = LOWER($2)",
    )
    .bind(scope.contract_id())
    .bind(addr.clone())
    .fetch_optional(&db.pool)
    .await?;
    let reporter_user_id = match member {
        Some(r) => Some(r.try_get::<i64, _>("id")?),
        None => None,
    };
    // The least urgent level until the desk grades it.
    let level = rules.compiled.file.levels.last().map(|l| l.name.get_ref().clone()).unwrap_or_default();
    let title: String = subject.trim().chars().filter(|c| !c.is_control()).take(200).collect();
    let input = NewTicket {
        kind: "fault".into(),
        level,
        title: if title.is_empty() { "(无主题 / no subject)".into() } else { title },
        description: body.chars().take(20_000).collect(),
        channel: "email".into(),
        reporter_user_id,
        reporter_name: addr.clone(),
        reporter_contact: addr,
        ..Default::default()
    };
    let intake = tickets::create(db, scope, &input, now).await?;
    Ok(MailOutcome { ticket_id: intake.ticket.id, number: intake.ticket.number, created: true })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_quoted_number() {
        assert_eq!(
            quoted_number("Re: [CD-DCM-2022-000012] 数据库", "CD-DCM-2022").as_deref(),
            Some("CD-DCM-2022-000012")
        );
        assert_eq!(quoted_number("回复：CD-DCM-2022-12", "CD-DCM-2022"), None);
        assert_eq!(quoted_number("no number", "CD-DCM-2022"), None);
        assert_eq!(address_of("张三 <zhang@example.cn>"), "zhang@example.cn");
    }
}
