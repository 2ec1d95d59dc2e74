//! HTTPS served by the binary itself (rustls, ring provider) with HSTS.

use yunwei_web::{TlsFiles, WebConfig};

use crate::harness::{Engine, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_with_hsts() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = std::env::temp_dir().join(format!("yunwei-tls-{}", yunwei_storage::random_token(6)));
    std::fs::create_dir_all(&dir).unwrap();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let s = TestServer::start_with(
        Engine::Sqlite,
        WebConfig { tls: true, behind_tls_proxy: false, ..Default::default() },
        Some(TlsFiles { cert: cert_path.clone(), key: key_path.clone() }),
    )
    .await
    .unwrap();
    let port = s.base.rsplit(':').next().unwrap().to_string();
    let root = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap();
    let client = reqwest::Client::builder().add_root_certificate(root).build().unwrap();
    let r = client.get(format!("https://localhost:{port}/login")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["strict-transport-security"].to_str().unwrap().contains("max-age=31536000"));
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("Secure"), "{cookie}");
    // Plain HTTP to the TLS port does not get a page.
    let plain = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/login")).send().await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));
    // An untrusting client refuses the self-signed certificate: the server really speaks TLS.
    assert!(reqwest::Client::new().get(format!("https://localhost:{port}/healthz")).send().await.is_err());
    let _ = std::fs::remove_dir_all(dir);
}
