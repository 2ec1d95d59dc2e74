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
