//! Gives every binary an rpath to libtorch's `lib` folder (the PyPI wheel's `torch/lib`),
//! so `sap` runs without LD_LIBRARY_PATH, and links the C++ runtime that ALE needs.

fn main() {
    // Set by torch-sys (`links = "tch"`): the folder holding libtorch_cpu.so and friends.
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath={lib}");
    }
    // ale-sys links ALE statically but not the C++ standard library it needs.
    println!("cargo:rustc-link-lib=stdc++");
    println!("cargo:rerun-if-changed=build.rs");
}
