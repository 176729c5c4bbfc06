//! libtorch from the venv's torch wheel links and loads through the rpath build.rs sets.
//!
//! `cargo test` puts libtorch's folder on LD_LIBRARY_PATH itself, so the check re-runs this
//! test binary without it.

use std::process::Command;

fn compute() {
    let t = sap_harness::tch::Tensor::from_slice(&[1.0f32, 2.0, 3.5]);
    assert_eq!(t.sum(sap_harness::tch::Kind::Float).double_value(&[]), 6.5);
    // Works with or without a GPU.
    let device = sap_harness::tch::Device::cuda_if_available();
    assert_eq!(t.to_device(device).size(), vec![3]);
}

#[test]
fn libtorch_loads_through_the_rpath_without_ld_library_path() {
    if std::env::var_os("SAP_TORCH_LINK_CHILD").is_some() {
        assert!(std::env::var_os("LD_LIBRARY_PATH").is_none());
        compute();
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "libtorch_loads_through_the_rpath_without_ld_library_path",
        ])
        .env_remove("LD_LIBRARY_PATH")
        .env("SAP_TORCH_LINK_CHILD", "1")
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{log}");
    assert!(log.contains("1 passed"), "{log}");
}
