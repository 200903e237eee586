//! The deployment workflows, run without Google Cloud. Each test takes the `run:` scripts of
//! some steps of `.github/workflows/*.yml` from the YAML, evaluates the workflow's, the job's and
//! the step's `env:` for given repository variables (a small evaluator of the `${{ }}`
//! expressions they use), and runs the scripts with bash as GitHub's runner does (`bash -e`),
//! in a scratch directory, with stubs of `gcloud`, `skopeo`, `cargo`, `curl` and the other tools
//! first on PATH. A stub records its argv (and stdin) and answers as the test says; the tests
//! then check the commands each workflow would run against Cloud Run and Artifact Registry.
//!
//! Needs bash, jq and awk (as GitHub's ubuntu runners have them), and python3 for the stub of
//! ion-loadtest, which must catch SIGINT as goose does.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::{TempDir, workspace_root};
use yaml_rust2::{Yaml, YamlLoader};

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
const PROJECT: &str = "ion-prod";
const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const IMAGE_ID: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
const SERVING_DIGEST: &str =
    "sha256:3333333333333333333333333333333333333333333333333333333333333333";

// ---------------------------------------------------------------------------------------------
// deploy.yml

/// The repository variables every deploy test sets: only the required ones.
fn required_vars() -> Vars {
    Vars::new(&[
        ("GCP_PROJECT_ID", PROJECT),
        (
            "GCP_WORKLOAD_IDENTITY_PROVIDER",
            "projects/1/locations/global/workloadIdentityPools/github/providers/ion",
        ),
        (
            "GCP_DEPLOY_SERVICE_ACCOUNT",
            "deploy@ion-prod.iam.gserviceaccount.com",
        ),
        (
            "GCP_RUNTIME_SERVICE_ACCOUNT",
            "run@ion-prod.iam.gserviceaccount.com",
        ),
    ])
}

/// A Cloud Run service as `gcloud run services describe --format=json` shows it: `env` on the
/// current template, `traffic` entries `(revision, percent, tag)`.
fn service_json(name: &str, env: &[(&str, &str)], traffic: &[(&str, u32, Option<&str>)]) -> String {
    let env: Vec<String> = env
        .iter()
        .map(|(k, v)| format!(r#"{{"name": "{k}", "value": "{v}"}}"#))
        .collect();
    let traffic: Vec<String> = traffic
        .iter()
        .map(|(revision, percent, tag)| match tag {
            Some(tag) => format!(
                r#"{{"revisionName": "{revision}", "percent": {percent}, "tag": "{tag}",
                    "url": "https://{tag}---{name}-abc-uc.a.run.app"}}"#
            ),
            None => format!(r#"{{"revisionName": "{revision}", "percent": {percent}}}"#),
        })
        .collect();
    format!(
        r#"{{"metadata": {{"name": "{name}"}},
            "spec": {{"template": {{"spec": {{"containers": [{{"env": [{}]}}]}}}}}},
            "status": {{"url": "https://{name}-abc-uc.a.run.app", "traffic": [{}]}}}}"#,
        env.join(", "),
        traffic.join(", ")
    )
}

/// A run of deploy.yml's deploy job against an existing service `name`, whose template has
/// `env`. The describe answer changes once `gcloud run deploy` has run: the new revision
/// appears under its tag, without traffic.
fn deploy_run(vars: Vars, name: &str, env: &[(&str, &str)], image_ref: &str) -> Run {
    let tag = format!("sha-{}", &SHA[..12]);
    let before = service_json(name, env, &[(&format!("{name}-00001-old"), 100, None)]);
    let after = service_json(
        name,
        env,
        &[
            (&format!("{name}-00001-old"), 100, None),
            (&format!("{name}-00002-new"), 0, Some(&tag)),
        ],
    );
    let mut run = Run::new(vars);
    run.data("before.json", &before);
    run.data("after.json", &after);
    run.answers(&format!(
        r#"
case "$name $*" in
  "gcloud run services list"*) echo "{name}" ;;
  "gcloud run services describe"*)
    if [ -e "$STUB_DATA/deployed" ]; then cat "$STUB_DATA/after.json"; else cat "$STUB_DATA/before.json"; fi ;;
  "gcloud run deploy"*) touch "$STUB_DATA/deployed" ;;
esac
"#
    ));
    run.needs(
        "image",
        &[
            ("image", image_ref),
            ("repository", &image_repository("us-central1")),
        ],
    );
    run
}

fn image_repository(region: &str) -> String {
    format!("{region}-docker.pkg.dev/{PROJECT}/ion-mentoring/ion-mentoring")
}

#[test]
fn deploy_updates_only_the_variables_it_owns() {
    let wf = Workflow::load("deploy.yml");
    // Set by hand on the service: CORS origins, a rate limit, the original's names.
    let operator_env = [
        ("SPIN_VARIABLE_ALLOWED_ORIGINS", "https://app.example.com"),
        ("ION_RATE_LIMIT_PER_MINUTE", "30"),
        ("ALLOWED_ORIGINS", "https://old.example.com"),
        ("GCP_LOCATION", "asia-northeast3"),
        // A leftover of the original service (a long-retired model): the deploy removes it.
        ("MODEL_NAME", "gemini-1.5-flash"),
    ];
    let image = format!("{}@{DIGEST}", image_repository("us-central1"));
    let mut run = deploy_run(required_vars(), "ion-api", &operator_env, &image);
    run.step(&wf, "deploy", "deploy").assert_success();

    let deploy = run.only_call(&["gcloud", "run", "deploy"]);
    for replacing in [
        "--set-env-vars",
        "--clear-env-vars",
        "--env-vars-file",
        "--set-secrets",
        "--clear-secrets",
    ] {
        assert!(
            !deploy.has(replacing),
            "{replacing} replaces every variable or secret on the service: {deploy}"
        );
    }
    assert_eq!(
        deploy.value("--update-env-vars"),
        Some(
            "SPIN_VARIABLE_PROJECT_ID=ion-prod,SPIN_VARIABLE_LOCATION=global,\
             SPIN_VARIABLE_MODEL=gemini-3.5-flash,\
             OTEL_EXPORTER_OTLP_ENDPOINT=https://telemetry.googleapis.com,\
             OTEL_SERVICE_NAME=ion-api,OTEL_RESOURCE_ATTRIBUTES=cloud.region=us-central1"
        ),
        "{deploy}"
    );
    // Only the original's names for the variables it sets; ALLOWED_ORIGINS stays (ion-host
    // reads it) and so does everything else.
    assert_eq!(
        deploy.value("--remove-env-vars"),
        Some("GCP_LOCATION,MODEL_NAME"),
        "{deploy}"
    );
    assert!(
        deploy.has("--update-labels") && !deploy.has("--clear-labels"),
        "{deploy}"
    );

    // RATE_LIMIT_PER_MINUTE set: the workflow owns ION_RATE_LIMIT_PER_MINUTE too.
    let mut vars = required_vars();
    vars.set("RATE_LIMIT_PER_MINUTE", "120");
    let mut run = deploy_run(vars, "ion-api", &[], &image);
    run.step(&wf, "deploy", "deploy").assert_success();
    let deploy = run.only_call(&["gcloud", "run", "deploy"]);
    assert!(
        deploy
            .value("--update-env-vars")
            .is_some_and(|v| v.ends_with(",ION_RATE_LIMIT_PER_MINUTE=120")),
        "{deploy}"
    );
    assert!(!deploy.has("--remove-env-vars"), "{deploy}");
}

#[test]
fn deploy_with_memorystore_sets_the_runtime_config_and_direct_vpc_egress() {
    let wf = Workflow::load("deploy.yml");
    let image = format!("{}@{DIGEST}", image_repository("us-central1"));
    let mut vars = required_vars();
    vars.set("REDIS_URL", "redis://10.0.0.3:6379");
    vars.set("VPC_NETWORK", "default");
    vars.set("VPC_SUBNET", "run-egress");
    let mut run = deploy_run(vars, "ion-api", &[], &image);
    run.step(&wf, "deploy", "deploy").assert_success();
    let deploy = run.only_call(&["gcloud", "run", "deploy"]);
    assert_eq!(
        deploy.value("--update-env-vars"),
        Some(
            "^|^SPIN_VARIABLE_PROJECT_ID=ion-prod|SPIN_VARIABLE_LOCATION=global|\
             SPIN_VARIABLE_MODEL=gemini-3.5-flash|\
             OTEL_EXPORTER_OTLP_ENDPOINT=https://telemetry.googleapis.com|\
             OTEL_SERVICE_NAME=ion-api|OTEL_RESOURCE_ATTRIBUTES=cloud.region=us-central1|\
             ION_RUNTIME_CONFIG=key_value_store.default = \
             { type = \"redis\", url = \"redis://10.0.0.3:6379\" }"
        ),
        "{deploy}"
    );
    assert_eq!(deploy.value("--network"), Some("default"), "{deploy}");
    assert_eq!(deploy.value("--subnet"), Some("run-egress"), "{deploy}");
    assert_eq!(
        deploy.value("--vpc-egress"),
        Some("private-ranges-only"),
        "{deploy}"
    );

    // Without them: no VPC flags, and the store stays each instance's own.
    let mut run = deploy_run(required_vars(), "ion-api", &[], &image);
    run.step(&wf, "deploy", "deploy").assert_success();
    let deploy = run.only_call(&["gcloud", "run", "deploy"]);
    assert!(
        !deploy.has("--network") && !deploy.has("--vpc-egress"),
        "{deploy}"
    );
}

#[test]
fn deploy_defaults_are_the_original_service_name_region_and_timeout() {
    let wf = Workflow::load("deploy.yml");
    let image = format!("{}@{DIGEST}", image_repository("us-central1"));
    let mut run = deploy_run(required_vars(), "ion-api", &[], &image);
    run.step(&wf, "deploy", "deploy").assert_success();
    for call in run.calls_of(&["gcloud", "run"]) {
        assert_eq!(call.value("--region"), Some("us-central1"), "{call}");
        assert_eq!(call.value("--project"), Some(PROJECT), "{call}");
    }
    let deploy = run.only_call(&["gcloud", "run", "deploy"]);
    assert_eq!(
        deploy.args.get(3).map(String::as_str),
        Some("ion-api"),
        "{deploy}"
    );
    assert_eq!(deploy.value("--timeout"), Some("300"), "{deploy}");

    // Each one can be changed with a repository variable.
    let mut vars = required_vars();
    vars.set("CLOUD_RUN_SERVICE", "mentor");
    vars.set("GCP_REGION", "europe-west4");
    vars.set("CLOUD_RUN_TIMEOUT", "900");
    let mut run = deploy_run(vars, "mentor", &[], &image);
    run.step(&wf, "deploy", "deploy").assert_success();
    let deploy = run.only_call(&["gcloud", "run", "deploy"]);
    assert_eq!(
        deploy.args.get(3).map(String::as_str),
        Some("mentor"),
        "{deploy}"
    );
    assert_eq!(deploy.value("--region"), Some("europe-west4"), "{deploy}");
    assert_eq!(deploy.value("--timeout"), Some("900"), "{deploy}");
    // The OpenTelemetry metrics follow: their `job` is the service, their `location` the region.
    let env = updated_env(&deploy);
    assert_eq!(env["OTEL_SERVICE_NAME"], "mentor", "{deploy}");
    assert_eq!(
        env["OTEL_RESOURCE_ATTRIBUTES"], "cloud.region=europe-west4",
        "{deploy}"
    );
}

#[test]
fn deploy_puts_the_digest_on_a_tagged_revision_without_traffic_then_moves_traffic_and_latest() {
    let wf = Workflow::load("deploy.yml");
    let repository = image_repository("us-central1");
    let image = format!("{repository}@{DIGEST}");
    let mut run = deploy_run(required_vars(), "ion-api", &[], &image);
    // curl answers 200, with a body in the file named by -o.
    run.answers_more(
        r#"
if [ "$name" = curl ]; then
  while [ "$1" != -o ]; do shift; done
  case "$*" in
    */health) printf '{"status": "healthy"}' > "$2" ;;
    */chat) printf '{"persona_used": "Elro", "content": "..."}' > "$2" ;;
  esac
  printf 200
fi
"#,
    );
    let outputs = run.step(&wf, "deploy", "deploy").assert_success().outputs;
    run.step_outputs("token", &[("id_token", "eyJ.identity.token")]);
    assert_eq!(outputs["revision"], "ion-api-00002-new");
    assert_eq!(
        outputs["tag_url"],
        format!("https://sha-{}---ion-api-abc-uc.a.run.app", &SHA[..12])
    );
    assert_eq!(outputs["before"], "ion-api-00001-old=100%");
    run.step(&wf, "deploy", "Smoke test").assert_success();
    run.step(&wf, "deploy", "traffic").assert_success();
    run.step(&wf, "deploy", "Tag the image `latest`")
        .assert_success();

    let deploy = run.only_call(&["gcloud", "run", "deploy"]);
    assert_eq!(deploy.value("--image"), Some(image.as_str()), "{deploy}");
    assert!(deploy.has("--no-traffic"), "{deploy}");
    let tag = format!("sha-{}", &SHA[..12]);
    assert_eq!(deploy.value("--tag"), Some(tag.as_str()), "{deploy}");

    let curls = run.calls_of(&["curl"]);
    assert_eq!(curls.len(), 2);
    assert!(
        curls.iter().all(|c| c
            .args
            .iter()
            .any(|a| a.starts_with(&format!("https://{tag}---ion-api")))),
        "the smoke test calls the tagged URL only: {curls:?}"
    );
    // The identity token goes where Cloud Run checks it and the service does not look: with
    // API keys on, the service would refuse it in Authorization.
    for curl in &curls {
        assert!(
            curl.args
                .contains(&"X-Serverless-Authorization: Bearer eyJ.identity.token".to_owned()),
            "{curl}"
        );
        assert!(
            !curl
                .args
                .iter()
                .any(|a| a.to_ascii_lowercase().starts_with("authorization:")),
            "{curl}"
        );
    }

    let traffic = run.only_call(&["gcloud", "run", "services", "update-traffic"]);
    assert_eq!(
        traffic.value("--to-revisions"),
        Some("ion-api-00002-new=100"),
        "{traffic}"
    );
    let latest = run.only_call(&["gcloud", "artifacts", "docker", "tags", "add"]);
    assert_eq!(
        latest.args[5..7],
        [image.clone(), format!("{repository}:latest")],
        "{latest}"
    );
    let order: Vec<usize> = [&deploy, &traffic, &latest]
        .iter()
        .map(|c| c.index)
        .collect();
    assert!(
        order.is_sorted(),
        "deploy, then traffic, then latest: {order:?}"
    );
}

#[test]
fn deploy_refuses_an_image_not_named_by_digest() {
    let wf = Workflow::load("deploy.yml");
    let image = format!("{}:latest", image_repository("us-central1"));
    let mut run = deploy_run(required_vars(), "ion-api", &[], &image);
    let step = run.step(&wf, "deploy", "deploy");
    assert!(!step.success, "{step:?}");
    assert!(run.calls_of(&["gcloud", "run", "deploy"]).is_empty());
}

#[test]
fn deploy_of_a_new_service_gives_its_first_revision_the_traffic() {
    let wf = Workflow::load("deploy.yml");
    let image = format!("{}@{DIGEST}", image_repository("us-central1"));
    let mut run = deploy_run(required_vars(), "ion-api", &[], &image);
    // No such service yet: `services list` answers nothing.
    run.answers_first(r#"case "$name $*" in "gcloud run services list"*) exit 0 ;; esac"#);
    run.step(&wf, "deploy", "deploy").assert_success();
    let deploy = run.only_call(&["gcloud", "run", "deploy"]);
    assert!(!deploy.has("--no-traffic"), "{deploy}");
    assert!(!deploy.has("--remove-env-vars"), "{deploy}");
    assert!(deploy.has("--update-env-vars"), "{deploy}");
}

/// The variables `--update-env-vars` sets, split as gcloud splits them: at `,`, or at the
/// separator a leading `^SEP^` names.
fn updated_env(deploy: &Call) -> BTreeMap<String, String> {
    let value = deploy
        .value("--update-env-vars")
        .unwrap_or_else(|| panic!("no --update-env-vars: {deploy}"));
    let (separator, list) = match value.strip_prefix('^').and_then(|v| v.split_once('^')) {
        Some((separator, list)) => (separator, list),
        None => (",", value),
    };
    list.split(separator)
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("{pair:?}"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

const ACCESS_VARS: [&str; 3] = [
    "SPIN_VARIABLE_AUTH_MODE",
    "SPIN_VARIABLE_ANONYMOUS_REQUESTS_PER_MINUTE",
    "SPIN_VARIABLE_ANONYMOUS_DAILY_TOKENS",
];

/// `CLOUD_RUN_PUBLIC=true` with the shared store and no other access variables.
fn public_vars() -> Vars {
    let mut vars = required_vars();
    vars.set("CLOUD_RUN_PUBLIC", "true");
    vars.set("REDIS_URL", "redis://10.0.0.3:6379");
    vars.set("VPC_NETWORK", "default");
    vars
}

#[test]
fn a_public_deployment_takes_keys_or_anonymous_callers_under_budgets() {
    let wf = Workflow::load("deploy.yml");
    let image = format!("{}@{DIGEST}", image_repository("us-central1"));
    let mut run = deploy_run(public_vars(), "ion-api", &[], &image);
    let step = run.step(&wf, "deploy", "deploy").assert_success();
    let deploy = run.only_call(&["gcloud", "run", "deploy"]);
    assert!(deploy.has("--allow-unauthenticated"), "{deploy}");
    let env = updated_env(&deploy);
    assert_eq!(
        env["SPIN_VARIABLE_AUTH_MODE"], "keys_or_anonymous",
        "{deploy}"
    );
    assert_eq!(env["SPIN_VARIABLE_ANONYMOUS_REQUESTS_PER_MINUTE"], "10");
    assert_eq!(env["SPIN_VARIABLE_ANONYMOUS_DAILY_TOKENS"], "20000");
    // ion-host's per-instance floor, for when the store is down: the same per-minute number.
    assert_eq!(env["ION_RATE_LIMIT_PER_MINUTE"], "10");
    // The store is shared (REDIS_URL), so there is nothing to warn about.
    assert!(env.contains_key("ION_RUNTIME_CONFIG"), "{deploy}");
    assert!(!step.stdout.contains("::warning::"), "{}", step.stdout);

    // Repository variables override the defaults; RATE_LIMIT_PER_MINUTE the floor.
    let mut vars = public_vars();
    vars.set("ANONYMOUS_REQUESTS_PER_MINUTE", "30");
    vars.set("ANONYMOUS_DAILY_TOKENS", "5000");
    let mut run = deploy_run(vars.clone(), "ion-api", &[], &image);
    run.step(&wf, "deploy", "deploy").assert_success();
    let env = updated_env(&run.only_call(&["gcloud", "run", "deploy"]));
    assert_eq!(env["SPIN_VARIABLE_ANONYMOUS_REQUESTS_PER_MINUTE"], "30");
    assert_eq!(env["SPIN_VARIABLE_ANONYMOUS_DAILY_TOKENS"], "5000");
    assert_eq!(env["ION_RATE_LIMIT_PER_MINUTE"], "30");
    vars.set("RATE_LIMIT_PER_MINUTE", "100");
    let mut run = deploy_run(vars, "ion-api", &[], &image);
    run.step(&wf, "deploy", "deploy").assert_success();
    let env = updated_env(&run.only_call(&["gcloud", "run", "deploy"]));
    assert_eq!(env["SPIN_VARIABLE_ANONYMOUS_REQUESTS_PER_MINUTE"], "30");
    assert_eq!(env["ION_RATE_LIMIT_PER_MINUTE"], "100");

    // 0 is "no limit", not "unset": no per-minute limit, and no ION_RATE_LIMIT_PER_MINUTE
    // (ion-host refuses 0).
    let mut vars = public_vars();
    vars.set("ANONYMOUS_REQUESTS_PER_MINUTE", "0");
    vars.set("ANONYMOUS_DAILY_TOKENS", "0");
    let mut run = deploy_run(vars, "ion-api", &[], &image);
    run.step(&wf, "deploy", "deploy").assert_success();
    let env = updated_env(&run.only_call(&["gcloud", "run", "deploy"]));
    assert_eq!(env["SPIN_VARIABLE_ANONYMOUS_REQUESTS_PER_MINUTE"], "0");
    assert_eq!(env["SPIN_VARIABLE_ANONYMOUS_DAILY_TOKENS"], "0");
    assert!(!env.contains_key("ION_RATE_LIMIT_PER_MINUTE"), "{env:?}");

    // A limit that is not a number stops the deployment before anything changes.
    for wrong in ["ten", "5,ION_X=1", "-1"] {
        let mut vars = public_vars();
        vars.set("ANONYMOUS_REQUESTS_PER_MINUTE", wrong);
        let mut run = deploy_run(vars, "ion-api", &[], &image);
        let step = run.step(&wf, "deploy", "deploy");
        assert!(!step.success, "{wrong}: {step:?}");
        assert!(step.stdout.contains("::error::"), "{wrong}: {step:?}");
        assert!(run.calls_of(&["gcloud", "run", "deploy"]).is_empty());
    }

    // Private (the default): the workflow sets none of the access variables.
    let mut run = deploy_run(required_vars(), "ion-api", &[], &image);
    run.step(&wf, "deploy", "deploy").assert_success();
    let deploy = run.only_call(&["gcloud", "run", "deploy"]);
    assert!(deploy.has("--no-allow-unauthenticated"), "{deploy}");
    let env = updated_env(&deploy);
    for name in ACCESS_VARS.iter().chain(&["ION_RATE_LIMIT_PER_MINUTE"]) {
        assert!(!env.contains_key(*name), "{name}: {deploy}");
    }
}

#[test]
fn a_public_deployment_without_the_shared_store_warns_that_limits_and_keys_are_per_instance() {
    let wf = Workflow::load("deploy.yml");
    let image = format!("{}@{DIGEST}", image_repository("us-central1"));
    let mut vars = required_vars();
    vars.set("CLOUD_RUN_PUBLIC", "true");
    let mut run = deploy_run(vars, "ion-api", &[], &image);
    let step = run.step(&wf, "deploy", "deploy").assert_success();
    let warnings: Vec<&str> = step
        .stdout
        .lines()
        .filter(|l| l.starts_with("::warning::"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", step.stdout);
    assert!(
        warnings[0].contains("REDIS_URL") && warnings[0].contains("per instance"),
        "{}",
        warnings[0]
    );
    // It deploys all the same: the limits hold per instance.
    let env = updated_env(&run.only_call(&["gcloud", "run", "deploy"]));
    assert_eq!(env["SPIN_VARIABLE_AUTH_MODE"], "keys_or_anonymous");
    assert!(!env.contains_key("ION_RUNTIME_CONFIG"), "{env:?}");

    // A private deployment over a service left asking for keys says what callers must do.
    let mut run = deploy_run(
        required_vars(),
        "ion-api",
        &[("SPIN_VARIABLE_AUTH_MODE", "keys_or_anonymous")],
        &image,
    );
    let step = run.step(&wf, "deploy", "deploy").assert_success();
    assert!(
        step.stdout.lines().any(|l| l.starts_with("::warning::")
            && l.contains("SPIN_VARIABLE_AUTH_MODE=keys_or_anonymous")
            && l.contains("X-Serverless-Authorization")),
        "{}",
        step.stdout
    );
    let mut run = deploy_run(
        required_vars(),
        "ion-api",
        &[("SPIN_VARIABLE_AUTH_MODE", "none")],
        &image,
    );
    let step = run.step(&wf, "deploy", "deploy").assert_success();
    assert!(!step.stdout.contains("::warning::"), "{}", step.stdout);
}

#[test]
fn the_admin_token_comes_from_secret_manager_and_other_secrets_stay() {
    let wf = Workflow::load("deploy.yml");
    let image = format!("{}@{DIGEST}", image_repository("us-central1"));
    for secret in [
        "ion-admin-token",
        "projects/ion-prod/secrets/ion-admin-token",
    ] {
        let mut vars = public_vars();
        vars.set("ADMIN_TOKEN_SECRET", secret);
        let mut run = deploy_run(vars, "ion-api", &[], &image);
        run.step(&wf, "deploy", "deploy").assert_success();
        let deploy = run.only_call(&["gcloud", "run", "deploy"]);
        let expected = format!("SPIN_VARIABLE_ADMIN_TOKEN={secret}:latest");
        assert_eq!(
            deploy.value("--update-secrets"),
            Some(expected.as_str()),
            "{deploy}"
        );
        assert!(
            !deploy.has("--set-secrets") && !deploy.has("--clear-secrets"),
            "{deploy}"
        );
        // A secret, never a plain variable.
        assert!(
            !updated_env(&deploy).contains_key("SPIN_VARIABLE_ADMIN_TOKEN"),
            "{deploy}"
        );
    }

    // Unset: the service's own secrets are left as they are.
    let mut run = deploy_run(public_vars(), "ion-api", &[], &image);
    run.step(&wf, "deploy", "deploy").assert_success();
    let deploy = run.only_call(&["gcloud", "run", "deploy"]);
    assert!(!deploy.has("--update-secrets"), "{deploy}");

    // A value that is not a secret's name stops the deployment.
    let mut vars = public_vars();
    vars.set("ADMIN_TOKEN_SECRET", "token,SPIN_VARIABLE_X=1");
    let mut run = deploy_run(vars, "ion-api", &[], &image);
    let step = run.step(&wf, "deploy", "deploy");
    assert!(!step.success, "{step:?}");
    assert!(run.calls_of(&["gcloud", "run", "deploy"]).is_empty());
}

/// The image job's build and test steps in `file`, with stubs of scripts/build-image.sh and
/// cargo; then checks that the container test ran the archive the build wrote.
fn build_and_test_image(file: &str, run: &mut Run) {
    let wf = Workflow::load(file);
    run.data("image-id", IMAGE_ID);
    run.checkout_file(
        "scripts/build-image.sh",
        r#"#!/usr/bin/env bash
mkdir -p target/image
echo archive > target/image/ion-mentoring.oci.tar
cp "$STUB_DATA/image-id" target/image/image-id
"#,
    );
    run.answers_first(
        r#"case "$name $*" in "cargo test"*) echo "$ION_TEST_IMAGE" > "$STUB_DATA/tested-image" ;; esac"#,
    );
    run.step(&wf, "image", "Build the image").assert_success();
    run.step(&wf, "image", "Run the image").assert_success();

    let test = run.only_call(&["cargo", "test"]);
    assert_eq!(
        test.args[1..],
        [
            "test",
            "--release",
            "--locked",
            "--test",
            "integration",
            "container::image_"
        ],
        "{file}: {test}"
    );
    let archive = run.work.join("target/image/ion-mentoring.oci.tar");
    assert_eq!(
        run.read_data("tested-image").trim(),
        format!("oci-archive:{}", archive.display()),
        "{file}: the container test runs the archive the build wrote"
    );
}

/// deploy.yml's image job up to its push; `pushed_config` is the config digest the registry
/// answers for the pushed manifest.
fn image_run(pushed_config: &str) -> (Run, StepOutcome) {
    let wf = Workflow::load("deploy.yml");
    let mut run = Run::new(required_vars());
    run.answers(&format!(
        r#"
case "$name $*" in
  "gcloud auth print-access-token"*) echo ya29.secret-token ;;
  "skopeo copy"*)
    while [ $# -gt 0 ]; do
      if [ "$1" = --digestfile ]; then printf '%s' "{DIGEST}" > "$2"; fi
      shift
    done ;;
  "skopeo inspect"*) printf '{{"config": {{"digest": "{pushed_config}"}}}}' ;;
esac
"#
    ));
    run.step(&wf, "image", "check").assert_success();
    build_and_test_image("deploy.yml", &mut run);
    let push = run.step(&wf, "image", "push");
    (run, push)
}

#[test]
fn the_image_that_is_tested_is_the_image_that_is_pushed_by_digest() {
    let (run, push) = image_run(IMAGE_ID);
    let push = push.assert_success();
    let repository = image_repository("us-central1");
    assert_eq!(push.outputs["image"], format!("{repository}@{DIGEST}"));

    let copy = run.only_call(&["skopeo", "copy"]);
    let positional: Vec<&String> = copy.args[2..]
        .iter()
        .filter(|a| !a.starts_with("--") && !a.starts_with('/'))
        .collect();
    assert_eq!(
        positional,
        [
            &"oci-archive:target/image/ion-mentoring.oci.tar".to_string(),
            &format!("docker://{repository}:sha-{SHA}"),
        ],
        "the archive the container test ran is pushed: {copy}"
    );
    // The registry token goes on stdin, never on a command line.
    let login = run.only_call(&["skopeo", "login"]);
    assert_eq!(login.stdin.trim(), "ya29.secret-token");
    assert!(
        run.calls().iter().all(|c| !c.to_string().contains("ya29")),
        "the token appears in a command line"
    );
    let inspect = run.only_call(&["skopeo", "inspect"]);
    assert!(
        inspect
            .args
            .contains(&format!("docker://{repository}@{DIGEST}")),
        "{inspect}"
    );
}

#[test]
fn a_pushed_image_that_is_not_the_built_one_stops_the_deployment() {
    let (_run, push) = image_run(SERVING_DIGEST);
    assert!(!push.success, "{push:?}");
    assert!(!push.outputs.contains_key("image"), "{push:?}");
}

#[test]
fn ci_builds_and_tests_the_image_as_deploy_does_without_docker() {
    let mut run = Run::new(Vars::default());
    build_and_test_image("ci.yml", &mut run);

    for file in ["ci.yml", "deploy.yml", "loadtest.yml"] {
        let wf = Workflow::load(file);
        for (job, step) in wf.all_steps() {
            if let Some(uses) = step.uses() {
                assert!(!uses.starts_with("docker/"), "{file} {job}: {uses}");
            }
            if let Some(run) = step.run() {
                for docker in [
                    "docker build",
                    "docker buildx",
                    "docker push",
                    "docker pull",
                    "docker run",
                    "configure-docker",
                    "Dockerfile",
                ] {
                    assert!(!run.contains(docker), "{file} {job}: {docker} in {run}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// loadtest.yml

/// The target job's run: the service has `serving` at 100%; after `gcloud run deploy` the tag
/// `loadtest` points at `tagged` (a new revision, unless the test says otherwise).
fn loadtest_target_run(tagged: &str) -> Run {
    let before = service_json("ion-api", &[], &[("ion-api-00007-liv", 100, None)]);
    let after = service_json(
        "ion-api",
        &[],
        &[
            ("ion-api-00007-liv", 100, None),
            (tagged, 0, Some("loadtest")),
        ],
    );
    let mut run = Run::new(required_vars());
    run.data("before.json", &before);
    run.data("after.json", &after);
    run.answers(&format!(
        r#"
case "$name $*" in
  "gcloud run services describe"*)
    if [ -e "$STUB_DATA/deployed" ]; then cat "$STUB_DATA/after.json"; else cat "$STUB_DATA/before.json"; fi ;;
  "gcloud run revisions describe ion-api-00007-liv"*) echo "{}@{SERVING_DIGEST}" ;;
  "gcloud run deploy"*) touch "$STUB_DATA/deployed" ;;
esac
"#,
        image_repository("us-central1")
    ));
    run
}

#[test]
fn the_load_test_gets_a_revision_of_its_own_without_traffic() {
    let wf = Workflow::load("loadtest.yml");
    let mut run = loadtest_target_run("ion-api-00008-lod");
    let outputs = run.step(&wf, "target", "revision").assert_success().outputs;
    assert_eq!(outputs["revision"], "ion-api-00008-lod");
    assert_eq!(
        outputs["url"],
        "https://loadtest---ion-api-abc-uc.a.run.app"
    );

    let deploy = run.only_call(&["gcloud", "run", "deploy"]);
    assert_eq!(
        deploy.args.get(3).map(String::as_str),
        Some("ion-api"),
        "{deploy}"
    );
    assert_eq!(deploy.value("--region"), Some("us-central1"), "{deploy}");
    assert_eq!(
        deploy.value("--image"),
        Some(format!("{}@{SERVING_DIGEST}", image_repository("us-central1")).as_str()),
        "the load test runs what users run, by digest: {deploy}"
    );
    assert!(deploy.has("--no-traffic"), "{deploy}");
    assert_eq!(deploy.value("--tag"), Some("loadtest"), "{deploy}");
    // Nothing about the service's configuration changes.
    for flag in [
        "--update-env-vars",
        "--set-env-vars",
        "--remove-env-vars",
        "--revision-suffix",
    ] {
        assert!(!deploy.has(flag), "{flag}: {deploy}");
    }
    // The revision serving users is never tagged for the load.
    assert!(
        run.calls_of(&["gcloud", "run", "services", "update-traffic"])
            .is_empty(),
        "{:?}",
        run.calls()
    );
}

#[test]
fn the_load_test_refuses_to_run_on_the_serving_revision() {
    let wf = Workflow::load("loadtest.yml");
    let mut run = loadtest_target_run("ion-api-00007-liv");
    let step = run.step(&wf, "target", "revision");
    assert!(!step.success, "{step:?}");
    assert!(!step.outputs.contains_key("url"), "{step:?}");
}

#[test]
fn the_load_test_revision_is_removed_afterwards() {
    let wf = Workflow::load("loadtest.yml");
    let mut run = Run::new(required_vars());
    run.needs("target", &[("revision", "ion-api-00008-lod")]);
    run.step(&wf, "cleanup", "Remove the tag").assert_success();
    let untag = run.only_call(&["gcloud", "run", "services", "update-traffic"]);
    assert_eq!(untag.value("--remove-tags"), Some("loadtest"), "{untag}");
    let delete = run.only_call(&["gcloud", "run", "revisions", "delete"]);
    assert_eq!(
        delete.args.get(4).map(String::as_str),
        Some("ion-api-00008-lod")
    );
    assert!(untag.index < delete.index);
}

/// A stub of ion-loadtest that writes goose's CSV request log: `rows` of (name, status) at
/// once, then, if `forever`, one `/chat` 200 every 10 ms until SIGINT (which it records).
fn loadtest_stub(rows: &[(&str, u16)], forever: bool) -> String {
    let rows: Vec<String> = rows
        .iter()
        .map(|(name, status)| format!("({name:?}, {status})"))
        .collect();
    format!(
        r#"#!/usr/bin/env python3
import signal, sys, time
args = sys.argv[1:]
log = args[args.index("--request-log") + 1]
stopped = []
signal.signal(signal.SIGINT, lambda *_: stopped.append(1))
def row(f, name, status):
    ok = "true" if status < 400 else "false"
    f.write(f'1,POST,"{{name}}","https://t/chat","https://t/chat",false,5,{{status}},{{ok}},false,0,,0,0\n')
    f.flush()
with open(log, "w") as f:
    f.write("elapsed,method,name,url,final_url,redirected,response_time,status_code,success,update,user,error,coordinated_omission_elapsed,user_cadence\n")
    for name, status in [{}]:
        row(f, name, status)
    # goose logs a changed result again with update=true: not a second request.
    f.write('1,POST,"/chat","https://t/chat","https://t/chat",false,5,429,false,true,0,,0,0\n')
    while {} and not stopped:
        row(f, "/chat", 200)
        time.sleep(0.01)
if stopped:
    open("interrupted", "w").write("SIGINT")
"#,
        rows.join(", "),
        if forever { "True" } else { "False" },
    )
}

fn scenario_run(vars: Vars, scenarios: &str, scenario: &str, stub: &str) -> (Run, StepOutcome) {
    let wf = Workflow::load("loadtest.yml");
    let mut run = Run::new(vars);
    run.input("scenarios", scenarios);
    run.matrix("scenario", scenario);
    run.needs(
        "target",
        &[("url", "https://loadtest---ion-api-abc-uc.a.run.app")],
    );
    run.checkout_file("ion-loadtest", stub);
    let step = run.step(&wf, "scenario", "run");
    (run, step)
}

#[test]
fn a_scenario_fails_when_429s_pass_the_threshold() {
    // 2 of 100 requests answered 429: over the default 1%.
    let mut rows = vec![("/chat", 200); 60];
    rows.extend([("/health", 200); 38]);
    rows.extend([("/chat", 429); 2]);
    let (_, step) = scenario_run(
        required_vars(),
        "light",
        "light",
        &loadtest_stub(&rows, false),
    );
    assert!(!step.success, "{step:?}");
    assert!(
        step.stdout.contains("2 of 100 requests were answered 429"),
        "{step:?}"
    );

    // 1 of 100 is within it; ion-loadtest's own verdict (exit 0) stands.
    rows.pop();
    rows.push(("/docs", 200));
    let (_, step) = scenario_run(
        required_vars(),
        "light",
        "light",
        &loadtest_stub(&rows, false),
    );
    step.assert_success();

    // The threshold is a repository variable.
    let mut vars = required_vars();
    vars.set("LOADTEST_MAX_429_PERCENT", "0");
    let (_, step) = scenario_run(vars, "light", "light", &loadtest_stub(&rows, false));
    assert!(!step.success, "{step:?}");
}

#[test]
fn the_chat_requests_of_a_run_are_capped_and_shared_among_its_scenarios() {
    // The default cap, shared by size: every scenario's share, and the shares add up to at
    // most the cap.
    let all = "light medium heavy stress";
    let mut total = 0;
    for scenario in all.split(' ') {
        let (_, step) = scenario_run(
            required_vars(),
            all,
            scenario,
            &loadtest_stub(&[("/chat", 200)], false),
        );
        let cap: u64 = step.assert_success().outputs["cap"].parse().unwrap();
        assert!(cap > 0, "{scenario}");
        total += cap;
    }
    assert!((19_990..=20_000).contains(&total), "{total}");

    // A run that would go on is stopped at its share, with SIGINT (goose then ends the run
    // as at the end of its run time, reports included).
    let mut vars = required_vars();
    vars.set("LOADTEST_MAX_CHATS", "50");
    let (run, step) = scenario_run(vars, "light", "light", &loadtest_stub(&[], true));
    let step = step.assert_success();
    assert_eq!(step.outputs["cap"], "50");
    assert!(
        run.work.join("interrupted").exists(),
        "ion-loadtest was not stopped: {step:?}"
    );
    assert!(
        step.stdout
            .contains("light stopped at its share of LOADTEST_MAX_CHATS"),
        "{step:?}"
    );
}

#[test]
fn every_action_is_pinned_by_commit() {
    for file in ["ci.yml", "deploy.yml", "loadtest.yml"] {
        let wf = Workflow::load(file);
        for (job, step) in wf.all_steps() {
            let Some(uses) = step.uses() else { continue };
            if uses.starts_with("./") {
                continue;
            }
            let pin = uses.split_once('@').map(|(_, pin)| pin).unwrap_or("");
            assert!(
                pin.len() == 40 && pin.bytes().all(|b| b.is_ascii_hexdigit()),
                "{file} {job}: {uses} is not pinned by commit SHA"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The harness: workflows, expressions, and runs of steps under stubs.

struct Workflow {
    name: String,
    doc: Yaml,
}

impl Workflow {
    fn load(file: &str) -> Workflow {
        let path = workspace_root().join(".github/workflows").join(file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let mut docs = YamlLoader::load_from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
        Workflow {
            name: file.to_owned(),
            doc: docs.remove(0),
        }
    }

    fn job(&self, id: &str) -> Job<'_> {
        let job = &self.doc["jobs"][id];
        assert!(!job.is_badvalue(), "{}: no job {id}", self.name);
        Job {
            workflow: self,
            id: id.to_owned(),
            yaml: job,
        }
    }

    fn all_steps(&self) -> Vec<(String, Step<'_>)> {
        let jobs = self.doc["jobs"].as_hash().expect("jobs");
        jobs.keys()
            .map(|k| k.as_str().unwrap().to_owned())
            .flat_map(|id| {
                let job = self.job(&id);
                job.steps().into_iter().map(move |s| (id.clone(), s))
            })
            .collect()
    }
}

struct Job<'a> {
    workflow: &'a Workflow,
    id: String,
    yaml: &'a Yaml,
}

impl<'a> Job<'a> {
    fn steps(&self) -> Vec<Step<'a>> {
        self.yaml["steps"]
            .as_vec()
            .map(|v| v.iter().map(|yaml| Step { yaml }).collect())
            .unwrap_or_default()
    }

    /// The step whose `id` is `key`, else the one whose `name` starts with it (exactly one).
    fn step(&self, key: &str) -> Step<'a> {
        let steps = self.steps();
        if let Some(step) = steps.iter().find(|s| s.field("id") == Some(key)) {
            return Step { yaml: step.yaml };
        }
        let named: Vec<&Step> = steps
            .iter()
            .filter(|s| s.field("name").is_some_and(|n| n.starts_with(key)))
            .collect();
        assert_eq!(
            named.len(),
            1,
            "{} job {}: {} steps with the id or name {key:?}",
            self.workflow.name,
            self.id,
            named.len()
        );
        Step {
            yaml: named[0].yaml,
        }
    }
}

struct Step<'a> {
    yaml: &'a Yaml,
}

impl Step<'_> {
    fn field(&self, key: &str) -> Option<&str> {
        self.yaml[key].as_str()
    }
    fn run(&self) -> Option<String> {
        self.field("run").map(str::to_owned)
    }
    fn uses(&self) -> Option<&str> {
        self.field("uses")
    }
}

/// `vars.*` (repository variables).
#[derive(Clone, Default)]
struct Vars(BTreeMap<String, String>);

impl Vars {
    fn new(pairs: &[(&str, &str)]) -> Vars {
        Vars(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }
    fn set(&mut self, key: &str, value: &str) {
        self.0.insert(key.to_owned(), value.to_owned());
    }
}

/// The contexts an expression may read.
#[derive(Default)]
struct Contexts {
    vars: BTreeMap<String, String>,
    inputs: BTreeMap<String, String>,
    matrix: BTreeMap<String, String>,
    env: BTreeMap<String, String>,
    /// `steps.<id>.outputs.<name>` and `needs.<job>.outputs.<name>`.
    steps: BTreeMap<String, BTreeMap<String, String>>,
    needs: BTreeMap<String, BTreeMap<String, String>>,
}

impl Contexts {
    /// Replaces every `${{ expression }}` in `text`.
    fn render(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${{") {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find("}}")
                .unwrap_or_else(|| panic!("unclosed expression in {text:?}"))
                + start;
            out.push_str(&self.eval(rest[start + 3..end].trim()));
            rest = &rest[end + 2..];
        }
        out.push_str(rest);
        out
    }

    /// The subset of GitHub's expression language the workflows use: `a || b`, `a == b`,
    /// `a != b`, `'literals'` and context paths. Anything else panics, so that a workflow
    /// that starts using more is noticed here.
    fn eval(&self, expr: &str) -> String {
        if let Some((a, b)) = split_top(expr, "||") {
            let a = self.eval(a);
            return if a.is_empty() || a == "false" {
                self.eval(b)
            } else {
                a
            };
        }
        for (op, equal) in [("==", true), ("!=", false)] {
            if let Some((a, b)) = split_top(expr, op) {
                let same = self.eval(a).eq_ignore_ascii_case(&self.eval(b));
                return (same == equal).to_string();
            }
        }
        let expr = expr.trim();
        if let Some(literal) = expr.strip_prefix('\'').and_then(|e| e.strip_suffix('\'')) {
            return literal.replace("''", "'");
        }
        let path: Vec<&str> = expr.split('.').collect();
        assert!(
            path.iter().all(|p| !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')),
            "unsupported expression {expr:?}"
        );
        let get =
            |map: &BTreeMap<String, String>, key: &str| map.get(key).cloned().unwrap_or_default();
        match path.as_slice() {
            ["vars", name] => get(&self.vars, name),
            ["inputs", name] => get(&self.inputs, name),
            ["matrix", name] => get(&self.matrix, name),
            ["env", name] => get(&self.env, name),
            ["github", "sha"] => SHA.to_owned(),
            // No repository secret is set in the sandbox.
            ["secrets", _] => String::new(),
            ["steps", id, "outputs", name] => self
                .steps
                .get(*id)
                .map(|o| get(o, name))
                .unwrap_or_default(),
            ["needs", job, "outputs", name] => self
                .needs
                .get(*job)
                .map(|o| get(o, name))
                .unwrap_or_default(),
            _ => panic!("unsupported expression {expr:?}"),
        }
    }
}

/// `expr` split at the last `op` outside quotes (left-associative).
fn split_top<'e>(expr: &'e str, op: &str) -> Option<(&'e str, &'e str)> {
    let mut quoted = false;
    let mut found = None;
    for (i, c) in expr.char_indices() {
        if c == '\'' {
            quoted = !quoted;
        } else if !quoted && expr[i..].starts_with(op) {
            found = Some(i);
        }
    }
    found.map(|i| (&expr[..i], &expr[i + op.len()..]))
}

/// The result of one step.
#[derive(Debug)]
struct StepOutcome {
    success: bool,
    stdout: String,
    stderr: String,
    outputs: BTreeMap<String, String>,
}

impl StepOutcome {
    #[track_caller]
    fn assert_success(self) -> StepOutcome {
        assert!(
            self.success,
            "the step failed:\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// One recorded command.
#[derive(Debug, Clone)]
struct Call {
    /// In the order the commands ran.
    index: usize,
    /// `args[0]` is the command's name.
    args: Vec<String>,
    stdin: String,
}

impl Call {
    fn starts_with(&self, prefix: &[&str]) -> bool {
        self.args.len() >= prefix.len() && self.args.iter().zip(prefix).all(|(a, p)| a == p)
    }
    fn has(&self, flag: &str) -> bool {
        self.args
            .iter()
            .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
    }
    /// The value of `--flag value` or `--flag=value`.
    fn value(&self, flag: &str) -> Option<&str> {
        self.args.iter().enumerate().find_map(|(i, a)| {
            if a == flag {
                self.args.get(i + 1).map(String::as_str)
            } else {
                a.strip_prefix(flag).and_then(|v| v.strip_prefix('='))
            }
        })
    }
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.args.join(" "))
    }
}

/// The stub every recorded command runs: it writes its name and argv (NUL-separated) and its
/// stdin to `$STUB_CALLS`, then sources the test's answers with `$name` and `"$@"` set.
const STUB: &str = r#"#!/usr/bin/env bash
set -e
name=$(basename "$0")
call="$STUB_CALLS/$(date +%s%N)-$$"
printf '%s\0' "$name" "$@" > "$call.args"
cat > "$call.stdin"
. "$STUB_ANSWERS"
"#;

const STUBBED: &[&str] = &[
    "gcloud", "skopeo", "buildah", "podman", "docker", "cargo", "curl",
];

/// A scratch runner: a checkout directory the steps run in, stubs on PATH, GitHub's files.
struct Run {
    _dir: TempDir,
    root: PathBuf,
    work: PathBuf,
    contexts: Contexts,
    /// What steps appended to `$GITHUB_ENV`.
    github_env: BTreeMap<String, String>,
    answers: String,
}

impl Run {
    fn new(vars: Vars) -> Run {
        let dir = TempDir::new();
        let root = dir.path().to_path_buf();
        for sub in ["bin", "calls", "data", "work", "temp"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        for name in STUBBED {
            write_executable(&root.join("bin").join(name), STUB);
        }
        Run {
            _dir: dir,
            work: root.join("work"),
            root,
            contexts: Contexts {
                vars: vars.0,
                ..Contexts::default()
            },
            github_env: BTreeMap::new(),
            answers: String::new(),
        }
    }

    /// How the stubs answer: bash, sourced with `$name` (the command) and `"$@"` set.
    fn answers(&mut self, script: &str) {
        self.answers = script.to_owned();
    }
    fn answers_more(&mut self, script: &str) {
        self.answers.push_str(script);
    }
    fn answers_first(&mut self, script: &str) {
        self.answers = format!("{script}\n{}", self.answers);
    }

    fn data(&self, file: &str, content: &str) {
        std::fs::write(self.root.join("data").join(file), content).unwrap();
    }
    fn read_data(&self, file: &str) -> String {
        std::fs::read_to_string(self.root.join("data").join(file)).unwrap_or_default()
    }

    /// A file in the checkout the steps run in; executable, as stubs are.
    fn checkout_file(&self, path: &str, content: &str) {
        let path = self.work.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        write_executable(&path, content);
    }

    fn input(&mut self, name: &str, value: &str) {
        self.contexts.inputs.insert(name.into(), value.into());
    }
    fn matrix(&mut self, name: &str, value: &str) {
        self.contexts.matrix.insert(name.into(), value.into());
    }
    /// The outputs of a step the harness does not run (an action's).
    fn step_outputs(&mut self, id: &str, outputs: &[(&str, &str)]) {
        let outputs = outputs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.contexts.steps.insert(id.into(), outputs);
    }
    fn needs(&mut self, job: &str, outputs: &[(&str, &str)]) {
        let outputs = outputs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.contexts.needs.insert(job.into(), outputs);
    }

    /// Runs one step of `job` as the runner would: workflow, job and step `env:` evaluated in
    /// turn, `${{ }}` in the script replaced, then `bash -e` in the checkout.
    fn step(&mut self, workflow: &Workflow, job_id: &str, key: &str) -> StepOutcome {
        let job = workflow.job(job_id);
        let step = job.step(key);
        let script = step
            .run()
            .unwrap_or_else(|| panic!("{} {job_id} {key}: not a run step", workflow.name));
        assert!(
            step.field("shell").is_none(),
            "{}: the harness runs the default shell only",
            workflow.name
        );

        // The workflow's env, the job's, what earlier steps wrote to $GITHUB_ENV, the step's.
        let mut env = self.eval_env(&workflow.doc["env"], &BTreeMap::new());
        let job_env = self.eval_env(&job.yaml["env"], &env);
        env.extend(job_env);
        env.extend(self.github_env.clone());
        let step_env = self.eval_env(&step.yaml["env"], &env);
        env.extend(step_env);
        self.contexts.env = env.clone();
        let script = self.contexts.render(&script);

        std::fs::write(self.root.join("answers.sh"), &self.answers).unwrap();
        let files = ["output", "env", "summary"].map(|f| self.root.join(format!("github-{f}")));
        for file in &files {
            std::fs::write(file, "").unwrap();
        }
        let script_path = self.root.join("step.sh");
        std::fs::write(&script_path, &script).unwrap();
        let path = format!(
            "{}:{}",
            self.root.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        // A step that hangs (a stub that is never stopped) fails instead.
        let out = Command::new("timeout")
            .args(["--kill-after=5", "60", "bash", "-e"])
            .arg(&script_path)
            .current_dir(&self.work)
            .env_clear()
            .envs(&env)
            .env("PATH", path)
            .env("HOME", self.root.join("temp"))
            .env("GITHUB_SHA", SHA)
            .env("GITHUB_RUN_ID", "4242")
            .env("GITHUB_RUN_ATTEMPT", "1")
            .env("GITHUB_WORKSPACE", &self.work)
            .env("RUNNER_TEMP", self.root.join("temp"))
            .env("GITHUB_OUTPUT", &files[0])
            .env("GITHUB_ENV", &files[1])
            .env("GITHUB_STEP_SUMMARY", &files[2])
            .env("STUB_CALLS", self.root.join("calls"))
            .env("STUB_DATA", self.root.join("data"))
            .env("STUB_ANSWERS", self.root.join("answers.sh"))
            .stdin(Stdio::null())
            .output()
            .expect("bash runs");
        let outputs = parse_github_file(&std::fs::read_to_string(&files[0]).unwrap());
        self.github_env.extend(parse_github_file(
            &std::fs::read_to_string(&files[1]).unwrap(),
        ));
        if let Some(id) = step.field("id") {
            self.contexts.steps.insert(id.to_owned(), outputs.clone());
        }
        StepOutcome {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            outputs,
        }
    }

    fn eval_env(&self, level: &Yaml, outer: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let Some(hash) = level.as_hash() else {
            return BTreeMap::new();
        };
        let contexts = Contexts {
            env: outer.clone(),
            vars: self.contexts.vars.clone(),
            inputs: self.contexts.inputs.clone(),
            matrix: self.contexts.matrix.clone(),
            steps: self.contexts.steps.clone(),
            needs: self.contexts.needs.clone(),
        };
        hash.iter()
            .map(|(k, v)| {
                let value = match v {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    Yaml::Real(r) => r.clone(),
                    other => panic!("env value {other:?}"),
                };
                (k.as_str().unwrap().to_owned(), contexts.render(&value))
            })
            .collect()
    }

    /// Every recorded command, in order.
    fn calls(&self) -> Vec<Call> {
        let dir = self.root.join("calls");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter_map(|n| n.strip_suffix(".args").map(str::to_owned))
            .collect();
        names.sort_by_key(|n| {
            let (time, pid) = n.split_once('-').unwrap();
            (time.parse::<u128>().unwrap(), pid.to_owned())
        });
        names
            .iter()
            .enumerate()
            .map(|(index, n)| {
                let args = std::fs::read(dir.join(format!("{n}.args"))).unwrap();
                let args = args
                    .split(|b| *b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                let stdin =
                    std::fs::read_to_string(dir.join(format!("{n}.stdin"))).unwrap_or_default();
                Call { index, args, stdin }
            })
            .collect()
    }

    fn calls_of(&self, prefix: &[&str]) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.starts_with(prefix))
            .collect()
    }

    #[track_caller]
    fn only_call(&self, prefix: &[&str]) -> Call {
        let calls = self.calls_of(prefix);
        assert_eq!(
            calls.len(),
            1,
            "expected one `{}` call, got: {:#?}",
            prefix.join(" "),
            self.calls().iter().map(Call::to_string).collect::<Vec<_>>()
        );
        calls.into_iter().next().unwrap()
    }
}

/// `$GITHUB_OUTPUT` / `$GITHUB_ENV`: `name=value` lines and `name<<DELIMITER` blocks.
fn parse_github_file(text: &str) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some((name, delimiter)) = line.split_once("<<") {
            let value: Vec<&str> = lines.by_ref().take_while(|l| *l != delimiter).collect();
            values.insert(name.to_owned(), value.join("\n"));
        } else if let Some((name, value)) = line.split_once('=') {
            values.insert(name.to_owned(), value.to_owned());
        }
    }
    values
}

fn write_executable(path: &Path, content: &str) {
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}
