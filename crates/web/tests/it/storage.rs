//! Storage behaviour that needs no HTTP: migrations on both engines.

use yunwei_storage::secrets::SecretBox;

use crate::harness::{Engine, TestDb};

async fn newer_schema_is_refused(engine: Engine) {
    let Some(tdb) = TestDb::create(engine).await else { return };
    let db = tdb.open().await;
    assert_eq!(db.schema_version().await.unwrap(), yunwei_storage::SCHEMA_VERSION);
    db.close().await;
    // Opening again is a no-op migration.
    let db = tdb.open().await;
    use sqlx::Connection;
    let mut c = sqlx::AnyConnection::connect(&tdb.url).await.unwrap();
    sqlx::query("INSERT INTO schema_version (version, name, applied_at) VALUES (999, 'from_the_future', 0)")
        .execute(&mut c)
        .await
        .unwrap();
    db.close().await;
    let err = yunwei_storage::Db::connect(&tdb.url, SecretBox::from_base64(&SecretBox::generate_base64()).unwrap())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("999") && msg.contains("newer"), "{msg}");
}

#[tokio::test]
async fn newer_schema_is_refused_sqlite() {
    newer_schema_is_refused(Engine::Sqlite).await;
}

#[tokio::test]
async fn newer_schema_is_refused_postgres() {
    newer_schema_is_refused(Engine::Postgres).await;
}

async fn concurrent_writers_keep_one_chain(engine: Engine) {
    let Some(tdb) = TestDb::create(engine).await else { return };
    let db = tdb.open().await;
    let actor = yunwei_storage::Actor { user_id: None, name: "t".into(), source_ip: "127.0.0.1".into() };
    let mut tasks = Vec::new();
    for i in 0..8 {
        let db = db.clone();
        let actor = actor.clone();
        tasks.push(tokio::spawn(async move {
            for j in 0..10 {
                let e = yunwei_storage::audit::AuditEntry::new(&actor, "test.event", format!("x:{i}:{j}"));
                db.audit_event(1_700_000_000_000 + j, e).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let report = yunwei_storage::audit::verify(&db).await.unwrap();
    assert_eq!(report.first_broken, None);
    assert_eq!(report.checked, 80);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_keep_one_chain_sqlite() {
    concurrent_writers_keep_one_chain(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_keep_one_chain_postgres() {
    concurrent_writers_keep_one_chain(Engine::Postgres).await;
}

/// With `secret_cipher = "sm4-gcm"` secrets are sealed with SM4-GCM: the stored value is a `v2:`
/// value that holds no clear text (and the SQLite file neither), it opens for use (a TOTP code is
/// accepted), and a node configured for AES-256-GCM with the same key still reads it.
async fn sm4_sealed_secrets(engine: Engine) {
    use yunwei_storage::Principal;
    use yunwei_storage::secrets::Cipher;
    use yunwei_storage::users;
    let Some(tdb) = TestDb::create(engine).await else { return };
    let key = SecretBox::generate_base64();
    let db = yunwei_storage::Db::connect(&tdb.url, SecretBox::from_base64(&key).unwrap().with_cipher(Cipher::Sm4Gcm))
        .await
        .unwrap();
    let scope = Principal::local_operator("test").admin_scope(yunwei_core::authz::AdminPermission::UserManage).unwrap();
    let new = users::NewUser { login: "sec.zhao".into(), display_name: "赵".into(), email: String::new() };
    let id =
        users::create(&db, &scope, new, &yunwei_core::password::initial_password_for("sec.zhao"), 1_000).await.unwrap();
    let secret = yunwei_core::totp::generate_secret();
    let actor = yunwei_storage::Actor { user_id: Some(id), name: "sec.zhao".into(), source_ip: "test".into() };
    users::enrol_totp(&db, &actor, id, &secret, 0, 1_000).await.unwrap();

    use sqlx::{Connection, Row};
    let mut c = sqlx::AnyConnection::connect(&tdb.url).await.unwrap();
    let stored: String = sqlx::query("SELECT totp_secret_enc FROM app_user WHERE id = $1")
        .bind(id)
        .fetch_one(&mut c)
        .await
        .unwrap()
        .get(0);
    assert!(stored.starts_with("v2:"), "{stored}");
    assert!(!stored.contains(&secret));
    let _ = c.close().await;

    let now_ms = 1_800_000_000_000;
    let code = yunwei_core::totp::code_at(&secret, now_ms as u64 / 1000).unwrap();
    assert!(users::verify_totp(&db, &actor, id, &code, now_ms).await.unwrap(), "the SM4-sealed secret opens");
    db.close().await;

    if let Some(path) = tdb.url.strip_prefix("sqlite://").and_then(|u| u.split('?').next()) {
        let bytes = [std::fs::read(path).unwrap(), std::fs::read(format!("{path}-wal")).unwrap_or_default()].concat();
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "clear secret in the database file");
        assert!(bytes.windows(3).any(|w| w == b"v2:"), "the sealed value is in the file (sanity check of the search)");
    }

    // The same key under the AES-256-GCM setting reads it: switching the setting loses nothing.
    let db = yunwei_storage::Db::connect(&tdb.url, SecretBox::from_base64(&key).unwrap()).await.unwrap();
    let code = yunwei_core::totp::code_at(&secret, now_ms as u64 / 1000 + 30).unwrap();
    assert!(users::verify_totp(&db, &actor, id, &code, now_ms + 30_000).await.unwrap());
    db.close().await;
}

#[tokio::test]
async fn sm4_sealed_secrets_sqlite() {
    sm4_sealed_secrets(Engine::Sqlite).await;
}

#[tokio::test]
async fn sm4_sealed_secrets_postgres() {
    sm4_sealed_secrets(Engine::Postgres).await;
}
