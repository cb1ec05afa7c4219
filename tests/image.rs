//! The image `scripts/build-image` makes (umoci and skopeo, no daemon, no registry) is
//! self-contained: unpacked, its root runs the binary as the non-root user with nothing from
//! the host (`--version`, and `portal serve` answering `/healthz`), and its docker-archive is
//! tagged as the chart's default image.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn repo(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Installs Debian's umoci and skopeo when they are missing.
fn ensure_tools() {
    support::ensure_debian_packages(&["umoci", "skopeo"], || {
        ["umoci", "skopeo"].iter().all(|tool| {
            Command::new(tool)
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
    });
}

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?}:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The chart's default image: `image.repository` and the chart's appVersion.
fn chart_image() -> (String, String) {
    let values: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo("charts/portal-operator/values.yaml")).unwrap(),
    )
    .unwrap();
    let chart: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo("charts/portal-operator/Chart.yaml")).unwrap(),
    )
    .unwrap();
    (
        values["image"]["repository"].as_str().unwrap().to_owned(),
        chart["appVersion"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn the_image_runs_on_its_own_as_the_non_root_user() {
    let is_root = run("id", &["-u"]).trim() == "0";
    assert!(
        is_root,
        "this test unpacks an image and chroots into it, which needs root"
    );
    ensure_tools();
    let work = tempfile::tempdir().unwrap();
    // The test binary is a debug build; stripped, it has the release build's dependencies.
    let binary = work.path().join("portal-operator");
    std::fs::copy(env!("CARGO_BIN_EXE_portal-operator"), &binary).unwrap();
    run("strip", &[binary.to_str().unwrap()]);
    let out = work.path().join("image");
    run(
        repo("scripts/build-image").to_str().unwrap(),
        &[
            "--binary",
            binary.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );

    let (repository, tag) = chart_image();
    let layout = format!("{}:{tag}", out.join("oci").display());
    let config: Value = serde_json::from_str(&run(
        "skopeo",
        &["inspect", "--config", &format!("oci:{layout}")],
    ))
    .unwrap();
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/usr/local/bin/portal-operator"])
    );
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    // The docker-archive is what `docker load` / `kind load image-archive` read: tagged as the
    // chart's default image.
    let archive = out.join(format!("portal-operator-{tag}.tar"));
    let manifest: Value = serde_json::from_str(&run(
        "tar",
        &["-xOf", archive.to_str().unwrap(), "manifest.json"],
    ))
    .unwrap();
    assert_eq!(
        manifest[0]["RepoTags"],
        serde_json::json!([format!("{repository}:{tag}")])
    );

    // Unpacked, with nothing from the host: the binary runs as the image's user.
    let bundle = work.path().join("bundle");
    run(
        "umoci",
        &["unpack", "--image", &layout, bundle.to_str().unwrap()],
    );
    let root = bundle.join("rootfs");
    let inside = |args: &[&str]| {
        let mut command = Command::new("/usr/sbin/chroot");
        command
            .arg("--userspec=65532:65532")
            .arg(&root)
            .arg("/usr/local/bin/portal-operator")
            .args(args)
            .env_clear()
            .env("HOME", "/home/nonroot");
        command
    };
    let version = inside(&["--version"]).output().unwrap();
    assert!(version.status.success(), "{version:?}");
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("portal-operator {}", env!("CARGO_PKG_VERSION"))
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut server = inside(&[
        "portal",
        "serve",
        "--listen",
        &listen,
        "--database-url",
        "sqlite:///tmp/portal.db",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let healthy = loop {
        let answer = std::net::TcpStream::connect(&listen)
            .ok()
            .and_then(|mut stream| {
                use std::io::{Read, Write};
                stream
                    .write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
                    .ok()?;
                let mut text = String::new();
                stream.read_to_string(&mut text).ok()?;
                Some(text)
            });
        if let Some(answer) = answer {
            break answer;
        }
        assert!(
            Instant::now() < deadline,
            "the portal in the image never answered"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        healthy.starts_with("HTTP/1.0 200") || healthy.starts_with("HTTP/1.1 200"),
        "{healthy}"
    );
}
