//! Offline checks of the Dockerfile and the Kubernetes manifests in `deploy/kubernetes/`
//! (no cluster or Docker engine is needed): the fields that make them work, checked against
//! each other and against the `vigil` binary itself; (`prometheus.rs`) a real Prometheus
//! scraping `vigil serve` as the manifests' annotations describe; and (`grafana.rs`) the
//! Grafana dashboard against Vigil's metrics and the product rules' tables in PostgreSQL.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

mod grafana;
mod prometheus;

pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn manifest(name: &str) -> Value {
    let path = repo().join("deploy/kubernetes").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{name} is no YAML: {e}"))
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    (value.pointer(pointer).and_then(Value::as_str))
        .unwrap_or_else(|| panic!("{pointer} is missing or not text in {value}"))
}

fn container(deployment: &Value) -> &Value {
    let containers = deployment
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .expect("the Deployment has containers");
    assert_eq!(containers.len(), 1, "one container: vigil");
    &containers[0]
}

/// Whether `vigil` accepts `args` (clap reads them all before the trailing `--help`).
fn vigil_accepts(args: &[String]) -> bool {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .arg("--help")
        .output()
        .expect("vigil runs");
    out.status.success()
}

/// The value after `flag` in `args`.
fn flag<'a>(args: &'a [String], flag: &str) -> &'a str {
    let at = args.iter().position(|a| a == flag);
    at.and_then(|i| args.get(i + 1))
        .unwrap_or_else(|| panic!("{flag} is not in {args:?}"))
}

fn strings(value: &Value) -> Vec<String> {
    (value.as_array().expect("a list").iter())
        .map(|v| v.as_str().expect("text").to_string())
        .collect()
}

#[test]
fn the_deployment_serves_the_rules_from_config_maps_with_a_token_from_a_secret() {
    let deployment = manifest("deployment.yaml");
    assert_eq!(text(&deployment, "/apiVersion"), "apps/v1");
    assert_eq!(text(&deployment, "/kind"), "Deployment");
    assert_eq!(
        deployment.pointer("/spec/selector/matchLabels"),
        deployment.pointer("/spec/template/metadata/labels"),
        "the selector picks the pods"
    );
    let container = container(&deployment);
    let args = strings(&container["args"]);
    assert_eq!(args[0], "serve");
    assert!(vigil_accepts(&args), "vigil refuses {args:?}");
    let port = container
        .pointer("/ports/0/containerPort")
        .and_then(Value::as_u64);
    let bind = flag(&args, "--bind");
    assert_eq!(
        bind.rsplit(':').next(),
        port.map(|p| p.to_string()).as_deref()
    );
    assert!(
        !bind.starts_with("127."),
        "reachable from the Service: {bind}"
    );

    // A non-loopback bind needs the token, which comes from a Secret.
    let env = container["env"].as_array().expect("env");
    let token = env
        .iter()
        .find(|e| e["name"] == "VIGIL_TOKEN")
        .expect("VIGIL_TOKEN");
    assert!(token.pointer("/valueFrom/secretKeyRef/name").is_some());
    assert!(env.iter().any(|e| e["name"] == "VIGIL_KAFKA_BROKERS"));

    // /rules and /rules/profiles are ConfigMaps.
    let volumes = (deployment.pointer("/spec/template/spec/volumes"))
        .and_then(Value::as_array)
        .expect("volumes");
    let mounted = |path: &str| -> &Value {
        let mounts = container["volumeMounts"].as_array().expect("volumeMounts");
        let mount = (mounts.iter())
            .find(|m| m["mountPath"] == path)
            .unwrap_or_else(|| panic!("nothing mounted at {path}"));
        (volumes.iter())
            .find(|v| v["name"] == mount["name"])
            .unwrap_or_else(|| panic!("no volume {}", mount["name"]))
    };
    let rules = flag(&args, "--queries");
    assert!(mounted(rules).get("configMap").is_some());
    assert!(
        mounted(&format!("{rules}/profiles"))
            .get("configMap")
            .is_some()
    );
    if container.pointer("/securityContext/readOnlyRootFilesystem") == Some(&Value::Bool(true)) {
        assert!(
            mounted("/tmp").get("emptyDir").is_some(),
            "/tmp is writable"
        );
    }

    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(text(container, &format!("/{probe}/httpGet/path")), path);
        assert_eq!(text(container, &format!("/{probe}/httpGet/port")), "http");
    }
    assert_eq!(text(container, "/ports/0/name"), "http");
    for resource in ["cpu", "memory"] {
        assert!(
            container
                .pointer(&format!("/resources/requests/{resource}"))
                .is_some(),
            "a {resource} request"
        );
    }
    let pod = &deployment["spec"]["template"];
    assert_eq!(
        pod.pointer("/spec/securityContext/runAsNonRoot"),
        Some(&Value::Bool(true))
    );
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(
        annotations["prometheus.io/port"].as_str(),
        port.map(|p| p.to_string()).as_deref()
    );
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
}

#[test]
fn the_service_and_the_autoscaler_point_at_the_deployment() {
    let deployment = manifest("deployment.yaml");
    let service = manifest("service.yaml");
    assert_eq!(text(&service, "/kind"), "Service");
    assert_eq!(
        service.pointer("/spec/selector"),
        deployment.pointer("/spec/template/metadata/labels")
    );
    assert_eq!(
        text(&service, "/spec/ports/0/targetPort"),
        text(container(&deployment), "/ports/0/name")
    );

    let hpa = manifest("hpa.yaml");
    assert_eq!(text(&hpa, "/apiVersion"), "autoscaling/v2");
    assert_eq!(text(&hpa, "/spec/scaleTargetRef/kind"), "Deployment");
    assert_eq!(
        text(&hpa, "/spec/scaleTargetRef/name"),
        text(&deployment, "/metadata/name")
    );
    let (min, max) = (&hpa["spec"]["minReplicas"], &hpa["spec"]["maxReplicas"]);
    assert!(min.as_u64().unwrap() >= 1 && min.as_u64() <= max.as_u64());
    assert_eq!(text(&hpa, "/spec/metrics/0/resource/name"), "cpu");
    // CPU utilisation is a share of the request.
    assert!(
        container(&deployment)
            .pointer("/resources/requests/cpu")
            .is_some()
    );

    let kustomization = manifest("kustomization.yaml");
    let mut listed = strings(&kustomization["resources"]);
    listed.sort();
    let mut present: Vec<String> = std::fs::read_dir(repo().join("deploy/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    present.sort();
    assert_eq!(listed, present, "kustomization.yaml lists every manifest");
}

#[test]
fn the_image_is_built_in_one_stage_and_runs_vigil_unprivileged_in_another() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let instructions: Vec<&str> = (dockerfile.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let stages: Vec<usize> = (instructions.iter().enumerate())
        .filter(|(_, l)| l.starts_with("FROM "))
        .map(|(i, _)| i)
        .collect();
    assert!(stages.len() >= 2, "a build stage and a runtime stage");
    let runtime = &instructions[*stages.last().unwrap()..];
    let last = |keyword: &str| -> &str {
        (runtime.iter().rev())
            .find_map(|l| l.strip_prefix(keyword))
            .unwrap_or_else(|| panic!("the runtime stage has no {keyword}"))
            .trim()
    };
    let user = last("USER ");
    let uid = user.split(':').next().unwrap();
    assert!(uid != "0" && uid != "root", "runs as {user}");
    let deployment = manifest("deployment.yaml");
    let pod_uid = deployment.pointer("/spec/template/spec/securityContext/runAsUser");
    assert_eq!(pod_uid.map(|u| u.to_string()).as_deref(), Some(uid));
    assert!(
        runtime
            .iter()
            .any(|l| l.starts_with("COPY --from=") && l.contains("target/release/vigil")),
        "the runtime stage takes the release binary from the build stage"
    );
    assert_eq!(last("ENTRYPOINT "), r#"["vigil"]"#);
    let cmd: Vec<String> = serde_json::from_str(last("CMD ")).expect("CMD as a JSON list");
    assert!(vigil_accepts(&cmd), "vigil refuses {cmd:?}");
    let port = container(&deployment).pointer("/ports/0/containerPort");
    assert_eq!(
        Some(last("EXPOSE ")),
        port.map(|p| p.to_string()).as_deref()
    );
}

/// A `vigil serve` on a free loopback port, stopped when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) address: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(token: &str) -> Server {
    serve_with(token, &[])
}

/// The same, with more arguments to `vigil serve`.
pub(crate) fn serve_with(token: &str, args: &[&str]) -> Server {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let dir = std::env::temp_dir().join(format!("vigil-deploy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["serve", "--bind", &address])
        .args(args)
        .env("VIGIL_TOKEN", token)
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("vigil serve starts");
    Server { child, address }
}

#[tokio::test]
async fn the_probes_answer_without_the_token_and_the_scrape_path_with_it() {
    let deployment = manifest("deployment.yaml");
    let container = container(&deployment);
    let server = serve("s3cret");
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{}{path}", server.address);
    // Waits for the server to listen.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while client.get(url("/healthz")).send().await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "vigil serve never listened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for probe in ["livenessProbe", "readinessProbe"] {
        let path = text(container, &format!("/{probe}/httpGet/path"));
        let status = client.get(url(path)).send().await.unwrap().status();
        assert_eq!(status, 200, "{probe} {path} without a token");
    }
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    let metrics = url(annotations["prometheus.io/path"].as_str().unwrap());
    let refused = client.get(&metrics).send().await.unwrap().status();
    assert_eq!(refused, 401, "/metrics takes the token");
    let scraped = client
        .get(&metrics)
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(scraped.status(), 200);
    assert!(scraped.text().await.unwrap().contains("# TYPE vigil_"));
}
