//! The built image's configuration as podman reports it: size, user, environment, port.

use super::USER;
use super::podman::{built_image, podman_json};

/// Largest image, in bytes, as `podman images` counts them (MB = 1,000,000 bytes).
const IMAGE_BUDGET_BYTES: u64 = 30_000_000;

#[test]
fn fits_the_size_budget_and_runs_as_nonroot() {
    let Some(image) = built_image() else { return };
    let inspect = podman_json(&["image", "inspect", &image.reference]);
    let config = &inspect[0]["Config"];
    let size = inspect[0]["Size"].as_u64().expect("image size");
    println!("image {}: {size} bytes", image.reference);
    assert!(
        size <= IMAGE_BUDGET_BYTES,
        "the image is {size} bytes, over the {IMAGE_BUDGET_BYTES}-byte budget"
    );
    assert_eq!(config["User"], USER, "the image's user");
    let env: Vec<&str> = config["Env"]
        .as_array()
        .map(|e| e.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    assert!(
        env.contains(&"SPIN_VARIABLE_CREDENTIALS=runtime"),
        "the image should take Google credentials from the runtime (the metadata server on \
         Cloud Run), so that no token is baked in: Env {env:?}"
    );
    assert!(
        env.contains(&"ION_STATE_DIR=/tmp/ion-state"),
        "the embedded key-value store must live under /tmp, the one writable place of a \
         read-only root: Env {env:?}"
    );
    assert!(
        config["ExposedPorts"].get("8080/tcp").is_some(),
        "EXPOSE 8080 (Cloud Run's --port): {}",
        config["ExposedPorts"]
    );
}
