//! HTTPS with --tls-cert/--tls-key: curl over TLS with the certificate as its only CA.

mod common;
use common::*;
use std::process::Command;

#[test]
fn webdav_over_https() {
    if !have("curl") || !have("openssl") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let (cert_s, key_s) = (cert.to_str().expect("path"), key.to_str().expect("path"));
    let server = Server::start_with(&["--tls-cert", cert_s, "--tls-key", key_s]);
    server.add_user("t", "tls-password", None);
    let base = format!("https://127.0.0.1:{}/dav", server.addr.port());
    let file = dir.path().join("f");
    std::fs::write(&file, b"over tls").expect("write");
    let put = curl(&[
        "--cacert",
        cert_s,
        "-u",
        "t:tls-password",
        "-T",
        file.to_str().expect("path"),
        &format!("{base}/f.txt"),
    ]);
    assert_eq!(put.0, 201);
    let get = curl(&[
        "--cacert",
        cert_s,
        "-u",
        "t:tls-password",
        &format!("{base}/f.txt"),
    ]);
    assert_eq!(get, (200, b"over tls".to_vec()));
    let h2 = curl(&[
        "--http2",
        "--cacert",
        cert_s,
        "-u",
        "t:tls-password",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version}\n",
        &format!("{base}/f.txt"),
    ]);
    assert!(
        String::from_utf8_lossy(&h2.1).contains('2'),
        "HTTP/2 over ALPN"
    );
    // Plain HTTP on the TLS port gets nowhere.
    let plain = curl(&["-u", "t:tls-password", &server.url("/f.txt")]);
    assert_ne!(plain.0, 200);

    // A key that doesn't belong to the certificate: a clear error at start.
    let other = dir.path().join("other.pem");
    let made = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .arg("-out")
        .arg(&other)
        .output()
        .expect("openssl");
    assert!(made.status.success());
    let o = cli(
        &dir.path().join("data2"),
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "off",
            "--tls-cert",
            cert_s,
            "--tls-key",
            other.to_str().expect("path"),
        ],
        None,
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("don't go together"), "{err}");
}
